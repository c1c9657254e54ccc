/* h5check.h — the HDF5 error wrapper: a negative return becomes one message
 * with the failing statement and the innermost HDF5 error description. */
#ifndef BB_MPI_H5CHECK_H
#define BB_MPI_H5CHECK_H

#include <hdf5.h>

#include "core/status.h"

bb_status bb_h5_error(const char *file, int line, const char *expr);

#define BB_H5_CALL(expr)                                                   \
    do {                                                                   \
        if ((expr) < 0) return bb_h5_error(__FILE__, __LINE__, #expr);     \
    } while (0)

/* Turn off HDF5's own printing of error stacks (messages come from bb_h5_error). */
void bb_h5_quiet(void);

#endif
