/* test_h5.c — shared HDF5 helpers: every dataset type and attribute round-trips, with and without MPI;
 * row-range writes; missing objects, wrong shapes and types refused with the file and object named. */
#include <mpi.h>
#include <stdint.h>

#include "mpi/h5.h"
#include "test.h"

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", test_tmpdir(), name); }

/* Write one dataset of every type and every attribute kind, read back, compare to the inputs. */
static void roundtrip(MPI_Comm comm, const char *fname) {
    char path[1024];
    path_of(path, sizeof path, fname);
    float f32[6] = {1.5f, -0.0f, 3.25e-30f, -7.0f, 1e30f, 0.1f};
    double f64[3] = {-2.5, 1e-300, 0.3};
    int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
    int64_t i64[2] = {INT64_MIN, INT64_MAX};
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    uint64_t u64[4] = {0, 1, UINT64_MAX, (uint64_t)1 << 63};
    hid_t f = -1, g = -1;
    EXPECT_OK(bb_h5_create(path, comm, &f));
    if (f < 0) return;
    int64_t d23[2] = {2, 3}, d3 = 3, d4 = 4, d2 = 2, d5 = 5, d22[2] = {2, 2}, d0[2] = {0, 7};
    EXPECT_OK(bb_h5_group_create(f, "a/b", &g));
    EXPECT_OK(bb_h5_write(g, "f32", BB_H5_F32, 2, d23, f32));
    EXPECT_OK(bb_h5_write(g, "f64", BB_H5_F64, 1, &d3, f64));
    EXPECT_OK(bb_h5_write(g, "i32", BB_H5_I32, 1, &d4, i32));
    EXPECT_OK(bb_h5_write(g, "i64", BB_H5_I64, 1, &d2, i64));
    EXPECT_OK(bb_h5_write(g, "u8", BB_H5_U8, 1, &d5, u8));
    EXPECT_OK(bb_h5_write(g, "u64", BB_H5_U64, 2, d22, u64));
    EXPECT_OK(bb_h5_write(g, "empty", BB_H5_F32, 2, d0, NULL));
    /* two row ranges of one dataset */
    hid_t d = -1;
    EXPECT_OK(bb_h5_dataset_create(f, "rows", BB_H5_F64, 2, d23, &d));
    double r0[3] = {1, 2, 3}, r1[3] = {4, 5, 6};
    EXPECT_OK(bb_h5_write_rows(d, BB_H5_F64, 1, 1, r1));
    EXPECT_OK(bb_h5_write_rows(d, BB_H5_F64, 0, 1, r0));
    bb_h5_close_id(d);
    EXPECT_OK(bb_h5_attr_put_i64(g, "i", -42));
    EXPECT_OK(bb_h5_attr_put_u64(g, "u", UINT64_MAX - 1));
    EXPECT_OK(bb_h5_attr_put_f64(g, "x", 0.125));
    EXPECT_OK(bb_h5_attr_put_str(f, "s", "birdbone"));
    EXPECT_OK(bb_h5_attr_put_str(f, "empty_s", ""));
    bb_h5_close_id(g);
    EXPECT_OK(bb_h5_close(&f));
    EXPECT(f == -1, "close nulls the id");

    EXPECT_OK(bb_h5_open(path, comm, &f));
    if (f < 0) return;
    EXPECT_OK(bb_h5_group_open(f, "a/b", &g));
    float bf32[6];
    double bf64[3], brows[6];
    int32_t bi32[4];
    int64_t bi64[2], iv = 0;
    uint8_t bu8[5];
    uint64_t bu64[4], uv = 0;
    double xv = 0;
    EXPECT_OK(bb_h5_read(g, "f32", BB_H5_F32, 2, d23, bf32));
    EXPECT(!memcmp(f32, bf32, sizeof f32), "f32 bits");
    EXPECT_OK(bb_h5_read(g, "f64", BB_H5_F64, 1, &d3, bf64));
    EXPECT(!memcmp(f64, bf64, sizeof f64), "f64 bits");
    EXPECT_OK(bb_h5_read(g, "i32", BB_H5_I32, 1, &d4, bi32));
    EXPECT(!memcmp(i32, bi32, sizeof i32), "i32");
    EXPECT_OK(bb_h5_read(g, "i64", BB_H5_I64, 1, &d2, bi64));
    EXPECT(bi64[0] == INT64_MIN && bi64[1] == INT64_MAX, "i64");
    EXPECT_OK(bb_h5_read(g, "u8", BB_H5_U8, 1, &d5, bu8));
    EXPECT(bu8[4] == 255 && bu8[3] == 128, "u8");
    EXPECT_OK(bb_h5_read(g, "u64", BB_H5_U64, 2, d22, bu64));
    EXPECT(bu64[2] == UINT64_MAX && bu64[3] == (uint64_t)1 << 63, "u64");
    EXPECT_OK(bb_h5_read(g, "empty", BB_H5_F32, 2, d0, NULL));
    EXPECT_OK(bb_h5_read(f, "rows", BB_H5_F64, 2, d23, brows));
    EXPECT(brows[0] == 1 && brows[2] == 3 && brows[3] == 4 && brows[5] == 6, "row writes: %g %g", brows[0], brows[5]);
    int rank = 0;
    int64_t dims[2] = {0, 0};
    EXPECT_OK(bb_h5_shape(g, "f32", &rank, dims));
    EXPECT(rank == 2 && dims[0] == 2 && dims[1] == 3, "shape");
    EXPECT_OK(bb_h5_attr_get_i64(g, "i", &iv));
    EXPECT(iv == -42, "i attr");
    EXPECT_OK(bb_h5_attr_get_u64(g, "u", &uv));
    EXPECT(uv == UINT64_MAX - 1, "u attr");
    EXPECT_OK(bb_h5_attr_get_f64(g, "x", &xv));
    EXPECT(xv == 0.125, "x attr");
    char s[16];
    EXPECT_OK(bb_h5_attr_get_str(f, "s", s, sizeof s));
    EXPECT(!strcmp(s, "birdbone"), "string attr: %s", s);
    char *sa = NULL;
    EXPECT_OK(bb_h5_attr_get_str_alloc(f, "s", &sa));
    EXPECT(sa && !strcmp(sa, "birdbone"), "allocated string attr");
    free(sa);
    EXPECT_OK(bb_h5_attr_get_str(f, "empty_s", s, sizeof s));
    EXPECT(s[0] == 0, "empty string");

    /* refusals, each naming the file and the object */
    EXPECT(bb_h5_exists(f, "a/b/f32") == 1 && bb_h5_exists(f, "a/nope/f32") == 0 && bb_h5_exists(f, "/a") == 1,
           "exists");
    int64_t d32[2] = {3, 2};
    EXPECT_ERR(bb_h5_read(g, "f32", BB_H5_F32, 2, d32, bf32), BB_ERR_FORMAT,
               "/a/b/f32 has shape (2, 3), expected (3, 2)");
    EXPECT_ERR(bb_h5_read(g, "f32", BB_H5_F32, 1, &d3, bf32), BB_ERR_FORMAT, "expected (3)");
    EXPECT_ERR(bb_h5_read(g, "f64", BB_H5_F32, 1, &d3, bf32), BB_ERR_FORMAT, "/a/b/f64 is not a f32 dataset");
    EXPECT_ERR(bb_h5_read(g, "u64", BB_H5_I64, 2, d22, bu64), BB_ERR_FORMAT, "is not a i64 dataset");
    EXPECT_ERR(bb_h5_read(g, "i32", BB_H5_F32, 1, &d4, bf32), BB_ERR_FORMAT, "is not a f32 dataset");
    EXPECT_ERR(bb_h5_read(g, "nothing", BB_H5_F32, 1, &d3, bf32), BB_ERR_FORMAT, ": /a/b/nothing is missing");
    EXPECT_ERR(bb_h5_read(g, "nothing", BB_H5_F32, 1, &d3, bf32), BB_ERR_FORMAT, fname);
    EXPECT_ERR(bb_h5_attr_get_i64(g, "missing", &iv), BB_ERR_FORMAT, "attribute missing of /a/b is missing");
    EXPECT_ERR(bb_h5_attr_get_i64(g, "x", &iv), BB_ERR_FORMAT, "attribute x of /a/b is not a scalar integer");
    EXPECT_ERR(bb_h5_attr_get_str(f, "s", s, 4), BB_ERR_FORMAT, "not a fixed string of < 4 bytes");
    hid_t g2 = -1;
    EXPECT_ERR(bb_h5_group_open(f, "a/c", &g2), BB_ERR_FORMAT, "/a/c is missing");
    bb_h5_close_id(g);
    EXPECT_OK(bb_h5_close(&f));
}

static void test_serial(void) { roundtrip(MPI_COMM_NULL, "test_h5_serial.h5"); }

static void test_mpio(void) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) MPI_Init(NULL, NULL);
    roundtrip(MPI_COMM_SELF, "test_h5_mpio.h5");
}

/* Transfers split into row slabs (bb_h5_set_max_io): writes and reads through slabs of one row, of 9 rows
 * and whole, 2-D and 1-D, give the same bits as the data (MPI-IO cannot move 2 GiB in one call; the
 * small limits stand in for that). */
static void test_slabs(void) {
    char path[1024];
    path_of(path, sizeof path, "test_h5_slabs.h5");
    enum { R = 37, C = 13, N1 = 1001 };
    static float w[R * C], back[R * C];
    static double v[N1], vback[N1];
    for (int i = 0; i < R * C; i++) w[i] = (float)(i * 0.37 - 50.0);
    for (int i = 0; i < N1; i++) v[i] = 1.0 / (i + 1);
    const int64_t limits[3] = {40, 9 * C * 4, 0};
    for (int wl = 0; wl < 3; wl++)
        for (int rl = 0; rl < 3; rl++) {
            hid_t f = -1, d = -1;
            bb_h5_set_max_io(limits[wl]);
            EXPECT_OK(bb_h5_create(path, MPI_COMM_SELF, &f));
            if (f < 0) return;
            int64_t dims[2] = {R, C}, n1 = N1;
            EXPECT_OK(bb_h5_write(f, "w", BB_H5_F32, 2, dims, w));
            EXPECT_OK(bb_h5_write(f, "v", BB_H5_F64, 1, &n1, v));
            EXPECT_OK(bb_h5_dataset_create(f, "part", BB_H5_F32, 2, dims, &d));
            EXPECT_OK(bb_h5_write_rows(d, BB_H5_F32, 11, R - 11, w + 11 * C));
            EXPECT_OK(bb_h5_write_rows(d, BB_H5_F32, 0, 11, w));
            bb_h5_close_id(d);
            EXPECT_OK(bb_h5_close(&f));
            bb_h5_set_max_io(limits[rl]);
            EXPECT_OK(bb_h5_open(path, MPI_COMM_SELF, &f));
            if (f < 0) return;
            memset(back, 0, sizeof back);
            EXPECT_OK(bb_h5_read(f, "w", BB_H5_F32, 2, dims, back));
            EXPECT(!memcmp(w, back, sizeof w), "2-D rows: write limit %lld, read limit %lld", (long long)limits[wl],
                   (long long)limits[rl]);
            memset(back, 0, sizeof back);
            EXPECT_OK(bb_h5_read(f, "part", BB_H5_F32, 2, dims, back));
            EXPECT(!memcmp(w, back, sizeof w), "row ranges: write limit %lld, read limit %lld", (long long)limits[wl],
                   (long long)limits[rl]);
            memset(vback, 0, sizeof vback);
            EXPECT_OK(bb_h5_read(f, "v", BB_H5_F64, 1, &n1, vback));
            EXPECT(!memcmp(v, vback, sizeof v), "1-D: write limit %lld, read limit %lld", (long long)limits[wl],
                   (long long)limits[rl]);
            EXPECT_OK(bb_h5_close(&f));
        }
    bb_h5_set_max_io(0);
}

static void test_bad_files(void) {
    char path[1024];
    hid_t f = -1;
    path_of(path, sizeof path, "test_h5_missing.h5");
    EXPECT_ERR(bb_h5_open(path, MPI_COMM_SELF, &f), BB_ERR_IO, "test_h5_missing.h5");
    path_of(path, sizeof path, "test_h5_junk.h5");
    EXPECT(test_write_file(path, "this is not HDF5", 16) == 0, "write junk");
    EXPECT_ERR(bb_h5_open(path, MPI_COMM_SELF, &f), BB_ERR_HDF5, "H5Fopen failed on");
    EXPECT_ERR(bb_h5_open(path, MPI_COMM_SELF, &f), BB_ERR_HDF5, "test_h5_junk.h5");
    EXPECT(f == -1, "no id after a failed open");
    EXPECT_ERR(bb_h5_create("/nonexistent/dir/x.h5", MPI_COMM_SELF, &f), BB_ERR_HDF5, "/nonexistent/dir/x.h5");
}

int main(void) {
    TEST_RUN(test_serial);
    TEST_RUN(test_mpio);
    TEST_RUN(test_slabs);
    TEST_RUN(test_bad_files);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    return TEST_DONE();
}
