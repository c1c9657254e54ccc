/* tokenizer.h — text <-> token ids: a registry of tokenizer file kinds (llama2.c tokenizer.bin,
 * Hugging Face tokenizer.json, the vocabulary stored in GGUF).
 *
 * A tokenizer is loaded from a file (or memory) by the first registered kind
 * whose probe accepts the bytes. Every kind fills the same vocabulary (pieces,
 * scores, a hash index for lookups, byte-fallback tokens) and supplies its own
 * encoder; decoding is shared (a table of the bytes each token decodes to, or
 * the llama2.c rules). Not collective; a loaded tokenizer is read-only and may
 * be used from several threads. docs/tokenizers.md describes every kind. */
#ifndef BB_IO_TOKENIZER_H
#define BB_IO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct bb_tokenizer bb_tokenizer;
typedef struct bb_gguf bb_gguf;
struct bb_model;

/* A tokenizer file kind. probe returns 1 if data could be this kind; parse fills
 * tok's vocabulary (bb_tokenizer_set_vocab) and control ids; encode turns text
 * into ids (the kind's merge rules); both report errors naming `label`. */
typedef struct {
    const char *name;
    int (*probe)(const void *data, size_t size);
    bb_status (*parse)(bb_tokenizer *tok, const void *data, size_t size, const char *label);
    bb_status (*encode)(const bb_tokenizer *tok, const char *text, int add_bos, int add_eos, int **ids, int *n);
} bb_tokenizer_kind;

/* The kinds defined outside tokenizer.c: tokenizer.json (tokenizer_hf.c) and a
 * GGUF file's vocabulary (tokenizer_gguf.c). */
extern const bb_tokenizer_kind bb_tokenizer_kind_hf_json;
extern const bb_tokenizer_kind bb_tokenizer_kind_gguf;

/* Registered kinds, NULL-terminated, in probe order. */
const bb_tokenizer_kind *const *bb_tokenizer_kinds(void);

/* Load a tokenizer file of any registered kind. vocab_size > 0 demands exactly
 * that many tokens (the model's vocabulary; see the padding below); 0 accepts
 * any count. Errors: BB_ERR_IO (cannot read), BB_ERR_FORMAT (corrupt or
 * truncated file, token count differs from vocab_size: the message names the
 * file and both counts), BB_ERR_UNSUPPORTED (a valid file using what this
 * build does not implement, such as a Unigram model), BB_ERR_OOM. */
bb_status bb_tokenizer_load(const char *path, int vocab_size, bb_tokenizer **out);
/* The same from a buffer (copied: the caller may free data afterwards).
 * tokenizer.json files may hold fewer tokens than vocab_size (models pad their
 * embedding): the missing ids decode to nothing. */
bb_status bb_tokenizer_load_memory(const void *data, size_t size, const char *label, int vocab_size,
                                   bb_tokenizer **out);
/* The vocabulary stored in a parsed GGUF (tokenizer.ggml.*: model "llama" or
 * "gpt2"). Nothing is kept pointing into g. Errors: BB_ERR_FORMAT (missing or
 * mistyped keys, merges naming unknown tokens, a count that differs from
 * vocab_size), BB_ERR_UNSUPPORTED (another tokenizer model or pre-tokenizer),
 * BB_ERR_OOM; each names the GGUF. */
bb_status bb_tokenizer_load_gguf(const bb_gguf *g, int vocab_size, bb_tokenizer **out);
/* The tokenizer of model m: `path` if given, else the file found beside the
 * model (m->tokenizer_path: tokenizer.bin / tok<N>.bin / tokenizer.json), else
 * the vocabulary inside a GGUF model. BOS/EOS the tokenizer lacks are taken
 * from the model's config. Errors: BB_ERR_ARG when there is none, else those
 * of the loaders. */
bb_status bb_tokenizer_open_for_model(const struct bb_model *m, const char *path, bb_tokenizer **out);
void bb_tokenizer_destroy(bb_tokenizer **tok); /* NULL-safe; nulls *tok */

int bb_tokenizer_vocab_size(const bb_tokenizer *tok);
int bb_tokenizer_bos_id(const bb_tokenizer *tok);
int bb_tokenizer_eos_id(const bb_tokenizer *tok);
const char *bb_tokenizer_kind_name(const bb_tokenizer *tok);

/* Encode NUL-terminated UTF-8 text into *ids (malloc'd, caller frees; *n ids),
 * with a leading BOS and/or trailing EOS if asked and the tokenizer has them (a
 * GGUF with tokenizer.ggml.add_bos_token = false and a tokenizer.json whose
 * post-processor adds no BOS never get one). Errors: BB_ERR_ARG for a byte the
 * vocabulary cannot represent (no byte-fallback or unknown token), BB_ERR_OOM. */
bb_status bb_tokenizer_encode(const bb_tokenizer *tok, const char *text, int add_bos, int add_eos, int **ids, int *n);

/* The llama2.c kind's encoder with the merge loop written as llama2.c's run.c
 * does it (rescan all pairs after every merge: quadratic): the readable
 * reference the fast heap-based encoder is tested and fuzzed against. */
bb_status bb_tokenizer_llama2c_encode_ref(const bb_tokenizer *tok, const char *text, int add_bos, int add_eos,
                                          int **ids, int *n);

/* The bytes token `id` contributes after token `prev` (-1 if none): byte tokens
 * "<0xAB>" give the raw byte, BOS, EOS and other special tokens give nothing
 * (len 0), SentencePiece pieces give "▁" as a space and byte-level pieces their
 * bytes. The dummy-prefix space is dropped from a piece that follows BOS (and,
 * for SentencePiece-style tokenizer.json and GGUF vocabularies, from the first
 * piece: prev < 0). *piece points into the tokenizer, not NUL-terminated.
 * Errors: BB_ERR_ARG for an id outside the vocabulary. */
bb_status bb_tokenizer_decode(const bb_tokenizer *tok, int prev, int id, const char **piece, size_t *len);
/* Decode ids[0, n) into a malloc'd NUL-terminated string (caller frees). Bytes
 * are joined as they are: invalid UTF-8 is not replaced. */
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

/* Where decoding drops the dummy-prefix space. */
typedef enum {
    BB_TOK_STRIP_AFTER_BOS = 0, /* llama2.c: from a piece right after BOS */
    BB_TOK_STRIP_AT_START,      /* also from the first piece (HF's Strip decoder, llama.cpp) */
    BB_TOK_STRIP_NONE,          /* byte-level vocabularies keep every space */
    BB_TOK_STRIP_COUNT
} bb_tokenizer_strip;

/* For parse: the bytes each token decodes to, text[off[i], off[i+1]) (off has
 * n+1 entries; no NUL terminators), replacing the llama2.c decoding rules. The
 * tokenizer takes ownership of both arrays. */
void bb_tokenizer_set_text(bb_tokenizer *tok, char *text, size_t *off, bb_tokenizer_strip strip);
/* For parse: state the kind's encoder needs, freed with free_fn on destroy. */
void bb_tokenizer_set_priv(bb_tokenizer *tok, void *priv, void (*free_fn)(void *));
void *bb_tokenizer_priv(const bb_tokenizer *tok);
/* For kinds that are not parsed from bytes (GGUF metadata): a new tokenizer of
 * `kind` filled by fill(tok, src, label), with the checks of
 * bb_tokenizer_load_memory (vocab_size, BOS/EOS range). */
bb_status bb_tokenizer_build(const bb_tokenizer_kind *kind,
                             bb_status (*fill)(bb_tokenizer *tok, const void *src, const char *label), const void *src,
                             const char *label, int vocab_size, bb_tokenizer **out);

/* ---- the Hugging Face pipeline (tokenizer_hf.c), shared by tokenizer.json and GGUF ----
 * Added tokens are cut out of the text first; each remaining segment runs
 * through the normalizers, the pre-tokenizers, then BPE on each pre-token:
 * merges by rank (tokenizer.json, GGUF gpt2) or by piece score (GGUF llama, as
 * llama.cpp's SentencePiece tokenizer). */
typedef struct bb_tokenizer_bpe bb_tokenizer_bpe;

typedef enum {
    BB_BPE_BY_RANK = 0, /* merge the adjacent pair listed first in the merges */
    BB_BPE_BY_SCORE,    /* merge the adjacent pair whose concatenation scores best */
    BB_BPE_MODE_COUNT
} bb_bpe_mode;

/* Attach a new pipeline to tok (after bb_tokenizer_set_vocab); tok owns it. */
bb_status bb_tokenizer_bpe_attach(bb_tokenizer *tok, bb_bpe_mode mode, bb_tokenizer_bpe **out);
/* Special tokens ids[0, n), cut out of the text wherever they occur (longest match first). */
bb_status bb_tokenizer_bpe_add_specials(bb_tokenizer_bpe *b, const int *ids, int n);
/* The SentencePiece normalizer: spaces as "▁", and with `prefix` a "▁" before
 * each segment (the dummy prefix). */
bb_status bb_tokenizer_bpe_add_spm_normalizer(bb_tokenizer_bpe *b, int prefix);
/* Pre-tokenizer steps, in order: a regex whose matches and the gaps between them
 * become pre-tokens (compiled with PCRE2_UTF | PCRE2_UCP; errors name `label`),
 * and the byte-level step (each byte is its GPT-2 printable character). */
bb_status bb_tokenizer_bpe_add_regex(bb_tokenizer_bpe *b, const char *pattern, size_t len, const char *label);
bb_status bb_tokenizer_bpe_add_byte_level(bb_tokenizer_bpe *b, const char *label);
/* Merge rank `rank` of the pieces a and b (BY_RANK). Errors: BB_ERR_FORMAT
 * naming label when a, b or a+b is not a token. A repeated pair keeps the
 * later rank, as the tokenizers library does. */
bb_status bb_tokenizer_bpe_add_merge(bb_tokenizer_bpe *b, const char *a, size_t la, const char *bp, size_t lb, int rank,
                                     const char *label);
/* Model options: a whole pre-token that is a token is taken as is
 * (ignore_merges); characters without a token become their byte tokens
 * (byte_fallback), else unk_id (>= 0; consecutive ones fused if fuse_unk). */
void bb_tokenizer_bpe_set_options(bb_tokenizer_bpe *b, int ignore_merges, int byte_fallback, int unk_id, int fuse_unk,
                                  int add_bos);
/* Undo the GPT-2 byte -> printable character map of a byte-level piece into
 * out (room for len bytes); returns the byte count. A piece holding a character
 * outside the map is copied as it is (the ByteLevel decoder's rule). */
size_t bb_tokenizer_byte_level_decode(const char *piece, size_t len, char *out);
/* Encode with the attached pipeline (the kinds' encode). */
bb_status bb_tokenizer_bpe_encode(const bb_tokenizer *tok, const char *text, int add_bos, int add_eos, int **ids,
                                  int *n);

#endif
