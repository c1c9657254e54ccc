/* cmd_generate.c — `birdbone generate`: text from a model on the CPU, greedy by default (llama2.c run semantics). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/log.h"
#include "io/model.h"
#include "io/tokenizer.h"
#include "model/forward.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone generate MODEL [--tokenizer PATH] [--prompt TEXT] [-n N] [--temperature T] [--seed S]\n"
               "  MODEL           llama2.c .bin, Hugging Face directory, .gguf or synthetic:<preset>\n"
               "  --tokenizer     tokenizer file (default: the one found beside the model)\n"
               "  --prompt        text to continue (default: empty, start from BOS)\n"
               "  -n              positions to run, prompt included (default 256, at most the context)\n"
               "  --temperature   0 = greedy argmax (default); > 0 samples softmax(logits / T)\n"
               "  --seed          random seed for sampling (default 42)\n");
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

typedef struct {
    const bb_tokenizer *tok;
} print_state;

/* Print a decoded piece. Like llama2.c's safe_printf, a lone control byte from
 * a byte token is dropped (it could garble the terminal); bytes >= 0x80 are
 * kept so byte-fallback UTF-8 sequences come out whole. */
static bb_status print_token(void *ud, int prev, int token) {
    const print_state *ps = ud;
    const char *piece;
    size_t len;
    BB_CALL(bb_tokenizer_decode(ps->tok, prev, token, &piece, &len));
    if (len == 1) {
        unsigned char b = (unsigned char)piece[0];
        if (b < 0x80 && !isprint(b) && !isspace(b)) return BB_OK;
    }
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return BB_OK;
}

int bb_cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = "";
    long steps = 256, seed = 42;
    double temperature = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer") && has_val) {
            tok_path = argv[++i];
        } else if (!strcmp(a, "--prompt") && has_val) {
            prompt = argv[++i];
        } else if (!strcmp(a, "-n") && has_val) {
            if (parse_long(argv[++i], 1, 1L << 30, &steps)) {
                fprintf(stderr, "generate: -n needs a positive integer, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--seed") && has_val) {
            if (parse_long(argv[++i], 0, __LONG_MAX__, &seed)) {
                fprintf(stderr, "generate: --seed needs a non-negative integer, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--temperature") && has_val) {
            char *end;
            temperature = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(temperature >= 0 && temperature < 1e6)) {
                fprintf(stderr, "generate: --temperature needs a number >= 0, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "generate: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        } else if (!model_path) {
            model_path = a;
        } else {
            fprintf(stderr, "generate: more than one model given ('%s', '%s')\n", model_path, a);
            return 2;
        }
    }
    if (!model_path) {
        usage(stderr);
        return 2;
    }
    bb_model *m = NULL;
    bb_tokenizer *tok = NULL;
    bb_forward *f = NULL;
    int *ids = NULL, *out = NULL, n_ids = 0, n_out = 0, rc = 1;
    if (bb_model_open(model_path, &m)) goto done;
    if (bb_model_check_finite(m)) goto done;
    if (bb_tokenizer_open_for_model(m, tok_path, &tok)) goto done;
    if (bb_tokenizer_encode(tok, prompt, 1, 0, &ids, &n_ids)) goto done;
    if (steps > m->cfg.max_seq_len) steps = m->cfg.max_seq_len;
    if (bb_forward_create(m, (int)steps, &f)) goto done;
    if (bb_malloc((void **)&out, (size_t)steps * sizeof *out, "generated tokens")) goto done;
    print_state ps = {tok};
    if (bb_forward_generate(f, ids, n_ids, (int)steps, (float)temperature, (uint64_t)seed, print_token, &ps, out,
                            &n_out))
        goto done;
    printf("\n");
    rc = 0;
done:
    free(out);
    free(ids);
    bb_forward_destroy(&f);
    bb_tokenizer_destroy(&tok);
    bb_model_destroy(&m);
    return rc;
}
