/* test_report.c — the run report from the hand-written fixture tests/data/report/run: CSV values equal the
 * fixture's numbers, every plot is written and referenced, missing inputs are notes, corrupt input one error. */
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/svg.h"
#include "io/model.h"
#include "mpi/wave_h5.h"
#include "pipeline/report.h"
#include "test.h"

static char *slurp(const char *dir, const char *name) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = NULL;
    size_t n = 0;
    if (bb_file_read_all(path, 1 << 26, &text, &n) != BB_OK) return NULL;
    return text;
}

static void put(const char *dir, const char *name, const char *text) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    EXPECT(test_write_file(path, text, strlen(text)) == 0, "cannot write %s", path);
}

static void copy_fixture(const char *name, const char *dst) {
    char src[1200];
    snprintf(src, sizeof src, "%s/tests/data/report/run", getenv("BB_SOURCE") ? getenv("BB_SOURCE") : "..");
    char sub[1400];
    snprintf(sub, sizeof sub, "%s/scan", dst);
    EXPECT_OK(bb_mkdir_p(sub));
    const char *files[] = {"metrics.json", "config.yaml", "scan/scan.json"};
    for (int i = 0; i < 3; i++) {
        char *t = slurp(src, files[i]);
        EXPECT(t != NULL, "fixture %s/%s missing (%s)", src, files[i], name);
        if (t) put(dst, files[i], t);
        free(t);
    }
}

static int exists(const char *dir, const char *name) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return bb_path_exists(path);
}

/* Wave file with every usage value 0.125 (bin 2 of 20) except row 0 of blk.0.attn_q at 1.0 (the last bin). */
static int64_t write_wave(const char *path, int wave) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=2,vocab=128", &m));
    if (!m) return 0;
    enum { N = 2 * BB_LIN_COUNT };
    const bb_tensor *tensors[N];
    bb_mask *masks[N] = {0};
    double *u[N], *s[N];
    int64_t nb[N], total = 0;
    for (int i = 0; i < N; i++) {
        tensors[i] = bb_layer_linear(&m->layers[i / BB_LIN_COUNT], (bb_linear_kind)(i % BB_LIN_COUNT));
        int64_t rows = bb_tensor_rows(tensors[i]);
        EXPECT_OK(bb_mask_create(rows, bb_tensor_cols(tensors[i]), 1, &masks[i]));
        nb[i] = rows;
        total += rows;
        u[i] = calloc((size_t)rows * 2, sizeof(double));
        s[i] = u[i] + rows;
        for (int64_t r = 0; r < rows; r++) s[i][r] = 0.125;
    }
    s[0][0] = 1.0;
    bb_wave_h5 w = {.wave = wave,
                    .method = "wanda",
                    .pattern = "unstructured",
                    .usage_block = "row",
                    .config_hash = "x",
                    .n_layers = 2,
                    .tensors = tensors,
                    .masks = masks,
                    .u = (const double *const *)u,
                    .s = (const double *const *)s,
                    .n_blocks = nb};
    EXPECT_OK(bb_wave_h5_write(path, &w));
    for (int i = 0; i < N; i++) {
        bb_mask_destroy(&masks[i]);
        free(u[i]);
    }
    bb_model_destroy(&m);
    return total;
}

static void test_fixture(void) {
    char dir[1200], out[1300], path[1400];
    snprintf(dir, sizeof dir, "%s/report_fixture", test_tmpdir());
    copy_fixture("fixture", dir);
    snprintf(path, sizeof path, "%s/wave_1.h5", dir);
    int64_t blocks = write_wave(path, 1);
    put(dir, "wave_2.h5", "not an HDF5 file\n");
    put(dir, "wave_3.h5.tmp.123", "a temporary file the report must ignore\n");
    EXPECT_OK(bb_report_write(dir));
    snprintf(out, sizeof out, "%s/report", dir);

    const char *all[] = {"metrics.json",    "metrics.csv", "tensors.csv", "stages.csv",  "healing.csv",
                         "usage.csv",       "spectra.csv", "ppl.svg",     "kld.svg",     "time_waves.svg",
                         "time_stages.svg", "density.svg", "bits.svg",    "healing.svg", "usage.svg",
                         "spectra.svg",     "report.html"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) EXPECT(exists(out, all[i]), "report/%s missing", all[i]);

    /* metrics.csv: the fixture's waves, field for field */
    char *csv = slurp(out, "metrics.csv");
    EXPECT(csv && !strcmp(csv, "wave,ppl,dppl,kld,top1,sparsity,bits,lora_values,rolled_back,seconds_decay,"
                               "seconds_heal,seconds_reinforce,seconds_redistribute,seconds_eval,seconds_checkpoint,"
                               "seconds_total\n"
                               "0,5.19,0,0,1,0,0,0,0,0,0,0,0,0.5,0.25,0.75\n"
                               "1,5.25,0.0115606936,0.012,0.97,0.1,0,128,0,1.5,2.25,0.25,0.5,0.5,0.125,5.5\n"
                               "2,5.47,0.0539499037,0.031,0.93,0.2,4.5,256,1,1.25,2,0.25,0.5,0.5,0.125,4.625\n"),
           "metrics.csv is\n%s", csv ? csv : "(missing)");
    free(csv);
    /* tensors.csv: 4 tensors x 3 waves + header; two rows checked by value */
    csv = slurp(out, "tensors.csv");
    int lines = 0;
    for (const char *p = csv; p && *p; p++) lines += *p == '\n';
    EXPECT(lines == 13, "tensors.csv has %d lines, expected 13", lines);
    EXPECT(csv && strstr(csv, "\nblk.0.ffn_down.weight,0,ffn_down,64,172,1,0.85,0,0\n"), "tensors.csv row:\n%s",
           csv ? csv : "");
    EXPECT(csv && strstr(csv, "\nblk.1.attn_q.weight,1,attn_q,64,64,2,0.9,4,1\n"), "tensors.csv row:\n%s",
           csv ? csv : "");
    free(csv);
    csv = slurp(out, "stages.csv");
    EXPECT(csv && !strcmp(csv, "stage,seconds\nbaseline,1.25\ndensity,0.5\nwaves,10.875\nquantize,2\n"),
           "stages.csv:\n%s", csv);
    free(csv);
    csv = slurp(out, "healing.csv");
    lines = 0;
    for (const char *p = csv; p && *p; p++) lines += *p == '\n';
    EXPECT(lines == 1 + 4 + 3 + 5, "healing.csv has %d lines", lines);
    EXPECT(csv && strstr(csv, "\n2,blk.0,5,0.25\n"), "healing.csv:\n%s", csv ? csv : "");
    free(csv);
    /* spectra.csv: attn_q mean of [4,2,1,.5]/4 and [8,2,2,1]/8; ffn_down over the 3 values both have */
    csv = slurp(out, "spectra.csv");
    EXPECT(csv && strstr(csv, "attn_q,2,2,0.375\nattn_q,2,3,0.25\nattn_q,2,4,0.125\n"), "spectra.csv:\n%s",
           csv ? csv : "");
    EXPECT(csv && strstr(csv, "ffn_down,2,2,0.75\nffn_down,2,3,0.375\n") && !strstr(csv, "ffn_down,2,4"),
           "spectra.csv:\n%s", csv ? csv : "");
    free(csv);
    /* usage.csv: only wave 1 (wave_2.h5 is junk); all blocks in bin 2 but one in bin 19 */
    csv = slurp(out, "usage.csv");
    char want[128];
    snprintf(want, sizeof want, "\n1,0.1,0.15,%lld,", (long long)(blocks - 1));
    EXPECT(csv && strstr(csv, want), "usage.csv lacks %s:\n%.400s", want, csv ? csv : "");
    EXPECT(csv && strstr(csv, "\n1,0.95,1,1,"), "usage.csv: the block at s = 1 is not in the last bin");
    EXPECT(csv && strstr(csv, "\n1,0,0.05,0,0\n") && !strstr(csv, "\n2,"), "usage.csv:\n%.300s", csv ? csv : "");
    free(csv);

    /* plots: SVG documents; PPL with the dense and stop-loss lines (5.19 x 1.05 = 5.4495) */
    char *svg = slurp(out, "ppl.svg");
    EXPECT(svg && !strncmp(svg, "<svg ", 5) && strstr(svg, "</svg>"), "ppl.svg is not an SVG");
    EXPECT(svg && strstr(svg, ">5.19</text>") && strstr(svg, ">5.4495</text>"),
           "ppl.svg lacks the dense/threshold lines");
    EXPECT(svg && strstr(svg, "rolled back"), "ppl.svg lacks the rolled-back marker");
    free(svg);
    /* density of layer 0 after wave 1, size-weighted: (4096 * 0.9 + 11008 * 0.85) / 15104 */
    svg = slurp(out, "density.svg");
    snprintf(want, sizeof want, "<title>0, 1: %.6g</title>", (4096 * 0.9 + 11008 * 0.85) / 15104);
    EXPECT(svg && strstr(svg, want), "density.svg lacks %s", want);
    free(svg);
    /* bits: after the last wave assigning one; blk.1.ffn_down never got bits */
    svg = slurp(out, "bits.svg");
    EXPECT(svg && strstr(svg, "<title>0, ffn_down: 6.5</title>") && strstr(svg, "<title>1, ffn_down: none</title>"),
           "bits.svg cells");
    free(svg);
    svg = slurp(out, "healing.svg");
    EXPECT(svg && strstr(svg, ">wave 1</text>") && strstr(svg, ">wave 2</text>"), "healing.svg legend per wave");
    free(svg);

    /* report.html inlines and links every plot, shows the summary and what was left out */
    char *html = slurp(out, "report.html");
    const char *plots[] = {"ppl", "kld", "time_waves", "time_stages", "density", "bits", "healing", "usage", "spectra"};
    for (size_t i = 0; html && i < sizeof plots / sizeof plots[0]; i++) {
        char id[64], href[64];
        snprintf(id, sizeof id, "<figure id=\"%s\">\n<svg ", plots[i]);
        snprintf(href, sizeof href, "<a href=\"%s.svg\">", plots[i]);
        EXPECT(strstr(html, id) && strstr(html, href), "report.html lacks plot %s", plots[i]);
    }
    EXPECT(html && strstr(html, "<td>3.81 MiB</td><td>976.56 KiB (4.00x smaller)</td>"), "report.html size row");
    EXPECT(html && strstr(html, "<td>5.4700 (+5.39 %)</td>"), "report.html PPL row");
    EXPECT(html && strstr(html, "wave_2.h5 could not be read"), "report.html does not name the corrupt wave file");
    EXPECT(html && strstr(html, "<tr><th>total</th><th>14.62</th></tr>"), "report.html stage total");
    EXPECT(html && strstr(html, "<tr><td>2</td><td>blk.1.ffn_down.weight</td><td>4</td></tr>"),
           "report.html stress table");
    free(html);
}

static void test_missing_inputs(void) {
    char dir[1200], out[1300];
    snprintf(dir, sizeof dir, "%s/report_minimal", test_tmpdir());
    EXPECT_OK(bb_mkdir_p(dir));
    put(dir, "metrics.json", "{\"birdbone\": \"0.1.0\", \"run\": \"minimal\", \"dense\": {\"ppl\": 5.19}}");
    snprintf(out, sizeof out, "%s/report", dir);
    EXPECT_OK(bb_mkdir_p(out));
    put(dir, "report/ppl.svg", "<svg>stale</svg>");
    EXPECT_OK(bb_report_write(dir));
    snprintf(out, sizeof out, "%s/report", dir);
    EXPECT(exists(out, "report.html") && exists(out, "metrics.json"), "minimal report written");
    EXPECT(!exists(out, "ppl.svg"), "a stale ppl.svg from an earlier report survived");
    EXPECT(!exists(out, "metrics.csv") && !exists(out, "healing.svg") && !exists(out, "spectra.svg"),
           "files without their input were written");
    char *html = slurp(out, "report.html");
    EXPECT(html && strstr(html, "no waves in metrics.json") && strstr(html, "no healing curves") &&
               strstr(html, "no scan/scan.json") && strstr(html, "no wave_&lt;k&gt;.h5 files") &&
               strstr(html, "No plot"),
           "report.html notes:\n%s", html ? html : "(missing)");
    free(html);
}

/* More healing curves than can be told apart: one mean line per wave. */
static void test_many_heal_curves(void) {
    char dir[1200], out[1300];
    snprintf(dir, sizeof dir, "%s/report_heal", test_tmpdir());
    EXPECT_OK(bb_mkdir_p(dir));
    size_t cap = 1 << 16, n = 0;
    char *j = malloc(cap);
    n += (size_t)snprintf(j + n, cap - n, "{\"heal_curves\": [");
    for (int i = 0; i < 70; i++)
        n += (size_t)snprintf(j + n, cap - n, "%s{\"wave\": %d, \"name\": \"blk.%d\", \"loss\": [2, 1, 0.5]}",
                              i ? ", " : "", 1 + i / 40, i);
    snprintf(j + n, cap - n, "]}");
    put(dir, "metrics.json", j);
    free(j);
    EXPECT_OK(bb_report_write(dir));
    snprintf(out, sizeof out, "%s/report", dir);
    char *svg = slurp(out, "healing.svg");
    EXPECT(svg && strstr(svg, ">wave 1 (mean of 40)</text>") && strstr(svg, ">wave 2 (mean of 30)</text>"),
           "healing.svg legend of means");
    int lines = 0;
    for (const char *p = svg; p && (p = strstr(p, "<polyline")); p++) lines++;
    EXPECT(lines == 2, "healing.svg draws %d lines, expected 2 means", lines);
    free(svg);
}

/* Sections present but every value null: notes, never an error. */
static void test_all_null(void) {
    char dir[1200], out[1300];
    snprintf(dir, sizeof dir, "%s/report_null", test_tmpdir());
    EXPECT_OK(bb_mkdir_p(dir));
    put(dir, "metrics.json",
        "{\"waves\": [{\"wave\": 0, \"ppl\": 5, \"kld\": null}],"
        " \"tensors\": [{\"name\": \"t\", \"kind\": \"attn_q\", \"layer\": 0, \"density\": [null], \"bits\": [0]}],"
        " \"heal_curves\": [{\"wave\": 1, \"name\": \"blk.0\", \"loss\": [0, null]}]}");
    EXPECT_OK(bb_report_write(dir));
    snprintf(out, sizeof out, "%s/report", dir);
    EXPECT(exists(out, "ppl.svg") && !exists(out, "density.svg") && !exists(out, "healing.svg") &&
               !exists(out, "kld.svg") && !exists(out, "bits.svg"),
           "plots of null values were written");
    char *html = slurp(out, "report.html");
    EXPECT(html && strstr(html, "density.svg left out: heatmap") && strstr(html, "healing.svg left out: plot") &&
               strstr(html, "no KLD recorded") && strstr(html, "no bit widths assigned"),
           "report.html notes:\n%s", html ? html : "(missing)");
    free(html);
}

static void test_bad_input(void) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/report_bad", test_tmpdir());
    EXPECT_OK(bb_mkdir_p(dir));
    char path[1300];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    unlink(path);
    EXPECT_ERR(bb_report_write(dir), BB_ERR_IO, "metrics.json does not exist");
    EXPECT_ERR(bb_report_write("/nonexistent/run"), BB_ERR_IO, "run directory /nonexistent/run does not exist");
    put(dir, "metrics.json", "{\"waves\": [{\"wave\": 0, \"ppl\": 5.1},");
    EXPECT_ERR(bb_report_write(dir), BB_ERR_FORMAT, "metrics.json:1:");
    put(dir, "metrics.json", "{\"waves\": [{\"wave\": 0, \"ppl\": 5.1},\n {\"wave\": 1, \"ppl\": \"5.3\"}]}");
    EXPECT_ERR(bb_report_write(dir), BB_ERR_FORMAT,
               "metrics.json:2:21: waves[1].ppl: expected a number, found a string");
    put(dir, "metrics.json", "{\"waves\": [{\"ppl\": 5.1}]}");
    EXPECT_ERR(bb_report_write(dir), BB_ERR_FORMAT, "waves[0].wave is missing");
    put(dir, "metrics.json",
        "{\"tensors\": [{\"name\": \"a\", \"kind\": \"attn_q\", \"layer\": 0, \"density\": [1, \"x\"]}]}");
    EXPECT_ERR(bb_report_write(dir), BB_ERR_FORMAT, "tensors[0].density[1]: expected a number");
    put(dir, "metrics.json", "[1, 2]");
    EXPECT_ERR(bb_report_write(dir), BB_ERR_FORMAT, "the top level: expected an object, found an array");
    put(dir, "metrics.json", "{\"waves\": {}}");
    EXPECT_ERR(bb_report_write(dir), BB_ERR_FORMAT, "waves: expected an array");
}

static void test_svg_charts(void) {
    double v[6] = {1, 2, NAN, 4, 5, 6};
    const char *rows[2] = {"r<0>", "r1"};
    bb_svg_heatmap h = {.title = "h", .rows = 2, .cols = 3, .v = v, .row_labels = rows, .annotate = 1};
    char *svg = NULL;
    EXPECT_OK(bb_svg_heatmap_render(&h, &svg, NULL));
    EXPECT(svg && strstr(svg, "<title>r&lt;0&gt;, 2: none</title>") && strstr(svg, "<title>r1, 2: 6</title>"),
           "heatmap cells:\n%.300s", svg ? svg : "");
    /* the lowest value gets the lightest colour, the highest the darkest */
    EXPECT(svg && strstr(svg, "fill=\"#ffffd9\"><title>r&lt;0&gt;, 0: 1</title>") &&
               strstr(svg, "fill=\"#081d58\"><title>r1, 2: 6</title>"),
           "heatmap colour ends");
    free(svg);
    double nan_only = NAN;
    bb_svg_heatmap empty = {.title = "e", .rows = 1, .cols = 1, .v = &nan_only};
    EXPECT_ERR(bb_svg_heatmap_render(&empty, &svg, NULL), BB_ERR_ARG, "no finite value");
    /* stacked bars: the two stacks of bar 1 end at 3 + 1 = 4, the top of the axis */
    double b[4] = {1, 1, 3, 1};
    const char *stacks[2] = {"a", "b"};
    bb_svg_bars bars = {.title = "b", .n_bars = 2, .n_stacks = 2, .v = b, .stack_labels = stacks};
    EXPECT_OK(bb_svg_bars_render(&bars, &svg, NULL));
    EXPECT(svg && strstr(svg, "<title>1, a: 3</title>") && strstr(svg, "<title>1, b: 1</title>") &&
               strstr(svg, ">4</text>"),
           "bars:\n%.600s", svg ? svg : "");
    free(svg);
    b[1] = -1;
    EXPECT_ERR(bb_svg_bars_render(&bars, &svg, NULL), BB_ERR_ARG, "bar 0 segment 1 is negative");
}

int main(void) {
    TEST_RUN(test_fixture);
    TEST_RUN(test_missing_inputs);
    TEST_RUN(test_many_heal_curves);
    TEST_RUN(test_all_null);
    TEST_RUN(test_bad_input);
    TEST_RUN(test_svg_charts);
    return TEST_DONE();
}
