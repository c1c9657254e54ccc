/* test_tasks.c — task metrics on stories260K: multiple choice built from dev.txt (healthy model well above
 * chance, shuffled classifier near it, scores against a token-by-token reference), canaries pass/fail with
 * the divergence point, and malformed JSONL lines. */
#include "core/file.h"
#include "io/model.h"
#include "io/tokenizer.h"
#include "model/eval.h"
#include "model/tasks.h"
#include "test.h"

#define N_QUESTIONS 80
#define N_CHOICES 4
#define ENDING_WORDS 4

static bb_model *model;
static bb_tokenizer *tok;
static char *mc_jsonl; /* the multiple-choice set built from dev.txt */

/* ---- a multiple-choice set from dev.txt ---------------------------------------------- */

typedef struct {
    char *head, *ending; /* question text; the true ending of its sentence */
} story_q;

static void json_put(char **o, const char *s, size_t n) {
    *(*o)++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') *(*o)++ = '\\';
        *(*o)++ = s[i];
    }
    *(*o)++ = '"';
}

/* End of the sentence starting at s (just after its '.', '!' or '?' followed by
 * a space), or NULL if the line has no such end. */
static const char *sentence_end(const char *s, const char *eol) {
    for (const char *p = s; p + 1 < eol; p++)
        if ((*p == '.' || *p == '!' || *p == '?') && p[1] == ' ') return p + 1;
    return NULL;
}

/* Question i: a paragraph up to its last sentence and the first half of that
 * sentence's words; the answer is the rest of the sentence. Distractors are the
 * endings of three other paragraphs far enough away to be other stories. */
static char *build_mc_set(const char *text, size_t len) {
    story_q q[N_QUESTIONS];
    int n = 0;
    const char *p = text, *end = text + len;
    while (p < end && n < N_QUESTIONS) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        /* the last complete sentence [b, e) that has at least one before it */
        const char *b = NULL, *e = NULL;
        for (const char *s = sentence_end(p, eol); s;) {
            const char *t = sentence_end(s + 1, eol);
            if (!t && eol > s + 1 && (eol[-1] == '.' || eol[-1] == '!' || eol[-1] == '?')) t = eol;
            if (t) {
                b = s + 1;
                e = t;
            }
            s = t && t < eol ? t : NULL;
        }
        if (b) {
            int words = 1;
            for (const char *c = b; c < e; c++) words += *c == ' ';
            if (words >= 7 && e - b < 200 && b - p < 600) {
                const char *cut = b;
                for (int w = 0; w < words - ENDING_WORDS; cut++)
                    if (*cut == ' ') w++;
                q[n].head = strndup(p, (size_t)(cut - 1 - p));
                q[n].ending = strndup(cut, (size_t)(e - cut));
                n++;
            }
        }
        p = eol + 1;
    }
    if (n < N_QUESTIONS) return NULL;
    char *out = malloc(200000), *o = out;
    static const int other[N_CHOICES - 1] = {7, 17, 29};
    for (int i = 0; i < n; i++) {
        int ans = i % N_CHOICES;
        o += sprintf(o, "{\"question\": ");
        json_put(&o, q[i].head, strlen(q[i].head));
        o += sprintf(o, ", \"choices\": [");
        for (int j = 0, d = 0; j < N_CHOICES; j++) {
            const char *e = j == ans ? q[i].ending : q[(i + other[d++]) % n].ending;
            if (j) o += sprintf(o, ", ");
            json_put(&o, e, strlen(e));
        }
        o += sprintf(o, "], \"answer\": %d}\n", ans);
    }
    *o = '\0';
    for (int i = 0; i < n; i++) {
        free(q[i].head);
        free(q[i].ending);
    }
    return out;
}

static int setup(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", test_shared());
    if (bb_model_open(path, &model) != BB_OK) return -1;
    if (bb_tokenizer_open_for_model(model, NULL, &tok) != BB_OK) return -1;
    snprintf(path, sizeof path, "%s/data/tinystories/dev.txt", test_shared());
    char *text = NULL;
    size_t len = 0;
    if (bb_file_read_all(path, 1 << 24, &text, &len) != BB_OK) return -1;
    mc_jsonl = build_mc_set(text, len);
    free(text);
    return mc_jsonl ? 0 : -1;
}

/* ---- multiple choice ------------------------------------------------------------------- */

/* The same model with its classifier rows permuted: every prediction lands on
 * the wrong token, so the scores carry no information. With `nan_row` one row
 * is NaN as well, which makes every logit row non-finite. Tensors are shared
 * views of `model` except the new output matrix (owned by *out_rows). */
static bb_status make_broken_model(int nan_row, bb_model **out, float **out_rows) {
    const bb_model_config *c = &model->cfg;
    bb_model *m = NULL;
    BB_CALL(bb_model_alloc(&m, c->n_layers));
    m->cfg = *c;
    m->cfg.tied_embeddings = 0;
    m->source = model->source;
    snprintf(m->path, sizeof m->path, "%.900s (shuffled classifier)", model->path);
    m->tok_embd = model->tok_embd;
    m->out_norm = model->out_norm;
    memcpy(m->layers, model->layers, sizeof *m->layers * (size_t)c->n_layers);
    size_t V = (size_t)c->vocab_size, D = (size_t)c->dim;
    float *orig = malloc(sizeof(float) * V * D), *rows = malloc(sizeof(float) * V * D);
    int *perm = malloc(sizeof(int) * V);
    bb_status st = orig && rows && perm ? BB_OK : BB_ERR_OOM;
    if (st == BB_OK) st = bb_tensor_read_f32(&model->output, 0, (int64_t)V, orig);
    if (st == BB_OK) {
        for (size_t i = 0; i < V; i++) perm[i] = (int)i;
        uint64_t x = 12345;
        for (size_t i = V - 1; i > 0; i--) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            size_t j = (size_t)((x >> 33) % (i + 1));
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (size_t i = 0; i < V; i++) memcpy(rows + i * D, orig + (size_t)perm[i] * D, sizeof(float) * D);
        if (nan_row) rows[D] = NAN;
        int64_t shape[2] = {(int64_t)V, (int64_t)D};
        st = bb_tensor_init_memory(&m->output, "output.weight", BB_F32, 2, shape, rows, sizeof(float) * V * D);
    }
    free(orig);
    free(perm);
    if (st != BB_OK) {
        free(rows);
        bb_model_destroy(&m);
        return st;
    }
    *out = m;
    *out_rows = rows;
    return BB_OK;
}

/* Three passes over 320 sequences: a minute under ASan at -O0, where the other
 * cases still run every code path (BB_SKIP_SLOW, set by scripts/test). */
static void test_mc_healthy_and_broken(void) {
    if (getenv("BB_SKIP_SLOW")) {
        printf("  (skipped: BB_SKIP_SLOW)\n");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/tasks_mc.jsonl", test_tmpdir());
    EXPECT(test_write_file(path, mc_jsonl, strlen(mc_jsonl)) == 0, "cannot write %s", path);
    bb_mc_set *set = NULL;
    EXPECT_OK(bb_tasks_mc_load(path, &set));
    if (!set) return;
    EXPECT(set->n == N_QUESTIONS && set->n_choices_total == N_QUESTIONS * N_CHOICES, "%d questions, %d choices", set->n,
           set->n_choices_total);
    bb_forward *f = NULL;
    bb_mc_result r = {0};
    EXPECT_OK(bb_forward_create(model, 0, &f));
    EXPECT_OK(bb_tasks_mc_score(f, tok, set, NULL, &r));
    printf("stories260K: acc %.3f +/- %.3f, acc_norm %.3f +/- %.3f (%d questions, chance %.2f, %lld tokens)\n", r.acc,
           r.acc_stderr, r.acc_norm, r.acc_norm_stderr, r.n, r.chance, (long long)r.n_tokens_scored);
    EXPECT(r.n == N_QUESTIONS && fabs(r.chance - 0.25) < 1e-12, "n %d, chance %g", r.n, r.chance);
    EXPECT(r.acc >= 0.6 && r.acc_norm >= 0.6, "acc %.3f, acc_norm %.3f: expected at least 0.6", r.acc, r.acc_norm);
    EXPECT(r.n_prefix_mismatch == 0 && r.n_nonfinite == 0, "prefix mismatches %d, non-finite %d", r.n_prefix_mismatch,
           r.n_nonfinite);
    EXPECT_NEAR(r.acc_stderr, sqrt(r.acc * (1 - r.acc) / (r.n - 1)), 1e-12);

    /* one sequence per prefill gives the same scores as the padded batches */
    bb_mc_result r1 = {0};
    bb_mc_opts one = {.max_batch = 1};
    EXPECT_OK(bb_tasks_mc_score(f, tok, set, &one, &r1));
    double worst = 0;
    for (int i = 0; r1.loglik && r.loglik && i < set->n_choices_total; i++) {
        double d = fabs(r1.loglik[i] - r.loglik[i]) / (1 + fabs(r.loglik[i]));
        if (d > worst) worst = d;
    }
    EXPECT(r1.loglik && worst < 1e-5, "batch 1 vs batched: worst relative difference %g", worst);
    bb_tasks_mc_result_free(&r1);
    bb_tasks_mc_result_free(&r);
    bb_forward_destroy(&f);

    bb_model *broken = NULL;
    float *rows = NULL;
    EXPECT_OK(make_broken_model(0, &broken, &rows));
    if (broken) {
        EXPECT_OK(bb_forward_create(broken, 0, &f));
        EXPECT_OK(bb_tasks_mc_score(f, tok, set, NULL, &r));
        printf("shuffled classifier: acc %.3f, acc_norm %.3f\n", r.acc, r.acc_norm);
        EXPECT(r.acc <= 0.4 && r.acc_norm <= 0.4, "acc %.3f, acc_norm %.3f: expected near chance (<= 0.4)", r.acc,
               r.acc_norm);
        bb_tasks_mc_result_free(&r);
        bb_forward_destroy(&f);
    }
    bb_model_destroy(&broken);
    free(rows);
    bb_tasks_mc_destroy(&set);
}

/* Log-likelihood of one choice token by token through the KV-cached decode
 * path, with the tokenization rule of tasks.h written out again. */
static double ref_loglik(bb_forward *f, const char *question, const char *choice, int *n_cont) {
    int *ctx = NULL, n_ctx = 0, *whole = NULL, n = 0, V = model->cfg.vocab_size;
    char *text = malloc(strlen(question) + strlen(choice) + 2);
    sprintf(text, "%s%s%s", question, *question ? " " : "", choice);
    double ll = NAN;
    float *lg = malloc(sizeof(float) * (size_t)V);
    double *ls = malloc(sizeof(double) * (size_t)V);
    if (bb_tokenizer_encode(tok, question, 1, 0, &ctx, &n_ctx) || bb_tokenizer_encode(tok, text, 1, 0, &whole, &n))
        goto out;
    ll = 0;
    for (int p = 0; p < n - 1; p++) {
        if (bb_forward_decode(f, &whole[p], 1, p, lg)) {
            ll = NAN;
            goto out;
        }
        if (p < n_ctx - 1) continue;
        bb_log_softmax_ref(lg, V, ls);
        ll += ls[whole[p + 1]];
    }
    *n_cont = n - n_ctx;
out:
    free(text);
    free(ctx);
    free(whole);
    free(lg);
    free(ls);
    return ll;
}

static void test_mc_matches_reference(void) {
    static const char jsonl[] =
        "{\"question\": \"Once upon a time, there was a little\", \"choices\": [\"girl named Lily.\", \"dog.\", "
        "\"car that could fly over the big blue sea.\"], \"answer\": 0}\n"
        "{\"question\": \"\", \"choices\": [\"Once upon a time\", \"The end\"], \"answer\": 0}\n";
    bb_mc_set *set = NULL;
    EXPECT_OK(bb_tasks_mc_parse(jsonl, sizeof jsonl - 1, "ref.jsonl", &set));
    bb_forward *f = NULL;
    EXPECT_OK(bb_forward_create(model, 0, &f));
    bb_mc_result r = {0};
    if (!set || !f) goto out;
    /* batches of two split the first question's three choices across prefills */
    bb_mc_opts two = {.max_batch = 2};
    EXPECT_OK(bb_tasks_mc_score(f, tok, set, &two, &r));
    if (!r.loglik) goto out;
    for (int i = 0, k = 0; i < set->n; i++)
        for (int j = 0; j < set->items[i].n_choices; j++, k++) {
            int n_cont = -1;
            double ref = ref_loglik(f, set->items[i].question, set->items[i].choices[j], &n_cont);
            EXPECT(fabs(r.loglik[k] - ref) <= 1e-4 + 1e-5 * fabs(ref), "question %d choice %d: %.8f vs reference %.8f",
                   i, j, r.loglik[k], ref);
            EXPECT(r.n_cont[k] == n_cont, "question %d choice %d: %d continuation tokens, reference %d", i, j,
                   r.n_cont[k], n_cont);
        }
    /* the story opening is the model's favourite, by total and per character */
    EXPECT(r.pred[0] == 0 && r.pred[1] == 0 && r.pred_norm[1] == 0, "predictions %d %d / norm %d", r.pred[0], r.pred[1],
           r.pred_norm[1]);
out:
    bb_tasks_mc_result_free(&r);
    bb_forward_destroy(&f);
    bb_tasks_mc_destroy(&set);
}

/* NaN logits: every choice scores NaN, none wins, each is counted. */
static void test_mc_nonfinite(void) {
    static const char jsonl[] = "{\"question\": \"Once upon a\", \"choices\": [\"time\", \"dog\"], \"answer\": 0}\n";
    bb_mc_set *set = NULL;
    bb_model *nan_model = NULL;
    float *rows = NULL;
    bb_forward *f = NULL;
    bb_mc_result r = {0};
    EXPECT_OK(bb_tasks_mc_parse(jsonl, sizeof jsonl - 1, "nan.jsonl", &set));
    EXPECT_OK(make_broken_model(1, &nan_model, &rows));
    if (nan_model) EXPECT_OK(bb_forward_create(nan_model, 0, &f));
    if (set && f) {
        EXPECT_OK(bb_tasks_mc_score(f, tok, set, NULL, &r));
        EXPECT(r.pred && r.n_nonfinite == 2 && r.pred[0] == -1 && r.pred_norm[0] == -1 && r.correct == 0,
               "non-finite %d, predictions %d / %d", r.n_nonfinite, r.pred ? r.pred[0] : 0,
               r.pred_norm ? r.pred_norm[0] : 0);
    }
    bb_tasks_mc_result_free(&r);
    bb_forward_destroy(&f);
    bb_model_destroy(&nan_model);
    free(rows);
    bb_tasks_mc_destroy(&set);
}

static void test_mc_key_variants(void) {
    static const char jsonl[] =
        "\n"
        "{\"ctx\": \"A man\", \"endings\": [\"runs.\", \"sits.\", \"eats.\"], \"label\": \"2\"}\r\n"
        "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 1, \"extra\": [1, 2]}\n"
        "   \n"
        "{\"context\": \"Pick\", \"choices\": [\"w\", \"x\", \"y\", \"z\"], \"answer\": \"D\"}\n"
        "{\"question\": \"Trailing space \", \"choices\": [\"\\u00e9t\\u00e9\", \"b\"], \"answer\": 1.0}";
    bb_mc_set *set = NULL;
    EXPECT_OK(bb_tasks_mc_parse(jsonl, sizeof jsonl - 1, "variants.jsonl", &set));
    if (!set) return;
    EXPECT(set->n == 4 && set->n_choices_total == 11, "%d questions, %d choices", set->n, set->n_choices_total);
    EXPECT(set->items[0].answer == 2 && set->items[0].line == 2 && !strcmp(set->items[0].question, "A man"),
           "HellaSwag shape: answer %d line %d", set->items[0].answer, set->items[0].line);
    EXPECT(set->items[1].answer == 1 && set->items[1].line == 3, "query/gold: answer %d line %d", set->items[1].answer,
           set->items[1].line);
    EXPECT(set->items[2].answer == 3 && set->items[2].line == 5, "letter answer %d line %d", set->items[2].answer,
           set->items[2].line);
    EXPECT(set->items[3].answer == 1 && !strcmp(set->items[3].choices[0], "\xc3\xa9t\xc3\xa9"),
           "answer %d, choice '%s'", set->items[3].answer, set->items[3].choices[0]);
    /* trailing whitespace of a question moves into the continuation: scored like "Trailing space " + choice */
    bb_forward *f = NULL;
    bb_mc_result r = {0};
    EXPECT_OK(bb_forward_create(model, 0, &f));
    EXPECT_OK(bb_tasks_mc_score(f, tok, set, NULL, &r));
    if (r.loglik) {
        int n_cont = 0;
        double ref = ref_loglik(f, "Trailing space", "b", &n_cont);
        EXPECT(fabs(r.loglik[10] - ref) <= 1e-4 + 1e-5 * fabs(ref), "%.8f vs %.8f", r.loglik[10], ref);
    }
    bb_tasks_mc_result_free(&r);
    bb_forward_destroy(&f);
    bb_tasks_mc_destroy(&set);
}

static void expect_mc_error(const char *text, const char *needle) {
    bb_mc_set *set = NULL;
    EXPECT_ERR(bb_tasks_mc_parse(text, strlen(text), "bad.jsonl", &set), BB_ERR_FORMAT, needle);
    EXPECT(set == NULL, "a failed parse left a set for: %s", text);
    bb_tasks_mc_destroy(&set);
}

static void test_mc_malformed(void) {
    static const char good[] = "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s\n{\"question\": \"q\", \"choices\": [\"a\", \"b\"] \"answer\": 0}\n", good);
    expect_mc_error(buf, "bad.jsonl:3:1:");
    expect_mc_error("[1, 2]", "bad.jsonl:1: expected a JSON object, found an array");
    expect_mc_error("{\"question\": \"q\", \"answer\": 0}", "bad.jsonl:1: no choices: expected one of the keys");
    expect_mc_error("{\"choices\": [\"a\", \"b\"], \"answer\": 0}", "bad.jsonl:1: no question");
    expect_mc_error("{\"question\": \"q\", \"choices\": [\"a\", \"b\"]}", "bad.jsonl:1: no answer");
    expect_mc_error("{\"question\": \"q\", \"context\": \"c\", \"choices\": [\"a\", \"b\"], \"answer\": 0}",
                    "both \"question\" and \"context\"");
    expect_mc_error("{\"question\": 7, \"choices\": [\"a\", \"b\"], \"answer\": 0}",
                    "\"question\" must be a string, found a number");
    expect_mc_error("{\"question\": \"q\", \"choices\": \"ab\", \"answer\": 0}",
                    "\"choices\" must be an array of strings, found a string");
    expect_mc_error("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": 0}", "\"choices\" has 1 choice");
    expect_mc_error("{\"question\": \"q\", \"choices\": [\"a\", 3], \"answer\": 0}",
                    "bad.jsonl:1: choice 1 of \"choices\" must be a string, found a number");
    expect_mc_error("{\"question\": \"q\", \"choices\": [\"a\", \"\"], \"answer\": 0}",
                    "choice 1 of \"choices\" is empty");
    expect_mc_error("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}",
                    "\"answer\" is 2, but the 2 choices are numbered 0..1");
    expect_mc_error("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": -1}", "\"answer\" is -1");
    expect_mc_error("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 0.5}",
                    "\"answer\" must be a 0-based integer");
    expect_mc_error("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"label\": \"b\"}",
                    "\"label\" must be a 0-based integer, a string of digits or one letter A-Z");
    expect_mc_error("{\"question\": \"a\\u0000b\", \"choices\": [\"a\", \"b\"], \"answer\": 0}",
                    "contains a NUL character");
    expect_mc_error("\n  \n", "bad.jsonl: no questions");
    bb_mc_set *set = NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/no_such_dir/mc.jsonl", test_tmpdir());
    EXPECT_ERR(bb_tasks_mc_load(path, &set), BB_ERR_IO, "no_such_dir/mc.jsonl");

    /* a question too long for the model's context names its line */
    bb_forward *f = NULL;
    EXPECT_OK(bb_forward_create(model, 0, &f));
    size_t n = 40 + 6 * (size_t)model->cfg.max_seq_len;
    char *big = malloc(n + 100), *o = big;
    o += sprintf(o, "%s{\"question\": \"", good);
    for (int i = 0; i < model->cfg.max_seq_len; i++) o += sprintf(o, "x%d ", i % 10);
    sprintf(o, "\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n");
    EXPECT_OK(bb_tasks_mc_parse(big, strlen(big), "long.jsonl", &set));
    bb_mc_result r = {0};
    if (set && f) EXPECT_ERR(bb_tasks_mc_score(f, tok, set, NULL, &r), BB_ERR_ARG, "long.jsonl:2: question + choice 0");
    EXPECT(r.loglik == NULL, "result left allocated after an error");
    free(big);
    bb_tasks_mc_destroy(&set);
    bb_forward_destroy(&f);
}

/* ---- canaries -------------------------------------------------------------------------- */

static void test_canaries(void) {
    char path[1024], *greedy = NULL;
    size_t glen = 0;
    snprintf(path, sizeof path, "%s/data/stories260K/expected_greedy_200.txt", test_shared());
    EXPECT_OK(bb_file_read_all(path, 1 << 20, &greedy, &glen));
    if (!greedy) return;
    EXPECT(!strncmp(greedy, "Once upon a time, there was a little girl named Lily.", 53), "%.60s", greedy);
    /* canary 2: the first 120 bytes of the known greedy output from BOS alone */
    char jsonl[1024], *o = jsonl;
    o += sprintf(o, "{\"name\": \"lily\", \"prompt\": \"Once upon a time\", \"expected\": \", there was a little girl "
                    "named Lily.\"}\n");
    o += sprintf(o, "{\"prompt\": \"\", \"expected\": ");
    json_put(&o, greedy, 120);
    o += sprintf(o, "}\n{\"name\": \"tim\", \"prompt\": \"Once upon a time\", \"expected\": \", there was a little "
                    "boy named Tim.\"}\n");
    free(greedy);
    bb_canary_set *set = NULL;
    EXPECT_OK(bb_tasks_canaries_parse(jsonl, strlen(jsonl), "canaries.jsonl", &set));
    if (!set) return;
    EXPECT(set->n == 3 && !strcmp(set->items[1].name, "line 2"), "%d canaries, second named '%s'", set->n,
           set->n > 1 ? set->items[1].name : "");
    bb_forward *f = NULL;
    bb_canary_result r = {0};
    EXPECT_OK(bb_forward_create(model, bb_tasks_canaries_positions(set), &f));
    EXPECT_OK(bb_tasks_canaries_run(f, tok, set, &r));
    if (r.c) {
        EXPECT(r.n == 3 && r.n_pass == 2, "%d of %d passed", r.n_pass, r.n);
        EXPECT(r.c[0].pass && r.c[1].pass, "lily: pass %d got '%s'; greedy: pass %d got '%s'", r.c[0].pass, r.c[0].got,
               r.c[1].pass, r.c[1].got);
        size_t at = strlen(", there was a little ");
        EXPECT(!r.c[2].pass && r.c[2].diverge == at && !r.c[2].ended, "tim: pass %d diverges at %zu (expected %zu)",
               r.c[2].pass, r.c[2].diverge, at);
        EXPECT(!strncmp(r.c[2].got, ", there was a little girl", 25), "tim got '%s'", r.c[2].got);
    }
    bb_tasks_canaries_result_free(&r);
    bb_forward_destroy(&f);
    bb_tasks_canaries_destroy(&set);

    /* a short KV cache ends the output early: a failure at the point it stopped */
    static const char one[] =
        "{\"prompt\": \"Once upon a time\", \"expected\": \", there was a little girl named Lily. "
        "She loved to play outside in the park.\"}";
    EXPECT_OK(bb_tasks_canaries_parse(one, sizeof one - 1, "short.jsonl", &set));
    EXPECT_OK(bb_forward_create(model, 12, &f));
    if (set && f) {
        EXPECT_OK(bb_tasks_canaries_run(f, tok, set, &r));
        EXPECT(r.c && !r.c[0].pass && r.c[0].ended && r.c[0].diverge == r.c[0].got_len && r.c[0].got_len > 0,
               "cache of 12: pass %d ended %d diverge %zu got %zu bytes", r.c ? r.c[0].pass : -1,
               r.c ? r.c[0].ended : -1, r.c ? r.c[0].diverge : 0, r.c ? r.c[0].got_len : 0);
    }
    bb_tasks_canaries_result_free(&r);
    bb_forward_destroy(&f);
    bb_tasks_canaries_destroy(&set);
}

/* The example file in tests/data passes on stories260K. */
static void test_canary_file(void) {
    const char *src = getenv("BB_SOURCE");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/canaries_stories260k.jsonl", src && *src ? src : "..");
    bb_canary_set *set = NULL;
    EXPECT_OK(bb_tasks_canaries_load(path, &set));
    if (!set) return;
    bb_forward *f = NULL;
    bb_canary_result r = {0};
    EXPECT_OK(bb_forward_create(model, bb_tasks_canaries_positions(set), &f));
    EXPECT_OK(bb_tasks_canaries_run(f, tok, set, &r));
    for (int i = 0; r.c && i < r.n; i++)
        EXPECT(r.c[i].pass, "%s: diverges at byte %zu, got '%s'", set->items[i].name, r.c[i].diverge, r.c[i].got);
    bb_tasks_canaries_result_free(&r);
    bb_forward_destroy(&f);
    bb_tasks_canaries_destroy(&set);
}

static void test_canaries_malformed(void) {
    bb_canary_set *set = NULL;
    EXPECT_ERR(bb_tasks_canaries_parse("{\"prompt\": \"a\"}", 15, "c.jsonl", &set), BB_ERR_FORMAT,
               "c.jsonl:1: no \"expected\"");
    static const char two[] = "{\"prompt\": \"a\", \"expected\": \"b\"}\n{\"expected\": \"b\"}";
    EXPECT_ERR(bb_tasks_canaries_parse(two, sizeof two - 1, "c.jsonl", &set), BB_ERR_FORMAT,
               "c.jsonl:2: no \"prompt\"");
    static const char empty[] = "{\"prompt\": \"a\", \"expected\": \"\"}";
    EXPECT_ERR(bb_tasks_canaries_parse(empty, sizeof empty - 1, "c.jsonl", &set), BB_ERR_FORMAT,
               "c.jsonl:1: \"expected\" is empty");
    static const char num[] = "{\"prompt\": 1, \"expected\": \"b\"}";
    EXPECT_ERR(bb_tasks_canaries_parse(num, sizeof num - 1, "c.jsonl", &set), BB_ERR_FORMAT,
               "c.jsonl:1: \"prompt\" must be a string, found a number");
    static const char name[] = "{\"prompt\": \"a\", \"expected\": \"b\", \"name\": null}";
    EXPECT_ERR(bb_tasks_canaries_parse(name, sizeof name - 1, "c.jsonl", &set), BB_ERR_FORMAT,
               "\"name\" must be a string, found null");
    EXPECT_ERR(bb_tasks_canaries_parse("{\"prompt\": \"a\", }", 17, "c.jsonl", &set), BB_ERR_FORMAT, "c.jsonl:1:1:");
    EXPECT_ERR(bb_tasks_canaries_parse("", 0, "c.jsonl", &set), BB_ERR_FORMAT, "c.jsonl: no canaries");
    EXPECT(set == NULL, "a failed parse left a set");
}

int main(void) {
    if (setup() != 0) {
        fprintf(stderr, "setup failed (stories260K, its tokenizer or dev.txt under %s): %s\n", test_shared(),
                bb_last_error());
        return 1;
    }
    TEST_RUN(test_mc_key_variants);
    TEST_RUN(test_mc_malformed);
    TEST_RUN(test_mc_matches_reference);
    TEST_RUN(test_mc_healthy_and_broken);
    TEST_RUN(test_mc_nonfinite);
    TEST_RUN(test_canaries_malformed);
    TEST_RUN(test_canaries);
    TEST_RUN(test_canary_file);
    free(mc_jsonl);
    bb_tokenizer_destroy(&tok);
    bb_model_destroy(&model);
    return TEST_DONE();
}
