/* sha256.h — SHA-256 (FIPS 180-4) for config and weight hashes. */
#ifndef BB_SHA256_H
#define BB_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} bb_sha256;

void bb_sha256_init(bb_sha256 *s);
void bb_sha256_update(bb_sha256 *s, const void *data, size_t n);
void bb_sha256_final(bb_sha256 *s, uint8_t digest[32]);
/* One-shot: hex digest (64 chars + NUL) of data. */
void bb_sha256_hex(const void *data, size_t n, char hex[65]);
void bb_sha256_to_hex(const uint8_t digest[32], char hex[65]);
/* The compression function: 1 = the CPU's SHA instructions where it has them (the default), 0 = the plain C
 * reference, -1 = probe again. Returns the previous setting. Not thread-safe: for tests and benchmarks. */
int bb_sha256_accel(int on);

#endif
