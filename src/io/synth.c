#include "io/synth.h"
bb_status bb_synth_open(const char *p, bb_model **out) {
    *out = NULL;
    BB_CHECK(0, BB_ERR_UNSUPPORTED, "%s: synthetic not written yet", p);
}
