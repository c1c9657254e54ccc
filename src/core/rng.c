/* rng.c — Philox4x32-10 and the distributions built on it. */
#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void bb_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0;
        c1 = n1;
        c2 = n2;
        c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

uint64_t bb_rng_stream_id(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

bb_rng bb_rng_split(bb_rng r, uint64_t k) {
    uint64_t z = r.stream ^ (k + 0x9E3779B97F4A7C15ull + (r.stream << 6) + (r.stream >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    r.stream = z ^ (z >> 31);
    return r;
}

static void block(bb_rng r, uint64_t i, uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)i, (uint32_t)(i >> 32), (uint32_t)r.stream, (uint32_t)(r.stream >> 32)};
    uint32_t key[2] = {(uint32_t)r.seed, (uint32_t)(r.seed >> 32)};
    bb_philox4x32_10(ctr, key, out);
}

uint64_t bb_rng_u64(bb_rng r, uint64_t i) {
    uint32_t o[4];
    block(r, i, o);
    return ((uint64_t)o[0] << 32) | o[1];
}

static double u53(uint32_t hi, uint32_t lo) { return (double)((((uint64_t)hi << 32) | lo) >> 11) * 0x1p-53; }

double bb_rng_uniform(bb_rng r, uint64_t i) {
    uint32_t o[4];
    block(r, i, o);
    return u53(o[0], o[1]);
}

double bb_rng_normal(bb_rng r, uint64_t i) {
    uint32_t o[4];
    block(r, i, o);
    double u1 = 1.0 - u53(o[0], o[1]); /* (0, 1]: log is finite */
    double u2 = u53(o[2], o[3]);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void bb_rng_fill_normal(bb_rng r, uint64_t i0, size_t n, float *out) {
    for (size_t k = 0; k < n; k++) out[k] = (float)bb_rng_normal(r, i0 + k);
}

void bb_rng_fill_uniform(bb_rng r, uint64_t i0, size_t n, float lo, float hi, float *out) {
    for (size_t k = 0; k < n; k++) out[k] = lo + (hi - lo) * (float)bb_rng_uniform(r, i0 + k);
}
