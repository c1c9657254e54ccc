/* sample.c — deterministic token streams sampled from a model. */
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/log.h"
#include "core/rng.h"

int bb_sample_softmax(const float *logits, int n, float temperature, double u) {
    double mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (int i = 0; i < n; i++) z += exp(((double)logits[i] - mx) / temperature);
    double target = u * z, c = 0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        double p = exp(((double)logits[i] - mx) / temperature);
        if (p > 0) last = i;
        c += p;
        if (c > target) return i;
    }
    return last;
}

bb_status bb_sample_stream(bb_forward *f, uint64_t seed, const char *stream, int seq0, int n_seq, int seq_len,
                           float temperature, bb_tokens *out) {
    const bb_model_config *c = bb_forward_config(f);
    memset(out, 0, sizeof *out);
    BB_CHECK(temperature > 0, BB_ERR_ARG, "sampling temperature %g must be positive", (double)temperature);
    BB_CHECK(seq_len >= 2 && seq_len <= bb_forward_cache_len(f), BB_ERR_ARG,
             "sampled sequences of %d tokens do not fit the context of %d", seq_len, bb_forward_cache_len(f));
    BB_CHECK(n_seq >= 0 && seq0 >= 0, BB_ERR_ARG, "bad sequence range [%d, %d)", seq0, seq0 + n_seq);
    BB_CHECK(c->bos_id >= 0, BB_ERR_ARG, "the model has no BOS token to start sampled sequences");
    float *logits;
    BB_MALLOC(logits, sizeof(float) * (size_t)c->vocab_size, "sampling logits");
    bb_status st = bb_malloc((void **)&out->ids, sizeof(int32_t) * (size_t)(n_seq ? n_seq : 1) * (size_t)seq_len,
                             "sampled tokens");
    if (st) {
        free(logits);
        return bb_trace(st, __FILE__, __LINE__, "tokens");
    }
    bb_rng base = bb_rng_make(seed, bb_rng_stream_id(stream));
    bb_progress prog;
    bb_progress_begin(&prog, stream, n_seq);
    bb_event_begin("sample.stream");
    for (int s = 0; s < n_seq && st == BB_OK; s++) {
        bb_rng r = bb_rng_split(base, (uint64_t)(seq0 + s));
        int32_t *seq = out->ids + (size_t)s * seq_len;
        seq[0] = c->bos_id;
        for (int t = 0; t + 1 < seq_len; t++) {
            int tok = seq[t];
            st = bb_forward_decode(f, &tok, 1, t, logits);
            if (st != BB_OK) break;
            seq[t + 1] = bb_sample_softmax(logits, c->vocab_size, temperature, bb_rng_uniform(r, (uint64_t)t));
        }
        bb_progress_update(&prog, s + 1, "sequences");
    }
    bb_event_end("sample.stream", 0, 0);
    bb_progress_end(&prog);
    free(logits);
    if (st != BB_OK) {
        bb_tokens_free(out);
        return bb_trace(st, __FILE__, __LINE__, "bb_forward_decode");
    }
    out->n = (int64_t)n_seq * seq_len;
    out->n_seq = n_seq;
    out->seq_len = seq_len;
    out->vocab_size = c->vocab_size;
    return BB_OK;
}
