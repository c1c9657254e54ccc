/* test_history.c — DeltaHistory: random wave sequences; every inverse delta restores the previous state bit for
 * bit (back to the dense one), forward deltas reproduce each state, on disk as in memory; wrong states and damaged
 * deltas are refused; diff.json counts agree with counts taken from the masks directly. */
#include "core/file.h"
#include "io/json.h"
#include "pipeline/history.h"
#include "state_fixture.h"
#include "test.h"

#define WAVES 5

typedef struct {
    float **w;
    bb_state s;
} snapshot;

static void snap(const fixture *fx, const bb_state *live, snapshot *out) {
    out->w = fixture_blank_weights(fx);
    for (int i = 0; i < fx->n_lin; i++)
        memcpy(out->w[i], live->w[i], sizeof(float) * (size_t)bb_tensor_numel(fx->t[i]));
    bb_state_copy_owned(live, &out->s);
    out->s.w = out->w;
}

static void snap_free(const fixture *fx, snapshot *s) {
    bb_state_release(&s->s);
    fixture_free_weights(s->w, fx->n_lin);
}

/* Waves of random changes with a few sign-of-zero and NaN edits that only bit comparisons see. */
static void run_waves(fixture *fx, snapshot *snaps) {
    unsigned seed = 2024;
    snap(fx, &fx->s, &snaps[0]);
    for (int k = 1; k <= WAVES; k++) {
        fixture_wave(&fx->s, &seed, 0.08);
        if (k == 2) {
            bb_mask_set(fx->s.masks[1], 0, 0, 0);
            fx->s.w[1][0] = -0.0f;
            fx->s.w[2][5] = NAN;
        }
        if (k == 3) {
            fx->s.w[1][0] = 0.0f; /* only the sign bit changes */
            fx->s.w[2][5] = 1.0f;
        }
        snap(fx, &fx->s, &snaps[k]);
    }
}

static void test_memory(void) {
    fixture fx;
    EXPECT(fixture_open(&fx, "synthetic:tiny,layers=2,vocab=128") == 0, "fixture");
    snapshot snaps[WAVES + 1];
    run_waves(&fx, snaps);
    bb_delta *d[WAVES + 1] = {0};
    for (int k = 1; k <= WAVES; k++) EXPECT_OK(bb_delta_record(&snaps[k - 1].s, &snaps[k].s, &d[k]));
    char why[256] = "";
    EXPECT(fixture_same(&fx.s, &snaps[WAVES].s, why, sizeof why), "live = last snapshot: %s", why);
    EXPECT(!fixture_same(&snaps[0].s, &snaps[1].s, why, sizeof why), "waves change something");
    for (int k = WAVES; k >= 1; k--) {
        if (d[k]) EXPECT_OK(bb_delta_apply(d[k], &fx.s, -1));
        EXPECT(fixture_same(&fx.s, &snaps[k - 1].s, why, sizeof why), "backward to wave %d: %s", k - 1, why);
    }
    EXPECT(fx.s.wave == 0 && fx.s.n_metrics == 1, "dense again");
    /* the dense weights themselves, against the model */
    int dense = 1;
    for (int i = 0; i < fx.n_lin; i++) {
        float *ref = malloc(sizeof(float) * (size_t)bb_tensor_numel(fx.t[i]));
        bb_tensor_read_f32(fx.t[i], 0, bb_tensor_rows(fx.t[i]), ref);
        dense &= !memcmp(ref, fx.s.w[i], sizeof(float) * (size_t)bb_tensor_numel(fx.t[i]));
        dense &= bb_mask_count(fx.s.masks[i]) == bb_tensor_numel(fx.t[i]) && !fx.s.lora[i] && !fx.s.bits[i];
        free(ref);
    }
    EXPECT(dense, "wave 0 is the model's weights bit for bit, all kept, no factors or bits");
    for (int k = 1; k <= WAVES; k++) {
        if (d[k]) EXPECT_OK(bb_delta_apply(d[k], &fx.s, 1));
        EXPECT(fixture_same(&fx.s, &snaps[k].s, why, sizeof why), "forward to wave %d: %s", k, why);
    }
    /* refusals: a delta for another wave; a state whose weights are not that wave's; a damaged delta */
    if (d[2]) EXPECT_ERR(bb_delta_apply(d[2], &fx.s, -1), BB_ERR_ARG, "applies to wave 2");
    float saved = fx.s.w[3][7];
    fx.s.w[3][7] += 1.0f;
    if (d[5]) EXPECT_ERR(bb_delta_apply(d[5], &fx.s, -1), BB_ERR_ARG, "as it should be in wave 5");
    EXPECT(fx.s.wave == 5, "state untouched on a refused apply");
    fx.s.w[3][7] = saved;
    EXPECT(fixture_same(&fx.s, &snaps[5].s, why, sizeof why), "restored: %s", why);
    if (d[5]) {
        int i = 0;
        while (i < d[5]->n_lin && !d[5]->t[i].n_changed) i++;
        d[5]->t[i].w_old[0] += 0.5f;
        EXPECT_ERR(bb_delta_apply(d[5], &fx.s, -1), BB_ERR_FORMAT, "it is damaged");
    }
    for (int k = 0; k <= WAVES; k++) {
        bb_delta_destroy(&d[k]);
        snap_free(&fx, &snaps[k]);
    }
    fixture_close(&fx);
}

/* Removed / regrown counts by reading the masks weight by weight. */
static void count_changes(const bb_state *a, const bb_state *b, int64_t *removed, int64_t *regrown) {
    *removed = *regrown = 0;
    for (int i = 0; i < a->n_lin; i++)
        for (int64_t r = 0; r < a->masks[i]->rows; r++)
            for (int64_t c = 0; c < a->masks[i]->cols; c++) {
                int x = bb_mask_get(a->masks[i], r, c), y = bb_mask_get(b->masks[i], r, c);
                *removed += x && !y;
                *regrown += !x && y;
            }
}

static void test_disk(void) {
    fixture fx;
    EXPECT(fixture_open(&fx, "synthetic:tiny,layers=1,vocab=64") == 0, "fixture");
    snapshot snaps[WAVES + 1];
    run_waves(&fx, snaps);
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/history_run", test_tmpdir());
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    EXPECT(system(cmd) == 0, "clear %s", dir);
    for (int k = 1; k <= WAVES; k++) EXPECT_OK(bb_history_record(dir, &snaps[k - 1].s, &snaps[k].s));
    char why[256] = "";
    EXPECT_OK(bb_history_goto(dir, &fx.s, 0));
    EXPECT(fixture_same(&fx.s, &snaps[0].s, why, sizeof why), "goto 0 from disk: %s", why);
    EXPECT_OK(bb_history_goto(dir, &fx.s, 3));
    EXPECT(fixture_same(&fx.s, &snaps[3].s, why, sizeof why), "goto 3 from disk: %s", why);
    EXPECT_ERR(bb_history_goto(dir, &fx.s, 7), BB_ERR_IO, "diffs/0006/delta.h5 is missing");
    EXPECT(fx.s.wave == 5, "moved as far as the deltas go: %d", fx.s.wave);

    /* diff.json of wave 2 */
    char p[1400], *text = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/diffs/0002/diff.json", dir);
    EXPECT_OK(bb_file_read_all(p, 1 << 24, &text, &len));
    bb_json_doc *doc = NULL;
    if (text) EXPECT_OK(bb_json_parse(text, len, p, &doc));
    if (doc) {
        const bb_json *root = bb_json_root(doc), *tot = bb_json_get(root, "totals");
        int64_t removed, regrown, jr = -1, jg = -1, w0 = -1, w1 = -1;
        count_changes(&snaps[1].s, &snaps[2].s, &removed, &regrown);
        bb_json_int64(bb_json_get(tot, "removed"), &jr);
        bb_json_int64(bb_json_get(tot, "regrown"), &jg);
        bb_json_int64(bb_json_get(root, "wave_old"), &w0);
        bb_json_int64(bb_json_get(root, "wave_new"), &w1);
        EXPECT(removed > 0 && jr == removed && jg == regrown, "removed %lld/%lld regrown %lld/%lld", (long long)jr,
               (long long)removed, (long long)jg, (long long)regrown);
        EXPECT(w0 == 1 && w1 == 2, "waves %lld -> %lld", (long long)w0, (long long)w1);
        const bb_json *t0 = bb_json_at(bb_json_get(root, "tensors"), 0);
        size_t n = 0;
        const char *name = bb_json_str(bb_json_get(t0, "name"), &n);
        EXPECT(name && !strncmp(name, "blk.0.attn_q.weight", n), "first tensor");
        /* Frobenius norm of the change of blk.0.attn_q, summed in the test */
        double f = 0;
        for (int64_t k = 0; k < bb_tensor_numel(fx.t[0]); k++) {
            double e = (double)snaps[2].w[0][k] - (double)snaps[1].w[0][k];
            f += e * e;
        }
        EXPECT_NEAR(bb_json_num(bb_json_get(t0, "frobenius")), sqrt(f), 1e-9 * (1 + sqrt(f)));
    }
    bb_json_doc_destroy(&doc);
    free(text);
    /* a delta file of another kind is refused */
    snprintf(p, sizeof p, "%s/diffs/0001/delta.h5", dir);
    test_write_file(p, "nope", 4);
    bb_delta *d = NULL;
    EXPECT_ERR(bb_delta_read(p, &d), BB_ERR_HDF5, "0001/delta.h5");
    for (int k = 0; k <= WAVES; k++) snap_free(&fx, &snaps[k]);
    fixture_close(&fx);
}

int main(void) {
    TEST_RUN(test_memory);
    TEST_RUN(test_disk);
    return TEST_DONE();
}
