/* rng.h — deterministic counter-based random numbers (Philox4x32-10).
 *
 * A value is a pure function of (seed, stream, index): the same numbers come out
 * whatever the rank count, thread count or order of calls. Give each use its own
 * stream (bb_rng_stream_id("synth.blk.3.attn_q.U") hashes a name). */
#ifndef BB_RNG_H
#define BB_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t seed;
    uint64_t stream;
} bb_rng;

/* The Philox4x32-10 block function (Salmon et al., SC'11): 4 words of counter,
 * 2 words of key, 4 words out. */
void bb_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

static inline bb_rng bb_rng_make(uint64_t seed, uint64_t stream) {
    bb_rng r = {seed, stream};
    return r;
}
/* 64-bit FNV-1a of a name, for stream ids. */
uint64_t bb_rng_stream_id(const char *name);
/* A sub-stream: mixes k into the stream id. */
bb_rng bb_rng_split(bb_rng r, uint64_t k);

uint64_t bb_rng_u64(bb_rng r, uint64_t i);
double bb_rng_uniform(bb_rng r, uint64_t i); /* [0, 1), 53 bits */
double bb_rng_normal(bb_rng r, uint64_t i);  /* standard normal (Box-Muller) */
/* out[k] = normal(i0 + k) for k < n */
void bb_rng_fill_normal(bb_rng r, uint64_t i0, size_t n, float *out);
/* out[k] = uniform(i0 + k) in [lo, hi) */
void bb_rng_fill_uniform(bb_rng r, uint64_t i0, size_t n, float lo, float hi, float *out);

#endif
