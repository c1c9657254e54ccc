/* state_load.h — what `birdbone diff`, `hash` and `revert` compare: a run state from a checkpoint file
 * (mpi/ckpt.h) or the dense state of a model (any input bb_model_open takes). Not collective. */
#ifndef BB_CLI_STATE_LOAD_H
#define BB_CLI_STATE_LOAD_H

#include "io/model.h"
#include "mpi/ckpt.h"
#include "pipeline/state.h"

typedef struct {
    bb_ckpt *ckpt;       /* a checkpoint, or NULL */
    bb_model *model;     /* a model, or NULL */
    float **w;           /* the model's linear weights as f32 (model only) */
    const bb_tensor **t; /* (model only) */
    bb_state dense;      /* (model only) */
    bb_state *state;     /* the state either way */
} bb_cli_state;

/* 1 if path is a file that starts with the HDF5 signature. */
int bb_cli_is_hdf5(const char *path);
/* Load path: a checkpoint when it is an HDF5 file, else a model. */
bb_status bb_cli_state_load(const char *path, bb_cli_state *out);
void bb_cli_state_free(bb_cli_state *s);

#endif
