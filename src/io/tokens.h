/* tokens.h — token streams: the birdbone token file (.tokens) and text → tokens.
 *
 * File layout (little-endian): magic "BBTK", u32 version (1), u32 vocab size,
 * u32 n_seq, u32 seq_len,
 * then int32 tokens. A flat stream has seq_len 0 and n_seq = token count;
 * sequences are (n_seq, seq_len) row-major. Written atomically. */
#ifndef BB_IO_TOKENS_H
#define BB_IO_TOKENS_H

#include <stdint.h>

#include "core/status.h"

typedef struct {
    int32_t *ids;   /* (n_seq, seq_len) or (n) when seq_len == 0 */
    int64_t n;      /* total tokens */
    int n_seq;      /* sequences (or n when flat) */
    int seq_len;    /* 0 for a flat stream */
    int vocab_size; /* every id is in [0, vocab_size) */
} bb_tokens;

/* Write tokens to path atomically. */
bb_status bb_tokens_write(const char *path, const bb_tokens *t);
/* Read and validate (magic, version, sizes against the file, ids in range,
 * vocab equal to `vocab_size` unless it is 0). */
bb_status bb_tokens_read(const char *path, int vocab_size, bb_tokens *t);
void bb_tokens_free(bb_tokens *t); /* frees ids; NULL-safe */

#endif
