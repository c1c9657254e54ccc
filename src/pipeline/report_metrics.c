/* report_metrics.c — metrics.json read and checked for the run report, and the stop-loss threshold from config.yaml. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "io/config.h"
#include "pipeline/report_internal.h"

const char *const bb_report_phase_names[PH_COUNT] = {"decay", "heal",       "reinforce", "redistribute",
                                                     "eval",  "checkpoint", "total"};

static bb_status wrong_type(const report *r, const bb_json *v, const char *where, const char *expected) {
    return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                    "%s:%u:%u: %s: expected %s, found %s (docs/report.md gives the metrics.json schema)", r->file,
                    bb_json_line(v), bb_json_col(v), where, expected, bb_json_type_name(bb_json_type(v)));
}

static bb_status missing(const report *r, const bb_json *parent, const char *where) {
    return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                    "%s:%u:%u: %s is missing (docs/report.md gives the metrics.json schema)", r->file,
                    bb_json_line(parent), bb_json_col(parent), where);
}

/* Number member `key` of obj: null or absent gives NaN unless required. */
static bb_status get_num(const report *r, const bb_json *obj, const char *key, const char *at, int required,
                         double *out) {
    char where[256];
    snprintf(where, sizeof where, "%s%s%s", at, *at ? "." : "", key);
    const bb_json *v = bb_json_get(obj, key);
    *out = NAN;
    if (!v || bb_json_type(v) == BB_JSON_NULL) return required ? missing(r, obj, where) : BB_OK;
    if (bb_json_type(v) != BB_JSON_NUMBER) return wrong_type(r, v, where, "a number");
    *out = bb_json_num(v);
    return BB_OK;
}

static bb_status get_int(const report *r, const bb_json *obj, const char *key, const char *at, int *out) {
    char where[256];
    snprintf(where, sizeof where, "%s%s%s", at, *at ? "." : "", key);
    const bb_json *v = bb_json_get(obj, key);
    if (!v) return missing(r, obj, where);
    int64_t x = 0;
    if (!bb_json_is_int(v) || bb_json_int64(v, &x) != BB_OK || x < -1 || x > 1000000)
        return wrong_type(r, v, where, "an integer in [-1, 1000000]");
    *out = (int)x;
    return BB_OK;
}

static bb_status get_str(const report *r, const bb_json *obj, const char *key, const char *at, const char **out) {
    char where[256];
    snprintf(where, sizeof where, "%s%s%s", at, *at ? "." : "", key);
    const bb_json *v = bb_json_get(obj, key);
    if (!v) return missing(r, obj, where);
    *out = bb_json_str(v, NULL);
    if (!*out) return wrong_type(r, v, where, "a string");
    return BB_OK;
}

/* An array member of numbers (null elements give NaN); absent or null gives
 * n = 0 unless required. */
static bb_status get_nums(const report *r, const bb_json *obj, const char *key, const char *at, int required,
                          double **out, int *n) {
    char where[256];
    snprintf(where, sizeof where, "%s%s%s", at, *at ? "." : "", key);
    const bb_json *v = bb_json_get(obj, key);
    *out = NULL;
    *n = 0;
    if (!v || bb_json_type(v) == BB_JSON_NULL) return required ? missing(r, obj, where) : BB_OK;
    if (bb_json_type(v) != BB_JSON_ARRAY) return wrong_type(r, v, where, "an array of numbers");
    size_t len = bb_json_len(v);
    if (!len) return BB_OK;
    BB_CALL(bb_malloc((void **)out, len * sizeof(double), "metrics.json array"));
    for (size_t i = 0; i < len; i++) {
        const bb_json *e = bb_json_at(v, i);
        if (bb_json_type(e) == BB_JSON_NULL) {
            (*out)[i] = NAN;
        } else if (bb_json_type(e) == BB_JSON_NUMBER) {
            (*out)[i] = bb_json_num(e);
        } else {
            char w[300];
            snprintf(w, sizeof w, "%s[%zu]", where, i);
            free(*out);
            *out = NULL;
            return wrong_type(r, e, w, "a number");
        }
    }
    *n = (int)len;
    return BB_OK;
}

/* An optional member that must be of kind t when present; *out NULL when absent. */
static bb_status get_kind(const report *r, const bb_json *obj, const char *key, bb_json_kind t, const bb_json **out) {
    *out = bb_json_get(obj, key);
    if (*out && bb_json_type(*out) != t) return wrong_type(r, *out, key, bb_json_type_name(t));
    return BB_OK;
}

static bb_status parse_waves(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->waves, (size_t)n, "report waves");
    for (int i = 0; i < n; i++) {
        const bb_json *w = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "waves[%d]", i);
        if (bb_json_type(w) != BB_JSON_OBJECT) return wrong_type(r, w, at, "an object");
        wave_row *row = &r->waves[i];
        r->n_waves = i + 1;
        BB_CALL(get_int(r, w, "wave", at, &row->wave));
        BB_CALL(get_num(r, w, "ppl", at, 1, &row->ppl));
        BB_CALL(get_num(r, w, "dppl", at, 0, &row->dppl));
        BB_CALL(get_num(r, w, "kld", at, 0, &row->kld));
        BB_CALL(get_num(r, w, "top1", at, 0, &row->top1));
        BB_CALL(get_num(r, w, "sparsity", at, 0, &row->sparsity));
        BB_CALL(get_num(r, w, "bits", at, 0, &row->bits));
        BB_CALL(get_num(r, w, "lora_values", at, 0, &row->lora_values));
        const bb_json *rb = bb_json_get(w, "rolled_back");
        if (rb && bb_json_bool(rb) < 0) {
            char where[96];
            snprintf(where, sizeof where, "%s.rolled_back", at);
            return wrong_type(r, rb, where, "a boolean");
        }
        row->rolled_back = rb ? bb_json_bool(rb) : 0;
        const bb_json *sec = bb_json_get(w, "seconds");
        char sat[96];
        snprintf(sat, sizeof sat, "%s.seconds", at);
        if (sec && bb_json_type(sec) != BB_JSON_OBJECT) return wrong_type(r, sec, sat, "an object");
        for (int p = 0; p < PH_COUNT; p++) BB_CALL(get_num(r, sec, bb_report_phase_names[p], sat, 0, &row->sec[p]));
    }
    return BB_OK;
}

static bb_status parse_tensors(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->tensors, (size_t)n, "report tensors");
    for (int i = 0; i < n; i++) {
        const bb_json *t = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "tensors[%d]", i);
        if (bb_json_type(t) != BB_JSON_OBJECT) return wrong_type(r, t, at, "an object");
        tensor_row *row = &r->tensors[i];
        r->n_tensors = i + 1;
        BB_CALL(get_str(r, t, "name", at, &row->name));
        BB_CALL(get_str(r, t, "kind", at, &row->kind));
        BB_CALL(get_int(r, t, "layer", at, &row->layer));
        BB_CALL(get_num(r, t, "rows", at, 0, &row->rows));
        BB_CALL(get_num(r, t, "cols", at, 0, &row->cols));
        BB_CALL(get_nums(r, t, "density", at, 0, &row->density, &row->n_density));
        BB_CALL(get_nums(r, t, "bits", at, 0, &row->bits, &row->n_bits));
        BB_CALL(get_nums(r, t, "lora_rank", at, 0, &row->lora_rank, &row->n_lora));
    }
    return BB_OK;
}

static bb_status parse_heal(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->heal, (size_t)n, "report healing curves");
    for (int i = 0; i < n; i++) {
        const bb_json *h = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "heal_curves[%d]", i);
        if (bb_json_type(h) != BB_JSON_OBJECT) return wrong_type(r, h, at, "an object");
        heal_row *row = &r->heal[i];
        r->n_heal = i + 1;
        BB_CALL(get_int(r, h, "wave", at, &row->wave));
        BB_CALL(get_str(r, h, "name", at, &row->name));
        BB_CALL(get_nums(r, h, "loss", at, 1, &row->loss, &row->n));
    }
    return BB_OK;
}

static bb_status parse_stages(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->stages, (size_t)n, "report stages");
    for (int i = 0; i < n; i++) {
        const bb_json *s = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "stages[%d]", i);
        if (bb_json_type(s) != BB_JSON_OBJECT) return wrong_type(r, s, at, "an object");
        r->n_stages = i + 1;
        BB_CALL(get_str(r, s, "name", at, &r->stages[i].name));
        BB_CALL(get_num(r, s, "seconds", at, 1, &r->stages[i].seconds));
    }
    return BB_OK;
}

static bb_status parse_stress(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->stress, (size_t)n, "report stress boosts");
    for (int i = 0; i < n; i++) {
        const bb_json *s = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "stress[%d]", i);
        if (bb_json_type(s) != BB_JSON_OBJECT) return wrong_type(r, s, at, "an object");
        r->n_stress = i + 1;
        BB_CALL(get_int(r, s, "wave", at, &r->stress[i].wave));
        BB_CALL(get_str(r, s, "name", at, &r->stress[i].name));
        BB_CALL(get_num(r, s, "boost_bits", at, 0, &r->stress[i].boost_bits));
    }
    return BB_OK;
}

bb_status bb_report_parse_metrics(report *r) {
    BB_CHECK(bb_path_exists(r->file), BB_ERR_IO,
             "%s does not exist: the report reads the metrics the wave loop writes there (run birdbone compress "
             "with run.dir=%s first)",
             r->file, r->dir);
    BB_CALL(bb_file_read_all(r->file, BB_REPORT_JSON_MAX, &r->text, &r->text_len));
    BB_CALL(bb_json_parse(r->text, r->text_len, r->file, &r->doc));
    r->root = bb_json_root(r->doc);
    if (bb_json_type(r->root) != BB_JSON_OBJECT) return wrong_type(r, r->root, "the top level", "an object");
    const bb_json *v;
    static const char *const objects[] = {"model", "dense", "final"};
    for (int i = 0; i < 3; i++) BB_CALL(get_kind(r, r->root, objects[i], BB_JSON_OBJECT, &v));
    BB_CALL(get_num(r, bb_json_get(r->root, "dense"), "ppl", "dense", 0, &r->dense_ppl));
    BB_CALL(get_num(r, bb_json_get(r->root, "dense"), "ppl_err", "dense", 0, &r->dense_err));
    BB_CALL(get_kind(r, r->root, "waves", BB_JSON_ARRAY, &v));
    BB_CALL(parse_waves(r, v));
    BB_CALL(get_kind(r, r->root, "tensors", BB_JSON_ARRAY, &v));
    BB_CALL(parse_tensors(r, v));
    BB_CALL(get_kind(r, r->root, "heal_curves", BB_JSON_ARRAY, &v));
    BB_CALL(parse_heal(r, v));
    BB_CALL(get_kind(r, r->root, "stages", BB_JSON_ARRAY, &v));
    BB_CALL(parse_stages(r, v));
    BB_CALL(get_kind(r, r->root, "stress", BB_JSON_ARRAY, &v));
    BB_CALL(parse_stress(r, v));
    /* the dense PPL: dense.ppl, else the PPL of wave 0 */
    for (int i = 0; isnan(r->dense_ppl) && i < r->n_waves; i++)
        if (r->waves[i].wave == 0) r->dense_ppl = r->waves[i].ppl;
    return BB_OK;
}

/* stoploss.max_dppl from RUN_DIR/config.yaml when the run had a stop-loss. */
void bb_report_read_stoploss(report *r) {
    r->max_dppl = NAN;
    char path[1200];
    snprintf(path, sizeof path, "%s/config.yaml", r->dir);
    if (!bb_path_exists(path)) {
        bb_report_note(r, "no config.yaml in the run directory: the PPL plot has no stop-loss line");
        return;
    }
    bb_config *cfg = NULL;
    if (bb_calloc((void **)&cfg, 1, sizeof *cfg, "config") != BB_OK) return;
    int quiet = bb_error_set_quiet(1);
    bb_status st = bb_config_load(path, cfg);
    bb_error_set_quiet(quiet);
    if (st != BB_OK)
        bb_report_note(r, "config.yaml could not be read (%s): the PPL plot has no stop-loss line", bb_last_error());
    else if (!cfg->stoploss.enabled)
        bb_report_note(r, "the stop-loss was disabled in this run (stoploss.enabled: false): no threshold line");
    else
        r->max_dppl = cfg->stoploss.max_dppl;
    free(cfg);
}
