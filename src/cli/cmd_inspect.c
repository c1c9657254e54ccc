/* cmd_inspect.c — `birdbone inspect PATH`: architecture, tensors, dtypes, parameter counts. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "io/gguf.h"
#include "io/model.h"
#include "mpi/plan.h"

/* 1 if path is a file that starts with the GGUF magic. */
static int is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    int yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

/* A GGUF with quantized tensors (what `birdbone export` writes) cannot become a bb_model, whose weights are
 * float: list its header, tensor types and size instead. Returns 0 when it listed, 1 on a read error, -1 when
 * the file holds no quantized tensor (the model reader prints it). */
static int list_quantized_gguf(const char *path, int brief) {
    bb_gguf *g = NULL;
    if (bb_gguf_open(path, &g) != BB_OK) return 1;
    int64_t n = bb_gguf_n_tensors(g), quantized = 0;
    for (int64_t i = 0; i < n; i++) quantized += bb_ggml_type_info(bb_gguf_tensor_at(g, i)->type)->is_quantized;
    if (!quantized) {
        bb_gguf_destroy(&g);
        return -1;
    }
    bb_gguf_str arch = {"?", 1}, name = {"?", 1}, vocab = {"?", 1};
    uint32_t ft = 0;
    bb_gguf_get_str(g, "general.architecture", &arch);
    bb_gguf_get_str(g, "general.name", &name);
    bb_gguf_get_str(g, "tokenizer.ggml.model", &vocab);
    bb_gguf_get_u32(g, "general.file_type", &ft);
    printf("%s: GGUF v%u, architecture %.*s, name %.*s, file_type %u, vocabulary %.*s, %lld keys, %lld tensors "
           "(%lld quantized)\n",
           path, bb_gguf_version(g), (int)arch.len, arch.s, (int)name.len, name.s, ft, (int)vocab.len, vocab.s,
           (long long)bb_gguf_n_kv(g), (long long)n, (long long)quantized);
    double params = 0, bytes = 0;
    for (int64_t i = 0; i < n; i++) {
        const bb_gguf_tensor *t = bb_gguf_tensor_at(g, i);
        double e = 1;
        char shape[96] = "";
        for (int d = 0; d < t->ndim; d++) {
            e *= (double)t->shape[d];
            size_t used = strlen(shape);
            snprintf(shape + used, sizeof shape - used, "%s%lld", d ? " x " : "", (long long)t->shape[d]);
        }
        params += e;
        bytes += (double)t->nbytes;
        if (!brief)
            printf("  %-28s %-16s %-6s %10.0f params %12zu bytes\n", t->name, shape, bb_ggml_type_name(t->type), e,
                   t->nbytes);
    }
    printf("total: %.0f parameters in %.0f bytes of tensor data (%.3f bits per parameter)\n", params, bytes,
           params > 0 ? 8 * bytes / params : 0);
    bb_gguf_destroy(&g);
    return 0;
}

/* The sharding plan of m on n ranks (docs/distribution.md): the per-rank memory table that a run prints. */
static int print_plan(const bb_model *m, int n, const bb_plan_opts *po) {
    bb_plan plan;
    if (bb_plan_make(&m->cfg, po, n, &plan) != BB_OK) return 1;
    bb_plan_print(&plan, stdout);
    bb_plan_free(&plan);
    return 0;
}

int bb_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int brief = 0, plan_ranks = 0, seqs = 128, seq_len = 2048, micro = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: birdbone inspect [--brief] [--plan RANKS [--calib SEQSxLEN[xMICRO]]] PATH\n\n"
                   "PATH is a Hugging Face model directory, a GGUF file, a llama2.c checkpoint, or\n"
                   "synthetic:<preset>[,key=value...]. Prints the architecture and, unless --brief,\n"
                   "every tensor with its shape, dtype and parameter count. --plan prints the sharding\n"
                   "plan on RANKS ranks with the memory per rank (f32 Grams, 2 micro-batches in flight)\n"
                   "for SEQS calibration sequences of LEN tokens, MICRO per micro-batch (default\n"
                   "128x2048x1).\n");
            return 0;
        } else if (!strcmp(argv[i], "--plan") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d", &plan_ranks) != 1 || plan_ranks < 1) {
                fprintf(stderr, "error: --plan takes a rank count >= 1, got %s\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--calib") && i + 1 < argc) {
            int k = sscanf(argv[++i], "%dx%dx%d", &seqs, &seq_len, &micro);
            if (k < 2 || seqs < 1 || seq_len < 2 || micro < 1) {
                fprintf(stderr, "error: --calib takes SEQSxLEN[xMICRO], e.g. 128x2048x1, got %s\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--brief")) {
            brief = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "error: unknown option %s (see birdbone inspect --help)\n", argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "error: inspect takes one PATH, got %s and %s\n", path, argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "error: inspect needs a model path (see birdbone inspect --help)\n");
        return 2;
    }
    if (is_gguf(path)) {
        int rc = list_quantized_gguf(path, brief);
        if (rc >= 0) return rc;
    }
    bb_model *m = NULL;
    if (bb_model_open(path, &m) != BB_OK) return 1;
    bb_model_print(m, !brief, stdout);
    bb_plan_opts po = {.tokens = (int64_t)seqs * seq_len, .seq_len = seq_len, .micro_batch = micro, .in_flight = 2,
                       .gram_bytes = 4};
    int rc = plan_ranks ? print_plan(m, plan_ranks, &po) : 0;
    bb_model_destroy(&m);
    return rc;
}
