#include <stdio.h>
#include "io/model.h"
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    bb_model *m;
    if (bb_model_open(argv[2], &m)) return 1;
    bb_model_print(m, 1, stdout);
    bb_model_destroy(&m);
    return 0;
}
