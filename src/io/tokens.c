/* tokens.c — the birdbone token file. */
#include "io/tokens.h"

#include <stdlib.h>
#include <string.h>

#include "core/file.h"

#define TOK_MAGIC "BBTK"
#define TOK_VERSION 1u
#define TOK_HEADER 20

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

bb_status bb_tokens_write(const char *path, const bb_tokens *t) {
    BB_CHECK(t->n >= 0 && t->n <= INT32_MAX, BB_ERR_ARG, "%s: %lld tokens do not fit a token file", path,
             (long long)t->n);
    size_t bytes = TOK_HEADER + (size_t)t->n * 4;
    unsigned char *buf;
    BB_MALLOC(buf, bytes, "token file buffer");
    memcpy(buf, TOK_MAGIC, 4);
    put_u32(buf + 4, TOK_VERSION);
    put_u32(buf + 8, (uint32_t)t->vocab_size);
    put_u32(buf + 12, (uint32_t)t->n_seq);
    put_u32(buf + 16, (uint32_t)t->seq_len);
    for (int64_t i = 0; i < t->n; i++) put_u32(buf + TOK_HEADER + 4 * i, (uint32_t)t->ids[i]);
    bb_status st = bb_file_write_atomic(path, buf, bytes);
    free(buf);
    return st;
}

bb_status bb_tokens_read(const char *path, int vocab_size, bb_tokens *t) {
    memset(t, 0, sizeof *t);
    bb_mapped_file mf;
    BB_CALL(bb_file_map(path, &mf));
    bb_status st = BB_OK;
    const unsigned char *p = mf.data;
    BB_CHECK_GOTO(st, out, mf.size >= TOK_HEADER && memcmp(p, TOK_MAGIC, 4) == 0, BB_ERR_FORMAT,
                  "%s is not a birdbone token file (no BBTK header)", path);
    BB_CHECK_GOTO(st, out, get_u32(p + 4) == TOK_VERSION, BB_ERR_FORMAT, "%s: token file version %u (expected %u)",
                  path, get_u32(p + 4), TOK_VERSION);
    uint32_t vocab = get_u32(p + 8), n_seq = get_u32(p + 12), seq_len = get_u32(p + 16);
    BB_CHECK_GOTO(st, out, vocab > 0 && vocab <= INT32_MAX && n_seq <= INT32_MAX && seq_len <= INT32_MAX,
                  BB_ERR_FORMAT, "%s: header sizes out of range (vocab %u, sequences %u, length %u)", path, vocab,
                  n_seq, seq_len);
    BB_CHECK_GOTO(st, out, vocab_size == 0 || (int)vocab == vocab_size, BB_ERR_FORMAT,
                  "%s was made for a vocabulary of %u tokens but the model has %d", path, vocab, vocab_size);
    uint64_t n = seq_len ? (uint64_t)n_seq * seq_len : n_seq;
    BB_CHECK_GOTO(st, out, (uint64_t)(mf.size - TOK_HEADER) == 4 * n, BB_ERR_FORMAT,
                  "%s: header promises %llu tokens (%llu bytes) but the file holds %zu bytes of tokens (truncated?)",
                  path, (unsigned long long)n, (unsigned long long)(4 * n), mf.size - TOK_HEADER);
    BB_CALL_GOTO(st, out, bb_malloc((void **)&t->ids, (size_t)(n ? n : 1) * 4, "token stream"));
    for (uint64_t i = 0; i < n; i++) {
        uint32_t id = get_u32(p + TOK_HEADER + 4 * i);
        if (id >= vocab) {
            free(t->ids);
            t->ids = NULL;
            BB_CHECK_GOTO(st, out, 0, BB_ERR_FORMAT, "%s: token %llu has id %u, outside the vocabulary of %u", path,
                          (unsigned long long)i, id, vocab);
        }
        t->ids[i] = (int32_t)id;
    }
    t->n = (int64_t)n;
    t->n_seq = (int)n_seq;
    t->seq_len = (int)seq_len;
    t->vocab_size = (int)vocab;
out:
    bb_file_unmap(&mf);
    return st;
}

void bb_tokens_free(bb_tokens *t) {
    if (!t) return;
    free(t->ids);
    t->ids = NULL;
    t->n = 0;
}
