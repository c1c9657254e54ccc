/* llama2c.c — placeholder until the reader lands (being written now). */
#include "io/model.h"
bb_status bb_llama2c_open(const char *p, bb_model **out) {
    *out = NULL;
    BB_CHECK(0, BB_ERR_UNSUPPORTED, "%s: reader not written yet", p);
}
