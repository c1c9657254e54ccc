/* test_mask.c — bit-packed masks: counts, density, size, set/get, pack/unpack round trip, padding, application. */
#include "compress/mask.h"
#include "core/rng.h"
#include "test.h"

static void test_create_counts(void) {
    const int64_t shapes[][2] = {{0, 0}, {1, 1}, {3, 64}, {5, 65}, {7, 130}, {4, 200}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t r = shapes[s][0], c = shapes[s][1];
        bb_mask *m = NULL;
        EXPECT_OK(bb_mask_create(r, c, 1, &m));
        if (!m) continue;
        EXPECT(m->words_per_row == (c + 63) / 64, "(%lld, %lld): %lld words per row", (long long)r, (long long)c,
               (long long)m->words_per_row);
        EXPECT(bb_mask_count(m) == r * c, "(%lld, %lld) all kept: count %lld", (long long)r, (long long)c,
               (long long)bb_mask_count(m));
        EXPECT(bb_mask_nbytes(m) == (size_t)(r * ((c + 63) / 64) * 8), "nbytes %zu", bb_mask_nbytes(m));
        EXPECT_NEAR(bb_mask_density(m), 1.0, 0);
        /* padding bits past cols stay 0, so whole-word popcounts are exact */
        for (int64_t i = 0; i < r; i++)
            if (c % 64) EXPECT(m->bits[i * m->words_per_row + m->words_per_row - 1] >> (c % 64) == 0, "padding set");
        bb_mask_destroy(&m);
        EXPECT(m == NULL, "destroy nulls the pointer");
        EXPECT_OK(bb_mask_create(r, c, 0, &m));
        EXPECT(bb_mask_count(m) == 0, "none kept: count %lld", (long long)bb_mask_count(m));
        bb_mask_destroy(&m);
    }
    bb_mask_destroy(NULL);
    bb_mask *m = NULL;
    EXPECT_ERR(bb_mask_create(-1, 3, 1, &m), BB_ERR_ARG, "bad shape");
}

static void test_pack_roundtrip(void) {
    const int64_t r = 37, c = 203;
    uint8_t *keep = malloc((size_t)(r * c)), *back = malloc((size_t)(r * c));
    float *u = malloc(sizeof(float) * (size_t)(r * c));
    bb_rng_fill_uniform(bb_rng_make(5, 1), 0, (size_t)(r * c), 0, 1, u);
    int64_t n = 0;
    for (int64_t k = 0; k < r * c; k++) n += keep[k] = u[k] < 0.3f;
    bb_mask *m = NULL;
    EXPECT_OK(bb_mask_create(r, c, 0, &m));
    bb_mask_pack(m, keep);
    EXPECT(bb_mask_count(m) == n, "count %lld vs %lld", (long long)bb_mask_count(m), (long long)n);
    EXPECT_NEAR(bb_mask_density(m), (double)n / (double)(r * c), 1e-15);
    int64_t bad = 0, row0 = 0;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) bad += bb_mask_get(m, i, j) != keep[i * c + j];
    for (int64_t j = 0; j < c; j++) row0 += keep[j];
    EXPECT(bad == 0, "%lld get() mismatches after pack", (long long)bad);
    EXPECT(bb_mask_count_row(m, 0) == row0, "row 0 count %lld vs %lld", (long long)bb_mask_count_row(m, 0),
           (long long)row0);
    bb_mask_unpack(m, back);
    EXPECT(memcmp(keep, back, (size_t)(r * c)) == 0, "unpack(pack(keep)) != keep");

    /* set/get toggles, clone and copy */
    bb_mask *m2 = NULL;
    EXPECT_OK(bb_mask_clone(m, &m2));
    bb_mask_set(m2, 3, 100, !bb_mask_get(m2, 3, 100));
    EXPECT(bb_mask_count(m2) == n + (bb_mask_get(m2, 3, 100) ? 1 : -1), "set toggles one bit");
    EXPECT_OK(bb_mask_copy(m2, m));
    EXPECT(memcmp(m2->bits, m->bits, bb_mask_nbytes(m)) == 0, "copy");
    bb_mask *m3 = NULL;
    EXPECT_OK(bb_mask_create(r, c + 1, 1, &m3));
    EXPECT_ERR(bb_mask_copy(m3, m), BB_ERR_ARG, "shapes differ");

    /* application zeroes exactly the pruned weights; from_nonzero recovers the mask */
    float *w = malloc(sizeof(float) * (size_t)(r * c));
    for (int64_t k = 0; k < r * c; k++) w[k] = 1.0f + u[k];
    bb_mask_apply(m, w);
    int64_t wrong = 0;
    for (int64_t k = 0; k < r * c; k++) wrong += (w[k] != 0.0f) != (keep[k] != 0);
    EXPECT(wrong == 0, "%lld weights disagree with the mask after apply", (long long)wrong);
    bb_mask_from_nonzero(m2, w);
    EXPECT(memcmp(m2->bits, m->bits, bb_mask_nbytes(m)) == 0, "from_nonzero(apply(w)) != mask");
    bb_mask_destroy(&m);
    bb_mask_destroy(&m2);
    bb_mask_destroy(&m3);
    free(keep);
    free(back);
    free(u);
    free(w);
}

int main(void) {
    TEST_RUN(test_create_counts);
    TEST_RUN(test_pack_roundtrip);
    return TEST_DONE();
}
