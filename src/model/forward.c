/* forward.c — Llama forward pass on the CPU: f32 weight copies, batched prefill, KV-cached decode, generation. */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "model/kernels.h"
#ifdef BB_HAVE_CUDA
#include "cuda/check.h"
#include "cuda/forward_cuda.h"
#endif

typedef struct {
    float *attn_norm; /* (dim) */
    float *wq;        /* (n_heads*hd, dim) */
    float *wk, *wv;   /* (n_kv*hd, dim) */
    float *bq;        /* (n_heads*hd) or NULL */
    float *bk, *bv;   /* (n_kv*hd) or NULL */
    float *wo;        /* (dim, n_heads*hd) */
    float *ffn_norm;  /* (dim) */
    float *w_gate;    /* (hidden, dim) */
    float *w_up;      /* (hidden, dim) */
    float *w_down;    /* (dim, hidden) */
} fw_layer;

/* Activations for `rows` rows; grown on demand and reused across calls. */
typedef struct {
    int64_t rows, scratch;
    float *x, *xn;        /* (rows, dim) residual stream, normed input */
    float *q, *att;       /* (rows, qd) */
    float *k, *v;         /* (rows, kvd) */
    float *h1, *h3;       /* (rows, hidden) */
    float *cos_t, *sin_t; /* (rows, hd/2) */
    int *pos;             /* (rows) */
    float *sc;            /* attention scores, `scratch` floats */
} fw_work;

struct bb_forward {
    const bb_model *m;
    bb_model_config c;
    int qd, kvd;
    float *emb;      /* (vocab, dim) */
    float *out_norm; /* (dim) */
    float *output;   /* (vocab, dim); == emb when tied; NULL without the head */
    fw_layer *L;     /* [n_layers]; only [l0, l1) loaded */
    int l0, l1;      /* the blocks this context runs */
    int has_embed, has_head;
    double *inv_freq; /* (hd/2) */
    int cache_len, n_cached;
    float *kcache, *vcache; /* (n_layers, cache_len, kvd), allocated on the first decode */
    fw_work w;
    float *hn; /* (hn_rows, dim): normed rows for bb_forward_head */
    int64_t hn_rows;
    bb_forward_stats stats;
    bb_forward_hook_fn hook;
    void *hook_ud;
#ifdef BB_HAVE_CUDA
    /* prefill on the GPU (bb_forward_set_device): weights uploaded on first use, for this context's life */
    bb_cuda_ctx *gctx;
    bb_cuda_fwd *gfw;
    int g_t, g_b;         /* the workspace's tokens per sequence and sequences */
    bb_cuda_block_w *gw;  /* [n_layers]; [l0, l1) uploaded */
    float *gx;            /* device residual stream */
    int64_t gx_rows;
    float *ghost;         /* host copy of a linear layer's input for the hook */
    int64_t ghost_n;
    int g_layer;
#endif
};

static int g_use_cuda; /* bb_forward_set_device */

/* ---- lifecycle ------------------------------------------------------------------ */

static bb_status load_f32(const bb_tensor *t, float **out) {
    *out = NULL;
    size_t n = (size_t)bb_tensor_numel(t), bytes;
    BB_CHECK(n > 0, BB_ERR_INTERNAL, "tensor %s is empty", t->name);
    BB_CHECK(!bb_mul_overflow(n, sizeof(float), &bytes), BB_ERR_OOM, "tensor %s is too large", t->name);
    float *p;
    BB_CALL(bb_malloc((void **)&p, bytes, t->name));
    bb_status st = bb_tensor_read_f32(t, 0, bb_tensor_rows(t), p);
    if (st) {
        free(p);
        return bb_trace(st, __FILE__, __LINE__, t->name);
    }
    *out = p;
    return BB_OK;
}

static void free_work(fw_work *w) {
    float **bufs[] = {&w->x, &w->xn, &w->q, &w->att, &w->k, &w->v, &w->h1, &w->h3, &w->cos_t, &w->sin_t, &w->sc};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        free(*bufs[i]);
        *bufs[i] = NULL;
    }
    free(w->pos);
    w->pos = NULL;
    w->rows = w->scratch = 0;
}

void bb_forward_destroy(bb_forward **pf) {
    if (!pf || !*pf) return;
    bb_forward *f = *pf;
    if (f->L)
        for (int l = 0; l < f->c.n_layers; l++) {
            fw_layer *L = &f->L[l];
            float *ps[] = {L->attn_norm, L->wq, L->wk,       L->wv,     L->bq,   L->bk,
                           L->bv,        L->wo, L->ffn_norm, L->w_gate, L->w_up, L->w_down};
            for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) free(ps[i]);
        }
    free(f->L);
    if (f->output != f->emb) free(f->output);
    free(f->emb);
    free(f->out_norm);
    free(f->inv_freq);
    free(f->kcache);
    free(f->vcache);
    free_work(&f->w);
    free(f->hn);
#ifdef BB_HAVE_CUDA
    if (f->gw)
        for (int l = 0; l < f->c.n_layers; l++) bb_cuda_block_w_free(&f->gw[l]);
    free(f->gw);
    bb_cuda_free(f->gx);
    free(f->ghost);
    bb_cuda_fwd_destroy(&f->gfw);
    bb_cuda_ctx_destroy(&f->gctx);
#endif
    free(f);
    *pf = NULL;
}

static bb_status load_weights(bb_forward *f) {
    const bb_model *m = f->m;
    int tied = m->cfg.tied_embeddings || (m->output.data && m->output.data == m->tok_embd.data);
    /* Tied models may still carry a distinct handle (GGUF without output.weight
     * copies tok_embd); sharing storage avoids a second vocab x dim copy. */
    if (f->has_embed || (f->has_head && tied)) BB_CALL(load_f32(&m->tok_embd, &f->emb));
    if (f->has_head) {
        BB_CALL(load_f32(&m->out_norm, &f->out_norm));
        if (tied)
            f->output = f->emb;
        else
            BB_CALL(load_f32(&m->output, &f->output));
    }
    BB_CALL(bb_calloc((void **)&f->L, (size_t)f->c.n_layers, sizeof *f->L, "layer weights"));
    for (int l = f->l0; l < f->l1; l++) {
        const bb_layer_weights *w = &m->layers[l];
        fw_layer *L = &f->L[l];
        BB_CALL(load_f32(&w->attn_norm, &L->attn_norm));
        BB_CALL(load_f32(&w->wq, &L->wq));
        BB_CALL(load_f32(&w->wk, &L->wk));
        BB_CALL(load_f32(&w->wv, &L->wv));
        BB_CALL(load_f32(&w->wo, &L->wo));
        BB_CALL(load_f32(&w->ffn_norm, &L->ffn_norm));
        BB_CALL(load_f32(&w->w_gate, &L->w_gate));
        BB_CALL(load_f32(&w->w_up, &L->w_up));
        BB_CALL(load_f32(&w->w_down, &L->w_down));
        if (f->c.attn_bias) {
            BB_CALL(load_f32(&w->bq, &L->bq));
            BB_CALL(load_f32(&w->bk, &L->bk));
            BB_CALL(load_f32(&w->bv, &L->bv));
        }
    }
    return BB_OK;
}

bb_status bb_forward_create_part(const bb_model *m, const bb_forward_part *p, int cache_len, bb_forward **out) {
    *out = NULL;
    const bb_model_config *c = &m->cfg;
    BB_CHECK(cache_len >= 0 && cache_len <= c->max_seq_len, BB_ERR_ARG,
             "KV cache length %d is outside 0..max_seq_len %d", cache_len, c->max_seq_len);
    int l1 = p->layer_end;
    BB_CHECK(p->layer_begin >= 0 && p->layer_begin <= l1 && l1 <= c->n_layers, BB_ERR_ARG,
             "forward blocks [%d, %d) are outside the model's %d layers", p->layer_begin, l1, c->n_layers);
    BB_CALL(bb_model_validate(m));
    bb_forward *f;
    BB_CALL(bb_calloc((void **)&f, 1, sizeof *f, "forward context"));
    f->m = m;
    f->c = *c;
    f->l0 = p->layer_begin;
    f->l1 = l1;
    f->has_embed = p->embed != 0;
    f->has_head = p->head != 0;
    f->qd = c->n_heads * c->head_dim;
    f->kvd = c->n_kv_heads * c->head_dim;
    f->cache_len = cache_len ? cache_len : c->max_seq_len;
    bb_status st = bb_malloc((void **)&f->inv_freq, (size_t)(c->head_dim / 2) * sizeof *f->inv_freq, "rope freqs");
    if (!st) {
        bb_rope_freqs(c, f->inv_freq);
        st = load_weights(f);
    }
    if (st) {
        bb_forward_destroy(&f);
        return bb_trace(st, __FILE__, __LINE__, "bb_forward_create");
    }
    *out = f;
    return BB_OK;
}

bb_status bb_forward_create(const bb_model *m, int cache_len, bb_forward **out) {
    bb_forward_part all = {0, m->cfg.n_layers, 1, 1};
    BB_CALL(bb_forward_create_part(m, &all, cache_len, out));
    return BB_OK;
}

void bb_forward_part_get(const bb_forward *f, bb_forward_part *out) {
    out->layer_begin = f->l0;
    out->layer_end = f->l1;
    out->embed = f->has_embed;
    out->head = f->has_head;
}

void bb_forward_set_hook(bb_forward *f, bb_forward_hook_fn fn, void *ud) {
    f->hook = fn;
    f->hook_ud = ud;
}

const bb_model_config *bb_forward_config(const bb_forward *f) { return &f->c; }
void bb_forward_stats_get(const bb_forward *f, bb_forward_stats *out) { *out = f->stats; }
void bb_forward_stats_reset(bb_forward *f) { memset(&f->stats, 0, sizeof f->stats); }
int bb_forward_cache_len(const bb_forward *f) { return f->cache_len; }

/* ---- the pass -------------------------------------------------------------------- */

static bb_status grow(float **p, int64_t n) {
    free(*p);
    *p = NULL;
    return bb_malloc((void **)p, (size_t)n * sizeof **p, "forward activations");
}

static bb_status ensure_work(bb_forward *f, int64_t rows, int64_t scratch) {
    fw_work *w = &f->w;
    const bb_model_config *c = &f->c;
    if (rows > w->rows) {
        w->rows = 0;
        BB_CALL(grow(&w->x, rows * c->dim));
        BB_CALL(grow(&w->xn, rows * c->dim));
        BB_CALL(grow(&w->q, rows * f->qd));
        BB_CALL(grow(&w->att, rows * f->qd));
        BB_CALL(grow(&w->k, rows * f->kvd));
        BB_CALL(grow(&w->v, rows * f->kvd));
        BB_CALL(grow(&w->h1, rows * c->hidden_dim));
        BB_CALL(grow(&w->h3, rows * c->hidden_dim));
        BB_CALL(grow(&w->cos_t, rows * (c->head_dim / 2)));
        BB_CALL(grow(&w->sin_t, rows * (c->head_dim / 2)));
        free(w->pos);
        w->pos = NULL;
        BB_CALL(bb_malloc((void **)&w->pos, (size_t)rows * sizeof *w->pos, "positions"));
        w->rows = rows;
    }
    if (scratch > w->scratch) {
        w->scratch = 0;
        BB_CALL(grow(&w->sc, scratch));
        w->scratch = scratch;
    }
    return BB_OK;
}

static void warn_nonfinite(const float *logits, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(logits[i]);
    if (bad) bb_warn("forward: %lld of %lld logits are NaN or Inf", (long long)bad, (long long)n);
}

/* Seconds since *t0 are added to *acc, and *t0 moves to now. */
static void lap(double *t0, double *acc) {
    double t = bb_now();
    *acc += t - *t0;
    *t0 = t;
}

static bb_status check_tokens(const bb_forward *f, const int *tokens, int64_t R) {
    int V = f->c.vocab_size;
    for (int64_t r = 0; r < R; r++)
        BB_CHECK(tokens[r] >= 0 && tokens[r] < V, BB_ERR_ARG,
                 "token id %d at index %lld is outside the vocabulary (0..%d)", tokens[r], (long long)r, V - 1);
    return BB_OK;
}

int bb_forward_set_device(int use_cuda) {
#ifdef BB_HAVE_CUDA
    g_use_cuda = use_cuda != 0;
#else
    g_use_cuda = 0;
#endif
    return g_use_cuda;
}

#ifdef BB_HAVE_CUDA
/* The hook on the GPU path: the layer input is copied to the host once per shared input (q/k/v, gate/up
 * get the same pointer, as on the CPU path). */
static bb_status gpu_hook(void *ud, bb_linear_kind kind, const float *dx, int64_t rows, int64_t in) {
    bb_forward *f = ud;
    if (kind == BB_LIN_Q || kind == BB_LIN_O || kind == BB_LIN_GATE || kind == BB_LIN_DOWN) {
        if (rows * in > f->ghost_n) {
            f->ghost_n = 0;
            BB_CALL(grow(&f->ghost, rows * in));
            f->ghost_n = rows * in;
        }
        BB_CALL(bb_cuda_download(f->ghost, dx, (size_t)(rows * in) * sizeof(float), "linear input for the hook"));
    }
    return f->hook(f->hook_ud, f->g_layer, kind, f->ghost, rows, in);
}

/* Blocks [l0, l1) of a prefill (positions 0..T-1) on the GPU: w->x uploaded, every block, downloaded. */
static bb_status blocks_cuda(bb_forward *f, int B, int T) {
    const bb_model_config *c = &f->c;
    int64_t R = (int64_t)B * T;
    double t0 = bb_now();
    if (!f->gctx) BB_CALL(bb_cuda_ctx_create(&f->gctx));
    if (!f->gw) {
        BB_CALL(bb_calloc((void **)&f->gw, (size_t)c->n_layers, sizeof *f->gw, "gpu block weights"));
        for (int l = f->l0; l < f->l1; l++) BB_CALL(bb_cuda_block_w_upload(f->m, l, &f->gw[l]));
    }
    if (!f->gfw || f->g_t != T || f->g_b < B) {
        bb_cuda_fwd_destroy(&f->gfw);
        BB_CALL(bb_cuda_fwd_create(f->gctx, c, T, B, BB_CUDA_FP32, &f->gfw));
        f->g_t = T;
        f->g_b = B;
    }
    if (R > f->gx_rows) {
        bb_cuda_free(f->gx);
        f->gx = NULL;
        f->gx_rows = 0;
        BB_CALL(bb_cuda_malloc((void **)&f->gx, (size_t)(R * c->dim) * sizeof(float), "gpu residual stream"));
        f->gx_rows = R;
    }
    BB_CALL(bb_cuda_upload(f->gx, f->w.x, (size_t)(R * c->dim) * sizeof(float), "residual stream"));
    for (int l = f->l0; l < f->l1; l++) {
        f->g_layer = l;
        BB_CALL(bb_cuda_fwd_block(f->gfw, &f->gw[l], f->gx, B, f->hook ? gpu_hook : NULL, f));
    }
    BB_CALL(bb_cuda_download(f->w.x, f->gx, (size_t)(R * c->dim) * sizeof(float), "residual stream"));
    double nl = f->l1 - f->l0, pairs = (double)B * ((double)T * (T + 1) / 2);
    f->stats.matmul_s += bb_now() - t0; /* the whole GPU pass; per-part times are bb_cuda_fwd_stats' */
    f->stats.matmul_flop +=
        2.0 * R * nl * ((double)c->dim * (f->qd + 2 * f->kvd) + (double)f->qd * c->dim + 3.0 * c->dim * c->hidden_dim);
    f->stats.attention_flop += 4.0 * c->head_dim * c->n_heads * nl * pairs;
    f->stats.tokens += R;
    return BB_OK;
}
#endif

/* Blocks [l0, l1) on the residual stream w->x of B sequences of T rows each,
 * positions pos0..pos0+T-1. With the cache (B == 1), keys/values go to cache
 * rows pos0.. and attention reads the cache; without it each sequence attends
 * to its own T rows. The workspace must hold B*T rows. */
static bb_status blocks(bb_forward *f, int B, int T, int pos0, int cached) {
    const bb_model_config *c = &f->c;
    int64_t R = (int64_t)B * T;
    int dim = c->dim, hd = c->head_dim, hid = c->hidden_dim, qd = f->qd, kvd = f->kvd;
    fw_work *w = &f->w;
    bb_forward_stats *st = &f->stats;
#ifdef BB_HAVE_CUDA
    if (g_use_cuda && !cached && pos0 == 0) return blocks_cuda(f, B, T);
#endif
    double t0 = bb_now();
    for (int t = 0; t < T; t++) w->pos[t] = pos0 + t;
    bb_rope_table(f->inv_freq, hd / 2, w->pos, T, w->cos_t, w->sin_t);
    lap(&t0, &st->elementwise_s);
    for (int l = f->l0; l < f->l1; l++) {
        const fw_layer *L = &f->L[l];
        bb_rmsnorm_ref(w->x, L->attn_norm, R, dim, c->norm_eps, w->xn);
        lap(&t0, &st->elementwise_s);
        if (f->hook) {
            BB_CALL(f->hook(f->hook_ud, l, BB_LIN_Q, w->xn, R, dim));
            BB_CALL(f->hook(f->hook_ud, l, BB_LIN_K, w->xn, R, dim));
            BB_CALL(f->hook(f->hook_ud, l, BB_LIN_V, w->xn, R, dim));
            t0 = bb_now();
        }
        bb_matmul(w->xn, L->wq, L->bq, R, dim, qd, w->q);
        bb_matmul(w->xn, L->wk, L->bk, R, dim, kvd, w->k);
        bb_matmul(w->xn, L->wv, L->bv, R, dim, kvd, w->v);
        lap(&t0, &st->matmul_s);
        for (int b = 0; b < B; b++) {
            int64_t r0 = (int64_t)b * T;
            bb_rope_ref(w->q + r0 * qd, T, c->n_heads, hd, c->rope_style, w->cos_t, w->sin_t);
            bb_rope_ref(w->k + r0 * kvd, T, c->n_kv_heads, hd, c->rope_style, w->cos_t, w->sin_t);
        }
        lap(&t0, &st->elementwise_s);
        for (int b = 0; b < B; b++) {
            int64_t r0 = (int64_t)b * T;
            if (cached) {
                float *kc = f->kcache + (int64_t)l * f->cache_len * kvd,
                      *vc = f->vcache + (int64_t)l * f->cache_len * kvd;
                memcpy(kc + (int64_t)pos0 * kvd, w->k, (size_t)T * kvd * sizeof(float));
                memcpy(vc + (int64_t)pos0 * kvd, w->v, (size_t)T * kvd * sizeof(float));
                bb_attention(w->q, kc, vc, T, pos0, c->n_heads, c->n_kv_heads, hd, w->att, w->sc);
            } else {
                bb_attention(w->q + r0 * qd, w->k + r0 * kvd, w->v + r0 * kvd, T, 0, c->n_heads, c->n_kv_heads, hd,
                             w->att + r0 * qd, w->sc);
            }
        }
        lap(&t0, &st->attention_s);
        if (f->hook) {
            BB_CALL(f->hook(f->hook_ud, l, BB_LIN_O, w->att, R, qd));
            t0 = bb_now();
        }
        bb_matmul_add(w->att, L->wo, R, qd, dim, w->x);
        lap(&t0, &st->matmul_s);
        bb_rmsnorm_ref(w->x, L->ffn_norm, R, dim, c->norm_eps, w->xn);
        lap(&t0, &st->elementwise_s);
        if (f->hook) {
            BB_CALL(f->hook(f->hook_ud, l, BB_LIN_GATE, w->xn, R, dim));
            BB_CALL(f->hook(f->hook_ud, l, BB_LIN_UP, w->xn, R, dim));
            t0 = bb_now();
        }
        bb_matmul(w->xn, L->w_gate, NULL, R, dim, hid, w->h1);
        bb_matmul(w->xn, L->w_up, NULL, R, dim, hid, w->h3);
        lap(&t0, &st->matmul_s);
        bb_silu_mul(w->h1, w->h3, R * hid);
        lap(&t0, &st->elementwise_s);
        if (f->hook) {
            BB_CALL(f->hook(f->hook_ud, l, BB_LIN_DOWN, w->h1, R, hid));
            t0 = bb_now();
        }
        bb_matmul_add(w->h1, L->w_down, R, hid, dim, w->x);
        lap(&t0, &st->matmul_s);
    }
    /* Every query at position p sees p+1 keys: sum over a sequence is
     * T pos0 + T(T+1)/2 pairs per head. */
    double pairs = (double)B * ((double)T * pos0 + (double)T * (T + 1) / 2), nl = f->l1 - f->l0;
    st->matmul_flop += 2.0 * R * nl * ((double)dim * (qd + 2 * kvd) + (double)qd * dim + 3.0 * dim * hid);
    st->attention_flop += 4.0 * hd * c->n_heads * nl * pairs;
    st->tokens += R;
    return BB_OK;
}

/* Final RMSNorm of x (R, dim) into xn (R, dim) and the classifier: logits, or
 * the normed hidden states when `hidden` is set. */
static void head(bb_forward *f, const float *x, int64_t R, float *xn, float *logits, float *hidden) {
    const bb_model_config *c = &f->c;
    double t0 = bb_now();
    bb_rmsnorm_ref(x, f->out_norm, R, c->dim, c->norm_eps, hidden ? hidden : xn);
    if (!hidden) {
        bb_matmul(xn, f->output, NULL, R, c->dim, c->vocab_size, logits);
        f->stats.classifier_flop += 2.0 * R * c->dim * c->vocab_size;
    }
    lap(&t0, &f->stats.classifier_s);
    if (!hidden) warn_nonfinite(logits, R * c->vocab_size);
}

static int is_whole(const bb_forward *f) { return f->has_embed && f->has_head && f->l0 == 0 && f->l1 == f->c.n_layers; }

/* The whole model on B sequences of T tokens from position pos0: embedding,
 * every block, then logits or (with `hidden`) the final-normed hidden states. */
static bb_status run(bb_forward *f, const int *tokens, int B, int T, int pos0, int cached, float *logits,
                     float *hidden) {
    const bb_model_config *c = &f->c;
    BB_CHECK(is_whole(f), BB_ERR_ARG,
             "this forward context holds blocks [%d, %d)%s%s of %d only: run it with bb_forward_embed, "
             "bb_forward_blocks and bb_forward_head",
             f->l0, f->l1, f->has_embed ? " + embedding" : "", f->has_head ? " + classifier" : "", c->n_layers);
    int64_t R = (int64_t)B * T;
    int dim = c->dim;
    BB_CALL(check_tokens(f, tokens, R));
    BB_CALL(ensure_work(f, R, bb_attention_scratch(T, pos0, c->n_heads, c->n_kv_heads, c->head_dim)));
    fw_work *w = &f->w;
    double t0 = bb_now();
    for (int64_t r = 0; r < R; r++)
        memcpy(w->x + r * dim, f->emb + (int64_t)tokens[r] * dim, (size_t)dim * sizeof(float));
    lap(&t0, &f->stats.elementwise_s);
    BB_CALL(blocks(f, B, T, pos0, cached));
    head(f, w->x, R, w->xn, logits, hidden);
    return BB_OK;
}

static bb_status check_prefill(const bb_forward *f, int B, int T) {
    BB_CHECK(B > 0 && T > 0, BB_ERR_ARG, "prefill needs at least one sequence and one token (got B %d, T %d)", B, T);
    BB_CHECK(T <= f->c.max_seq_len, BB_ERR_ARG, "prefill of %d tokens exceeds the model's context of %d", T,
             f->c.max_seq_len);
    return BB_OK;
}

bb_status bb_forward_prefill(bb_forward *f, const int *tokens, int B, int T, float *logits) {
    BB_CALL(check_prefill(f, B, T));
    BB_CALL(run(f, tokens, B, T, 0, 0, logits, NULL));
    return BB_OK;
}

bb_status bb_forward_prefill_hidden(bb_forward *f, const int *tokens, int B, int T, float *hidden) {
    BB_CALL(check_prefill(f, B, T));
    BB_CALL(run(f, tokens, B, T, 0, 0, NULL, hidden));
    return BB_OK;
}

bb_status bb_forward_embed(bb_forward *f, const int *tokens, int B, int T, float *x) {
    BB_CALL(check_prefill(f, B, T));
    BB_CHECK(f->has_embed, BB_ERR_ARG, "this forward context was created without the token embedding");
    int64_t R = (int64_t)B * T;
    int dim = f->c.dim;
    BB_CALL(check_tokens(f, tokens, R));
    double t0 = bb_now();
    for (int64_t r = 0; r < R; r++) memcpy(x + r * dim, f->emb + (int64_t)tokens[r] * dim, (size_t)dim * sizeof(float));
    lap(&t0, &f->stats.elementwise_s);
    return BB_OK;
}

bb_status bb_forward_blocks(bb_forward *f, float *x, int B, int T) {
    BB_CALL(check_prefill(f, B, T));
    if (f->l0 == f->l1) return BB_OK;
    const bb_model_config *c = &f->c;
    int64_t R = (int64_t)B * T;
    BB_CALL(ensure_work(f, R, bb_attention_scratch(T, 0, c->n_heads, c->n_kv_heads, c->head_dim)));
    memcpy(f->w.x, x, (size_t)R * c->dim * sizeof(float));
    BB_CALL(blocks(f, B, T, 0, 0));
    memcpy(x, f->w.x, (size_t)R * c->dim * sizeof(float));
    return BB_OK;
}

bb_status bb_forward_head(bb_forward *f, const float *x, int B, int T, float *logits) {
    BB_CALL(check_prefill(f, B, T));
    BB_CHECK(f->has_head, BB_ERR_ARG, "this forward context was created without the final norm and classifier");
    /* Only the normed rows: a rank holding the head alone needs no block workspace. */
    int64_t R = (int64_t)B * T;
    if (R > f->hn_rows) {
        f->hn_rows = 0;
        BB_CALL(grow(&f->hn, R * f->c.dim));
        f->hn_rows = R;
    }
    head(f, x, R, f->hn, logits, NULL);
    return BB_OK;
}

bb_status bb_forward_decode(bb_forward *f, const int *tokens, int n, int pos0, float *logits) {
    BB_CHECK(n > 0, BB_ERR_ARG, "decode needs at least one token (got %d)", n);
    BB_CHECK(pos0 >= 0 && pos0 <= f->n_cached, BB_ERR_ARG,
             "decode at position %d, but only positions 0..%d have been fed", pos0, f->n_cached - 1);
    BB_CHECK((int64_t)pos0 + n <= f->cache_len, BB_ERR_ARG, "positions up to %lld exceed the KV cache length %d",
             (long long)pos0 + n - 1, f->cache_len);
    if (!f->kcache) {
        size_t n_el;
        BB_CHECK(!bb_mul_overflow((size_t)f->c.n_layers * (size_t)f->cache_len, (size_t)f->kvd, &n_el), BB_ERR_OOM,
                 "KV cache size overflows");
        BB_CALL(bb_calloc((void **)&f->kcache, n_el, sizeof(float), "KV cache (keys)"));
        BB_CALL(bb_calloc((void **)&f->vcache, n_el, sizeof(float), "KV cache (values)"));
    }
    /* Positions after the ones fed now hold stale entries; they are never read. */
    f->n_cached = pos0;
    BB_CALL(run(f, tokens, 1, n, pos0, 1, logits, NULL));
    f->n_cached = pos0 + n;
    return BB_OK;
}

/* ---- generation ------------------------------------------------------------------- */

int bb_argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best] || (isnan(logits[best]) && !isnan(logits[i]))) best = i;
    return best;
}

/* A draw from softmax(logits / temperature) with the uniform number u in [0, 1). */
static int sample(const float *logits, int n, float temperature, double u) {
    int top = bb_argmax(logits, n);
    double mx = logits[top], sum = 0;
    for (int i = 0; i < n; i++) sum += isfinite(logits[i]) ? exp((logits[i] - mx) / temperature) : 0.0;
    double target = u * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += isfinite(logits[i]) ? exp((logits[i] - mx) / temperature) : 0.0;
        if (acc > target) return i;
    }
    return top;
}

bb_status bb_forward_generate(bb_forward *f, const int *prompt, int n_prompt, int steps, float temperature,
                              uint64_t seed, bb_generate_token_fn on_token, void *ud, int *out, int *n_out) {
    *n_out = 0;
    BB_CHECK(n_prompt > 0, BB_ERR_ARG, "generation needs a prompt of at least one token (BOS)");
    BB_CHECK(temperature >= 0 && isfinite(temperature), BB_ERR_ARG, "temperature %g must be >= 0", (double)temperature);
    int V = f->c.vocab_size;
    if (steps > f->cache_len) steps = f->cache_len;
    float *logits;
    BB_CALL(bb_malloc((void **)&logits, (size_t)V * sizeof *logits, "logits"));
    bb_rng rng = bb_rng_make(seed, bb_rng_stream_id("generate.sample"));
    bb_status st = BB_OK;
    int token = prompt[0];
    for (int pos = 0; pos < steps; pos++) {
        BB_CALL_GOTO(st, done, bb_forward_decode(f, &token, 1, pos, logits));
        int next = pos + 1 < n_prompt ? prompt[pos + 1]
                   : temperature == 0 ? bb_argmax(logits, V)
                                      : sample(logits, V, temperature, bb_rng_uniform(rng, (uint64_t)pos));
        if (next == f->c.bos_id || next == f->c.eos_id) break;
        if (on_token) BB_CALL_GOTO(st, done, on_token(ud, token, next));
        out[(*n_out)++] = next;
        token = next;
    }
done:
    free(logits);
    return st;
}
