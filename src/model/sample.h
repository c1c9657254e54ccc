/* sample.h — token streams sampled from a model itself (the synthetic models'
 * calibration and evaluation text), deterministic for a seed.
 *
 * Sequence s starts with BOS; token t+1 is drawn from softmax(logits_t / temperature)
 * with the uniform number Philox(seed, stream, s, t), so the stream is the same
 * whatever the rank or thread count that produces it. */
#ifndef BB_MODEL_SAMPLE_H
#define BB_MODEL_SAMPLE_H

#include <stdint.h>

#include "io/tokens.h"
#include "model/forward.h"

/* Sample sequences [seq0, seq0 + n_seq) of length seq_len into out->ids
 * (n_seq, seq_len) row-major (allocated here; out->seq_len = seq_len). stream
 * names the use ("calib", "eval") so the streams differ. Errors: BB_ERR_ARG
 * (seq_len beyond the forward context's cache, temperature <= 0), BB_ERR_OOM,
 * forward errors. */
bb_status bb_sample_stream(bb_forward *f, uint64_t seed, const char *stream, int seq0, int n_seq, int seq_len,
                           float temperature, bb_tokens *out);

/* Index drawn from softmax(logits / temperature) with uniform u in [0, 1);
 * computed in double; ties and rounding resolve to the last index with mass. */
int bb_sample_softmax(const float *logits, int n, float temperature, double u);

#endif
