/* tokenizer_model.c — find and load the tokenizer that belongs to a model. */
#include "io/model.h"
#include "io/tokenizer.h"

bb_status bb_tokenizer_open_for_model(const bb_model *m, const char *path, bb_tokenizer **out) {
    *out = NULL;
    if (!path || !*path) path = m->tokenizer_path[0] ? m->tokenizer_path : NULL;
    BB_CHECK(path, BB_ERR_ARG,
             "%s: no tokenizer found beside the model (tokenizer.bin, tok%d.bin or tokenizer.json); pass --tokenizer "
             "PATH or set model.tokenizer",
             m->path, m->cfg.vocab_size);
    BB_CALL(bb_tokenizer_load(path, m->cfg.vocab_size, out));
    return BB_OK;
}
