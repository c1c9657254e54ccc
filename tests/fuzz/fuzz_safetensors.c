/* fuzz_safetensors.c — libFuzzer target: bb_safetensors_parse (the code path
 * bb_safetensors_open uses after mmap) on arbitrary bytes, then reads every
 * byte of every tensor view so that an out-of-bounds view trips AddressSanitizer. */
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bb_error_set_quiet(1);
    bb_safetensors *st = NULL;
    if (bb_safetensors_parse(data, size, "fuzz.safetensors", &st) == BB_OK) {
        size_t acc = 0;
        for (size_t i = 0; i < bb_safetensors_count(st); i++) {
            const bb_st_entry *e = bb_safetensors_entry(st, i);
            const uint8_t *p = e->t.data;
            for (size_t k = 0; k < e->t.nbytes; k++) acc += p[k];
            acc += bb_safetensors_find(st, e->name) == e ? 1 : 1000;
        }
        acc += bb_json_len(bb_safetensors_metadata(st));
        volatile size_t sink = acc;
        (void)sink;
    }
    bb_safetensors_destroy(&st);
    return 0;
}
