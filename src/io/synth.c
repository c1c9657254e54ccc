/* synth.c — synthetic Llama-shaped models produced row block by row block from a seed. */
#include "io/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/parallel.h"
#include "core/rng.h"

typedef struct {
    const char *name;
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len;
    float rope_theta;
} preset;

/* Real shapes for the scale presets; tiny/small are for development and CI. */
static const preset presets[] = {
    {"tiny", 128, 352, 4, 4, 2, 512, 256, 10000.0f},
    {"small", 512, 1408, 8, 8, 4, 4096, 1024, 10000.0f},
    {"llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f},
    {"llama2-13b", 5120, 13824, 40, 40, 40, 32000, 4096, 10000.0f},
    {"llama2-70b", 8192, 28672, 80, 64, 8, 32000, 4096, 10000.0f},
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f},
    {"llama3-70b", 8192, 28672, 80, 64, 8, 128256, 8192, 500000.0f},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

const char *const *bb_synth_presets(void) {
    static const char *names[N_PRESETS + 1];
    for (int i = 0; i < N_PRESETS; i++) names[i] = presets[i].name;
    names[N_PRESETS] = NULL;
    return names;
}

static void preset_list(char *buf, size_t n) {
    size_t off = 0;
    for (int i = 0; i < N_PRESETS && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", presets[i].name);
}

static bb_status parse_int(const char *key, const char *val, long lo, long hi, int *out) {
    char *end;
    long v = strtol(val, &end, 10);
    BB_CHECK(*val && *end == '\0', BB_ERR_CONFIG, "synthetic model: %s=%s is not an integer", key, val);
    BB_CHECK(v >= lo && v <= hi, BB_ERR_CONFIG, "synthetic model: %s=%ld is outside [%ld, %ld]", key, v, lo, hi);
    *out = (int)v;
    return BB_OK;
}

static bb_status parse_float(const char *key, const char *val, double lo, double hi, float *out) {
    char *end;
    double v = strtod(val, &end);
    BB_CHECK(*val && *end == '\0', BB_ERR_CONFIG, "synthetic model: %s=%s is not a number", key, val);
    BB_CHECK(v >= lo && v <= hi, BB_ERR_CONFIG, "synthetic model: %s=%g is outside [%g, %g]", key, v, lo, hi);
    *out = (float)v;
    return BB_OK;
}

static bb_status apply_override(bb_synth_spec *s, const char *kv) {
    char key[64];
    const char *eq = strchr(kv, '=');
    BB_CHECK(eq && eq > kv && (size_t)(eq - kv) < sizeof key, BB_ERR_CONFIG,
             "synthetic model: '%s' is not key=value (e.g. synthetic:tiny,layers=2)", kv);
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    const char *v = eq + 1;
    if (!strcmp(key, "dim")) return parse_int(key, v, 2, 1 << 16, &s->dim);
    if (!strcmp(key, "hidden")) return parse_int(key, v, 1, 1 << 18, &s->hidden_dim);
    if (!strcmp(key, "layers")) return parse_int(key, v, 1, 1024, &s->n_layers);
    if (!strcmp(key, "heads")) return parse_int(key, v, 1, 1024, &s->n_heads);
    if (!strcmp(key, "kv_heads")) return parse_int(key, v, 1, 1024, &s->n_kv_heads);
    if (!strcmp(key, "vocab")) return parse_int(key, v, 2, 1 << 20, &s->vocab_size);
    if (!strcmp(key, "ctx")) return parse_int(key, v, 1, 1 << 20, &s->max_seq_len);
    if (!strcmp(key, "rank")) return parse_int(key, v, 0, 4096, &s->rank);
    if (!strcmp(key, "outliers")) return parse_int(key, v, 0, 1 << 16, &s->n_outliers);
    if (!strcmp(key, "outlier_scale")) return parse_float(key, v, 0.0, 1000.0, &s->outlier_scale);
    if (!strcmp(key, "energy")) return parse_float(key, v, 0.0, 1.0, &s->lowrank_energy);
    if (!strcmp(key, "theta")) return parse_float(key, v, 1.0, 1e9, &s->rope_theta);
    if (!strcmp(key, "seed")) {
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        BB_CHECK(*v && *end == '\0', BB_ERR_CONFIG, "synthetic model: seed=%s is not a non-negative integer", v);
        s->seed = x;
        return BB_OK;
    }
    BB_CHECK(0, BB_ERR_CONFIG,
             "synthetic model: unknown key '%s' (valid: dim, hidden, layers, heads, kv_heads, vocab, ctx, seed, rank, "
             "energy, outliers, outlier_scale, theta)",
             key);
}

bb_status bb_synth_parse(const char *spec, bb_synth_spec *s) {
    char buf[512];
    BB_CHECK(spec && strlen(spec) < sizeof buf, BB_ERR_CONFIG, "synthetic model spec is empty or too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    char *name = strtok_r(buf, ",", &save);
    const preset *p = NULL;
    for (int i = 0; name && i < N_PRESETS; i++)
        if (!strcmp(presets[i].name, name)) p = &presets[i];
    if (!p) {
        char list[256];
        preset_list(list, sizeof list);
        BB_CHECK(0, BB_ERR_CONFIG, "unknown synthetic model '%s' (presets: %s; e.g. synthetic:tiny)", name ? name : "",
                 list);
    }
    memset(s, 0, sizeof *s);
    snprintf(s->preset, sizeof s->preset, "%s", p->name);
    s->dim = p->dim;
    s->hidden_dim = p->hidden_dim;
    s->n_layers = p->n_layers;
    s->n_heads = p->n_heads;
    s->n_kv_heads = p->n_kv_heads;
    s->vocab_size = p->vocab_size;
    s->max_seq_len = p->max_seq_len;
    s->rope_theta = p->rope_theta;
    s->seed = 20240521;
    s->rank = 16;
    s->lowrank_energy = 0.6f;
    s->n_outliers = 4;
    s->outlier_scale = 8.0f;
    for (char *kv = strtok_r(NULL, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) BB_CALL(apply_override(s, kv));
    BB_CHECK(s->dim % s->n_heads == 0, BB_ERR_CONFIG, "synthetic model: dim %d is not a multiple of heads %d", s->dim,
             s->n_heads);
    BB_CHECK((s->dim / s->n_heads) % 2 == 0, BB_ERR_CONFIG, "synthetic model: head size %d must be even",
             s->dim / s->n_heads);
    BB_CHECK(s->n_heads % s->n_kv_heads == 0, BB_ERR_CONFIG,
             "synthetic model: heads %d is not a multiple of kv_heads %d", s->n_heads, s->n_kv_heads);
    BB_CHECK(s->n_outliers <= s->dim, BB_ERR_CONFIG, "synthetic model: %d outlier channels exceed dim %d", s->n_outliers,
             s->dim);
    return BB_OK;
}

/* Tensor kinds; gen_id = layer * KIND_COUNT + kind. */
enum { K_EMB, K_ATTN_NORM, K_Q, K_K, K_V, K_O, K_FFN_NORM, K_GATE, K_UP, K_DOWN, K_OUT_NORM, K_OUTPUT, KIND_COUNT };

typedef struct {
    bb_synth_spec spec;
    int *outlier; /* (n_outliers) channel indices */
} synth_state;

static void synth_free(void *p) {
    synth_state *s = p;
    if (!s) return;
    free(s->outlier);
    free(s);
}

/* Student-t with 4 degrees of freedom from one uniform (closed-form quantile),
 * scaled to unit variance (the t4 variance is 2). */
static float student_t4(double u) {
    if (u <= 0.0) u = 0x1p-53;
    double a = 4.0 * u * (1.0 - u);
    double q = cos(acos(sqrt(a)) / 3.0) / sqrt(a);
    double t = 2.0 * sqrt(q > 1.0 ? q - 1.0 : 0.0);
    return (float)((u < 0.5 ? -t : t) / sqrt(2.0));
}

static bb_rng tensor_rng(const synth_state *s, const bb_tensor *t) {
    return bb_rng_make(s->spec.seed, bb_rng_stream_id(t->name));
}

/* Threads that generate a row block (rows split contiguously; every value is a function of (seed, tensor,
 * index) only, so any thread count gives the same bits). 0 = the processors online. */
static int g_threads;

void bb_synth_set_threads(int n) { g_threads = n < 0 ? 0 : n; }

/* Below this many values per thread a row block is generated on fewer threads. */
#define SYNTH_PAR_MIN ((int64_t)1 << 16)

typedef struct {
    int64_t row0, n, r;  /* first row of the block; columns; planted rank */
    bb_rng ru, rn;       /* the factor U's and the noise's streams */
    double noise;        /* noise scale */
    const float *v, *sk; /* V (r, n) and the spectrum (r); NULL when r = 0 */
    int64_t i0, i1;      /* this job's rows within the block */
    float *out;          /* the block (nrows, n) */
    int normal;          /* 1: standard normals from rn (the embedding) instead of the matrix model */
} gen_job;

static void *gen_rows(void *arg) {
    const gen_job *g = arg;
    const int64_t n = g->n;
    for (int64_t i = g->i0; i < g->i1; i++) {
        float *row = g->out + i * n;
        if (g->normal) {
            bb_rng_fill_normal(g->rn, (uint64_t)((g->row0 + i) * n), (size_t)n, row);
            continue;
        }
        for (int64_t j = 0; j < n; j++)
            row[j] = (float)(g->noise * student_t4(bb_rng_uniform(g->rn, (uint64_t)((g->row0 + i) * n + j))));
        for (int k = 0; k < g->r && g->v; k++) {
            float u = (float)bb_rng_normal(g->ru, (uint64_t)((g->row0 + i) * g->r + k)) * g->sk[k];
            const float *vk = g->v + (size_t)k * (size_t)n;
            for (int64_t j = 0; j < n; j++) row[j] += u * vk[j];
        }
    }
    return NULL;
}

/* The rows of `proto` split over the generator's threads. */
static void gen_parallel(const gen_job *proto, int64_t nrows) {
    int nt = bb_parallel_threads(g_threads, (long long)(nrows * proto->n), SYNTH_PAR_MIN);
    if (nt > nrows) nt = (int)(nrows > 0 ? nrows : 1);
    gen_job jobs[BB_PARALLEL_MAX];
    for (int t = 0; t < nt; t++) {
        jobs[t] = *proto;
        jobs[t].i0 = nrows * t / nt;
        jobs[t].i1 = nrows * (t + 1) / nt;
    }
    bb_parallel_run(gen_rows, jobs, sizeof jobs[0], nt);
}

/* Low-rank (decaying spectrum, `energy` of the total) plus t4 noise; each row
 * has unit expected squared norm times `scale`². Row i depends on (seed, name, i) only. */
static bb_status gen_matrix(const bb_tensor *t, int64_t row0, int64_t nrows, float *out, float scale) {
    const synth_state *s = t->gen_ctx;
    int64_t m = bb_tensor_rows(t), n = bb_tensor_cols(t);
    int r = s->spec.rank;
    if (r > m) r = (int)m;
    if (r > n) r = (int)n;
    bb_rng base = tensor_rng(s, t);
    double e = s->spec.lowrank_energy;
    gen_job g = {row0, n, 0, bb_rng_split(base, 1), bb_rng_split(base, 3), scale * sqrt((1.0 - e) / (double)n),
                 NULL, NULL, 0, 0, out, 0};
    if (r == 0 || e <= 0) {
        gen_parallel(&g, nrows);
        return BB_OK;
    }
    float *v, *sk;
    BB_MALLOC(v, (size_t)r * (size_t)n * sizeof *v, "synthetic low-rank factor");
    bb_status st = bb_malloc((void **)&sk, (size_t)r * sizeof *sk, "synthetic spectrum");
    if (st) {
        free(v);
        return bb_trace(st, __FILE__, __LINE__, "spectrum");
    }
    double ssum = 0;
    for (int k = 0; k < r; k++) {
        sk[k] = (float)exp(-3.0 * k / r);
        ssum += (double)sk[k] * sk[k];
    }
    for (int k = 0; k < r; k++) sk[k] = (float)(sk[k] * sqrt(e / ssum) * scale / sqrt((double)n));
    bb_rng_fill_normal(bb_rng_split(base, 2), 0, (size_t)r * (size_t)n, v);
    g.r = r;
    g.v = v;
    g.sk = sk;
    gen_parallel(&g, nrows);
    free(sk);
    free(v);
    return BB_OK;
}

/* RMSNorm gains around 1, with the planted outlier channels boosted. */
static bb_status gen_norm(const bb_tensor *t, float *out) {
    const synth_state *s = t->gen_ctx;
    int64_t n = bb_tensor_cols(t);
    bb_rng r = tensor_rng(s, t);
    for (int64_t j = 0; j < n; j++) {
        float g = 1.0f + 0.15f * (float)bb_rng_normal(r, (uint64_t)j);
        out[j] = g < 0.1f ? 0.1f : g;
    }
    int kind = (int)(t->gen_id % KIND_COUNT);
    if (kind != K_OUT_NORM)
        for (int o = 0; o < s->spec.n_outliers; o++) out[s->outlier[o]] *= s->spec.outlier_scale;
    return BB_OK;
}

static bb_status synth_gen(const bb_tensor *t, int64_t row0, int64_t nrows, float *out) {
    const synth_state *s = t->gen_ctx;
    int kind = (int)(t->gen_id % KIND_COUNT);
    switch (kind) {
    case K_ATTN_NORM:
    case K_FFN_NORM:
    case K_OUT_NORM: return gen_norm(t, out);
    case K_EMB: {
        gen_job g = {row0, bb_tensor_cols(t), 0, tensor_rng(s, t), tensor_rng(s, t), 0, NULL, NULL, 0, 0, out, 1};
        gen_parallel(&g, nrows);
        return BB_OK;
    }
    /* The classifier is scaled so that logits have a spread of a few nats and
     * sampled text is neither uniform nor deterministic. */
    case K_OUTPUT: return gen_matrix(t, row0, nrows, out, 4.0f);
    /* Residual-stream writers are damped so the stream grows slowly with depth. */
    case K_O:
    case K_DOWN: return gen_matrix(t, row0, nrows, out, 1.0f / sqrtf((float)(2 * s->spec.n_layers)));
    default: return gen_matrix(t, row0, nrows, out, 1.0f);
    }
}

static void set_gen(bb_tensor *t, const synth_state *s, const char *name, int layer, int kind, int ndim, int64_t d0,
                    int64_t d1) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = BB_F32;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->gen = synth_gen;
    t->gen_ctx = s;
    t->gen_id = (uint64_t)layer * KIND_COUNT + (uint64_t)kind;
    t->file_offset = -1;
}

bb_status bb_synth_create(const bb_synth_spec *spec, bb_model **out) {
    *out = NULL;
    synth_state *s;
    BB_CALL(bb_calloc((void **)&s, 1, sizeof *s, "synthetic model state"));
    s->spec = *spec;
    bb_status st = bb_calloc((void **)&s->outlier, (size_t)(spec->n_outliers ? spec->n_outliers : 1), sizeof(int),
                             "outlier channels");
    if (st) {
        synth_free(s);
        return bb_trace(st, __FILE__, __LINE__, "outliers");
    }
    /* Distinct outlier channels from a seeded partial shuffle. */
    bb_rng r = bb_rng_make(spec->seed, bb_rng_stream_id("synth.outliers"));
    for (int o = 0; o < spec->n_outliers; o++) {
        int c;
        uint64_t i = (uint64_t)o * 1000;
        for (;;) {
            c = (int)(bb_rng_u64(r, i++) % (uint64_t)spec->dim);
            int dup = 0;
            for (int p = 0; p < o; p++) dup |= s->outlier[p] == c;
            if (!dup) break;
        }
        s->outlier[o] = c;
    }
    bb_model *m;
    st = bb_model_alloc(&m, spec->n_layers);
    if (st) {
        synth_free(s);
        return bb_trace(st, __FILE__, __LINE__, "bb_model_alloc");
    }
    m->priv = s;
    m->priv_free = synth_free;
    m->source = BB_SRC_SYNTH;
    snprintf(m->path, sizeof m->path, "synthetic:%s", spec->preset);
    bb_model_config *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = spec->dim;
    c->hidden_dim = spec->hidden_dim;
    c->n_heads = spec->n_heads;
    c->n_kv_heads = spec->n_kv_heads;
    c->head_dim = spec->dim / spec->n_heads;
    c->vocab_size = spec->vocab_size;
    c->max_seq_len = spec->max_seq_len;
    c->norm_eps = 1e-5f;
    c->rope_theta = spec->rope_theta;
    c->rope_style = BB_ROPE_INTERLEAVED;
    c->rope_scaling = BB_ROPE_SCALING_NONE;
    c->bos_id = 1;
    c->eos_id = 2;
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    set_gen(&m->tok_embd, s, "token_embd.weight", 0, K_EMB, 2, c->vocab_size, c->dim);
    set_gen(&m->out_norm, s, "output_norm.weight", 0, K_OUT_NORM, 1, c->dim, 0);
    set_gen(&m->output, s, "output.weight", 0, K_OUTPUT, 2, c->vocab_size, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        bb_layer_weights *L = &m->layers[l];
        char nm[64];
#define G(field, label, kind, nd, a, b)                         \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, label);      \
    set_gen(&L->field, s, nm, l, kind, nd, a, b)
        G(attn_norm, "attn_norm", K_ATTN_NORM, 1, c->dim, 0);
        G(wq, "attn_q", K_Q, 2, qd, c->dim);
        G(wk, "attn_k", K_K, 2, kvd, c->dim);
        G(wv, "attn_v", K_V, 2, kvd, c->dim);
        G(wo, "attn_output", K_O, 2, c->dim, qd);
        G(ffn_norm, "ffn_norm", K_FFN_NORM, 1, c->dim, 0);
        G(w_gate, "ffn_gate", K_GATE, 2, c->hidden_dim, c->dim);
        G(w_up, "ffn_up", K_UP, 2, c->hidden_dim, c->dim);
        G(w_down, "ffn_down", K_DOWN, 2, c->dim, c->hidden_dim);
#undef G
    }
    *out = m;
    return BB_OK;
}

bb_status bb_synth_open(const char *spec, bb_model **out) {
    bb_synth_spec s;
    BB_CALL(bb_synth_parse(spec, &s));
    BB_CALL(bb_synth_create(&s, out));
    snprintf((*out)->path, sizeof (*out)->path, "synthetic:%s", spec);
    return BB_OK;
}
