/* cmd_export.c — `birdbone export`: quantize a model (RTN or GPTQ) and write it as GGUF for llama.cpp. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "compress/lora.h"
#include "core/file.h"
#include "core/log.h"
#include "core/rng.h"
#include "io/config.h"
#include "io/tokenizer.h"
#include "model/calib.h"
#include "pipeline/export.h"
#include "pipeline/quantize.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone export MODEL -o OUT.gguf [--type TYPE] [--method rtn|gptq] [--calib TEXT] [options]\n\n"
               "Writes MODEL as a GGUF v3 file that llama.cpp loads (docs/export.md). The linear weights are\n"
               "quantized into TYPE; embeddings and norms stay F32; a row length that fits no block of TYPE is\n"
               "stored as F16 (one warning per tensor).\n"
               "  -o FILE             output GGUF (written to a temporary name, then renamed)\n"
               "  --type TYPE         f32 (no quantization), f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k..q6_k,\n"
               "                      or auto (per tensor from the bit budget: budget.* keys) (default q8_0)\n"
               "  --method M          rtn (default) or gptq (needs --calib)\n"
               "  --calib FILE        calibration text: every non-overlapping window of --seq-len tokens, BOS\n"
               "                      first, gives the Gram matrices GPTQ and the importance weights use\n"
               "  --seq-len N         calibration window (default 512, at most the model's context)\n"
               "  --tokenizer PATH    tokenizer (default: found beside the model)\n"
               "  --name NAME         general.name (default: the model file's name)\n"
               "  --set key=value     any quant.* / budget.* key (birdbone config --doc)\n"
               "  --lora-random R     random rank-R factors A (rows, R), B (R, cols) for every linear weight, A B\n"
               "                      about a tenth of the weight's RMS: a check of an inference stack's LoRA\n"
               "                      path (docs/export.md); needs --lora-out and/or --lora-merge\n"
               "  --lora-out FILE     write the factors as a GGUF LoRA adapter for OUT.gguf (llama.cpp --lora)\n"
               "  --lora-merge        merge the factors into the weights (before quantization)\n"
               "  --seed S            seed of --lora-random (default 1)\n");
}

static bb_status calibrate(const bb_model *m, const char *tok_path, const char *text_path, int seq_len,
                           bb_calib **out) {
    *out = NULL;
    bb_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    int *ids = NULL, n = 0;
    bb_tokens win = {0};
    bb_forward *f = NULL;
    bb_status st;
    BB_CALL_GOTO(st, done, bb_tokenizer_open_for_model(m, tok_path, &tok));
    BB_CALL_GOTO(st, done, bb_file_read_all(text_path, (size_t)1 << 32, &text, &len));
    BB_CALL_GOTO(st, done, bb_tokenizer_encode(tok, text, 1, 0, &ids, &n));
    bb_tokens flat = {ids, n, n, 0, m->cfg.vocab_size};
    BB_CALL_GOTO(st, done, bb_calib_sample_windows(&flat, 0, seq_len, 0, m->cfg.bos_id, &win));
    bb_calib_opts co;
    bb_calib_opts_default(&co);
    co.precision = BB_CALIB_F64;
    BB_CALL_GOTO(st, done, bb_calib_create(m, &co, out));
    BB_CALL_GOTO(st, done, bb_forward_create(m, seq_len, &f));
    BB_CALL_GOTO(st, done, bb_calib_run(*out, f, &win, 8));
    bb_info("calib   %d windows x %d tokens of %s", win.n_seq, seq_len, text_path);
done:
    if (st != BB_OK) bb_calib_destroy(out);
    bb_forward_destroy(&f);
    bb_tokens_free(&win);
    free(ids);
    free(text);
    bb_tokenizer_destroy(&tok);
    return st;
}

typedef struct {
    int rank;             /* --lora-random; 0 = none */
    const char *out;      /* --lora-out */
    int merge;            /* --lora-merge */
    uint64_t seed;        /* --seed */
    bb_lora **f;          /* (n_layers * BB_LIN_COUNT) */
    bb_export_lora_entry *e;
} lora_args;

/* Random factors for every linear weight: A, B ~ N(0, s^2) with s^2 = 0.1 rms(W) / sqrt(rank), so that
 * the entries of A B have about a tenth of W's RMS. */
static bb_status random_factors(const bb_model *m, lora_args *la) {
    const int n = m->cfg.n_layers * BB_LIN_COUNT;
    BB_CALL(bb_calloc((void **)&la->f, (size_t)n, sizeof *la->f, "LoRA factors"));
    BB_CALL(bb_calloc((void **)&la->e, (size_t)n, sizeof *la->e, "LoRA entries"));
    for (int i = 0; i < n; i++) {
        const int l = i / BB_LIN_COUNT;
        const bb_linear_kind k = (bb_linear_kind)(i % BB_LIN_COUNT);
        const bb_tensor *t = bb_layer_linear(&m->layers[l], k);
        const int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
        float *x;
        BB_CALL(bb_malloc((void **)&x, sizeof(float) * (size_t)(rows * cols), t->name));
        bb_status st = bb_tensor_read_f32(t, 0, rows, x);
        double ss = 0;
        for (int64_t j = 0; st == BB_OK && j < rows * cols; j++) ss += (double)x[j] * x[j];
        free(x);
        BB_CALL(st);
        BB_CALL(bb_lora_create(rows, cols, la->rank, &la->f[i]));
        const float s = (float)sqrt(0.1 * sqrt(ss / (double)(rows * cols)) / sqrt((double)la->rank));
        bb_lora *f = la->f[i];
        bb_rng_fill_normal(bb_rng_make(la->seed, 2 * (uint64_t)i), 0, (size_t)(rows * la->rank), f->a);
        bb_rng_fill_normal(bb_rng_make(la->seed, 2 * (uint64_t)i + 1), 0, (size_t)(la->rank * cols), f->b);
        for (int64_t j = 0; j < rows * la->rank; j++) f->a[j] *= s;
        for (int64_t j = 0; j < la->rank * cols; j++) f->b[j] *= s;
        la->e[i] = (bb_export_lora_entry){l, k, f};
    }
    bb_info("lora    random rank-%d factors (seed %llu) for %d linear weights", la->rank, (unsigned long long)la->seed,
            n);
    return BB_OK;
}

static bb_status run(const char *model, const char *out_path, bb_config *cfg, const char *calib_text, int seq_len,
                     const char *tok_path, const char *name, lora_args *la) {
    bb_model *m = NULL;
    bb_calib *stats = NULL;
    bb_weights *w = NULL;
    bb_quantized *q = NULL;
    bb_status st;
    BB_CALL_GOTO(st, done, bb_model_open(model, &m));
    BB_CALL_GOTO(st, done, bb_model_check_finite(m));
    if (la->rank > 0) {
        BB_CALL_GOTO(st, done, random_factors(m, la));
        if (la->out) BB_CALL_GOTO(st, done, bb_export_lora_gguf(m, la->e, m->cfg.n_layers * BB_LIN_COUNT, name, la->out));
    }
    if (seq_len > m->cfg.max_seq_len) seq_len = m->cfg.max_seq_len;
    bb_export_opts eo;
    bb_export_opts_default(&eo);
    eo.name = name;
    eo.tokenizer = tok_path;
    if (la->merge) {
        BB_CALL_GOTO(st, done, bb_weights_create(m, 0, 0, &w));
        for (int i = 0; i < m->cfg.n_layers * BB_LIN_COUNT; i++)
            bb_lora_merge(la->f[i], bb_weights_linear(w, la->e[i].layer, la->e[i].kind));
    }
    if (!strcmp(cfg->quant.type, "f32")) {
        BB_CALL_GOTO(st, done, bb_export_gguf(m, w ? bb_weights_model(w) : m, NULL, &eo, out_path));
    } else {
        /* calibration runs on the source model, as without factors */
        if (calib_text) BB_CALL_GOTO(st, done, calibrate(m, tok_path, calib_text, seq_len, &stats));
        if (!w) BB_CALL_GOTO(st, done, bb_weights_create(m, 0, 0, &w));
        BB_CALL_GOTO(st, done, bb_quantize_model(cfg, w, stats, &q));
        bb_info("quant   %s, %lld linear weights in %.3f bits per weight (scales included), mostly %s",
                cfg->quant.method, (long long)q->weights, (double)q->bits / (double)q->weights,
                bb_ggml_type_name(q->dominant));
        BB_CALL_GOTO(st, done, bb_export_gguf(m, bb_weights_model(w), q, &eo, out_path));
    }
    bb_info("export  %s", out_path);
done:
    if (la->f)
        for (int i = 0; m && i < m->cfg.n_layers * BB_LIN_COUNT; i++) bb_lora_destroy(&la->f[i]);
    free(la->f);
    free(la->e);
    bb_quantized_destroy(&q);
    bb_weights_destroy(&w);
    bb_calib_destroy(&stats);
    bb_model_destroy(&m);
    return st;
}

int bb_cmd_export(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *calib = NULL, *tok = NULL, *name = NULL;
    int seq_len = 512;
    lora_args la = {.seed = 1};
    bb_config cfg;
    if (bb_config_defaults(&cfg) != BB_OK) return 1;
    snprintf(cfg.quant.method, sizeof cfg.quant.method, "rtn");
    snprintf(cfg.quant.type, sizeof cfg.quant.type, "q8_0");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        char set[600];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") && has) {
            out = argv[++i];
        } else if (!strcmp(a, "--type") && has) {
            snprintf(set, sizeof set, "quant.type=%s", argv[++i]);
            if (bb_config_set(&cfg, set) != BB_OK) return 2;
        } else if (!strcmp(a, "--method") && has) {
            snprintf(set, sizeof set, "quant.method=%s", argv[++i]);
            if (bb_config_set(&cfg, set) != BB_OK) return 2;
        } else if (!strcmp(a, "--set") && has) {
            if (bb_config_set(&cfg, argv[++i]) != BB_OK) return 2;
        } else if (!strcmp(a, "--calib") && has) {
            calib = argv[++i];
        } else if (!strcmp(a, "--seq-len") && has) {
            seq_len = atoi(argv[++i]);
        } else if (!strcmp(a, "--tokenizer") && has) {
            tok = argv[++i];
        } else if (!strcmp(a, "--name") && has) {
            name = argv[++i];
        } else if (!strcmp(a, "--lora-random") && has) {
            la.rank = atoi(argv[++i]);
            if (la.rank < 1) {
                fprintf(stderr, "birdbone export: --lora-random %s: the rank must be a positive integer\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--lora-out") && has) {
            la.out = argv[++i];
        } else if (!strcmp(a, "--lora-merge")) {
            la.merge = 1;
        } else if (!strcmp(a, "--seed") && has) {
            la.seed = strtoull(argv[++i], NULL, 10);
        } else if (a[0] != '-' && !model) {
            model = a;
        } else {
            fprintf(stderr, "birdbone export: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || !out || seq_len < 2) {
        fprintf(stderr, "birdbone export: %s\n",
                !model ? "MODEL is missing"
                : !out ? "-o OUT.gguf is missing"
                       : "--seq-len must be at least 2");
        usage(stderr);
        return 2;
    }
    if ((la.rank > 0) != (la.out != NULL || la.merge)) {
        fprintf(stderr, "birdbone export: %s\n",
                la.rank > 0 ? "--lora-random needs --lora-out FILE and/or --lora-merge"
                            : "--lora-out and --lora-merge need factors: give --lora-random RANK (factors "
                              "from healing are not read by birdbone export yet)");
        return 2;
    }
    if (!strcmp(cfg.quant.method, "none")) {
        fprintf(stderr, "birdbone export: --method none: use --type f32 to export without quantization\n");
        return 2;
    }
    return run(model, out, &cfg, calib, seq_len, tok, name, &la) == BB_OK ? 0 : 1;
}
