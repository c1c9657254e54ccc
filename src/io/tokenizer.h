/* tokenizer.h — text <-> token ids: a registry of tokenizer file kinds (llama2.c tokenizer.bin today).
 *
 * A tokenizer is loaded from a file (or memory) by the first registered kind
 * whose probe accepts the bytes. Every kind fills the same vocabulary (pieces,
 * scores, a hash index for lookups, byte-fallback tokens) and supplies its own
 * encoder; decoding is shared. Not collective; a loaded tokenizer is read-only
 * and may be used from several threads. */
#ifndef BB_IO_TOKENIZER_H
#define BB_IO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct bb_tokenizer bb_tokenizer;

/* A tokenizer file kind. probe returns 1 if data could be this kind; parse fills
 * tok's vocabulary (bb_tokenizer_set_vocab) and control ids; encode turns text
 * into ids (the kind's merge rules); both report errors naming `label`. */
typedef struct {
    const char *name;
    int (*probe)(const void *data, size_t size);
    bb_status (*parse)(bb_tokenizer *tok, const void *data, size_t size, const char *label);
    bb_status (*encode)(const bb_tokenizer *tok, const char *text, int add_bos, int add_eos, int **ids, int *n);
} bb_tokenizer_kind;

/* Registered kinds, NULL-terminated, in probe order. */
const bb_tokenizer_kind *const *bb_tokenizer_kinds(void);

/* Load a tokenizer file. vocab_size > 0 demands exactly that many tokens (the
 * model's vocabulary); 0 accepts any count. Errors: BB_ERR_IO (cannot read),
 * BB_ERR_FORMAT (corrupt or truncated file, token count differs from vocab_size:
 * the message names the file and both counts), BB_ERR_OOM. */
bb_status bb_tokenizer_load(const char *path, int vocab_size, bb_tokenizer **out);
/* The same from a buffer (copied: the caller may free data afterwards). */
bb_status bb_tokenizer_load_memory(const void *data, size_t size, const char *label, int vocab_size,
                                   bb_tokenizer **out);
void bb_tokenizer_destroy(bb_tokenizer **tok); /* NULL-safe; nulls *tok */

int bb_tokenizer_vocab_size(const bb_tokenizer *tok);
int bb_tokenizer_bos_id(const bb_tokenizer *tok);
int bb_tokenizer_eos_id(const bb_tokenizer *tok);
const char *bb_tokenizer_kind_name(const bb_tokenizer *tok);

/* Encode NUL-terminated UTF-8 text into *ids (malloc'd, caller frees; *n ids),
 * with a leading BOS and/or trailing EOS if asked. Errors: BB_ERR_ARG for a byte
 * the vocabulary cannot represent (no byte-fallback token), BB_ERR_OOM. */
bb_status bb_tokenizer_encode(const bb_tokenizer *tok, const char *text, int add_bos, int add_eos, int **ids, int *n);

/* The llama2.c kind's encoder with the merge loop written as llama2.c's run.c
 * does it (rescan all pairs after every merge: quadratic): the readable
 * reference the fast heap-based encoder is tested and fuzzed against. */
bb_status bb_tokenizer_llama2c_encode_ref(const bb_tokenizer *tok, const char *text, int add_bos, int add_eos,
                                          int **ids, int *n);

/* The bytes token `id` contributes after token `prev` (-1 if none): a piece that
 * follows BOS loses its leading space (SentencePiece's dummy prefix), byte
 * tokens "<0xAB>" give the raw byte, BOS and EOS give nothing (len 0). *piece
 * points into the tokenizer (not NUL-terminated when it is a byte). Errors:
 * BB_ERR_ARG for an id outside the vocabulary. */
bb_status bb_tokenizer_decode(const bb_tokenizer *tok, int prev, int id, const char **piece, size_t *len);
/* Decode ids[0, n) into a malloc'd NUL-terminated string (caller frees). */
bb_status bb_tokenizer_decode_seq(const bb_tokenizer *tok, const int *ids, int n, char **text, size_t *len);

/* Vocabulary access for the kinds' encoders. */
/* Id of the piece bytes s[0, len) (the lowest id if a piece repeats), -1 if absent. */
int bb_tokenizer_lookup(const bb_tokenizer *tok, const char *s, size_t len);
/* Token id of the byte-fallback token for byte b, -1 if the vocabulary has none. */
int bb_tokenizer_byte_id(const bb_tokenizer *tok, unsigned char b);
/* Piece bytes and merge score of token id (0 <= id < vocab size). */
const char *bb_tokenizer_piece(const bb_tokenizer *tok, int id, size_t *len);
float bb_tokenizer_score(const bb_tokenizer *tok, int id);
size_t bb_tokenizer_max_piece_len(const bb_tokenizer *tok);

/* For parse: install n pieces with scores and build the index and byte table.
 * Piece i is blob[off[i], off[i+1] - 1), each followed by a NUL (off has n+1
 * entries). The tokenizer takes ownership of the three arrays, also on error.
 * Control ids are set by the kind afterwards. */
bb_status bb_tokenizer_set_vocab(bb_tokenizer *tok, int n, char *blob, size_t *off, float *score);
void bb_tokenizer_set_control(bb_tokenizer *tok, int bos_id, int eos_id);

#endif
