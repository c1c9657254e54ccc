/* fuzz_config.c — libFuzzer target: arbitrary bytes as a YAML config must give a
 * config or an error, never a crash or a leak; a config that loads must survive
 * dump -> load with the same hash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bb_error_set_quiet(1);
    bb_config cfg;
    if (bb_config_load_memory((const char *)data, size, "fuzz.yaml", &cfg) != BB_OK) return 0;

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return 0;
    bb_status st = bb_config_dump(&cfg, f);
    fclose(f);
    if (st != BB_OK) __builtin_trap(); /* a loaded config always dumps */

    bb_config back;
    char h1[65], h2[65];
    if (bb_config_load_memory(text, len, "dump.yaml", &back) != BB_OK) {
        fprintf(stderr, "the dump does not load: %s\n%s", bb_last_error(), text);
        __builtin_trap();
    }
    if (bb_config_hash(&cfg, h1) != BB_OK || bb_config_hash(&back, h2) != BB_OK || strcmp(h1, h2) != 0) {
        fprintf(stderr, "dump -> load changed the hash\n%s", text);
        __builtin_trap();
    }
    free(text);
    return 0;
}
