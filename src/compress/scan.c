/* scan.c — the spectral scan: randomized SVD of every selected weight matrix, table, JSON/CSV and SVG plots. */
#include "compress/scan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/events.h"
#include "core/file.h"
#include "core/log.h"
#include "core/svg.h"

void bb_scan_opts_default(bb_scan_opts *o) {
    memset(o, 0, sizeof *o);
    o->rank = 64;
    o->oversample = 8;
    o->power_iters = 2;
}

void bb_scan_result_destroy(bb_scan_result **r) {
    if (!r || !*r) return;
    for (int i = 0; i < (*r)->n; i++) bb_rsvd_result_clear(&(*r)->e[i].svd);
    free((*r)->e);
    free(*r);
    *r = NULL;
}

/* ---- selection ------------------------------------------------------------ */

/* The filter: a compiled PCRE2 pattern, or a plain substring when the pattern
 * does not compile (names are full of '.', which a regex reads as "any"). */
typedef struct {
    const char *text;
    pcre2_code *re;
    pcre2_match_data *md;
} name_filter;

static bb_status filter_init(name_filter *f, const char *pattern) {
    memset(f, 0, sizeof *f);
    if (!pattern || !*pattern) return BB_OK;
    f->text = pattern;
    int err;
    PCRE2_SIZE off;
    f->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    if (!f->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        bb_warn("scan: --tensors '%s' is not a regular expression (%s at offset %zu); matching it as a plain substring",
                pattern, (const char *)msg, (size_t)off);
        return BB_OK;
    }
    f->md = pcre2_match_data_create_from_pattern(f->re, NULL);
    if (!f->md) {
        pcre2_code_free(f->re);
        f->re = NULL;
        return bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: PCRE2 match data for '%s'", pattern);
    }
    return BB_OK;
}

static int filter_match(const name_filter *f, const char *name) {
    if (!f->text) return 1;
    if (!f->re) return strstr(name, f->text) != NULL;
    return pcre2_match(f->re, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, f->md, NULL) >= 0;
}

static void filter_free(name_filter *f) {
    pcre2_match_data_free(f->md);
    pcre2_code_free(f->re);
    memset(f, 0, sizeof *f);
}

typedef struct {
    const bb_tensor *t;
    const char *kind;
    int layer;
} pick;

/* The matrices to scan, in model order: the 7 linear kinds of each block, then
 * token_embd and output with `all`. *picks is malloc'd. */
static bb_status select_matrices(const bb_model *m, const bb_scan_opts *o, pick **picks, int *count) {
    *picks = NULL;
    *count = 0;
    int cap = m->cfg.n_layers * BB_LIN_COUNT + 2;
    pick *p;
    BB_MALLOC(p, (size_t)cap * sizeof *p, "scan selection");
    name_filter f;
    bb_status st = filter_init(&f, o->filter);
    if (st != BB_OK) {
        free(p);
        return bb_trace(st, __FILE__, __LINE__, "filter_init");
    }
    int n = 0, l0 = o->layer_end > 0 ? o->layer_begin : 0, l1 = o->layer_end > 0 ? o->layer_end : m->cfg.n_layers;
    for (int l = l0; l < l1 && l < m->cfg.n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            const bb_tensor *t = bb_layer_linear(&m->layers[l], (bb_linear_kind)k);
            if (bb_tensor_present(t) && filter_match(&f, t->name))
                p[n++] = (pick){t, bb_linear_name((bb_linear_kind)k), l};
        }
    if (o->all) {
        if (bb_tensor_present(&m->tok_embd) && filter_match(&f, m->tok_embd.name))
            p[n++] = (pick){&m->tok_embd, "token_embd", -1};
        if (!m->cfg.tied_embeddings && bb_tensor_present(&m->output) && filter_match(&f, m->output.name))
            p[n++] = (pick){&m->output, "output", -1};
    }
    filter_free(&f);
    if (n == 0) {
        free(p);
        return bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                        "scan of %s: no weight matrix matches --tensors '%s' (names look like blk.0.attn_q.weight, "
                        "blk.0.ffn_down.weight%s)",
                        m->path, o->filter ? o->filter : "",
                        o->all ? ", token_embd.weight, output.weight" : "; add --all for token_embd/output");
    }
    *picks = p;
    *count = n;
    return BB_OK;
}

/* ---- the scan --------------------------------------------------------------- */

bb_status bb_scan_model(const bb_model *m, const bb_scan_opts *o, bb_scan_result **out) {
    *out = NULL;
    BB_CHECK(o->rank >= 1, BB_ERR_ARG, "scan: rank %d must be at least 1", o->rank);
    BB_CHECK(o->oversample >= 0, BB_ERR_ARG, "scan: oversample %d must not be negative", o->oversample);
    BB_CHECK(o->power_iters >= 0, BB_ERR_ARG, "scan: power_iters %d must not be negative", o->power_iters);
    pick *picks;
    int n;
    BB_CALL(select_matrices(m, o, &picks, &n));
    bb_scan_result *r = NULL;
    bb_status st = bb_calloc((void **)&r, 1, sizeof *r, "scan result");
    if (st == BB_OK) st = bb_calloc((void **)&r->e, (size_t)n, sizeof *r->e, "scan entries");
    if (st != BB_OK) {
        free(picks);
        if (r) free(r);
        return bb_trace(st, __FILE__, __LINE__, "scan result");
    }
    snprintf(r->model, sizeof r->model, "%s", m->path);
    r->rank = o->rank;
    r->oversample = o->oversample;
    r->power_iters = o->power_iters;
    r->seed = o->seed;

    bb_progress prog;
    if (o->progress) bb_progress_begin(&prog, "scan", n);
    double t0 = bb_now();
    for (int i = 0; i < n; i++) {
        const bb_tensor *t = picks[i].t;
        bb_scan_entry *e = &r->e[i];
        snprintf(e->name, sizeof e->name, "%s", t->name);
        snprintf(e->kind, sizeof e->kind, "%s", picks[i].kind);
        e->layer = picks[i].layer;
        e->rows = bb_tensor_rows(t);
        e->cols = bb_tensor_cols(t);
        bb_rsvd_opts ro;
        bb_rsvd_opts_default(&ro);
        int64_t mn = e->rows < e->cols ? e->rows : e->cols;
        ro.rank = o->rank < mn ? o->rank : (int)mn;
        ro.oversample = o->oversample;
        ro.power_iters = o->power_iters;
        ro.seed = o->seed;
        ro.backend = o->backend;
        bb_event_begin("scan.rsvd");
        st = bb_rsvd_tensor(t, &ro, &e->svd);
        /* bytes: the matrix is read 2q + 3 times (sketch, power iterations, B, residual) */
        bb_event_end("scan.rsvd", e->svd.flops, 4.0 * (double)e->rows * (double)e->cols * (2.0 * o->power_iters + 3.0));
        if (st != BB_OK) {
            bb_trace(st, __FILE__, __LINE__, "bb_rsvd_tensor");
            r->n = i;
            break;
        }
        r->n = i + 1;
        r->flops += e->svd.flops;
        if (o->progress) bb_progress_update(&prog, i + 1, t->name);
    }
    if (o->progress) bb_progress_end(&prog);
    r->seconds = bb_now() - t0;
    free(picks);
    if (st != BB_OK) {
        bb_scan_result_destroy(&r);
        return st;
    }
    *out = r;
    return BB_OK;
}

/* ---- between ranks -------------------------------------------------------------- */

bb_status bb_scan_pack(const bb_scan_result *r, void **buf, size_t *bytes) {
    *buf = NULL;
    *bytes = 0;
    size_t n = 0;
    for (int i = 0; i < r->n; i++) n += sizeof(bb_scan_entry) + (size_t)r->e[i].svd.k * (sizeof(float) + sizeof(double));
    char *b = malloc(n ? n : 1), *p = b;
    BB_CHECK(b, BB_ERR_OOM, "scan results: %zu bytes", n);
    for (int i = 0; i < r->n; i++) {
        bb_scan_entry e = r->e[i];
        int k = e.svd.k;
        e.svd.s = NULL, e.svd.u = NULL, e.svd.v = NULL, e.svd.energy = NULL;
        memcpy(p, &e, sizeof e);
        p += sizeof e;
        memcpy(p, r->e[i].svd.s, (size_t)k * sizeof(float));
        p += (size_t)k * sizeof(float);
        memcpy(p, r->e[i].svd.energy, (size_t)k * sizeof(double));
        p += (size_t)k * sizeof(double);
    }
    *buf = b;
    *bytes = n;
    return BB_OK;
}

bb_status bb_scan_unpack(bb_scan_result *r, const void *buf, size_t bytes) {
    const char *p = buf, *end = p + bytes;
    while (p < end) {
        BB_CHECK((size_t)(end - p) >= sizeof(bb_scan_entry), BB_ERR_ARG, "scan results: a truncated entry");
        bb_scan_entry e;
        memcpy(&e, p, sizeof e);
        p += sizeof e;
        size_t ks = (size_t)(e.svd.k > 0 ? e.svd.k : 0);
        BB_CHECK(e.svd.k >= 0 && (size_t)(end - p) >= ks * (sizeof(float) + sizeof(double)), BB_ERR_ARG,
                 "scan results: entry %s has %d values but the blob ends first", e.name, e.svd.k);
        bb_scan_entry *grown = realloc(r->e, sizeof *grown * (size_t)(r->n + 1));
        BB_CHECK(grown, BB_ERR_OOM, "scan entries");
        r->e = grown;
        e.svd.s = malloc(ks ? ks * sizeof(float) : 1);
        e.svd.energy = malloc(ks ? ks * sizeof(double) : 1);
        if (!e.svd.s || !e.svd.energy) {
            free(e.svd.s), free(e.svd.energy);
            return bb_error(BB_ERR_OOM, __FILE__, __LINE__, "scan entry %s", e.name);
        }
        memcpy(e.svd.s, p, ks * sizeof(float));
        p += ks * sizeof(float);
        memcpy(e.svd.energy, p, ks * sizeof(double));
        p += ks * sizeof(double);
        r->e[r->n++] = e;
        r->flops += e.svd.flops;
    }
    return BB_OK;
}

/* ---- outputs ----------------------------------------------------------------- */

static void rank_text(char *buf, size_t n, int rank, int k) {
    if (rank < 0)
        snprintf(buf, n, ">%d", k);
    else
        snprintf(buf, n, "%d", rank);
}

void bb_scan_print_table(const bb_scan_result *r, FILE *f) {
    fprintf(f, "spectral scan of %s: rank %d, oversample %d, power iterations %d, seed %llu\n", r->model, r->rank,
            r->oversample, r->power_iters, (unsigned long long)r->seed);
    fprintf(f, "%-28s %-14s %10s %10s %10s %6s %6s %6s %7s %9s\n", "tensor", "shape", "||W||_F", "sigma_1", "sigma_R",
            "r50%", "r90%", "r99%", "E(R)", "residual");
    for (int i = 0; i < r->n; i++) {
        const bb_scan_entry *e = &r->e[i];
        const bb_rsvd_result *s = &e->svd;
        char shape[40], a[16], b[16], c[16];
        snprintf(shape, sizeof shape, "(%lld, %lld)", (long long)e->rows, (long long)e->cols);
        rank_text(a, sizeof a, s->rank50, s->k);
        rank_text(b, sizeof b, s->rank90, s->k);
        rank_text(c, sizeof c, s->rank99, s->k);
        fprintf(f, "%-28s %-14s %10.4g %10.4g %10.4g %6s %6s %6s %6.2f%% %9.5f\n", e->name, shape, s->fro, s->s[0],
                s->s[s->k - 1], a, b, c, 100.0 * s->energy[s->k - 1], s->residual);
    }
    double gf = r->seconds > 0 ? r->flops / r->seconds * 1e-9 : 0;
    fprintf(f,
            "%d matrices in %.2f s (%.1f GFLOP/s). r50/r90/r99: smallest rank reaching that share of ||W||_F^2; "
            "E(R): share of the top R.\n",
            r->n, r->seconds, gf);
}

/* JSON has no NaN/Inf; the scan rejects them on input, so every number is finite. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_rank(FILE *f, const char *key, int rank) {
    if (rank < 0)
        fprintf(f, "\"%s\": null", key);
    else
        fprintf(f, "\"%s\": %d", key, rank);
}

/* Text of a file built with a memory stream, then written atomically. */
typedef void (*emit_fn)(const bb_scan_result *r, FILE *f);

static bb_status write_text(const char *dir, const char *name, const bb_scan_result *r, emit_fn emit) {
    char path[1200];
    BB_CALL(bb_path_join(path, sizeof path, dir, name));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    BB_CHECK(f, BB_ERR_OOM, "out of memory: text buffer for %s", path);
    emit(r, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory while building %s", path);
    }
    bb_status st = bb_file_write_atomic(path, buf, len);
    free(buf);
    BB_CALL(st);
    return BB_OK;
}

static void emit_json(const bb_scan_result *r, FILE *f) {
    fprintf(f, "{\n  \"model\": ");
    json_str(f, r->model);
    fprintf(f, ",\n  \"rank\": %d,\n  \"oversample\": %d,\n  \"power_iters\": %d,\n  \"seed\": %llu,\n", r->rank,
            r->oversample, r->power_iters, (unsigned long long)r->seed);
    fprintf(f, "  \"energy_definition\": \"sum_{i<=k} sigma_i^2 / ||W||_F^2\",\n  \"seconds\": %.6f,\n  \"tensors\": [",
            r->seconds);
    for (int i = 0; i < r->n; i++) {
        const bb_scan_entry *e = &r->e[i];
        const bb_rsvd_result *s = &e->svd;
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, e->name);
        fprintf(f, ", \"kind\": ");
        json_str(f, e->kind);
        fprintf(f, ", \"layer\": %d, \"shape\": [%lld, %lld], \"k\": %d, \"fro\": %.9g, ", e->layer, (long long)e->rows,
                (long long)e->cols, s->k, s->fro);
        json_rank(f, "rank50", s->rank50);
        fprintf(f, ", ");
        json_rank(f, "rank90", s->rank90);
        fprintf(f, ", ");
        json_rank(f, "rank99", s->rank99);
        fprintf(f,
                ", \"energy_top\": %.9g, \"residual\": %.9g, \"orth_u\": %.3g, \"orth_v\": %.3g, \"seconds\": %.6f,\n",
                s->energy[s->k - 1], s->residual, s->orth_u, s->orth_v, s->seconds);
        fprintf(f, "     \"sigma\": [");
        for (int j = 0; j < s->k; j++) fprintf(f, "%s%.9g", j ? ", " : "", s->s[j]);
        fprintf(f, "],\n     \"energy\": [");
        for (int j = 0; j < s->k; j++) fprintf(f, "%s%.9g", j ? ", " : "", s->energy[j]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n}\n");
}

static void emit_csv(const bb_scan_result *r, FILE *f) {
    fprintf(f, "tensor,kind,layer,rows,cols,i,sigma,sigma_rel,energy\n");
    for (int i = 0; i < r->n; i++) {
        const bb_scan_entry *e = &r->e[i];
        const bb_rsvd_result *s = &e->svd;
        for (int j = 0; j < s->k; j++)
            fprintf(f, "%s,%s,%d,%lld,%lld,%d,%.9g,%.9g,%.9g\n", e->name, e->kind, e->layer, (long long)e->rows,
                    (long long)e->cols, j + 1, s->s[j], s->s[0] > 0 ? s->s[j] / s->s[0] : 0.0, s->energy[j]);
    }
}

/* Plot lines: per tensor when there are few, else the mean over the tensors of
 * each kind (first-appearance order), over the ranks all of them have. */
typedef struct {
    char label[BB_TENSOR_NAME_MAX + 32];
    int count, len;
    double *spec, *energy; /* (len) */
} plot_line;

#define PER_TENSOR_MAX 12

static bb_status plot_lines(const bb_scan_result *r, plot_line **out, int *count) {
    int per_tensor = r->n <= PER_TENSOR_MAX;
    plot_line *pl;
    BB_CALLOC(pl, (size_t)r->n, "plot lines");
    int n = 0;
    for (int i = 0; i < r->n; i++) {
        const bb_scan_entry *e = &r->e[i];
        int g = n;
        if (!per_tensor)
            for (g = 0; g < n && strcmp(pl[g].label, e->kind) != 0; g++) {
            }
        if (g == n) {
            snprintf(pl[n].label, sizeof pl[n].label, "%s", per_tensor ? e->name : e->kind);
            pl[n].len = e->svd.k;
            n++;
        } else if (e->svd.k < pl[g].len) {
            pl[g].len = e->svd.k;
        }
        pl[g].count++;
    }
    bb_status st = BB_OK;
    for (int g = 0; g < n && st == BB_OK; g++) {
        st = bb_calloc((void **)&pl[g].spec, (size_t)pl[g].len, sizeof(double), "plot spectrum");
        if (st == BB_OK) st = bb_calloc((void **)&pl[g].energy, (size_t)pl[g].len, sizeof(double), "plot energy");
    }
    for (int i = 0; i < r->n && st == BB_OK; i++) {
        const bb_scan_entry *e = &r->e[i];
        int g = 0;
        while (strcmp(pl[g].label, per_tensor ? e->name : e->kind) != 0) g++;
        double s1 = e->svd.s[0];
        for (int j = 0; j < pl[g].len; j++) {
            pl[g].spec[j] += (s1 > 0 ? e->svd.s[j] / s1 : 0.0) / pl[g].count;
            pl[g].energy[j] += e->svd.energy[j] / pl[g].count;
        }
    }
    if (!per_tensor)
        for (int g = 0; g < n; g++) {
            char lab[sizeof pl[g].label];
            snprintf(lab, sizeof lab, "%.64s (mean of %d)", pl[g].label, pl[g].count);
            memcpy(pl[g].label, lab, sizeof lab);
        }
    *out = pl;
    *count = n;
    if (st != BB_OK) return bb_trace(st, __FILE__, __LINE__, "plot lines");
    return BB_OK;
}

static bb_status write_plots(const bb_scan_result *r, const char *dir) {
    plot_line *pl = NULL;
    int n = 0;
    bb_svg_series *ser = NULL;
    bb_status st = plot_lines(r, &pl, &n);
    if (st == BB_OK) st = bb_calloc((void **)&ser, (size_t)(n ? n : 1), sizeof *ser, "plot series");
    char path[1200], title[1400];
    const char *model = strrchr(r->model, '/') && strrchr(r->model, '/')[1] ? strrchr(r->model, '/') + 1 : r->model;
    if (st == BB_OK) {
        for (int g = 0; g < n; g++) ser[g] = (bb_svg_series){pl[g].label, NULL, pl[g].spec, pl[g].len};
        snprintf(title, sizeof title, "Singular value spectra: %s (top %d, normalized by sigma_1)", model, r->rank);
        bb_svg_plot p = {.title = title, .xlabel = "index i", .ylabel = "sigma_i / sigma_1", .log_y = 1};
        st = bb_path_join(path, sizeof path, dir, "spectra.svg");
        if (st == BB_OK) st = bb_svg_write(path, &p, ser, n);
    }
    if (st == BB_OK) {
        for (int g = 0; g < n; g++) ser[g].y = pl[g].energy;
        static const double guides[3] = {0.5, 0.9, 0.99};
        snprintf(title, sizeof title, "Explained energy: %s", model);
        bb_svg_plot p = {.title = title,
                         .xlabel = "rank k",
                         .ylabel = "sum_{i<=k} sigma_i^2 / ||W||_F^2",
                         .y_min = 0,
                         .y_max = 1,
                         .hlines = guides,
                         .n_hlines = 3};
        st = bb_path_join(path, sizeof path, dir, "energy.svg");
        if (st == BB_OK) st = bb_svg_write(path, &p, ser, n);
    }
    for (int g = 0; pl && g < n; g++) {
        free(pl[g].spec);
        free(pl[g].energy);
    }
    free(pl);
    free(ser);
    BB_CALL(st);
    return BB_OK;
}

bb_status bb_scan_write(const bb_scan_result *r, const char *dir) {
    BB_CHECK(r->n > 0, BB_ERR_ARG, "scan of %s: nothing to write", r->model);
    BB_CALL(bb_mkdir_p(dir));
    BB_CALL(write_text(dir, "scan.json", r, emit_json));
    BB_CALL(write_text(dir, "scan.csv", r, emit_csv));
    BB_CALL(write_plots(r, dir));
    return BB_OK;
}
