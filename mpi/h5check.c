/* h5check.c — HDF5 error reporting. */
#include "mpi/h5check.h"

#include <stdio.h>
#include <string.h>

static herr_t innermost(unsigned n, const H5E_error2_t *e, void *ud) {
    if (n == 0) snprintf((char *)ud, 512, "%s (in %s)", e->desc ? e->desc : "?", e->func_name ? e->func_name : "?");
    return 0;
}

bb_status bb_h5_error(const char *file, int line, const char *expr) {
    char msg[512] = "no HDF5 error description";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, innermost, msg);
    H5Eclear2(H5E_DEFAULT);
    return bb_error(BB_ERR_HDF5, file, line, "%s failed: %s", expr, msg);
}

void bb_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
