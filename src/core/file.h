/* file.h — read-only mmap of model files, whole-file reads, and crash-safe writes. */
#ifndef BB_FILE_H
#define BB_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    char path[1024];
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
} bb_mapped_file;

/* Map path read-only. Errors: BB_ERR_IO naming the path and the system reason. */
bb_status bb_file_map(const char *path, bb_mapped_file *mf);
void bb_file_unmap(bb_mapped_file *mf); /* NULL-safe, idempotent */

/* Read a whole file into a NUL-terminated malloc'd buffer (caller frees).
 * max_size guards against reading a huge file by mistake. */
bb_status bb_file_read_all(const char *path, size_t max_size, char **out, size_t *size);

/* Write data to path through "<path>.tmp.<pid>" + fsync + rename, so readers
 * see either the old file or the complete new one. */
bb_status bb_file_write_atomic(const char *path, const void *data, size_t n);

/* Flush a file written by another library (HDF5) to disk before it is renamed. */
bb_status bb_file_sync(const char *path);

int bb_path_is_dir(const char *path);
int bb_path_exists(const char *path);
/* Join dir and name into out (size n). Returns BB_ERR_ARG if it does not fit. */
bb_status bb_path_join(char *out, size_t n, const char *dir, const char *name);
/* mkdir -p */
bb_status bb_mkdir_p(const char *path);
/* Remove path: a file, or a directory with everything under it (symbolic
 * links are removed, never followed). A path that does not exist is fine. */
bb_status bb_remove_tree(const char *path);

#endif
