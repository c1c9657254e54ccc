/* test_ckpt_dist.c — checkpoints written and read collectively (unit.ckpt_dist on one process, mpi.ckpt_dist_N
 * under mpiexec): each rank passes only the weights it holds (the others NULL, with wrong bits and metrics), the
 * file equals the one a single process writes from the whole state, each rank's share counts only its own
 * tensors, the file reads back with another owner assignment (any rank its own weights, bit for bit), and bad
 * arguments on one rank give the same error on every rank instead of a hang. */
#include <unistd.h>

#include "core/file.h"
#include "core/sha256.h"
#include "mpi/ckpt.h"
#include "mpi/dist.h"
#include "state_fixture.h"
#include "test.h"

#define SPEC "synthetic:tiny,layers=3,vocab=128"

static const char *YAML = "run:\n  name: dist\n";

static void meta_of(bb_ckpt_meta *m) {
    memset(m, 0, sizeof *m);
    m->config_yaml = (char *)YAML;
    bb_sha256_hex(YAML, strlen(YAML), m->config_sha256);
    snprintf(m->model_sha256, sizeof m->model_sha256, "%064d", 3);
    snprintf(m->model_path, sizeof m->model_path, "%s", SPEC);
}

/* The state as rank `me` of an owner table sees it: only its own weights, masks and factors; wrong bits and
 * (off rank 0) wrong metrics elsewhere. Arrays are views into fx (nothing to free but the tables). */
static bb_state held_view(const fixture *fx, const int *owner, int me) {
    bb_state v = fx->s;
    int n = fx->n_lin;
    v.w = calloc((size_t)n, sizeof *v.w);
    v.masks = calloc((size_t)n, sizeof *v.masks);
    v.lora = calloc((size_t)n, sizeof *v.lora);
    v.bits = calloc((size_t)n, sizeof *v.bits);
    v.metrics = malloc(sizeof *v.metrics * (size_t)fx->s.n_metrics);
    memcpy(v.metrics, fx->s.metrics, sizeof *v.metrics * (size_t)fx->s.n_metrics);
    for (int i = 0; i < n; i++) {
        int mine = owner[i] == me;
        v.w[i] = mine ? fx->s.w[i] : NULL;
        v.masks[i] = mine ? fx->s.masks[i] : NULL;
        v.lora[i] = mine ? fx->s.lora[i] : NULL;
        v.bits[i] = mine ? fx->s.bits[i] : -7;
    }
    if (me != 0) v.metrics[0].ppl = -1, v.rng_counter = 99;
    return v;
}

static void view_free(bb_state *v) {
    free(v->w);
    free(v->masks);
    free(v->lora);
    free(v->bits);
    free(v->metrics);
}

int main(int argc, char **argv) {
    bb_dist d;
    EXPECT_OK(bb_dist_init(&argc, &argv, &d));
    fixture fx;
    EXPECT(fixture_open(&fx, SPEC) == 0, "fixture");
    unsigned seed = 21;
    fixture_wave(&fx.s, &seed, 0.1);
    fixture_wave(&fx.s, &seed, 0.1);
    int n = fx.n_lin, *owner = calloc((size_t)n, sizeof *owner), *other = calloc((size_t)n, sizeof *other);
    for (int i = 0; i < n; i++) {
        owner[i] = (i / BB_LIN_COUNT) % d.size;             /* layers round robin */
        other[i] = (d.size - 1 - (i % d.size) + d.size) % d.size; /* weights round robin, reversed */
    }
    char dir[1200], path[1400], ref[1400];
    snprintf(dir, sizeof dir, "%s/ckpt_dist_%d", test_tmpdir(), d.size);
    snprintf(path, sizeof path, "%s/dist.h5", dir);
    snprintf(ref, sizeof ref, "%s/serial.h5", dir);
    if (d.rank == 0) EXPECT_OK(bb_mkdir_p(dir));
    bb_ckpt_meta meta;
    meta_of(&meta);
    if (d.rank == 0) EXPECT_OK(bb_ckpt_write(ref, &fx.s, &meta));
    MPI_Barrier(d.comm);

    /* written by every rank from its own part */
    bb_state v = held_view(&fx, owner, d.rank);
    bb_ckpt_group g = {.comm = d.comm, .owner = owner};
    bb_ckpt_io io;
    EXPECT_OK(bb_ckpt_write_dist(path, &v, d.rank == 0 ? &meta : NULL, &g, &io));
    int64_t want_t = 0, want_b = 0;
    for (int i = 0; i < n; i++) {
        if (owner[i] != d.rank) continue;
        const bb_mask *m = fx.s.masks[i];
        const bb_lora *l = fx.s.lora[i];
        want_t++;
        want_b += 4 * m->rows * m->cols + 8 * m->rows * m->words_per_row + (l ? 4 * (int64_t)l->rank * (l->rows + l->cols) : 0);
    }
    EXPECT(io.tensors == want_t && io.tensor_bytes == want_b && (io.other_bytes > 0) == (d.rank == 0),
           "rank %d wrote %d tensors, %lld + %lld bytes; holds %lld tensors of %lld bytes", d.rank, io.tensors,
           (long long)io.tensor_bytes, (long long)io.other_bytes, (long long)want_t, (long long)want_b);
    MPI_Barrier(d.comm);

    /* the same contents as the serial file */
    if (d.rank == 0) {
        bb_ckpt *a = NULL, *b = NULL;
        EXPECT_OK(bb_ckpt_load(ref, &a));
        EXPECT_OK(bb_ckpt_load(path, &b));
        char why[256] = "";
        if (a && b) {
            EXPECT(fixture_same(&a->state, &b->state, why, sizeof why), "collective vs serial file: %s", why);
            EXPECT(fixture_same(&fx.s, &b->state, why, sizeof why), "collective file vs state: %s", why);
            EXPECT(!strcmp(a->meta.config_yaml, b->meta.config_yaml) &&
                       !strcmp(a->meta.model_sha256, b->meta.model_sha256),
                   "meta");
        }
        bb_ckpt_destroy(&a);
        bb_ckpt_destroy(&b);
    }

    /* read back with another assignment: each rank its own weights only */
    float **w = fixture_blank_weights(&fx);
    for (int i = 0; i < n; i++)
        if (other[i] != d.rank) {
            free(w[i]);
            w[i] = NULL;
        }
    bb_state back;
    EXPECT_OK(bb_state_init_dense(&back, fx.model->cfg.n_layers, w, fx.t));
    bb_ckpt_group g2 = {.comm = d.comm, .owner = other};
    bb_ckpt_meta rm;
    EXPECT_OK(bb_ckpt_read_dist(path, &back, &rm, &g2, &io));
    int ok = back.wave == fx.s.wave && back.rng_counter == fx.s.rng_counter && back.n_metrics == fx.s.n_metrics &&
             !memcmp(back.metrics, fx.s.metrics, sizeof *back.metrics * (size_t)back.n_metrics);
    int64_t got = 0;
    for (int i = 0; ok && i < n; i++) {
        const bb_mask *m = fx.s.masks[i];
        if (other[i] != d.rank) {
            ok &= back.masks[i] == NULL && back.lora[i] == NULL;
            continue;
        }
        got++;
        ok &= back.bits[i] == fx.s.bits[i] && back.masks[i] &&
              !memcmp(back.masks[i]->bits, m->bits, sizeof(uint64_t) * (size_t)(m->rows * m->words_per_row)) &&
              !memcmp(w[i], fx.s.w[i], sizeof(float) * (size_t)(m->rows * m->cols)) &&
              (back.lora[i] != NULL) == (fx.s.lora[i] != NULL);
    }
    EXPECT(ok && io.tensors == got, "rank %d: its weights read back differ (%d of %lld read)", d.rank, io.tensors,
           (long long)got);
    EXPECT(rm.config_yaml && !strcmp(rm.config_yaml, YAML), "meta on every rank");
    bb_ckpt_meta_free(&rm);
    bb_state_release(&back);
    fixture_free_weights(w, n);

    /* one rank without the weights it should write: the same error everywhere, nothing complete */
    char bad[1400];
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    if (d.rank == 0) { /* a previous run's */
        char m[1500];
        snprintf(m, sizeof m, "%s.DONE", bad);
        unlink(m);
        unlink(bad);
    }
    MPI_Barrier(d.comm);
    if (d.rank == owner[n - 1]) v.w[n - 1] = NULL; /* the last weight's holder */
    int q = bb_error_set_quiet(1);
    bb_status st = bb_ckpt_write_dist(bad, &v, d.rank == 0 ? &meta : NULL, &g, NULL);
    bb_error_set_quiet(q);
    EXPECT(st == BB_ERR_ARG, "a rank missing its weights: %s on rank %d", bb_status_name(st), d.rank);
    EXPECT(!bb_ckpt_is_complete(bad), "no complete file after the error");
    /* an owner outside the communicator: refused everywhere */
    owner[0] = d.size;
    q = bb_error_set_quiet(1);
    st = bb_ckpt_write_dist(bad, &v, d.rank == 0 ? &meta : NULL, &g, NULL);
    bb_error_set_quiet(q);
    EXPECT(st == BB_ERR_ARG, "an owner outside the communicator: %s", bb_status_name(st));
    view_free(&v);

    free(owner);
    free(other);
    fixture_close(&fx);
    int mine = test_failures_, total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, d.comm);
    if (d.rank == 0) EXPECT(total == mine, "%d failures on other ranks", total - mine);
    bb_dist_finalize(&d);
    return TEST_DONE();
}
