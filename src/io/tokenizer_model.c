/* tokenizer_model.c — find and load the tokenizer that belongs to a model. */
#include "io/gguf.h"
#include "io/model.h"
#include "io/tokenizer.h"

bb_status bb_tokenizer_open_for_model(const bb_model *m, const char *path, bb_tokenizer **out) {
    *out = NULL;
    if (!path || !*path) path = m->tokenizer_path[0] ? m->tokenizer_path : NULL;
    const bb_gguf *g = bb_gguf_of_model(m);
    if (path) {
        BB_CALL(bb_tokenizer_load(path, m->cfg.vocab_size, out));
    } else {
        BB_CHECK(g && bb_gguf_find_key(g, "tokenizer.ggml.tokens") >= 0, BB_ERR_ARG,
                 "%s: no tokenizer found beside the model (tokenizer.bin, tok%d.bin or tokenizer.json)%s; pass "
                 "--tokenizer PATH or set model.tokenizer",
                 m->path, m->cfg.vocab_size, g ? " and the GGUF holds no vocabulary" : "");
        BB_CALL(bb_tokenizer_load_gguf(g, m->cfg.vocab_size, out));
    }
    /* a tokenizer.json may name no BOS/EOS: the model's config does */
    int bos = bb_tokenizer_bos_id(*out), eos = bb_tokenizer_eos_id(*out), n = bb_tokenizer_vocab_size(*out);
    if (bos < 0 && m->cfg.bos_id >= 0 && m->cfg.bos_id < n) bos = m->cfg.bos_id;
    if (eos < 0 && m->cfg.eos_id >= 0 && m->cfg.eos_id < n) eos = m->cfg.eos_id;
    bb_tokenizer_set_control(*out, bos, eos);
    return BB_OK;
}
