/* h5.h — the HDF5 helpers every birdbone file format shares: files through the
 * MPI-IO driver, groups, scalar attributes (integers, floats, strings), and
 * 1-D / 2-D datasets of f32, f64, i32, i64, u8 and u64, with shape and type
 * checked on read and every error naming the file and the object.
 *
 * Files. bb_h5_create / bb_h5_open use the MPI-IO file driver on the given
 * communicator when MPI is initialized (MPI_COMM_SELF: one rank writes a
 * file alone; the job's communicator: the wave checkpoints, mpi/ckpt.h);
 * without MPI (unit tests of a single process) or with MPI_COMM_NULL they use
 * HDF5's default driver. Both are collective over the communicator, as HDF5
 * requires, and so are creating groups, attributes and datasets in a shared
 * file (every rank, the same calls and values). Datasets are created whole
 * (bb_h5_dataset_create) and written by row ranges (bb_h5_write_rows,
 * independent I/O: any rank, any rows); bb_h5_write does both for one writer.
 *
 * Messages. Every failure is one bb_error naming "<file>:<object>" (the path
 * the file was opened with and the object's path inside it) and, for HDF5
 * failures, the failing statement and the innermost HDF5 description. Helpers
 * find the file and object names from the handle (H5Fget_name, H5Iget_name),
 * so callers pass only the location id. A missing object is BB_ERR_FORMAT
 * ("<file>: <object> is missing"); a wrong shape or type BB_ERR_FORMAT with
 * expected and found; an HDF5 call that fails BB_ERR_HDF5.
 *
 * Stored types are little-endian and fixed: bb_h5_type names both the stored
 * and the in-memory type. Strings are fixed-length, NUL-padded attributes. */
#ifndef BB_MPI_H5_H
#define BB_MPI_H5_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Append only: reaches files through the helpers' type table. */
typedef enum { BB_H5_F32 = 0, BB_H5_F64, BB_H5_I32, BB_H5_I64, BB_H5_U8, BB_H5_U64, BB_H5_TYPE_COUNT } bb_h5_type;

const char *bb_h5_type_name(bb_h5_type t); /* "f32", ... */
size_t bb_h5_type_size(bb_h5_type t);

/* ---- files ---------------------------------------------------------------- */

/* Create (truncate) path for writing; *f is the file id. Closing the file
 * closes every object left open in it (error paths need not track them).
 * Collective over comm. Errors: BB_ERR_HDF5 naming path. */
bb_status bb_h5_create(const char *path, MPI_Comm comm, hid_t *f);
/* Open path read-only. Errors: BB_ERR_IO (no such file, with the system
 * reason), BB_ERR_HDF5 (not HDF5, truncated; names path and HDF5's reason). */
bb_status bb_h5_open(const char *path, MPI_Comm comm, hid_t *f);
/* Close a file, reporting a failure to flush (errors matter for writers).
 * NULL-safe on *f < 0; sets *f = -1. */
bb_status bb_h5_close(hid_t *f);
/* Close any object id (group, dataset, attribute, dataspace, type, property
 * list, file) if id >= 0; errors ignored (for cleanup paths). */
void bb_h5_close_id(hid_t id);

/* ---- names and messages --------------------------------------------------- */

/* "<file>:<object path of loc>[/name]" into buf (for messages). */
void bb_h5_where(hid_t loc, const char *name, char *buf, size_t n);
/* BB_ERR_HDF5 report of a failed statement at loc/name (with HDF5's reason). */
bb_status bb_h5_fail(hid_t loc, const char *name, const char *file, int line, const char *expr);

/* ---- groups and links ----------------------------------------------------- */

/* 1 if loc has a link `name` (a relative path: "layer_000/attn_q" allowed,
 * missing intermediate groups count as absent), else 0. */
int bb_h5_exists(hid_t loc, const char *name);
/* BB_ERR_FORMAT "<file>: <object> is missing" unless bb_h5_exists. */
bb_status bb_h5_require(hid_t loc, const char *name);
/* Create group `name` (intermediate groups made on the way). */
bb_status bb_h5_group_create(hid_t loc, const char *name, hid_t *g);
/* Open group `name` (BB_ERR_FORMAT if missing). */
bb_status bb_h5_group_open(hid_t loc, const char *name, hid_t *g);

/* ---- attributes (scalar) -------------------------------------------------- */

bb_status bb_h5_attr_put_i64(hid_t loc, const char *name, int64_t v);
bb_status bb_h5_attr_put_u64(hid_t loc, const char *name, uint64_t v);
bb_status bb_h5_attr_put_f64(hid_t loc, const char *name, double v);
bb_status bb_h5_attr_put_str(hid_t loc, const char *name, const char *s);
/* Reads check presence (BB_ERR_FORMAT "attribute X of <obj> is missing"),
 * scalar shape and class (integer / float / string). */
bb_status bb_h5_attr_get_i64(hid_t loc, const char *name, int64_t *v);
bb_status bb_h5_attr_get_u64(hid_t loc, const char *name, uint64_t *v);
bb_status bb_h5_attr_get_f64(hid_t loc, const char *name, double *v);
/* A fixed-length string of < n bytes into buf (NUL-terminated). */
bb_status bb_h5_attr_get_str(hid_t loc, const char *name, char *buf, size_t n);
/* A string of any length into a new malloc'd buffer (*out, caller frees). */
bb_status bb_h5_attr_get_str_alloc(hid_t loc, const char *name, char **out);

/* ---- datasets ------------------------------------------------------------- */

/* Create dataset `name` of rank 1 or 2 with dims (dims[0] rows; dims[1]
 * columns for rank 2), zero-sized allowed; *d is its id. */
bb_status bb_h5_dataset_create(hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims, hid_t *d);
/* Write rows [row0, row0 + nrows) of dataset d from buf (nrows, dims[1])
 * row-major (rank 1: nrows values). Independent I/O: only the writing rank
 * calls it. */
bb_status bb_h5_write_rows(hid_t d, bb_h5_type t, int64_t row0, int64_t nrows, const void *buf);
/* Largest transfer of one H5Dwrite/H5Dread (default and bytes <= 0: 1 GiB); larger ones go in row slabs,
 * since MPI-IO cannot move 2 GiB or more in one call. For tests: a small value exercises the slabs. */
void bb_h5_set_max_io(int64_t bytes);
/* Create and write a whole dataset: buf (dims[0], dims[1]) row-major. */
bb_status bb_h5_write(hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims, const void *buf);
/* The same in a file shared by several ranks: every rank creates (and closes)
 * the dataset, collective; only the rank passing buf != NULL writes it
 * (independent I/O). A failed write goes to *local (if it is still BB_OK)
 * instead of the return value, so that every rank goes on creating the same
 * objects and the ranks agree on the outcome afterwards. */
bb_status bb_h5_write_shared(hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims,
                             const void *buf, bb_status *local);

/* The rank (1 or 2) and dims of dataset `name` (dims[1] = 1 for rank 1).
 * Errors: missing, rank other than 1 or 2 (BB_ERR_FORMAT). */
bb_status bb_h5_shape(hid_t loc, const char *name, int *rank, int64_t dims[2]);
/* Read a whole dataset of exactly rank `rank` and dims and stored type t
 * (class and width) into buf. Errors (BB_ERR_FORMAT): missing, "has shape
 * (a, b), expected (c, d)", "is not a <type> dataset". */
bb_status bb_h5_read(hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims, void *buf);

#endif
