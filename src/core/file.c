/* file.c — mmap, whole-file reads, atomic writes. */
#define _GNU_SOURCE
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

bb_status bb_file_map(const char *path, bb_mapped_file *mf) {
    memset(mf, 0, sizeof *mf);
    BB_CHECK(strlen(path) < sizeof mf->path, BB_ERR_ARG, "path is too long (%zu characters): %s", strlen(path), path);
    snprintf(mf->path, sizeof mf->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    BB_CHECK(fd >= 0, BB_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        BB_CHECK(0, BB_ERR_IO, "%s is not a regular file%s%s", path, e ? ": " : "", e ? strerror(e) : "");
    }
    mf->size = (size_t)st.st_size;
    if (mf->size > 0) {
        void *p = mmap(NULL, mf->size, PROT_READ, MAP_PRIVATE, fd, 0);
        int e = errno;
        close(fd);
        BB_CHECK(p != MAP_FAILED, BB_ERR_IO, "cannot mmap %s (%zu bytes): %s", path, mf->size, strerror(e));
        mf->data = p;
    } else {
        close(fd);
    }
    return BB_OK;
}

void bb_file_unmap(bb_mapped_file *mf) {
    if (!mf) return;
    if (mf->data) munmap((void *)mf->data, mf->size);
    mf->data = NULL;
    mf->size = 0;
}

bb_status bb_file_read_all(const char *path, size_t max_size, char **out, size_t *size) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    BB_CHECK(f, BB_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        BB_CHECK(0, BB_ERR_IO, "%s is not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if (n > max_size) {
        fclose(f);
        BB_CHECK(0, BB_ERR_FORMAT, "%s is %zu bytes, more than the %zu expected for this kind of file", path, n,
                 max_size);
    }
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        BB_CHECK(0, BB_ERR_OOM, "out of memory: reading %s needs %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        BB_CHECK(0, BB_ERR_IO, "short read on %s (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    if (size) *size = n;
    return BB_OK;
}

bb_status bb_file_write_atomic(const char *path, const void *data, size_t n) {
    char tmp[1100];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) < (int)sizeof tmp, BB_ERR_ARG,
             "path is too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    BB_CHECK(fd >= 0, BB_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            BB_CHECK(0, BB_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        BB_CHECK(0, BB_ERR_IO, "cannot flush %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        BB_CHECK(0, BB_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return BB_OK;
}

bb_status bb_file_sync(const char *path) {
    int fd = open(path, O_RDONLY);
    BB_CHECK(fd >= 0, BB_ERR_IO, "%s: cannot reopen to sync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    BB_CHECK(rc == 0, BB_ERR_IO, "%s: fsync failed: %s", path, strerror(err));
    return BB_OK;
}

int bb_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int bb_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

bb_status bb_path_join(char *out, size_t n, const char *dir, const char *name) {
    int w = snprintf(out, n, "%s/%s", dir, name);
    BB_CHECK(w >= 0 && (size_t)w < n, BB_ERR_ARG, "path is too long: %s/%s", dir, name);
    return BB_OK;
}

bb_status bb_mkdir_p(const char *path) {
    char buf[1024];
    BB_CHECK(strlen(path) < sizeof buf, BB_ERR_ARG, "path is too long: %s", path);
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            BB_CHECK(0, BB_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        BB_CHECK(0, BB_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
    BB_CHECK(bb_path_is_dir(buf), BB_ERR_IO, "%s exists and is not a directory", buf);
    return BB_OK;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path) ? -1 : 0;
}

bb_status bb_remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        BB_CHECK(errno == ENOENT, BB_ERR_IO, "cannot inspect %s: %s", path, strerror(errno));
        return BB_OK;
    }
    BB_CHECK(nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0, BB_ERR_IO, "cannot remove %s: %s", path,
             strerror(errno));
    return BB_OK;
}
