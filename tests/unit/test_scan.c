/* test_scan.c — the spectral scan on synthetic:tiny: planted low rank found, tensor selection,
 * output files (JSON parsed back, CSV, SVG), determinism, and the SVG writer's edge cases. */
#include <lapacke.h>

#include "compress/scan.h"
#include "core/file.h"
#include "core/log.h"
#include "core/svg.h"
#include "io/json.h"
#include "io/model.h"
#include "test.h"

static bb_model *tiny;

static const bb_scan_entry *find(const bb_scan_result *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->e[i].name, name)) return &r->e[i];
    return NULL;
}

/* synthetic models plant ~60 % of each matrix's energy in a rank-16 part */
static void test_planted_rank(void) {
    bb_scan_opts o;
    bb_scan_opts_default(&o);
    o.rank = 32;
    bb_scan_result *r = NULL;
    EXPECT_OK(bb_scan_model(tiny, &o, &r));
    if (!r) return;
    EXPECT(r->n == tiny->cfg.n_layers * BB_LIN_COUNT, "%d matrices, expected %d", r->n,
           tiny->cfg.n_layers * BB_LIN_COUNT);
    for (int i = 0; i < r->n; i++) {
        const bb_scan_entry *e = &r->e[i];
        const bb_rsvd_result *s = &e->svd;
        EXPECT(s->rank50 >= 1 && s->rank50 <= 16, "%s: rank at 50 %% energy %d, planted rank 16", e->name, s->rank50);
        EXPECT(s->energy[15] >= 0.6, "%s: top 16 hold %.3f of the energy", e->name, s->energy[15]);
        /* ||W - U S V^T||^2 = ||W||^2 - sum s_i^2 for the SVD's own factors */
        double top = s->energy[s->k - 1];
        EXPECT(fabs(s->residual * s->residual - (1 - top)) < 1e-3, "%s: residual^2 %.6f vs 1 - E(R) %.6f", e->name,
               s->residual * s->residual, 1 - top);
        EXPECT(s->orth_u < 1e-4 && s->orth_v < 1e-4, "%s: orthogonality %.2g %.2g", e->name, s->orth_u, s->orth_v);
        EXPECT(e->layer == i / BB_LIN_COUNT && !strcmp(e->kind, bb_linear_name((bb_linear_kind)(i % BB_LIN_COUNT))),
               "%s: layer %d kind %s", e->name, e->layer, e->kind);
    }
    /* the leading singular values of one matrix against LAPACK's full SVD */
    const bb_scan_entry *e = find(r, "blk.1.attn_q.weight");
    EXPECT(e != NULL, "blk.1.attn_q.weight scanned");
    if (e) {
        int64_t m = e->rows, n = e->cols;
        float *w = malloc(sizeof(float) * (size_t)(m * n)), *sv = malloc(sizeof(float) * (size_t)n), dummy;
        EXPECT_OK(bb_tensor_read_f32(&tiny->layers[1].wq, 0, m, w));
        /* column-major A^T: same singular values, and Debian's LAPACKE row-major path rejects jobz 'N' */
        EXPECT(LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', (int)n, (int)m, w, (int)n, sv, &dummy, 1, &dummy, 1) == 0,
               "sgesdd");
        /* The planted directions converge fast; sigma_i in the flat noise floor
         * (i > 16 here) only to a few percent with q = 2, which moves E(R) little. */
        double lead = 0, all = 0, fro2 = 0, top = 0;
        for (int i = 0; i < 32; i++) {
            double rel = fabs(e->svd.s[i] - sv[i]) / sv[i];
            if (i < 8) lead = fmax(lead, rel);
            all = fmax(all, rel);
            top += (double)sv[i] * sv[i];
        }
        for (int i = 0; i < n; i++) fro2 += (double)sv[i] * sv[i];
        double de = e->svd.energy[31] - top / fro2;
        printf(
            "  blk.1.attn_q (128, 128), R=32 p=8 q=2 vs sgesdd: max relative error sigma_1..8 %.2e, sigma_1..32 %.2e; "
            "E(32) %.5f vs exact %.5f\n",
            lead, all, e->svd.energy[31], top / fro2);
        EXPECT(lead < 1e-3, "sigma_1..8 max relative error %.3g", lead);
        EXPECT(all < 0.1, "sigma_1..32 max relative error %.3g", all);
        EXPECT(de <= 1e-6 && de > -0.01, "E(32) %.6f vs exact %.6f", e->svd.energy[31], top / fro2);
        double exact[32], cum = 0;
        for (int i = 0; i < 32; i++) exact[i] = (cum += (double)sv[i] * sv[i]) / fro2;
        EXPECT(e->svd.rank50 == bb_rsvd_rank_at(exact, 32, 0.5) && e->svd.rank90 == bb_rsvd_rank_at(exact, 32, 0.9),
               "ranks %d %d vs exact %d %d", e->svd.rank50, e->svd.rank90, bb_rsvd_rank_at(exact, 32, 0.5),
               bb_rsvd_rank_at(exact, 32, 0.9));
        free(w);
        free(sv);
    }
    bb_scan_result_destroy(&r);
    EXPECT(r == NULL, "destroy nulls");
    bb_scan_result_destroy(&r);
}

static void test_selection(void) {
    bb_scan_opts o;
    bb_scan_opts_default(&o);
    o.rank = 8;
    o.power_iters = 1;
    bb_scan_result *r = NULL;
    o.filter = "attn_q";
    EXPECT_OK(bb_scan_model(tiny, &o, &r));
    EXPECT(r && r->n == 4 && find(r, "blk.3.attn_q.weight"), "substring attn_q: %d", r ? r->n : -1);
    bb_scan_result_destroy(&r);
    o.filter = "^blk\\.[01]\\.ffn_(up|down)";
    EXPECT_OK(bb_scan_model(tiny, &o, &r));
    EXPECT(r && r->n == 4 && find(r, "blk.1.ffn_down.weight") && !find(r, "blk.1.ffn_gate.weight"), "regex: %d",
           r ? r->n : -1);
    bb_scan_result_destroy(&r);
    o.filter = "attn_q(";
    bb_log_set_level(BB_LOG_ERROR); /* the expected fallback warning */
    EXPECT_ERR(bb_scan_model(tiny, &o, &r), BB_ERR_ARG, "no weight matrix matches --tensors 'attn_q('");
    bb_log_set_level(BB_LOG_INFO);
    EXPECT(r == NULL, "no result on error");
    o.filter = "token_embd";
    EXPECT_ERR(bb_scan_model(tiny, &o, &r), BB_ERR_ARG, "add --all");
    o.all = 1;
    EXPECT_OK(bb_scan_model(tiny, &o, &r));
    EXPECT(r && r->n == 1 && r->e[0].layer == -1 && !strcmp(r->e[0].kind, "token_embd"), "--all adds token_embd");
    bb_scan_result_destroy(&r);
    o.filter = NULL;
    EXPECT_OK(bb_scan_model(tiny, &o, &r));
    int want = tiny->cfg.n_layers * BB_LIN_COUNT + 1 + !tiny->cfg.tied_embeddings;
    EXPECT(r && r->n == want, "--all: %d matrices, expected %d", r ? r->n : -1, want);
    bb_scan_result_destroy(&r);
    o.rank = 0;
    EXPECT_ERR(bb_scan_model(tiny, &o, &r), BB_ERR_ARG, "rank 0");
}

static char *slurp(const char *dir, const char *name, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = NULL;
    EXPECT_OK(bb_file_read_all(path, 64u << 20, &text, len));
    return text;
}

static void test_outputs(void) {
    bb_scan_opts o;
    bb_scan_opts_default(&o);
    o.rank = 24;
    bb_scan_result *r = NULL, *again = NULL;
    EXPECT_OK(bb_scan_model(tiny, &o, &r));
    EXPECT_OK(bb_scan_model(tiny, &o, &again));
    if (!r || !again) goto out;
    for (int i = 0; i < r->n; i++)
        EXPECT(!memcmp(r->e[i].svd.s, again->e[i].svd.s, sizeof(float) * (size_t)r->e[i].svd.k) &&
                   r->e[i].svd.residual == again->e[i].svd.residual,
               "%s: same seed, different result", r->e[i].name);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/scan_out/nested", test_tmpdir());
    EXPECT_OK(bb_scan_write(r, dir));

    size_t len;
    char *json = slurp(dir, "scan.json", &len);
    bb_json_doc *doc = NULL;
    if (json) EXPECT_OK(bb_json_parse(json, len, "scan.json", &doc));
    if (doc) {
        const bb_json *root = bb_json_root(doc), *ts = bb_json_get(root, "tensors");
        EXPECT(bb_json_num(bb_json_get(root, "rank")) == 24, "rank in JSON");
        EXPECT(bb_json_len(ts) == (size_t)r->n, "%zu tensors in JSON", bb_json_len(ts));
        const bb_json *t0 = bb_json_at(ts, 0);
        EXPECT(!strcmp(bb_json_str(bb_json_get(t0, "name"), NULL), r->e[0].name), "first name");
        EXPECT(bb_json_len(bb_json_get(t0, "sigma")) == 24 && bb_json_len(bb_json_get(t0, "energy")) == 24,
               "arrays of k");
        EXPECT((float)bb_json_num(bb_json_at(bb_json_get(t0, "sigma"), 0)) == r->e[0].svd.s[0],
               "sigma_1 round-trips (%%.9g)");
        EXPECT(bb_json_num(bb_json_get(t0, "rank50")) == r->e[0].svd.rank50, "rank50");
        EXPECT(bb_json_type(bb_json_get(t0, "rank99")) == BB_JSON_NULL, "rank99 beyond R is null");
    }
    bb_json_doc_destroy(&doc);
    free(json);

    char *csv = slurp(dir, "scan.csv", &len);
    if (csv) {
        long lines = 0;
        for (size_t i = 0; i < len; i++) lines += csv[i] == '\n';
        EXPECT(lines == 1 + (long)r->n * 24, "CSV lines %ld", lines);
        const char *head =
            "tensor,kind,layer,rows,cols,i,sigma,sigma_rel,energy\nblk.0.attn_q.weight,attn_q,0,128,128,1,";
        EXPECT(!strncmp(csv, head, strlen(head)), "CSV header and first row: %.100s", csv);
    }
    free(csv);
    const char *plots[2] = {"spectra.svg", "energy.svg"};
    for (int p = 0; p < 2; p++) {
        char *svg = slurp(dir, plots[p], &len);
        if (!svg) continue;
        EXPECT(!strncmp(svg, "<svg ", 5) && strstr(svg, "</svg>") && strstr(svg, "<polyline"), "%s is an SVG plot",
               plots[p]);
        /* 28 tensors: one line per kind, mean over the 4 layers */
        EXPECT(strstr(svg, "ffn_down (mean of 4)") != NULL, "%s legend per kind", plots[p]);
        free(svg);
    }
out:
    bb_scan_result_destroy(&r);
    bb_scan_result_destroy(&again);
}

static void test_svg(void) {
    double y[5] = {1, 0.5, 0, 0.01, NAN}, x[5] = {0, 1, 2, 3, 4};
    bb_svg_series s[2] = {{"a<b & \"c\"", x, y, 5}, {NULL, NULL, y, 2}};
    bb_svg_plot p = {.title = "t", .xlabel = "x", .ylabel = "y", .log_y = 1};
    char *text = NULL;
    size_t len = 0;
    EXPECT_OK(bb_svg_render(&p, s, 2, &text, &len));
    if (text) {
        EXPECT(strlen(text) == len, "length");
        EXPECT(strstr(text, "a&lt;b &amp; &quot;c&quot;") != NULL, "legend text escaped");
        /* the zero breaks the first line on a log axis: two polylines for it, one for the second series */
        int lines = 0;
        for (const char *q = text; (q = strstr(q, "<polyline")); q++) lines++;
        EXPECT(lines == 3, "%d polylines", lines);
    }
    free(text);
    double bad[2] = {0, -1};
    bb_svg_series z = {"z", NULL, bad, 2};
    EXPECT_ERR(bb_svg_render(&p, &z, 1, &text, &len), BB_ERR_ARG, "a log axis needs positive values");
    EXPECT(text == NULL, "no text on error");
}

int main(void) {
    EXPECT_OK(bb_model_open("synthetic:tiny", &tiny));
    if (!tiny) return TEST_DONE();
    TEST_RUN(test_planted_rank);
    TEST_RUN(test_selection);
    TEST_RUN(test_outputs);
    TEST_RUN(test_svg);
    bb_model_destroy(&tiny);
    return TEST_DONE();
}
