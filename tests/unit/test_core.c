/* test_core.c — dtype conversions (exhaustive), Philox known answers, SHA-256
 * vectors, atomic writes, tensor row reads, events, threaded scans and sums. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/events.h"
#include "core/file.h"
#include "core/rng.h"
#include "core/finite.h"
#include "core/sha256.h"
#include "core/tensor.h"
#include "core/parallel.h"
#include "core/reduce.h"
#include "test.h"

__attribute__((unused)) static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Every f16 value converts to f32 and back unchanged (NaNs stay NaN), and
 * agrees with the compiler's own _Float16 conversion. */
static void test_f16_exhaustive(void) {
    int bad = 0, bad_hw = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = bb_f16_to_f32((uint16_t)h);
        uint16_t back = bb_f32_to_f16(f);
        int is_nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
        if (is_nan ? !isnan(f) || ((back >> 10) & 0x1f) != 0x1f || !(back & 0x3ff) : back != h) bad++;
#ifdef __FLT16_MAX__
        _Float16 hw;
        uint16_t hh = (uint16_t)h;
        memcpy(&hw, &hh, 2);
        if (!is_nan && bits((float)hw) != bits(f)) bad_hw++;
#endif
    }
    EXPECT(bad == 0, "%d f16 values did not round-trip", bad);
    EXPECT(bad_hw == 0, "%d f16 values differ from the compiler's conversion", bad_hw);
}

#ifdef __FLT16_MAX__
/* f32 -> f16 rounding against the compiler's _Float16 (IEEE round-to-nearest-even)
 * on every f32 exponent with many mantissas, including ties and subnormal results. */
static void test_f16_rounding(void) {
    int bad = 0;
    long n = 0;
    for (uint32_t e = 0; e < 256; e++) {
        for (uint32_t k = 0; k < 4096; k++) {
            /* mantissas: low bits that sit at/around the f16 rounding point and random ones */
            uint32_t man = (k < 2048) ? ((k * 0x1000u) | (k & 1 ? 0x1000u - (k >> 1) % 3 : 0)) & 0x7fffffu
                                      : (uint32_t)(bb_rng_u64(bb_rng_make(7, e), k) & 0x7fffffu);
            for (uint32_t s = 0; s < 2; s++) {
                uint32_t u = (s << 31) | (e << 23) | man;
                float f = from_bits(u);
                if (isnan(f)) continue;
                _Float16 hw = (_Float16)f;
                uint16_t want;
                memcpy(&want, &hw, 2);
                if (bb_f32_to_f16(f) != want) {
                    if (bad < 5) fprintf(stderr, "  f32 0x%08x -> 0x%04x, expected 0x%04x\n", u, bb_f32_to_f16(f), want);
                    bad++;
                }
                n++;
            }
        }
    }
    EXPECT(bad == 0, "%d of %ld f32->f16 conversions differ from IEEE rounding", bad, n);
}
#else
/* Compilers without _Float16 (clang 14 on x86): the gcc build runs the full check. */
static void test_f16_rounding(void) { EXPECT(bb_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie rounds to even"); }
#endif

/* bf16: every value round-trips; f32->bf16 equals the correctly rounded value
 * computed independently in double arithmetic. */
static void test_bf16(void) {
    int bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = bb_bf16_to_f32((uint16_t)b);
        uint16_t back = bb_f32_to_bf16(f);
        if (isnan(f) ? !isnan(bb_bf16_to_f32(back)) : back != b) bad++;
    }
    EXPECT(bad == 0, "%d bf16 values did not round-trip", bad);
    int bad_r = 0;
    for (uint64_t i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)bb_rng_u64(bb_rng_make(11, 0), i);
        if (i % 7 == 0) u = (u & 0xffff0000u) | 0x8000u; /* exact ties */
        float f = from_bits(u);
        if (isnan(f)) continue;
        /* candidates: truncation and the next bf16 up in magnitude */
        uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
        double dl = fabs((double)f - (double)from_bits(lo));
        double dh = isinf(from_bits(hi)) ? INFINITY : fabs((double)from_bits(hi) - (double)f);
        uint32_t want;
        if ((u & 0x7f800000u) == 0x7f800000u) want = lo; /* +-Inf */
        else if (dl < dh) want = lo;
        else if (dh < dl) want = hi;
        else want = ((lo >> 16) & 1) ? hi : lo;
        /* rounding up past the largest finite gives Inf */
        if ((u & 0xffffu) >= 0x8000u && (lo & 0x7fffffffu) == 0x7f7f0000u && dh >= dl) want = hi;
        if (bb_f32_to_bf16(f) != (uint16_t)(want >> 16)) bad_r++;
    }
    EXPECT(bad_r == 0, "%d f32->bf16 conversions are not correctly rounded", bad_r);
    EXPECT(isnan(bb_bf16_to_f32(bb_f32_to_bf16(NAN))), "NaN must stay NaN");
    EXPECT(bb_f32_to_f16(1e6f) == 0x7c00, "overflow must give +Inf");
    EXPECT(bb_f32_to_f16(-1e6f) == 0xfc00, "overflow must give -Inf");
}

static void test_convert_rows(void) {
    float src[5] = {1.5f, -2.25f, 0.0f, 65504.0f, 3.0e-5f}, back[5];
    uint16_t h[5];
    EXPECT(bb_convert_from_f32(BB_F16, src, 5, h) == 0, "f16 encode");
    EXPECT(bb_convert_to_f32(BB_F16, h, 5, back) == 0, "f16 decode");
    for (int i = 0; i < 4; i++) EXPECT(back[i] == src[i], "value %d: %g vs %g", i, back[i], src[i]);
    EXPECT(fabsf(back[4] - src[4]) < 1e-7f, "subnormal f16: %g", back[4]);
    EXPECT(bb_convert_to_f32(BB_I32, h, 1, back) == -1, "ints are not floats");
}

/* Known-answer vectors of Philox4x32-10 from the Random123 distribution. */
static void test_philox(void) {
    struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t o[4];
        bb_philox4x32_10(kat[i].ctr, kat[i].key, o);
        EXPECT(memcmp(o, kat[i].out, sizeof o) == 0, "vector %zu: got %08x %08x %08x %08x", i, o[0], o[1], o[2], o[3]);
    }
}

static void test_rng_distributions(void) {
    bb_rng r = bb_rng_make(42, bb_rng_stream_id("test"));
    double s = 0, s2 = 0, u = 0;
    const int n = 400000;
    for (int i = 0; i < n; i++) {
        double z = bb_rng_normal(r, (uint64_t)i);
        s += z;
        s2 += z * z;
        u += bb_rng_uniform(r, (uint64_t)i);
    }
    EXPECT_NEAR(s / n, 0.0, 0.01);
    EXPECT_NEAR(s2 / n, 1.0, 0.01);
    EXPECT_NEAR(u / n, 0.5, 0.005);
    /* pure function of (seed, stream, index): order and chunking do not matter */
    float a[100], b[100];
    bb_rng_fill_normal(r, 1000, 100, a);
    for (int i = 99; i >= 0; i--) b[i] = (float)bb_rng_normal(r, 1000 + (uint64_t)i);
    EXPECT(memcmp(a, b, sizeof a) == 0, "fill_normal differs from pointwise calls");
    EXPECT(bb_rng_u64(r, 5) != bb_rng_u64(bb_rng_split(r, 1), 5), "split streams must differ");
    EXPECT(bb_rng_u64(r, 5) != bb_rng_u64(bb_rng_make(43, r.stream), 5), "seeds must differ");
}

/* The FIPS 180-4 vectors under the current compression function. */
static void sha256_vectors(const char *which) {
    char hex[65];
    bb_sha256_hex("abc", 3, hex);
    EXPECT(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "%s abc: %s", which, hex);
    bb_sha256_hex("", 0, hex);
    EXPECT(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "%s empty: %s", which, hex);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    bb_sha256_hex(m, strlen(m), hex);
    EXPECT(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "%s 448-bit: %s", which,
           hex);
    bb_sha256 s;
    uint8_t d[32];
    bb_sha256_init(&s);
    char chunk[1001];
    memset(chunk, 'a', sizeof chunk);
    for (int i = 0; i < 1000; i++) bb_sha256_update(&s, chunk, (size_t)(i % 2 ? 999 : 1001));
    bb_sha256_final(&s, d);
    bb_sha256_to_hex(d, hex);
    EXPECT(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "%s million a: %s", which,
           hex);
}

static void test_sha256(void) {
    int was = bb_sha256_accel(0);
    sha256_vectors("reference");
    bb_sha256_accel(1);
    int accel = bb_sha256_accel(1); /* what the first call set: 1 only where the CPU has the SHA instructions */
    printf("  SHA-256 instructions: %s\n", accel ? "used" : "not on this CPU (the reference only)");
    if (accel) sha256_vectors("SHA instructions");
    /* random data of every length 0..300 and a few large ones, in uneven pieces: the same digest both ways */
    enum { N = 1 << 20 };
    uint8_t *buf = malloc(N);
    EXPECT(buf, "buffer");
    if (!buf) return;
    bb_rng r = bb_rng_make(7, 1);
    for (int i = 0; i < N; i++) buf[i] = (uint8_t)bb_rng_u64(r, (uint64_t)i);
    int bad = 0;
    for (int len = 0; len < 300 + 6; len++) {
        size_t n = len < 300 ? (size_t)len : (size_t)N - (size_t)(len - 300) * 4099;
        uint8_t d[2][32];
        for (int mode = 0; mode < 2; mode++) {
            bb_sha256_accel(mode);
            bb_sha256 s;
            bb_sha256_init(&s);
            size_t off = 0, piece = 1 + (size_t)len % 97;
            while (off < n) {
                size_t k = n - off < piece ? n - off : piece;
                bb_sha256_update(&s, buf + off, k);
                off += k;
                piece = piece * 3 + 1;
            }
            bb_sha256_final(&s, d[mode]);
        }
        bad += memcmp(d[0], d[1], 32) != 0;
    }
    EXPECT(bad == 0, "%d lengths hash differently with the SHA instructions", bad);
    free(buf);
    bb_sha256_accel(was);
}

static void test_files(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/core_atomic.bin", test_tmpdir());
    const char data[] = "hello birdbone";
    EXPECT_OK(bb_file_write_atomic(path, data, sizeof data));
    bb_mapped_file mf;
    EXPECT_OK(bb_file_map(path, &mf));
    EXPECT(mf.size == sizeof data && memcmp(mf.data, data, sizeof data) == 0, "mapped contents differ");
    bb_file_unmap(&mf);
    bb_file_unmap(&mf);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    EXPECT(!bb_path_exists(tmp), "temporary file left behind");
    EXPECT_ERR(bb_file_map("/nonexistent/x.bin", &mf), BB_ERR_IO, "/nonexistent/x.bin");
    EXPECT_ERR(bb_file_map(test_tmpdir(), &mf), BB_ERR_IO, "not a regular file");
    EXPECT_ERR(bb_file_write_atomic("/nonexistent/dir/x", data, 1), BB_ERR_IO, "cannot create");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/a/b/c", test_tmpdir());
    EXPECT_OK(bb_mkdir_p(dir));
    EXPECT(bb_path_is_dir(dir), "mkdir -p did not create %s", dir);
}

static void test_tensor(void) {
    float vals[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[6];
    bb_convert_from_f32(BB_BF16, vals, 6, h);
    bb_tensor t;
    int64_t shape[2] = {3, 2};
    EXPECT_OK(bb_tensor_init_memory(&t, "w", BB_BF16, 2, shape, h, sizeof h));
    EXPECT(bb_tensor_rows(&t) == 3 && bb_tensor_cols(&t) == 2 && bb_tensor_numel(&t) == 6, "shape");
    float out[4];
    EXPECT_OK(bb_tensor_read_f32(&t, 1, 2, out));
    EXPECT(out[0] == 3 && out[3] == 6, "row read: %g %g", out[0], out[3]);
    EXPECT_ERR(bb_tensor_read_f32(&t, 2, 2, out), BB_ERR_ARG, "outside");
    EXPECT_ERR(bb_tensor_init_memory(&t, "w", BB_F32, 2, shape, h, sizeof h), BB_ERR_FORMAT, "need 24 bytes");
    int64_t bad[2] = {3, 0};
    EXPECT_ERR(bb_tensor_init_memory(&t, "w", BB_F32, 2, bad, h, 0), BB_ERR_FORMAT, "must be positive");
}

static void test_events(void) {
    bb_events_reset();
    bb_event_begin("a");
    bb_event_end("a", 1e9, 0);
    bb_event_begin("a");
    bb_event_end("a", 1e9, 0);
    bb_event_end("never-started", 0, 0);
    const bb_event_stat *ev;
    int n = bb_events_get(&ev);
    EXPECT(n == 1 && ev[0].count == 2 && ev[0].flops == 2e9, "events: n=%d", n);
}

typedef struct {
    int id, ran;
} par_job;

static void *par_mark(void *arg) {
    par_job *j = arg;
    j->ran += 1 + j->id;
    return NULL;
}

/* Every job runs once, on whatever thread; the thread counts are capped as documented. */
/* The threaded scan finds the reference's index wherever the first NaN or Inf is, for any thread count. */
static void test_first_nonfinite(void) {
    const int64_t n = ((int64_t)1 << 22) * 3 + 5; /* three threads' worth */
    float *p = malloc(sizeof(float) * (size_t)n);
    EXPECT(p, "buffer");
    if (!p) return;
    for (int64_t i = 0; i < n; i++) p[i] = (float)(i % 97) - 48.0f;
    const int64_t at[] = {0, 1, ((int64_t)1 << 22) - 1, (int64_t)1 << 22, n / 2, n - 1};
    for (int threads = 1; threads <= 4; threads++) {
        bb_parallel_set_default(threads);
        EXPECT(bb_first_nonfinite(p, n) == -1 && bb_first_nonfinite_ref(p, n) == -1, "%d threads: all finite",
               threads);
        for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
            p[at[k]] = k % 2 ? NAN : -INFINITY;
            if (at[k] + 7 < n) p[at[k] + 7] = INFINITY; /* a later one must not win */
            int64_t got = bb_first_nonfinite(p, n);
            EXPECT(got == at[k] && got == bb_first_nonfinite_ref(p, n), "%d threads: first at %lld, got %lld",
                   threads, (long long)at[k], (long long)got);
            p[at[k]] = 1.0f;
            if (at[k] + 7 < n) p[at[k] + 7] = 1.0f;
        }
    }
    bb_parallel_set_default(0);
    EXPECT(bb_first_nonfinite(p, 0) == -1, "empty");
    free(p);
}

/* The chunked sums give their reference's bits for any thread count, and the exact sum where every partial
 * sum is exact (multiples of 1/8, far below 2^53); the elementwise difference is exact. */
typedef struct {
    const float *a;
} count_ctx;

static void sum_and_count(const void *ctx, int64_t i0, int64_t i1, double *acc) {
    const count_ctx *c = ctx;
    for (int64_t i = i0; i < i1; i++) {
        acc[0] += c->a[i];
        acc[1] += c->a[i] < 0;
    }
}

static void test_reduce(void) {
    const int64_t n = ((int64_t)1 << 21) * 3 + 12345; /* three threads' worth and a partial chunk */
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    float *d = malloc(sizeof(float) * (size_t)n), *r = malloc(sizeof(float) * (size_t)n);
    EXPECT(a && b && d && r, "buffers");
    if (!a || !b || !d || !r) goto out;
    long long ab8 = 0, aa4 = 0, sum2 = 0, neg = 0; /* the exact sums, in integers */
    for (int64_t i = 0; i < n; i++) {
        int x = (int)(i % 97) - 48, y = (int)(i % 89) - 44;
        a[i] = 0.5f * (float)x;
        b[i] = 0.25f * (float)y;
        ab8 += (long long)x * y;
        aa4 += (long long)x * x;
        sum2 += x;
        neg += x < 0;
    }
    for (int threads = 1; threads <= 4; threads++) {
        bb_parallel_set_default(threads);
        double ab = bb_dot_f64(a, b, n), aa = bb_dot_f64(a, NULL, n);
        EXPECT(ab == (double)ab8 / 8 && ab == bb_dot_f64_ref(a, b, n), "%d threads: a.b %.17g, exact %.17g", threads,
               ab, (double)ab8 / 8);
        EXPECT(aa == (double)aa4 / 4 && aa == bb_dot_f64_ref(a, NULL, n), "%d threads: a.a %.17g, exact %.17g",
               threads, aa, (double)aa4 / 4);
        double two[2], two_ref[2];
        bb_reduce_f64(&(count_ctx){a}, sum_and_count, n, 2, two);
        bb_reduce_f64_ref(&(count_ctx){a}, sum_and_count, n, 2, two_ref);
        EXPECT(two[0] == (double)sum2 / 2 && two[1] == (double)neg && two[0] == two_ref[0] && two[1] == two_ref[1],
               "%d threads: sum %g (exact %g), negatives %g (exact %lld)", threads, two[0], (double)sum2 / 2, two[1],
               neg);
        bb_sub_f32(d, a, b, n);
        bb_sub_f32(r, a, NULL, n);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += d[i] != a[i] - b[i] || r[i] != a[i];
        EXPECT(bad == 0, "%d threads: %lld wrong differences", threads, (long long)bad);
    }
    /* rounding data: the same bits for every thread count, and within 1e-12 of a long double sum */
    uint64_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        a[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 3.0f;
        b[i] = (float)((double)((s >> 7) & 0xffffff) / 16777216.0);
    }
    long double exact = 0;
    for (int64_t i = 0; i < n; i++) exact += (long double)a[i] * b[i];
    double ref = bb_dot_f64_ref(a, b, n);
    EXPECT(fabs(ref - (double)exact) <= 1e-12 * fabs((double)exact) + 1e-9, "dot %.17g, long double %.17Lg", ref,
           exact);
    for (int threads = 2; threads <= 4; threads++) {
        bb_parallel_set_default(threads);
        double got = bb_dot_f64(a, b, n);
        EXPECT(memcmp(&got, &ref, sizeof got) == 0, "%d threads: %.17g, reference %.17g", threads, got, ref);
    }
    bb_parallel_set_default(0);
    EXPECT(bb_dot_f64(a, b, 0) == 0 && bb_dot_f64(a, b, 5) == bb_dot_f64_ref(a, b, 5), "empty and short arrays");
out:
    free(a);
    free(b);
    free(d);
    free(r);
}

static void test_parallel(void) {
    par_job jobs[BB_PARALLEL_MAX];
    for (int n = 1; n <= BB_PARALLEL_MAX; n += 21) {
        for (int i = 0; i < n; i++) jobs[i] = (par_job){i, 0};
        bb_parallel_run(par_mark, jobs, sizeof jobs[0], n);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += jobs[i].ran != 1 + i;
        EXPECT(bad == 0, "%d jobs: %d did not run exactly once", n, bad);
    }
    EXPECT(bb_parallel_threads(5, 20, 8) == 2, "5 wanted, 20 units, 8 per thread: %d", bb_parallel_threads(5, 20, 8));
    EXPECT(bb_parallel_threads(5, 7, 8) == 1, "fewer units than one thread's share: %d", bb_parallel_threads(5, 7, 8));
    EXPECT(bb_parallel_threads(1000, 1 << 20, 1) == BB_PARALLEL_MAX, "cap: %d", bb_parallel_threads(1000, 1 << 20, 1));
    EXPECT(bb_parallel_threads(0, 1 << 20, 1) >= 1, "0 = the processors online");
    bb_parallel_set_default(3); /* a run's backend.threads */
    EXPECT(bb_parallel_threads(0, 1 << 20, 1) == 3, "0 = the default once set: %d", bb_parallel_threads(0, 1 << 20, 1));
    EXPECT(bb_parallel_threads(5, 1 << 20, 1) == 5, "an explicit count wins over the default");
    bb_parallel_set_default(0);
}

int main(void) {
    TEST_RUN(test_parallel);
    TEST_RUN(test_f16_exhaustive);
    TEST_RUN(test_f16_rounding);
    TEST_RUN(test_bf16);
    TEST_RUN(test_convert_rows);
    TEST_RUN(test_philox);
    TEST_RUN(test_rng_distributions);
    TEST_RUN(test_sha256);
    TEST_RUN(test_first_nonfinite);
    TEST_RUN(test_reduce);
    TEST_RUN(test_files);
    TEST_RUN(test_tensor);
    TEST_RUN(test_events);
    return TEST_DONE();
}
