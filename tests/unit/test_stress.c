/* test_stress.c — stress detection and boosts: hand cases with the GGUF costs, the budget never exceeded
 * on random tables, order independence, fortress blocks, and the impossible-budget error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/stress.h"
#include "core/rng.h"
#include "test.h"

static void test_detect(void) {
    bb_stress_opts o;
    bb_stress_opts_default(&o);
    const double rise[4] = {0.005, 0.02, 0, NAN}, gn[4] = {1, 1, 1, 5}; /* mean 2, gamma 2: 5 > 4 */
    uint8_t s[4];
    EXPECT(bb_stress_detect(&o, 4, rise, gn, s) == 2, "two stressed");
    const uint8_t want[4] = {0, 1, 0, 1};
    for (int b = 0; b < 4; b++) EXPECT(s[b] == want[b], "block %d: %d", b, s[b]);
    EXPECT(bb_stress_detect(&o, 4, NULL, gn, s) == 1 && s[3] == 1, "gradient norm alone");
    EXPECT(bb_stress_detect(&o, 4, rise, NULL, s) == 2 && s[1] && s[3], "loss rise alone (NaN counts)");
}

static void make_blocks(bb_budget_block *b, int n, const double *usage, int rows) {
    bb_budget_opts bo;
    bb_budget_opts_default(&bo); /* choices 2 3 4 5 6 8 16 as Q2_K Q3_K Q4_K Q5_K Q6_K Q8_0 F16 */
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "blk.%d", i);
        EXPECT_OK(bb_budget_block_init(&bo, name, (uint64_t)(100 + i), rows, 256, usage[i], &b[i]));
    }
}

static void test_hand_rebalance(void) {
    /* 5 blocks of 8 x 256 = 2048 weights at 4 bits (Q4_K, 4.5 bpw = 9216 bits each), B = 5 * 9216.
     * Block 2 stressed, boost 4 -> min(8, max_bits 6) = 6 bits (Q6_K 6.5625 bpw = 13440): +4224.
     * Demoting to 3 bits (Q3_K 3.4375 bpw = 7040) saves 2176: two demotions, the lowest-usage
     * unstressed blocks 4 (usage 0.1) and 0 (0.2). */
    const double usage[5] = {0.2, 0.9, 0.05, 0.5, 0.1};
    bb_budget_block b[5];
    make_blocks(b, 5, usage, 8);
    EXPECT(b[0].c[2].bits == 4 && b[0].c[2].cost == 9216 && b[0].c[4].cost == 13440 && b[0].c[1].cost == 7040,
           "costs from the GGUF types: %lld %lld %lld", (long long)b[0].c[2].cost, (long long)b[0].c[4].cost,
           (long long)b[0].c[1].cost);
    int choice[5] = {2, 2, 2, 2, 2};
    uint8_t st[5] = {0, 0, 1, 0, 0};
    bb_stress_opts o;
    bb_stress_opts_default(&o);
    o.max_bits = 6;
    bb_stress_summary s;
    EXPECT_OK(bb_stress_rebalance(&o, b, 5, st, 5 * 9216, choice, &s));
    const int want[5] = {1, 2, 4, 2, 1};
    for (int i = 0; i < 5; i++) EXPECT(choice[i] == want[i], "block %d: choice %d, want %d", i, choice[i], want[i]);
    EXPECT(s.boosted == 1 && s.demoted == 2 && s.total == 5 * 9216 + 4224 - 2 * 2176 && s.total <= 5 * 9216,
           "boosted %lld demoted %lld total %lld", (long long)s.boosted, (long long)s.demoted, (long long)s.total);
    /* a fortress block is never demoted: make block 4 a fortress at F16 (choice 6) */
    b[4].fortress = 1;
    int c2[5] = {2, 2, 2, 2, 6};
    int64_t B = 4 * 9216 + b[4].c[6].cost;
    EXPECT_OK(bb_stress_rebalance(&o, b, 5, st, B, c2, &s));
    EXPECT(c2[4] == 6 && c2[0] == 1 && c2[3] == 1 && c2[1] == 2 && c2[2] == 4, "fortress kept: %d %d %d %d %d", c2[0],
           c2[1], c2[2], c2[3], c2[4]);
    b[4].fortress = 0;
    /* impossible: even with every unstressed block at 2 bits (Q2_K 2.625 bpw = 5376) the boost does not fit */
    int c3[5] = {2, 2, 2, 2, 2};
    EXPECT_ERR(bb_stress_rebalance(&o, b, 5, st, 4 * 5376 + 13440 - 1, c3, &s), BB_ERR_CONFIG, "stress.boost_bits");
    for (int i = 0; i < 5; i++) EXPECT(c3[i] == 2, "choices untouched after the error");
    EXPECT_OK(bb_stress_rebalance(&o, b, 5, st, 4 * 5376 + 13440, c3, &s));
    EXPECT(s.total == 4 * 5376 + 13440, "exactly at the floor: %lld", (long long)s.total);
    b[1].key = b[0].key;
    EXPECT_ERR(bb_stress_rebalance(&o, b, 5, st, 5 * 9216, choice, &s), BB_ERR_ARG, "share key");
}

static void test_random_tables(void) {
    enum { N = 40 };
    bb_rng r = bb_rng_make(12, 0);
    int ran = 0;
    for (int trial = 0; trial < 20; trial++) {
        double usage[N];
        bb_budget_block b[N], bp[N];
        int rows[N];
        for (int i = 0; i < N; i++) {
            usage[i] = bb_rng_uniform(r, (uint64_t)(trial * 1000 + i));
            rows[i] = 1 + (int)(bb_rng_uniform(r, (uint64_t)(trial * 1000 + 100 + i)) * 16);
        }
        bb_budget_opts bo;
        bb_budget_opts_default(&bo);
        int choice[N], orig[N];
        uint8_t st[N];
        int64_t base = 0, floor_ = 0;
        for (int i = 0; i < N; i++) {
            char name[32];
            snprintf(name, sizeof name, "t%d", i);
            bb_budget_block_init(&bo, name, (uint64_t)(7 * i + 3), rows[i], 256, usage[i], &b[i]);
            orig[i] = choice[i] = (int)(bb_rng_uniform(r, (uint64_t)(trial * 1000 + 200 + i)) * b[i].n);
            st[i] = bb_rng_uniform(r, (uint64_t)(trial * 1000 + 300 + i)) < 0.2;
            base += b[i].c[choice[i]].cost;
            floor_ += b[i].c[0].cost;
        }
        int64_t B = base + (trial % 3 - 1) * base / 10;
        if (B < floor_) B = floor_;
        bb_stress_opts o;
        bb_stress_opts_default(&o);
        bb_stress_summary s;
        bb_error_set_quiet(1);
        bb_status rc = bb_stress_rebalance(&o, b, N, st, B, choice, &s);
        bb_error_set_quiet(0);
        if (rc != BB_OK) {
            EXPECT(rc == BB_ERR_CONFIG, "trial %d: only the budget error is allowed", trial);
            continue;
        }
        ran++;
        int64_t total = 0;
        for (int i = 0; i < N; i++) {
            total += b[i].c[choice[i]].cost;
            if (st[i]) EXPECT(choice[i] >= orig[i], "stressed block %d lost bits", i);
            else EXPECT(choice[i] <= orig[i], "unstressed block %d gained bits", i);
        }
        EXPECT(total <= B && total == s.total, "trial %d: total %lld budget %lld", trial, (long long)total,
               (long long)B);
        /* the same tables in reverse order give the same choice per key */
        int rc2[N], ch2[N];
        uint8_t st2[N];
        for (int i = 0; i < N; i++) {
            bp[i] = b[N - 1 - i];
            ch2[i] = orig[N - 1 - i];
            st2[i] = st[N - 1 - i];
        }
        EXPECT_OK(bb_stress_rebalance(&o, bp, N, st2, B, ch2, &s));
        int same = 1;
        for (int i = 0; i < N; i++) {
            rc2[i] = ch2[N - 1 - i];
            same &= rc2[i] == choice[i];
        }
        EXPECT(same, "trial %d: order of the tables changed the result", trial);
    }
    EXPECT(ran >= 10, "only %d of 20 random budgets were feasible", ran);
}

int main(void) {
    TEST_RUN(test_detect);
    TEST_RUN(test_hand_rebalance);
    TEST_RUN(test_random_tables);
    return TEST_DONE();
}
