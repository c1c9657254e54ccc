/* dtype.c — type traits and exact f16/bf16 conversions. */
#include "core/dtype.h"

#include <string.h>

static const bb_dtype_traits traits[BB_DTYPE_COUNT] = {
    [BB_F32] = {.name = "f32", .size = 4, .is_float = 1},
    [BB_F16] = {.name = "f16", .size = 2, .is_float = 1},
    [BB_BF16] = {.name = "bf16", .size = 2, .is_float = 1},
    [BB_F64] = {.name = "f64", .size = 8, .is_float = 1},
    [BB_I8] = {.name = "i8", .size = 1},
    [BB_I16] = {.name = "i16", .size = 2},
    [BB_I32] = {.name = "i32", .size = 4},
    [BB_I64] = {.name = "i64", .size = 8},
    [BB_U8] = {.name = "u8", .size = 1},
};

const bb_dtype_traits *bb_dtype_info(bb_dtype t) {
    if ((int)t < 0 || t >= BB_DTYPE_COUNT) return NULL;
    return &traits[t];
}
const char *bb_dtype_name(bb_dtype t) { return bb_dtype_info(t) ? traits[t].name : "?"; }
size_t bb_dtype_size(bb_dtype t) { return bb_dtype_info(t) ? traits[t].size : 0; }

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float bb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* Inf/NaN */
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t bb_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t man = u & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0)); /* Inf/NaN */
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow */
    if (e <= 0) {
        /* result is subnormal (or zero): value = m * 2^-24 with m = full_man >> shift */
        if (e < -10) return sign; /* below half of the smallest subnormal */
        uint32_t full = man | 0x800000u;
        int shift = 14 - e; /* 24-bit mantissa to 10-bit subnormal field */
        uint32_t m = full >> shift;
        uint32_t rem = full & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (m & 1u))) m++;
        return (uint16_t)(sign | m); /* m may carry into the exponent: still correct */
    }
    uint32_t m = man >> 13;
    uint32_t rem = man & 0x1fffu;
    uint32_t r = ((uint32_t)e << 10) | m;
    if (rem > 0x1000u || (rem == 0x1000u && (m & 1u))) r++; /* carry may round up to Inf: correct */
    return (uint16_t)(sign | r);
}

float bb_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t bb_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;
    return (uint16_t)(u >> 16);
}

int bb_convert_to_f32(bb_dtype t, const void *src, size_t n, float *dst) {
    const unsigned char *s = src;
    switch (t) {
    case BB_F32: memmove(dst, src, n * 4); return 0;
    case BB_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = bb_f16_to_f32(h);
        }
        return 0;
    case BB_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = bb_bf16_to_f32(h);
        }
        return 0;
    case BB_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default: return -1;
    }
}

int bb_convert_from_f32(bb_dtype t, const float *src, size_t n, void *dst) {
    unsigned char *d = dst;
    switch (t) {
    case BB_F32: memmove(dst, src, n * 4); return 0;
    case BB_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = bb_f32_to_f16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return 0;
    case BB_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = bb_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return 0;
    case BB_F64:
        for (size_t i = 0; i < n; i++) {
            double v = src[i];
            memcpy(d + 8 * i, &v, 8);
        }
        return 0;
    default: return -1;
    }
}
