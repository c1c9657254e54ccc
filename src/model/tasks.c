/* tasks.c — multiple-choice accuracy by log-likelihood and greedy canaries (JSONL loaders, batched scoring). */
#include "model/tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/file.h"
#include "core/log.h"
#include "io/json.h"

/* JSONL files larger than this are surely a mistake (MMLU is about 10 MB). */
#define TASKS_MAX_FILE ((size_t)1 << 31)

/* ---- JSONL lines ---------------------------------------------------------------------- */

typedef bb_status (*line_fn)(void *ud, const bb_json *obj, const char *label, int line);

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* Parse every non-blank line of text[0, len) as one JSON object and hand it to fn. */
static bb_status for_each_line(const char *text, size_t len, const char *label, line_fn fn, void *ud) {
    size_t pos = 0;
    for (int line = 1; pos < len; line++) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + 1;
        if (blank(s, n)) continue;
        char what[1100];
        snprintf(what, sizeof what, "%s:%d", label, line);
        bb_json_doc *doc = NULL;
        BB_CALL(bb_json_parse(s, n, what, &doc));
        const bb_json *root = bb_json_root(doc);
        bb_status st = BB_OK;
        if (bb_json_type(root) != BB_JSON_OBJECT)
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: expected a JSON object, found %s", what,
                          bb_json_type_name(bb_json_type(root)));
        else
            st = fn(ud, root, label, line);
        bb_json_doc_destroy(&doc);
        if (st != BB_OK) return st;
    }
    return BB_OK;
}

/* Exactly one of the keys (NULL-terminated) present in obj; *key names it. */
static bb_status one_of(const bb_json *obj, const char *const *keys, const char *what, const char *label, int line,
                        const bb_json **val, const char **key) {
    *val = NULL;
    *key = NULL;
    char list[160] = "";
    for (int i = 0; keys[i]; i++) {
        const bb_json *v = bb_json_get(obj, keys[i]);
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s\"%s\"", i ? ", " : "", keys[i]);
        if (!v) continue;
        BB_CHECK(!*val, BB_ERR_FORMAT, "%s:%d: both \"%s\" and \"%s\" give the %s: keep one", label, line, *key,
                 keys[i], what);
        *val = v;
        *key = keys[i];
    }
    BB_CHECK(*val, BB_ERR_FORMAT, "%s:%d: no %s: expected one of the keys %s", label, line, what, list);
    return BB_OK;
}

/* Copy a JSON string value; `what` names it in messages. */
static bb_status dup_string(const bb_json *v, const char *what, int allow_empty, const char *label, int line,
                            char **out) {
    *out = NULL;
    size_t n = 0;
    const char *s = bb_json_str(v, &n);
    BB_CHECK(s, BB_ERR_FORMAT, "%s:%d: %s must be a string, found %s", label, line, what,
             bb_json_type_name(bb_json_type(v)));
    BB_CHECK(strlen(s) == n, BB_ERR_FORMAT, "%s:%d: %s contains a NUL character (\\u0000)", label, line, what);
    BB_CHECK(allow_empty || n > 0, BB_ERR_FORMAT, "%s:%d: %s is empty", label, line, what);
    char *p;
    BB_CALL(bb_malloc((void **)&p, n + 1, what));
    memcpy(p, s, n + 1);
    *out = p;
    return BB_OK;
}

static bb_status grow(void **items, int n, int *cap, size_t size, const char *what) {
    if (n < *cap) return BB_OK;
    int nc = *cap ? 2 * *cap : 64;
    void *p = realloc(*items, (size_t)nc * size);
    BB_CHECK(p, BB_ERR_OOM, "out of memory: %s needs %zu bytes", what, (size_t)nc * size);
    *items = p;
    *cap = nc;
    return BB_OK;
}

/* ---- multiple-choice files ------------------------------------------------------------ */

static const char *const MC_CONTEXT_KEYS[] = {"question", "context", "ctx", "query", NULL};
static const char *const MC_CHOICE_KEYS[] = {"choices", "endings", NULL};
static const char *const MC_ANSWER_KEYS[] = {"answer", "label", "gold", NULL};

typedef struct {
    bb_mc_set *set;
    int cap;
} mc_loader;

static void mc_item_free(bb_mc_item *it) {
    free(it->question);
    if (it->choices)
        for (int j = 0; j < it->n_choices; j++) free(it->choices[j]);
    free(it->choices);
    memset(it, 0, sizeof *it);
}

/* The answer as an index: an integer, a string of digits, or one capital letter. */
static bb_status mc_answer(const bb_json *v, const char *key, int n_choices, const char *label, int line, int *out) {
    int64_t a = -1;
    const char *s = bb_json_str(v, NULL);
    if (bb_json_is_int(v)) {
        BB_CALL(bb_json_int64(v, &a));
    } else if (s && s[0] >= 'A' && s[0] <= 'Z' && !s[1]) {
        a = s[0] - 'A';
    } else if (s && *s && strspn(s, "0123456789") == strlen(s) && strlen(s) < 10) {
        a = atol(s);
    } else {
        return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                        "%s:%d: \"%s\" must be a 0-based integer, a string of digits or one letter A-Z, found %s",
                        label, line, key, s ? "another string" : bb_json_type_name(bb_json_type(v)));
    }
    BB_CHECK(a >= 0 && a < n_choices, BB_ERR_FORMAT, "%s:%d: \"%s\" is %lld, but the %d choices are numbered 0..%d",
             label, line, key, (long long)a, n_choices, n_choices - 1);
    *out = (int)a;
    return BB_OK;
}

static bb_status mc_fill(bb_mc_item *it, const bb_json *obj, const char *label, int line) {
    const bb_json *q, *ch, *ans;
    const char *kq, *kc, *ka;
    BB_CALL(one_of(obj, MC_CONTEXT_KEYS, "question", label, line, &q, &kq));
    BB_CALL(one_of(obj, MC_CHOICE_KEYS, "choices", label, line, &ch, &kc));
    BB_CALL(one_of(obj, MC_ANSWER_KEYS, "answer", label, line, &ans, &ka));
    char what[64];
    snprintf(what, sizeof what, "\"%s\"", kq);
    BB_CALL(dup_string(q, what, 1, label, line, &it->question));
    BB_CHECK(bb_json_type(ch) == BB_JSON_ARRAY, BB_ERR_FORMAT, "%s:%d: \"%s\" must be an array of strings, found %s",
             label, line, kc, bb_json_type_name(bb_json_type(ch)));
    size_t n = bb_json_len(ch);
    BB_CHECK(n >= 2 && n <= 1000, BB_ERR_FORMAT, "%s:%d: \"%s\" has %zu choice(s); 2 to 1000 are needed", label, line,
             kc, n);
    BB_CALL(bb_calloc((void **)&it->choices, n, sizeof(char *), "choices"));
    it->n_choices = (int)n;
    for (size_t j = 0; j < n; j++) {
        snprintf(what, sizeof what, "choice %zu of \"%s\"", j, kc);
        BB_CALL(dup_string(bb_json_at(ch, j), what, 0, label, line, &it->choices[j]));
    }
    BB_CALL(mc_answer(ans, ka, it->n_choices, label, line, &it->answer));
    it->line = line;
    return BB_OK;
}

static bb_status mc_line(void *ud, const bb_json *obj, const char *label, int line) {
    mc_loader *L = ud;
    bb_mc_set *s = L->set;
    BB_CALL(grow((void **)&s->items, s->n, &L->cap, sizeof *s->items, "multiple-choice items"));
    bb_mc_item *it = &s->items[s->n];
    memset(it, 0, sizeof *it);
    bb_status st = mc_fill(it, obj, label, line);
    if (st != BB_OK) {
        mc_item_free(it);
        return st;
    }
    s->n++;
    s->n_choices_total += it->n_choices;
    return BB_OK;
}

void bb_tasks_mc_destroy(bb_mc_set **ps) {
    if (!ps || !*ps) return;
    bb_mc_set *s = *ps;
    for (int i = 0; i < s->n; i++) mc_item_free(&s->items[i]);
    free(s->items);
    free(s);
    *ps = NULL;
}

bb_status bb_tasks_mc_parse(const char *text, size_t len, const char *label, bb_mc_set **out) {
    *out = NULL;
    bb_mc_set *s;
    BB_CALLOC(s, 1, "multiple-choice set");
    snprintf(s->label, sizeof s->label, "%s", label ? label : "multiple-choice text");
    mc_loader L = {.set = s};
    bb_status st;
    BB_CALL_GOTO(st, fail, for_each_line(text, len, s->label, mc_line, &L));
    BB_CHECK_GOTO(st, fail, s->n > 0, BB_ERR_FORMAT, "%s: no questions (every line is blank)", s->label);
    *out = s;
    return BB_OK;
fail:
    bb_tasks_mc_destroy(&s);
    return st;
}

bb_status bb_tasks_mc_load(const char *path, bb_mc_set **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    BB_CALL(bb_file_read_all(path, TASKS_MAX_FILE, &text, &len));
    bb_status st = bb_tasks_mc_parse(text, len, path, out);
    free(text);
    BB_CALL(st);
    return BB_OK;
}

/* ---- multiple-choice scoring ---------------------------------------------------------- */

/* One (question, choice) sequence waiting in a batch. */
typedef struct {
    int *ids;    /* whole: BOS, question, continuation */
    int n;       /* tokens in ids; n - 1 are fed */
    int n_ctx;   /* the question's token count: ids[n_ctx..n) are scored */
    int64_t idx; /* index into r->loglik */
} mc_seq;

typedef struct {
    mc_seq *s;
    int n, cap;
    int T; /* longest fed length */
    float *logits;
    int *tokens;
    size_t logits_cap, tokens_cap;
} mc_batch;

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* log p(target | row) from raw logits in double; NaN if the row is not finite. */
static double row_logprob(const float *row, int V, int target) {
    double mx = -INFINITY;
    for (int i = 0; i < V; i++) {
        if (!isfinite(row[i])) return NAN;
        if (row[i] > mx) mx = row[i];
    }
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)row[i] - mx);
    return (double)row[target] - mx - log(s);
}

/* Run the batch through one prefill (padded with BOS after each sequence's end:
 * causal attention keeps the padding from reaching earlier positions) and store
 * every sequence's log-likelihood. */
static bb_status mc_flush(bb_forward *f, mc_batch *b, int pad, bb_mc_result *r) {
    if (b->n == 0) return BB_OK;
    int V = bb_forward_config(f)->vocab_size, B = b->n, T = b->T;
    size_t nt = (size_t)B * T, nl = nt * (size_t)V;
    if (nt > b->tokens_cap) {
        free(b->tokens);
        b->tokens = NULL;
        b->tokens_cap = 0;
        BB_CALL(bb_malloc((void **)&b->tokens, nt * sizeof(int), "multiple-choice batch tokens"));
        b->tokens_cap = nt;
    }
    if (nl > b->logits_cap) {
        free(b->logits);
        b->logits = NULL;
        b->logits_cap = 0;
        BB_CALL(bb_malloc((void **)&b->logits, nl * sizeof(float), "multiple-choice batch logits"));
        b->logits_cap = nl;
    }
    for (int i = 0; i < B; i++) {
        int *row = b->tokens + (size_t)i * T;
        memcpy(row, b->s[i].ids, sizeof(int) * (size_t)(b->s[i].n - 1));
        for (int t = b->s[i].n - 1; t < T; t++) row[t] = pad;
    }
    bb_event_begin("tasks.forward");
    bb_status st = bb_forward_prefill(f, b->tokens, B, T, b->logits);
    bb_event_end("tasks.forward", 0, 0);
    BB_CALL(st);
    for (int i = 0; i < B; i++) {
        mc_seq *q = &b->s[i];
        double ll = 0;
        for (int p = q->n_ctx - 1; p < q->n - 1; p++)
            ll += row_logprob(b->logits + ((size_t)i * T + (size_t)p) * V, V, q->ids[p + 1]);
        r->loglik[q->idx] = ll;
        r->n_cont[q->idx] = q->n - q->n_ctx;
        r->n_tokens_scored += q->n - q->n_ctx;
        free(q->ids);
        q->ids = NULL;
    }
    b->n = 0;
    b->T = 0;
    return BB_OK;
}

static void mc_batch_free(mc_batch *b) {
    for (int i = 0; i < b->n; i++) free(b->s[i].ids);
    free(b->s);
    free(b->logits);
    free(b->tokens);
    memset(b, 0, sizeof *b);
}

/* Tokenize every choice of item `it` and queue it, flushing whenever one more
 * sequence would exceed the batch limits. */
static bb_status mc_queue_item(bb_forward *f, const bb_tokenizer *tok, const bb_mc_set *set, const bb_mc_item *it,
                               int64_t idx0, int max_batch, mc_batch *b, bb_mc_result *r) {
    const bb_model_config *c = bb_forward_config(f);
    /* The harness moves the question's trailing whitespace into the continuation. */
    size_t ql = strlen(it->question), qt = ql;
    while (qt > 0 && is_space(it->question[qt - 1])) qt--;
    char *ctx_text = NULL, *whole_text = NULL;
    int *ctx = NULL, n_ctx = 0;
    bb_status st;
    BB_CALL_GOTO(st, out, bb_malloc((void **)&ctx_text, qt + 1, "question text"));
    memcpy(ctx_text, it->question, qt);
    ctx_text[qt] = '\0';
    BB_CALL_GOTO(st, out, bb_tokenizer_encode(tok, ctx_text, 1, 0, &ctx, &n_ctx));
    for (int j = 0; j < it->n_choices; j++) {
        const char *ch = it->choices[j];
        int sep = qt == ql && qt > 0 && !is_space(ch[0]);
        size_t cl = strlen(ch), wl = ql + (size_t)sep + cl;
        free(whole_text);
        whole_text = NULL;
        BB_CALL_GOTO(st, out, bb_malloc((void **)&whole_text, wl + 1, "question and choice text"));
        memcpy(whole_text, it->question, ql);
        if (sep) whole_text[ql] = ' ';
        memcpy(whole_text + ql + sep, ch, cl + 1);
        mc_seq q = {.n_ctx = n_ctx, .idx = idx0 + j};
        BB_CALL_GOTO(st, out, bb_tokenizer_encode(tok, whole_text, 1, 0, &q.ids, &q.n));
        if (q.n < n_ctx || memcmp(q.ids, ctx, sizeof(int) * (size_t)n_ctx)) r->n_prefix_mismatch++;
        if (q.n <= n_ctx) {
            free(q.ids);
            st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                          "%s:%d: choice %d adds no tokens after the question's %d (nothing to score)", set->label,
                          it->line, j, n_ctx);
            goto out;
        }
        if (q.n - 1 > c->max_seq_len) {
            free(q.ids);
            st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                          "%s:%d: question + choice %d needs %d positions, more than the model's context of %d",
                          set->label, it->line, j, q.n - 1, c->max_seq_len);
            goto out;
        }
        int T = b->T > q.n - 1 ? b->T : q.n - 1;
        size_t rows = (size_t)(b->n + 1) * (size_t)T;
        if (b->n > 0 && ((max_batch > 0 && b->n >= max_batch) || rows > 2048 ||
                         rows * (size_t)c->vocab_size * sizeof(float) > ((size_t)256 << 20))) {
            st = mc_flush(f, b, c->bos_id >= 0 ? c->bos_id : 0, r);
            if (st != BB_OK) {
                free(q.ids);
                bb_trace(st, __FILE__, __LINE__, "mc_flush");
                goto out;
            }
        }
        st = grow((void **)&b->s, b->n, &b->cap, sizeof *b->s, "multiple-choice batch");
        if (st != BB_OK) {
            free(q.ids);
            goto out;
        }
        b->s[b->n++] = q;
        if (q.n - 1 > b->T) b->T = q.n - 1;
    }
out:
    free(ctx_text);
    free(whole_text);
    free(ctx);
    return st;
}

/* Index of the best finite score (lowest index on ties), -1 if none is finite. */
static int best_choice(const double *ll, const bb_mc_item *it, int norm) {
    int best = -1;
    double bv = 0;
    for (int j = 0; j < it->n_choices; j++) {
        double v = ll[j];
        if (norm) v /= (double)utf8_chars(it->choices[j]);
        if (!isfinite(v)) continue;
        if (best < 0 || v > bv) {
            best = j;
            bv = v;
        }
    }
    return best;
}

static double sample_stderr(int k, int n) {
    if (n < 2) return 0;
    double p = (double)k / n;
    return sqrt(p * (1 - p) / (n - 1));
}

void bb_tasks_mc_result_free(bb_mc_result *r) {
    if (!r) return;
    free(r->loglik);
    free(r->n_cont);
    free(r->pred);
    free(r->pred_norm);
    memset(r, 0, sizeof *r);
}

bb_status bb_tasks_mc_score(bb_forward *f, const bb_tokenizer *tok, const bb_mc_set *set, const bb_mc_opts *o,
                            bb_mc_result *r) {
    memset(r, 0, sizeof *r);
    const bb_model_config *c = bb_forward_config(f);
    BB_CHECK(bb_tokenizer_vocab_size(tok) == c->vocab_size, BB_ERR_ARG,
             "the tokenizer has %d tokens but the model's vocabulary has %d", bb_tokenizer_vocab_size(tok),
             c->vocab_size);
    BB_CHECK(set->n > 0, BB_ERR_ARG, "%s: no questions to score", set->label);
    mc_batch b = {0};
    bb_status st;
    size_t nc = (size_t)set->n_choices_total;
    BB_CALL_GOTO(st, out, bb_calloc((void **)&r->loglik, nc, sizeof(double), "choice log-likelihoods"));
    BB_CALL_GOTO(st, out, bb_calloc((void **)&r->n_cont, nc, sizeof(int), "choice token counts"));
    BB_CALL_GOTO(st, out, bb_calloc((void **)&r->pred, (size_t)set->n, sizeof(int), "predictions"));
    BB_CALL_GOTO(st, out, bb_calloc((void **)&r->pred_norm, (size_t)set->n, sizeof(int), "predictions"));
    bb_progress prog;
    bb_progress_begin(&prog, "mc", set->n);
    int64_t idx = 0;
    for (int i = 0; i < set->n; i++) {
        BB_CALL_GOTO(st, out, mc_queue_item(f, tok, set, &set->items[i], idx, o ? o->max_batch : 0, &b, r));
        idx += set->items[i].n_choices;
        bb_progress_update(&prog, i + 1, "questions");
    }
    BB_CALL_GOTO(st, out, mc_flush(f, &b, c->bos_id >= 0 ? c->bos_id : 0, r));
    bb_progress_end(&prog);
    r->n = set->n;
    idx = 0;
    double chance = 0;
    for (int i = 0; i < set->n; i++) {
        const bb_mc_item *it = &set->items[i];
        for (int j = 0; j < it->n_choices; j++)
            if (!isfinite(r->loglik[idx + j])) r->n_nonfinite++;
        r->pred[i] = best_choice(r->loglik + idx, it, 0);
        r->pred_norm[i] = best_choice(r->loglik + idx, it, 1);
        r->correct += r->pred[i] == it->answer;
        r->correct_norm += r->pred_norm[i] == it->answer;
        chance += 1.0 / it->n_choices;
        idx += it->n_choices;
    }
    if (r->n_nonfinite)
        bb_warn("%s: %d of %d choices got a non-finite score (NaN/Inf logits) and cannot win", set->label,
                r->n_nonfinite, set->n_choices_total);
    if (r->n_prefix_mismatch)
        bb_warn("%s: for %d choices the question's tokens are not a prefix of question + choice; scored from the "
                "question's token count, as lm-evaluation-harness does",
                set->label, r->n_prefix_mismatch);
    r->chance = chance / set->n;
    r->acc = (double)r->correct / set->n;
    r->acc_norm = (double)r->correct_norm / set->n;
    r->acc_stderr = sample_stderr(r->correct, set->n);
    r->acc_norm_stderr = sample_stderr(r->correct_norm, set->n);
out:
    mc_batch_free(&b);
    if (st != BB_OK) bb_tasks_mc_result_free(r);
    return st;
}

/* ---- canary files --------------------------------------------------------------------- */

typedef struct {
    bb_canary_set *set;
    int cap;
} canary_loader;

static void canary_free(bb_canary *c) {
    free(c->name);
    free(c->prompt);
    free(c->expected);
    memset(c, 0, sizeof *c);
}

static bb_status canary_fill(bb_canary *c, const bb_json *obj, const char *label, int line) {
    const bb_json *p = bb_json_get(obj, "prompt"), *e = bb_json_get(obj, "expected"), *nm = bb_json_get(obj, "name");
    BB_CHECK(p, BB_ERR_FORMAT, "%s:%d: no \"prompt\" (a canary is {\"prompt\": str, \"expected\": str})", label, line);
    BB_CHECK(e, BB_ERR_FORMAT, "%s:%d: no \"expected\" (a canary is {\"prompt\": str, \"expected\": str})", label,
             line);
    BB_CALL(dup_string(p, "\"prompt\"", 1, label, line, &c->prompt));
    BB_CALL(dup_string(e, "\"expected\"", 0, label, line, &c->expected));
    if (nm) {
        BB_CALL(dup_string(nm, "\"name\"", 0, label, line, &c->name));
    } else {
        BB_CALL(bb_malloc((void **)&c->name, 32, "canary name"));
        snprintf(c->name, 32, "line %d", line);
    }
    c->line = line;
    return BB_OK;
}

static bb_status canary_line(void *ud, const bb_json *obj, const char *label, int line) {
    canary_loader *L = ud;
    bb_canary_set *s = L->set;
    BB_CALL(grow((void **)&s->items, s->n, &L->cap, sizeof *s->items, "canaries"));
    bb_canary *c = &s->items[s->n];
    memset(c, 0, sizeof *c);
    bb_status st = canary_fill(c, obj, label, line);
    if (st != BB_OK) {
        canary_free(c);
        return st;
    }
    s->n++;
    return BB_OK;
}

void bb_tasks_canaries_destroy(bb_canary_set **ps) {
    if (!ps || !*ps) return;
    bb_canary_set *s = *ps;
    for (int i = 0; i < s->n; i++) canary_free(&s->items[i]);
    free(s->items);
    free(s);
    *ps = NULL;
}

bb_status bb_tasks_canaries_parse(const char *text, size_t len, const char *label, bb_canary_set **out) {
    *out = NULL;
    bb_canary_set *s;
    BB_CALLOC(s, 1, "canary set");
    snprintf(s->label, sizeof s->label, "%s", label ? label : "canary text");
    canary_loader L = {.set = s};
    bb_status st;
    BB_CALL_GOTO(st, fail, for_each_line(text, len, s->label, canary_line, &L));
    BB_CHECK_GOTO(st, fail, s->n > 0, BB_ERR_FORMAT, "%s: no canaries (every line is blank)", s->label);
    *out = s;
    return BB_OK;
fail:
    bb_tasks_canaries_destroy(&s);
    return st;
}

bb_status bb_tasks_canaries_load(const char *path, bb_canary_set **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    BB_CALL(bb_file_read_all(path, TASKS_MAX_FILE, &text, &len));
    bb_status st = bb_tasks_canaries_parse(text, len, path, out);
    free(text);
    BB_CALL(st);
    return BB_OK;
}

int bb_tasks_canaries_positions(const bb_canary_set *set) {
    size_t most = 0;
    for (int i = 0; i < set->n; i++) {
        size_t need = strlen(set->items[i].prompt) + strlen(set->items[i].expected) + 3;
        if (need > most) most = need;
    }
    return most > (size_t)(1 << 30) ? 1 << 30 : (int)most;
}

/* ---- running canaries ----------------------------------------------------------------- */

/* Greedy generation of `gen` tokens after prompt[0, n_p); the continuation is
 * decoded into o->got (replacing what was there). */
static bb_status canary_generate(bb_forward *f, const bb_tokenizer *tok, const int *prompt, int n_p, int gen,
                                 bb_canary_outcome *o) {
    int steps = n_p - 1 + gen, n_out = 0;
    int *out = NULL;
    BB_CALL(bb_malloc((void **)&out, sizeof(int) * (size_t)steps, "canary tokens"));
    bb_status st;
    BB_CALL_GOTO(st, done, bb_forward_generate(f, prompt, n_p, steps, 0.0f, 0, NULL, NULL, out, &n_out));
    int first = n_p - 1, n_gen = n_out > first ? n_out - first : 0;
    size_t total = 0;
    for (int k = 0; k < n_gen; k++) {
        const char *piece;
        size_t l;
        BB_CALL_GOTO(st, done,
                     bb_tokenizer_decode(tok, k ? out[first + k - 1] : prompt[n_p - 1], out[first + k], &piece, &l));
        total += l;
    }
    free(o->got);
    o->got = NULL;
    o->got_len = 0;
    BB_CALL_GOTO(st, done, bb_malloc((void **)&o->got, total + 1, "canary output"));
    for (int k = 0; k < n_gen; k++) {
        const char *piece;
        size_t l;
        bb_tokenizer_decode(tok, k ? out[first + k - 1] : prompt[n_p - 1], out[first + k], &piece, &l);
        memcpy(o->got + o->got_len, piece, l);
        o->got_len += l;
    }
    o->got[o->got_len] = '\0';
    o->n_generated = n_gen;
done:
    free(out);
    return st;
}

static size_t common_prefix(const char *a, size_t na, const char *b, size_t nb) {
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

static bb_status canary_run_one(bb_forward *f, const bb_tokenizer *tok, const bb_canary *c, bb_canary_outcome *o) {
    int *prompt = NULL, n_p = 0, *exp_ids = NULL, n_e = 0;
    bb_status st;
    BB_CALL_GOTO(st, out, bb_tokenizer_encode(tok, c->prompt, 1, 0, &prompt, &n_p));
    BB_CALL_GOTO(st, out, bb_tokenizer_encode(tok, c->expected, 0, 0, &exp_ids, &n_e));
    size_t el = strlen(c->expected);
    /* The expected text's own token count (plus a margin for a different
     * segmentation) is usually enough; the byte count always is, as every
     * generated token but one after a bare BOS adds at least one byte. */
    int gen_short = n_e + 8, gen_max = (int)(el < (size_t)(1 << 29) ? el : (size_t)(1 << 29)) + 2;
    int gen = gen_short < gen_max ? gen_short : gen_max;
    for (;;) {
        BB_CALL_GOTO(st, out, canary_generate(f, tok, prompt, n_p, gen, o));
        size_t k = common_prefix(o->got, o->got_len, c->expected, el);
        o->pass = k == el;
        o->diverge = o->pass ? 0 : k;
        o->ended = !o->pass && k == o->got_len;
        if (o->pass || !o->ended || gen >= gen_max || o->n_generated < gen) break;
        gen = gen_max;
    }
out:
    free(prompt);
    free(exp_ids);
    return st;
}

void bb_tasks_canaries_result_free(bb_canary_result *r) {
    if (!r) return;
    if (r->c)
        for (int i = 0; i < r->n; i++) free(r->c[i].got);
    free(r->c);
    memset(r, 0, sizeof *r);
}

bb_status bb_tasks_canaries_run(bb_forward *f, const bb_tokenizer *tok, const bb_canary_set *set, bb_canary_result *r) {
    memset(r, 0, sizeof *r);
    const bb_model_config *c = bb_forward_config(f);
    BB_CHECK(bb_tokenizer_vocab_size(tok) == c->vocab_size, BB_ERR_ARG,
             "the tokenizer has %d tokens but the model's vocabulary has %d", bb_tokenizer_vocab_size(tok),
             c->vocab_size);
    BB_CALL(bb_calloc((void **)&r->c, (size_t)set->n, sizeof *r->c, "canary outcomes"));
    r->n = set->n;
    bb_status st = BB_OK;
    for (int i = 0; i < set->n; i++) {
        bb_event_begin("tasks.canary");
        st = canary_run_one(f, tok, &set->items[i], &r->c[i]);
        bb_event_end("tasks.canary", 0, 0);
        if (st != BB_OK) {
            bb_trace(st, __FILE__, __LINE__, "canary_run_one");
            bb_tasks_canaries_result_free(r);
            return st;
        }
        r->n_pass += r->c[i].pass;
    }
    return BB_OK;
}
