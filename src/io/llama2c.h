/* llama2c.h — llama2.c checkpoints (legacy version 0 and version 1 fp32) read from memory.
 *
 * bb_llama2c_open (io/model.h) maps the file and calls bb_llama2c_parse; the
 * fuzz target calls bb_llama2c_parse on its buffer directly. */
#ifndef BB_IO_LLAMA2C_H
#define BB_IO_LLAMA2C_H

#include <stddef.h>

#include "io/model.h"

#define BB_LLAMA2C_MAGIC 0x616b3432u /* "ak42" little-endian: version-1 files */
#define BB_LLAMA2C_V0_HEADER 28      /* 7 int32 */
#define BB_LLAMA2C_V1_HEADER 256     /* magic, version, 7 int32, shared byte, zero padding */

/* Describe the checkpoint in data[0, size) as a model whose tensors are
 * zero-copy views into data: the caller keeps data alive and unchanged while the
 * model lives. label names the input in messages and becomes m->path.
 * Errors: BB_ERR_FORMAT for a bad header value or a size that does not match the
 * layout (the message names the header and the bytes needed), BB_ERR_UNSUPPORTED
 * for other checkpoint versions (2: int8), BB_ERR_OOM. Not collective. */
bb_status bb_llama2c_parse(const void *data, size_t size, const char *label, bb_model **out);

#endif
