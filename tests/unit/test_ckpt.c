/* test_ckpt.c — wave checkpoints: bit-exact round trip, DONE marker, refusal of incomplete, truncated,
 * corrupt, foreign and other-model files, find-last and keep-last pruning; model hashes. */
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/sha256.h"
#include "io/hash.h"
#include "mpi/ckpt.h"
#include "mpi/h5.h"
#include "state_fixture.h"
#include "test.h"

#define SPEC "synthetic:tiny,layers=2,vocab=128"

static const char *YAML = "run:\n  name: test\nprune:\n  per_wave: 0.1\n";

static void meta_of(bb_ckpt_meta *m) {
    memset(m, 0, sizeof *m);
    m->config_yaml = (char *)YAML;
    bb_sha256_hex(YAML, strlen(YAML), m->config_sha256);
    snprintf(m->model_sha256, sizeof m->model_sha256, "%064d", 7);
    snprintf(m->model_path, sizeof m->model_path, "%s", SPEC);
}

static void run_dir(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", test_tmpdir(), name);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", buf);
    if (system(cmd) != 0) fprintf(stderr, "cannot clear %s\n", buf);
    char ck[1300];
    snprintf(ck, sizeof ck, "%s/checkpoints", buf);
    bb_mkdir_p(ck);
}

static int copy_prefix(const char *from, const char *to, size_t keep) {
    char *data = NULL;
    size_t n = 0;
    if (bb_file_read_all(from, 1 << 28, &data, &n) != BB_OK) return -1;
    int rc = test_write_file(to, data, keep && keep < n ? keep : n);
    free(data);
    return rc;
}

static long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

/* A marker claiming completeness for whatever is at path now. */
static void forge_marker(const char *path) {
    char m[1300], text[128];
    snprintf(m, sizeof m, "%s.DONE", path);
    int n = snprintf(text, sizeof text, "birdbone-ckpt 1\nwave 2\nbytes %ld\n", file_size(path));
    test_write_file(m, text, (size_t)n);
}

static void test_roundtrip(void) {
    fixture fx;
    EXPECT(fixture_open(&fx, SPEC) == 0, "fixture");
    unsigned seed = 11;
    fixture_wave(&fx.s, &seed, 0.1);
    fixture_wave(&fx.s, &seed, 0.1);
    fx.s.rng_counter = UINT64_MAX - 3;
    char dir[1200], path[1400];
    run_dir(dir, sizeof dir, "ckpt_rt");
    EXPECT_OK(bb_ckpt_path(dir, fx.s.wave, path, sizeof path));
    EXPECT(strstr(path, "/checkpoints/wave_0002.h5") != NULL, "path %s", path);
    bb_ckpt_meta meta;
    meta_of(&meta);
    EXPECT_OK(bb_ckpt_write(path, &fx.s, &meta));
    EXPECT(bb_ckpt_is_complete(path), "marker");
    char tmp[1500];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    EXPECT(access(tmp, F_OK) != 0, "no temporary left");

    /* restore into a dense state over blank weights */
    bb_state back;
    float **w = fixture_blank_weights(&fx);
    EXPECT_OK(bb_state_init_dense(&back, 2, w, fx.t));
    bb_ckpt_meta rm;
    EXPECT_OK(bb_ckpt_read(path, &back, &rm));
    char why[256] = "";
    EXPECT(fixture_same(&fx.s, &back, why, sizeof why), "read back: %s", why);
    EXPECT(rm.config_yaml && !strcmp(rm.config_yaml, YAML), "yaml text");
    EXPECT(!strcmp(rm.config_sha256, meta.config_sha256) && !strcmp(rm.model_sha256, meta.model_sha256) &&
               !strcmp(rm.model_path, SPEC) && rm.version == 1,
           "meta");
    bb_ckpt_meta_free(&rm);

    /* loaded without a model */
    bb_ckpt *k = NULL;
    EXPECT_OK(bb_ckpt_load(path, &k));
    if (k) {
        EXPECT(fixture_same(&fx.s, &k->state, why, sizeof why), "loaded: %s", why);
        EXPECT(!strcmp(k->tensors[3].name, fx.t[3]->name) && k->tensors[6].shape[1] == fx.t[6]->shape[1], "names");
    }
    bb_ckpt_destroy(&k);
    EXPECT(k == NULL, "destroy nulls");

    /* another model's state is refused and left as it was */
    fixture other;
    EXPECT(fixture_open(&other, "synthetic:tiny,layers=2,vocab=128,hidden=320") == 0, "other fixture");
    EXPECT_ERR(bb_ckpt_read(path, &other.s, NULL), BB_ERR_ARG, "a checkpoint of another model");
    EXPECT(other.s.wave == 0 && other.s.n_metrics == 1, "state untouched on error");
    fixture_close(&other);
    fixture three;
    EXPECT(fixture_open(&three, "synthetic:tiny,layers=3,vocab=128") == 0, "3-layer fixture");
    EXPECT_ERR(bb_ckpt_read(path, &three.s, NULL), BB_ERR_ARG, "2-layer model, this model has 3 layers");
    fixture_close(&three);
    bb_state_release(&back);
    fixture_free_weights(w, fx.n_lin);
    fixture_close(&fx);
}

static void test_refusals(void) {
    fixture fx;
    EXPECT(fixture_open(&fx, SPEC) == 0, "fixture");
    unsigned seed = 5;
    fixture_wave(&fx.s, &seed, 0.2);
    /* a distinctive first row of blk.0.attn_q: find it in the file to corrupt it */
    for (int c = 0; c < 8; c++) fx.w[0][c] = 1000.0f + (float)c * 0.25f;
    char dir[1200], good[1400], bad[1400], marker[1500];
    run_dir(dir, sizeof dir, "ckpt_bad");
    bb_ckpt_path(dir, 1, good, sizeof good);
    snprintf(bad, sizeof bad, "%s/checkpoints/bad.h5", dir);
    bb_ckpt_meta meta;
    meta_of(&meta);
    EXPECT_OK(bb_ckpt_write(good, &fx.s, &meta));
    bb_ckpt *k = NULL;

    /* no marker: the writer died between the rename and the marker */
    EXPECT(copy_prefix(good, bad, 0) == 0, "copy");
    EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_FORMAT, "has no DONE marker");
    EXPECT(!bb_ckpt_is_complete(bad), "incomplete");
    /* truncated under a marker written for the whole file */
    long size = file_size(good);
    forge_marker(bad);
    EXPECT(copy_prefix(good, bad, (size_t)size / 2) == 0, "truncate");
    EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_FORMAT, "the file is truncated");
    /* truncated and a marker that matches the truncated size: HDF5 refuses it */
    forge_marker(bad);
    EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_HDF5, "bad.h5");
    /* a flipped byte inside the weights: the recorded SHA-256 catches it */
    char *data = NULL;
    size_t n = 0;
    EXPECT_OK(bb_file_read_all(good, 1 << 28, &data, &n));
    float pattern[4] = {1000.0f, 1000.25f, 1000.5f, 1000.75f};
    size_t at = 0;
    for (size_t i = 0; data && i + sizeof pattern <= n; i++)
        if (!memcmp(data + i, pattern, sizeof pattern)) {
            at = i;
            break;
        }
    EXPECT(at > 0, "weights found in the file");
    if (data && at) {
        data[at + 5] ^= 0x10;
        test_write_file(bad, data, n);
        forge_marker(bad);
        EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_FORMAT, "the file is corrupt");
        EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_FORMAT, "layer_000/attn_q");
    }
    free(data);
    /* not HDF5 */
    test_write_file(bad, "garbage, not a checkpoint", 25);
    forge_marker(bad);
    EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_HDF5, "H5Fopen failed on");
    /* HDF5 but another format: a calibration-like file */
    hid_t f = -1;
    EXPECT_OK(bb_h5_create(bad, MPI_COMM_NULL, &f));
    bb_h5_attr_put_str(f, "magic", "birdbone.calib");
    bb_h5_close(&f);
    forge_marker(bad);
    EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_FORMAT, "is not a birdbone checkpoint (magic \"birdbone.calib\"");
    /* a newer format version */
    EXPECT(copy_prefix(good, bad, 0) == 0, "copy");
    hid_t e = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    int64_t v9 = 9;
    hid_t a = H5Aopen(e, "version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v9);
    H5Aclose(a);
    H5Fclose(e);
    forge_marker(bad);
    EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_FORMAT, "format version 9, this build reads version 1");
    /* a missing dataset */
    EXPECT(copy_prefix(good, bad, 0) == 0, "copy");
    e = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(e, "layer_001/ffn_up/mask", H5P_DEFAULT);
    H5Fclose(e);
    forge_marker(bad);
    EXPECT_ERR(bb_ckpt_load(bad, &k), BB_ERR_FORMAT, "/layer_001/ffn_up/mask is missing");
    EXPECT(k == NULL, "nothing loaded from a bad file");
    /* an unwritable place: no marker, no file */
    snprintf(marker, sizeof marker, "/nonexistent/dir/wave_0001.h5");
    EXPECT_ERR(bb_ckpt_write(marker, &fx.s, &meta), BB_ERR_HDF5, "/nonexistent/dir/wave_0001.h5.tmp");
    fixture_close(&fx);
}

static void test_find_and_prune(void) {
    fixture fx;
    EXPECT(fixture_open(&fx, "synthetic:tiny,layers=1,vocab=64") == 0, "fixture");
    char dir[1200], p[1400], last[1400];
    run_dir(dir, sizeof dir, "ckpt_find");
    int wave = 99;
    EXPECT_OK(bb_ckpt_find_last(dir, &wave, last, sizeof last));
    EXPECT(wave == -1 && last[0] == 0, "empty run dir: %d", wave);
    bb_ckpt_meta meta;
    meta_of(&meta);
    unsigned seed = 3;
    for (int k = 1; k <= 3; k++) {
        fixture_wave(&fx.s, &seed, 0.05);
        bb_ckpt_path(dir, k, p, sizeof p);
        EXPECT_OK(bb_ckpt_write(p, &fx.s, &meta));
    }
    /* wave 3 lost its marker (killed before it was written); a foreign file and a leftover .tmp */
    bb_ckpt_path(dir, 3, p, sizeof p);
    char m[1500];
    snprintf(m, sizeof m, "%s.DONE", p);
    unlink(m);
    snprintf(m, sizeof m, "%s/checkpoints/wave_0004.h5.tmp", dir);
    test_write_file(m, "partial", 7);
    snprintf(m, sizeof m, "%s/checkpoints/notes.txt", dir);
    test_write_file(m, "keep me", 7);
    EXPECT_OK(bb_ckpt_find_last(dir, &wave, last, sizeof last));
    EXPECT(wave == 2 && strstr(last, "wave_0002.h5"), "last complete: %d %s", wave, last);
    EXPECT_OK(bb_ckpt_prune(dir, 2));
    for (int k = 1; k <= 4; k++) {
        bb_ckpt_path(dir, k, p, sizeof p);
        char t[1500];
        snprintf(t, sizeof t, "%s.tmp", p);
        EXPECT((k == 2) == (access(p, F_OK) == 0) && access(t, F_OK) != 0, "wave %d after pruning", k);
    }
    EXPECT(access(m, F_OK) == 0, "other files stay");
    EXPECT_OK(bb_ckpt_find_last(dir, &wave, last, sizeof last));
    EXPECT(wave == 2, "still 2 after pruning: %d", wave);
    fixture_close(&fx);
}

/* The documented tensor hash, built by hand from its definition and hashed with the core SHA-256. */
static void expected_hash(const char *name, const char *dtype, int ndim, const int64_t *shape, const void *data,
                          size_t nbytes, char hex[65]) {
    unsigned char buf[4096];
    size_t n = 0;
    const char tag[] = "birdbone-tensor-v1";
    memcpy(buf + n, tag, sizeof tag);
    n += sizeof tag;
    memcpy(buf + n, name, strlen(name) + 1);
    n += strlen(name) + 1;
    memcpy(buf + n, dtype, strlen(dtype) + 1);
    n += strlen(dtype) + 1;
    for (int i = 0; i < 4; i++) buf[n++] = (unsigned char)((unsigned)ndim >> (8 * i));
    for (int d = 0; d < ndim; d++)
        for (int i = 0; i < 8; i++) buf[n++] = (unsigned char)((uint64_t)shape[d] >> (8 * i));
    memcpy(buf + n, data, nbytes);
    n += nbytes;
    bb_sha256_hex(buf, n, hex);
}

static void test_hash(void) {
    float v[6] = {1, -2, 0.5f, 0, -0.0f, 3};
    uint16_t h16[6];
    for (int i = 0; i < 6; i++) h16[i] = bb_f32_to_f16(v[i]);
    int64_t shape[2] = {2, 3};
    bb_tensor t32, t16;
    EXPECT_OK(bb_tensor_init_memory(&t32, "blk.0.attn_q.weight", BB_F32, 2, shape, v, sizeof v));
    EXPECT_OK(bb_tensor_init_memory(&t16, "blk.0.attn_q.weight", BB_F16, 2, shape, h16, sizeof h16));
    bb_tensor_hash a, b, c;
    char hex[65], want[65];
    EXPECT_OK(bb_tensor_hash_compute(&t32, 0, &a));
    expected_hash("blk.0.attn_q.weight", "f32", 2, shape, v, sizeof v, want);
    bb_hash_hex(a.digest, hex);
    EXPECT(!strcmp(hex, want), "f32 tensor hash %s, by hand %s", hex, want);
    EXPECT_OK(bb_tensor_hash_compute(&t16, 0, &b));
    expected_hash("blk.0.attn_q.weight", "f16", 2, shape, h16, sizeof h16, want);
    bb_hash_hex(b.digest, hex);
    EXPECT(!strcmp(hex, want), "f16 tensor hash as stored");
    EXPECT_OK(bb_tensor_hash_compute(&t16, 1, &c));
    EXPECT(!memcmp(a.digest, c.digest, 32), "f16 hashed as f32 equals the f32 tensor");
    bb_hash_f32("blk.0.attn_q.weight", 2, 3, v, &c);
    EXPECT(!memcmp(a.digest, c.digest, 32), "in-memory f32 equals the tensor");
    bb_hash_f32("blk.0.attn_k.weight", 2, 3, v, &c);
    EXPECT(memcmp(a.digest, c.digest, 32), "the name is inside the hash");
    bb_hash_f32("blk.0.attn_q.weight", 3, 2, v, &c);
    EXPECT(memcmp(a.digest, c.digest, 32), "the shape is inside the hash");

    /* whole model: deterministic, and equal to combining per-tensor digests by the documented rule */
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=1,vocab=64", &m));
    if (!m) return;
    bb_tensor_hash *per = NULL, *per2 = NULL;
    int n = 0, n2 = 0;
    uint8_t w1[32], w2[32];
    EXPECT_OK(bb_model_hash(m, 0, &per, &n, w1));
    EXPECT_OK(bb_model_hash(m, 0, &per2, &n2, w2));
    EXPECT(n == 12 && n2 == n && !memcmp(w1, w2, 32), "deterministic: %d tensors", n); /* embd, 9 per layer, norm, output */
    bb_sha256 s;
    bb_sha256_init(&s);
    for (int i = 0; i < n; i++) {
        bb_sha256_update(&s, per[i].name, strlen(per[i].name) + 1);
        bb_sha256_update(&s, per[i].digest, 32);
    }
    uint8_t w3[32];
    bb_sha256_final(&s, w3);
    EXPECT(!memcmp(w1, w3, 32), "whole hash = SHA-256 over (name, digest)");
    /* a synthetic tensor hashes its generated f32 values */
    const bb_tensor *q = &m->layers[0].wq;
    float *buf = malloc(sizeof(float) * (size_t)bb_tensor_numel(q));
    bb_tensor_read_f32(q, 0, bb_tensor_rows(q), buf);
    bb_hash_f32(q->name, bb_tensor_rows(q), bb_tensor_cols(q), buf, &c);
    int found = 0;
    for (int i = 0; i < n; i++) found |= !strcmp(per[i].name, q->name) && !memcmp(per[i].digest, c.digest, 32);
    EXPECT(found, "synthetic attn_q hashes its values");
    free(buf);
    free(per);
    free(per2);
    bb_model_destroy(&m);
}

int main(void) {
    TEST_RUN(test_hash);
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_refusals);
    TEST_RUN(test_find_and_prune);
    return TEST_DONE();
}
