/* test_wave_h5.c — decay wave files: masks written and read back bit for bit, metrics kept, bad files refused. */
#include <unistd.h>

#include "io/model.h"
#include "mpi/wave_h5.h"
#include "test.h"

#define N_LAYERS 2
#define N_MAT (N_LAYERS * BB_LIN_COUNT)

static void test_roundtrip(void) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=2,vocab=128", &m));
    if (!m) return;
    const bb_tensor *tensors[N_MAT];
    bb_mask *masks[N_MAT] = {0};
    double *u[N_MAT], *s[N_MAT];
    int64_t nb[N_MAT];
    unsigned seed = 7;
    for (int i = 0; i < N_MAT; i++) {
        tensors[i] = bb_layer_linear(&m->layers[i / BB_LIN_COUNT], (bb_linear_kind)(i % BB_LIN_COUNT));
        int64_t rows = bb_tensor_rows(tensors[i]), cols = bb_tensor_cols(tensors[i]);
        EXPECT_OK(bb_mask_create(rows, cols, 1, &masks[i]));
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                if (rand_r(&seed) % 3 == 0) bb_mask_set(masks[i], r, c, 0);
        nb[i] = rows; /* one block per row */
        u[i] = calloc((size_t)rows * 2, sizeof(double));
        s[i] = u[i] + rows;
        for (int64_t r = 0; r < rows; r++) u[i][r] = s[i][r] = (double)(r + i) / 100;
    }
    double owl[N_LAYERS] = {0.25, 0.35};
    bb_wave_h5 w = {.wave = 2,
                    .method = "wanda",
                    .pattern = "unstructured",
                    .usage_block = "row",
                    .config_hash = "abc",
                    .per_wave = 0.1,
                    .target = 0.3,
                    .sparsity = 0.33,
                    .ppl = 9.5,
                    .dppl = 0.05,
                    .kld_mean = 0.01,
                    .u_max = 1.5,
                    .kept = 10,
                    .total = 15,
                    .n_layers = N_LAYERS,
                    .owl_ratios = owl,
                    .tensors = tensors,
                    .masks = masks,
                    .u = (const double *const *)u,
                    .s = (const double *const *)s,
                    .n_blocks = nb};
    char path[1200];
    snprintf(path, sizeof path, "%s/test_wave_h5.h5", test_tmpdir());
    EXPECT_OK(bb_wave_h5_write(path, &w));
    for (int i = 0; i < N_MAT; i++) {
        bb_mask *back = NULL;
        EXPECT_OK(bb_wave_h5_read_mask(path, i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT), &back));
        if (!back) continue;
        EXPECT(back->rows == masks[i]->rows && back->cols == masks[i]->cols, "shape of %s", tensors[i]->name);
        EXPECT(!memcmp(back->bits, masks[i]->bits, bb_mask_nbytes(masks[i])), "bits of %s differ", tensors[i]->name);
        bb_mask_destroy(&back);
    }
    /* the usage values s of every tensor, concatenated in layer then kind order */
    double *all = NULL;
    int64_t n_all = 0;
    int wave = 0;
    EXPECT_OK(bb_wave_h5_read_usage(path, &wave, &all, &n_all));
    int64_t at = 0, bad = 0, want_n = 0;
    for (int i = 0; i < N_MAT; i++) want_n += nb[i];
    for (int i = 0; all && n_all == want_n && i < N_MAT; i++)
        for (int64_t r = 0; r < nb[i]; r++) bad += all[at++] != s[i][r];
    EXPECT(wave == 2 && n_all == want_n && bad == 0, "usage read back: wave %d, %lld of %lld values, %lld differ", wave,
           (long long)n_all, (long long)want_n, (long long)bad);
    free(all);
    bb_mask *none = NULL;
    EXPECT_ERR(bb_wave_h5_read_mask(path, 5, BB_LIN_Q, &none), BB_ERR_FORMAT, "layer_005/attn_q is missing");
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    EXPECT(access(tmp, F_OK) != 0, "temporary file %s left behind", tmp);
    /* a padding bit set past the last column (ffn_down is 352 wide: 5.5 words) is refused */
    bb_mask *down = masks[BB_LIN_DOWN];
    down->bits[down->words_per_row - 1] |= (uint64_t)1 << 63;
    char padded[1200];
    snprintf(padded, sizeof padded, "%s/test_wave_h5_padding.h5", test_tmpdir());
    EXPECT_OK(bb_wave_h5_write(padded, &w));
    EXPECT_ERR(bb_wave_h5_read_mask(padded, 0, BB_LIN_DOWN, &none), BB_ERR_FORMAT, "bits set past column 352");
    down->bits[down->words_per_row - 1] &= ~((uint64_t)1 << 63);
    /* not HDF5 at all */
    char junk[1200];
    snprintf(junk, sizeof junk, "%s/test_wave_h5.junk", test_tmpdir());
    EXPECT(test_write_file(junk, "not hdf5", 8) == 0, "cannot write %s", junk);
    EXPECT_ERR(bb_wave_h5_read_mask(junk, 0, BB_LIN_Q, &none), BB_ERR_HDF5, "H5Fopen");
    EXPECT_ERR(bb_wave_h5_read_usage(junk, &wave, &all, &n_all), BB_ERR_HDF5, "H5Fopen");
    EXPECT(all == NULL && n_all == 0, "a failed usage read leaves no array");
    /* an unwritable place leaves nothing and says so */
    EXPECT_ERR(bb_wave_h5_write("/nonexistent/dir/wave_1.h5", &w), BB_ERR_HDF5, "/nonexistent/dir/wave_1.h5");
    for (int i = 0; i < N_MAT; i++) {
        bb_mask_destroy(&masks[i]);
        free(u[i]);
    }
    bb_model_destroy(&m);
}

int main(void) {
    TEST_RUN(test_roundtrip);
    return TEST_DONE();
}
