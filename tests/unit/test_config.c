/* test_config.c — the YAML configuration: defaults, files, every error message,
 * --set overrides, dump/load round trip, hash, presets, and the generated files.
 *
 * With BB_REGEN_DOCS=1 it rewrites docs/config.md and configs/default.yaml from
 * the key table instead of comparing them (the config-doc build target). */
#include <dirent.h>
#include <stdint.h>
#include <string.h>

#include "core/file.h"
#include "core/sha256.h"
#include "io/config.h"
#include "test.h"

static const char *source_dir(void) {
    const char *d = getenv("BB_SOURCE");
    return d && *d ? d : ".";
}

/* Write text to <tmp>/<name> and return the path (static buffer per call site). */
static const char *tmp_file(const char *name, const char *text, char *path, size_t n) {
    snprintf(path, n, "%s/%s", test_tmpdir(), name);
    if (test_write_file(path, text, strlen(text)) != 0) fprintf(stderr, "cannot write %s\n", path);
    return path;
}

static bb_status load_text(const char *text, bb_config *cfg) {
    char path[1200];
    return bb_config_load(tmp_file("t.yaml", text, path, sizeof path), cfg);
}

/* Field-by-field equality through the table (struct padding may differ). */
static int configs_equal(const bb_config *a, const bb_config *b, char *which, size_t n) {
    for (int i = 0; i < bb_config_key_count(); i++) {
        const bb_config_key *k = bb_config_key_at(i);
        const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
        int same;
        if (k->type == BB_CFG_STRING || k->type == BB_CFG_ENUM)
            same = strcmp(pa, pb) == 0;
        else if (k->type == BB_CFG_INT_LIST) {
            const bb_config_int_list *la = (const void *)pa, *lb = (const void *)pb;
            same = la->n == lb->n && memcmp(la->v, lb->v, sizeof la->v[0] * (size_t)la->n) == 0;
        } else
            same = memcmp(pa, pb, k->size) == 0;
        if (!same) {
            snprintf(which, n, "%s.%s", k->section, k->key);
            return 0;
        }
    }
    return 1;
}

static void test_table(void) {
    EXPECT(bb_config_key_count() > 80, "only %d keys", bb_config_key_count());
    EXPECT(bb_config_key_at(-1) == NULL && bb_config_key_at(bb_config_key_count()) == NULL, "bounds");
    const char *prev = NULL;
    int nsec = 0;
    for (int i = 0; i < bb_config_key_count(); i++) {
        const bb_config_key *k = bb_config_key_at(i);
        size_t want = k->type == BB_CFG_INT        ? sizeof(int64_t)
                      : k->type == BB_CFG_FLOAT    ? sizeof(double)
                      : k->type == BB_CFG_BOOL     ? sizeof(bool)
                      : k->type == BB_CFG_INT_LIST ? sizeof(bb_config_int_list)
                                                   : 0;
        if (want) EXPECT(k->size == want, "%s.%s: field size %zu, type wants %zu", k->section, k->key, k->size, want);
        if (k->type == BB_CFG_ENUM) {
            EXPECT(k->choices && *k->choices, "%s.%s has no choices", k->section, k->key);
            for (const char *c = k->choices; c && *c;) {
                const char *e = strchr(c, '|');
                size_t cl = e ? (size_t)(e - c) : strlen(c);
                EXPECT(cl > 0 && cl < k->size, "%s.%s: choice too long for its field", k->section, k->key);
                c = e ? e + 1 : c + cl;
            }
        }
        EXPECT(k->doc && strlen(k->doc) > 10, "%s.%s lacks a description", k->section, k->key);
        char dotted[128];
        snprintf(dotted, sizeof dotted, "%s.%s", k->section, k->key);
        EXPECT(bb_config_key_find(dotted) == k, "%s is not found, or found twice", dotted);
        if (!prev || strcmp(prev, k->section) != 0) {
            const bb_config_section *s = bb_config_section_at(nsec);
            EXPECT(s && strcmp(s->name, k->section) == 0, "section %s out of order with the section table", k->section);
            for (int j = 0; j < i; j++)
                EXPECT(strcmp(bb_config_key_at(j)->section, k->section) != 0, "section %s is split", k->section);
            nsec++;
            prev = k->section;
        }
    }
    EXPECT(nsec == bb_config_section_count(), "%d sections with keys, %d in the table", nsec,
           bb_config_section_count());
    EXPECT(bb_config_key_find("prune") == NULL && bb_config_key_find("prune.nope") == NULL, "find of a bad name");
}

static void test_defaults(void) {
    bb_config c;
    EXPECT_OK(bb_config_defaults(&c));
    EXPECT(strcmp(c.run.name, "default") == 0 && strcmp(c.run.dir, "runs/default") == 0, "run %s %s", c.run.name,
           c.run.dir);
    EXPECT(c.run.seed == 1234 && strcmp(c.run.log_level, "info") == 0 && !c.run.resume, "run");
    EXPECT(strcmp(c.model.path, "synthetic:tiny") == 0 && c.model.tokenizer[0] == '\0', "model");
    EXPECT(c.calib.samples == 32 && c.calib.seq_len == 128 && c.calib.micro_batch == 4, "calib");
    EXPECT(c.scan.enabled && c.scan.rank == 64 && c.scan.oversample == 8 && c.scan.power_iters == 2, "scan");
    EXPECT_NEAR(c.usage.eps, 1e-3, 0);
    EXPECT(strcmp(c.prune.method, "wanda") == 0 && strcmp(c.prune.pattern, "unstructured") == 0, "prune");
    EXPECT_NEAR(c.prune.per_wave, 0.10, 0);
    EXPECT_NEAR(c.prune.target, 0.30, 0);
    EXPECT_NEAR(c.prune.owl_lambda, 0.08, 0);
    EXPECT_NEAR(c.prune.owl_m, 5.0, 0);
    EXPECT(c.waves.count == 5, "waves");
    EXPECT_NEAR(c.waves.alpha_start, 0.3, 0);
    EXPECT_NEAR(c.waves.alpha_end, 0.7, 0);
    EXPECT(c.heal.rank == 8 && c.heal.steps == 200 && c.heal.taper && c.heal.closed_form, "heal");
    EXPECT_NEAR(c.heal.lr, 2e-4, 0);
    EXPECT_NEAR(c.scaffold.tau1, 0.1, 0);
    EXPECT_NEAR(c.stress.delta, 0.01, 0);
    EXPECT_NEAR(c.stress.gamma, 2.0, 0);
    EXPECT(c.stress.boost_bits == 4 && c.stress.max_bits == 16, "stress");
    EXPECT_NEAR(c.rigl.fraction, 0.05, 0);
    EXPECT(c.bundles.count == 4 && !c.bundles.enabled, "bundles");
    EXPECT(strcmp(c.quant.method, "gptq") == 0 && strcmp(c.quant.type, "auto") == 0, "quant");
    EXPECT(strcmp(c.budget.policy, "optimal") == 0 && c.budget.init_bits == 8 && c.budget.base_bits == 4, "budget");
    EXPECT_NEAR(c.budget.target_bits, 4.0, 0);
    static const int64_t bits[] = {2, 3, 4, 5, 6, 8, 16};
    EXPECT(c.budget.bits_choices.n == 7 && memcmp(c.budget.bits_choices.v, bits, sizeof bits) == 0, "bits_choices");
    EXPECT_NEAR(c.stoploss.max_dppl, 0.03, 0);
    EXPECT(c.stoploss.patience == 2 && c.stoploss.rollback_waves == 3, "stoploss");
    EXPECT(strcmp(c.lowrank.export_, "merge") == 0 && strcmp(c.checkpoint.keep, "last") == 0, "lowrank/checkpoint");
    EXPECT(strcmp(c.backend.device, "auto") == 0 && c.backend.threads == 0, "backend");
    EXPECT_OK(bb_config_validate(&c));

    bb_config l, e, m;
    char which[128];
    EXPECT_OK(bb_config_load(NULL, &l));
    EXPECT(configs_equal(&c, &l, which, sizeof which), "load(NULL) differs in %s", which);
    EXPECT_OK(bb_config_load("", &l));
    EXPECT_OK(load_text("", &e));
    EXPECT(configs_equal(&c, &e, which, sizeof which), "empty file differs in %s", which);
    EXPECT_OK(load_text("# only a comment\n---\n", &e));
    EXPECT(configs_equal(&c, &e, which, sizeof which), "comment-only file differs in %s", which);
    EXPECT_OK(load_text("prune:\nheal: ~\n---\n---\n", &e));
    EXPECT(configs_equal(&c, &e, which, sizeof which), "empty sections differ in %s", which);
    EXPECT_OK(bb_config_load_memory("run: {seed: 7}}}}", 14, "mem", &m)); /* reads len bytes, not to a NUL */
    EXPECT(m.run.seed == 7, "seed %lld", (long long)m.run.seed);
}

static const char full_yaml[] = "# every type once, and then some\n"
                                "run:\n"
                                "  name: exp-42\n"
                                "  dir: \"/scratch/runs/exp 42\"\n"
                                "  seed: 99\n"
                                "  log_level: debug\n"
                                "  resume: yes\n"
                                "  progress: plain\n"
                                "model:\n"
                                "  path: /models/Llama-2-7b-hf\n"
                                "  tokenizer: ''\n"
                                "data:\n"
                                "  calib: data/calib.txt\n"
                                "  eval_tokens: data/eval.tok\n"
                                "calib: {samples: 64, seq_len: 2048, micro_batch: 2, gram_precision: f64}\n"
                                "prune:\n"
                                "  method: sparsegpt\n"
                                "  pattern: \"2:4\"\n"
                                "  per_wave: 0.08\n"
                                "  target: 0.25\n"
                                "  owl: true\n"
                                "  damp: 1e-2\n"
                                "heal:\n"
                                "  lr: 1.5e-4\n"
                                "  steps: 300\n"
                                "  taper: off\n"
                                "quant:\n"
                                "  type: Q4_K\n"
                                "  act_order: true\n"
                                "budget:\n"
                                "  policy: seed\n"
                                "  target_bits: 4.5\n"
                                "  bits_choices:\n"
                                "    - 4\n"
                                "    - 8\n"
                                "stress:\n"
                                "  max_bits: 8\n"
                                "backend: {device: cpu, comm: mpi, threads: 8}\n";

static void test_full_file(void) {
    bb_config c;
    EXPECT_OK(load_text(full_yaml, &c));
    EXPECT(strcmp(c.run.name, "exp-42") == 0 && strcmp(c.run.dir, "/scratch/runs/exp 42") == 0, "run %s|%s", c.run.name,
           c.run.dir);
    EXPECT(c.run.seed == 99 && strcmp(c.run.log_level, "debug") == 0 && c.run.resume, "run");
    EXPECT(strcmp(c.model.path, "/models/Llama-2-7b-hf") == 0 && c.model.tokenizer[0] == 0, "model");
    EXPECT(strcmp(c.data.calib, "data/calib.txt") == 0 && strcmp(c.data.eval_tokens, "data/eval.tok") == 0, "data");
    EXPECT(c.calib.samples == 64 && c.calib.seq_len == 2048 && strcmp(c.calib.gram_precision, "f64") == 0, "calib");
    EXPECT(strcmp(c.prune.method, "sparsegpt") == 0 && strcmp(c.prune.pattern, "2:4") == 0 && c.prune.owl, "prune");
    EXPECT_NEAR(c.prune.per_wave, 0.08, 0);
    EXPECT_NEAR(c.prune.damp, 0.01, 0);
    EXPECT_NEAR(c.heal.lr, 1.5e-4, 0);
    EXPECT(c.heal.steps == 300 && !c.heal.taper, "heal");
    EXPECT(strcmp(c.quant.type, "q4_k") == 0 && c.quant.act_order, "quant");
    EXPECT(c.budget.bits_choices.n == 2 && c.budget.bits_choices.v[0] == 4 && c.budget.bits_choices.v[1] == 8, "list");
    EXPECT_NEAR(c.budget.target_bits, 4.5, 0);
    EXPECT(c.backend.threads == 8 && strcmp(c.backend.comm, "mpi") == 0, "backend");
    EXPECT(c.scan.rank == 64, "untouched keys keep their defaults");
}

/* The file must fail with BB_ERR_CONFIG and a message containing `needle`, and
 * leave the config untouched. */
static void expect_file_error(const char *text, const char *needle) {
    bb_config c, before;
    bb_config_defaults(&c);
    c.run.seed = 77;
    before = c;
    char path[1200];
    tmp_file("t.yaml", text, path, sizeof path);
    EXPECT_ERR(bb_config_load(path, &c), BB_ERR_CONFIG, needle);
    char which[128];
    EXPECT(configs_equal(&c, &before, which, sizeof which), "a failed load changed %s", which);
}

static void test_errors(void) {
    char p[1200], msg[1400];
    snprintf(p, sizeof p, "%s/t.yaml", test_tmpdir());
#define AT(lc, rest) (snprintf(msg, sizeof msg, "%s:%s: %s", p, lc, rest), msg)
    expect_file_error("prune:\n  per_wav: 0.1\n", AT("2:3", "unknown key 'prune.per_wav'; did you mean 'per_wave'?"));
    expect_file_error("prune:\n  per_wav: 0.1\n", "Keys of prune: method, pattern, per_wave, target");
    expect_file_error("prune:\n  rank: 4\n", "unknown key 'prune.rank'; did you mean 'scan.rank'");
    expect_file_error("run: {}\nprun:\n  target: 0.2\n", AT("2:1", "unknown section 'prun'; did you mean 'prune'?"));
    expect_file_error("zzz: 1\n", "Sections: run, model, data");
    expect_file_error(
        "run: {}\nper_wave: 0.2\n",
        AT("2:1", "unknown section 'per_wave'; 'per_wave' is a key of section prune: indent it under 'prune:'"));
    expect_file_error("prune:\n  per_wave: ten\n", AT("2:13", "prune.per_wave: expected a number, found 'ten'"));
    expect_file_error("prune:\n  per_wave: 1.5\n", AT("2:13", "prune.per_wave = 1.5 is outside [0, 1]"));
    expect_file_error("prune:\n  target: 1\n", "prune.target = 1 is outside [0, 1)");
    expect_file_error("heal:\n  lr: 0\n", "heal.lr = 0 is outside (0, 1]");
    expect_file_error("calib:\n  samples: 12.5\n", "calib.samples: expected an integer, found '12.5'");
    expect_file_error("calib:\n  samples: 99999999999999999999\n", "does not fit a 64-bit integer");
    expect_file_error("calib:\n  samples:\n", "calib.samples: expected an integer, found an empty value");
    expect_file_error("heal:\n  taper: maybe\n", "heal.taper: expected true or false, found 'maybe'");
    expect_file_error("heal:\n  lr: .nan\n", "heal.lr: expected a number, found '.nan'");
    expect_file_error("heal:\n  lr: nan\n", "heal.lr: expected a number, found 'nan'");
    expect_file_error("heal:\n  lr: 1e999\n", "heal.lr: expected a finite number, found '1e999'");
    expect_file_error("calib:\n  samples: \" 12\"\n", "calib.samples: expected an integer, found ' 12'");
    expect_file_error(
        "prune:\n  method: wandaa\n",
        AT("2:11", "prune.method: 'wandaa' is not one of wanda, sparsegpt, magnitude, none; did you mean 'wanda'?"));
    expect_file_error("quant: {type: q4_K_M}\n", "quant.type: 'q4_K_M' is not one of auto, f32, f16");
    expect_file_error("quant: {type: q4_kk}\n", "; did you mean 'q4_k'?");
    expect_file_error("quant: {type: }\n", "quant.type: expected one of auto, f32");
    expect_file_error("prune:\n  target: 0.2\n  method: wanda\n  target: 0.25\n",
                      AT("4:3", "duplicate key 'prune.target' (first at line 2, column 3)"));
    expect_file_error("heal: {rank: 4}\nrun: {seed: 1}\nheal: {steps: 9}\n",
                      AT("3:1", "duplicate section 'heal' (first at line 1, column 1)"));
    expect_file_error("prune:\n  per_wave:\n    a: 1\n",
                      AT("3:5", "prune.per_wave: expected a number, found a mapping"));
    expect_file_error("run:\n  name: [a, b]\n", AT("2:9", "run.name: expected a string, found a list"));
    expect_file_error("prune: 5\n", AT("1:8", "section 'prune' must be a mapping of keys"));
    expect_file_error("prune:\n  - target\n",
                      "section 'prune' must be a mapping of keys (key: value, indented below it), found a list");
    expect_file_error("- run\n- prune\n", AT("1:1", "the top level must be a mapping of sections"));
    expect_file_error("just text\n", "the top level must be a mapping of sections (run:, prune:, ...), found a scalar");
    expect_file_error("budget:\n  bits_choices: 4\n",
                      AT("2:17", "budget.bits_choices: expected a list of integers like [2, 4, 8], found a scalar"));
    expect_file_error("budget:\n  bits_choices: [4, 3]\n",
                      AT("2:21", "budget.bits_choices: must be strictly increasing, but element 2 (3) follows 4"));
    expect_file_error("budget:\n  bits_choices: [4, 64]\n",
                      AT("2:21", "budget.bits_choices: element 2 (64) is outside [1, 32]"));
    expect_file_error("budget:\n  bits_choices: [4, x]\n",
                      AT("2:21", "budget.bits_choices: expected an integer, found 'x'"));
    expect_file_error("budget:\n  bits_choices: [4, [8]]\n",
                      AT("2:21", "budget.bits_choices: expected an integer as list element, found a list"));
    expect_file_error("prune:\n  per_wave: [0.1\n", "YAML syntax error");
    expect_file_error("prune:\n  per_wave: 0.1\n target: 0.2\n",
                      AT("3:2", "YAML syntax error: did not find expected key while parsing a block mapping (at line "
                                "1, column 1); check the indentation of this line"));
    expect_file_error(
        "run:\n  name: \"unterminated\n",
        AT("3:1",
           "YAML syntax error: found unexpected end of stream while scanning a quoted scalar (at line 2, column 9)"));
    expect_file_error("run: {seed: 1}\n---\nrun: {seed: 2}\n", AT("2:1", "a second YAML document"));
    expect_file_error("run:\n  name: \"a\\0b\"\n", "run.name: the value contains a NUL character");
    expect_file_error("[a]: 1\n", AT("1:1", "a section name must be a plain name, found a list"));
    expect_file_error("run: \"\\xff\xff\"\n", "must be UTF-8");
    /* cross-key checks name both keys */
    expect_file_error("budget:\n  target_bits: 20\n",
                      "budget.target_bits = 20 is outside budget.bits_choices [2 .. 16]");
    expect_file_error("budget:\n  base_bits: 7\n", "budget.base_bits = 7 is not one of budget.bits_choices");
    expect_file_error("budget:\n  base_bits: 8\n  init_bits: 4\n", "budget.base_bits = 8 exceeds budget.init_bits = 4");
    expect_file_error("waves:\n  alpha_start: 0.8\n", "waves.alpha_start = 0.8 exceeds waves.alpha_end = 0.7");
    expect_file_error(
        "prune:\n  target: 0.5\n",
        "prune.target = 0.5 cannot be reached: prune.per_wave = 0.1 over waves.count = 5 waves removes at most 0.4095");
    expect_file_error("data:\n  calib: a.txt\n  calib_tokens: a.tok\n",
                      "data.calib and data.calib_tokens are both set");
    expect_file_error("backend:\n  device: cpu\n  comm: nccl\n",
                      "backend.comm = nccl needs GPUs, but backend.device = cpu");
    expect_file_error("lowrank:\n  enabled: true\n", "lowrank.enabled is true but lowrank.rank_budget is 0");
    expect_file_error("calib:\n  samples: 2\n", "calib.micro_batch = 4 exceeds calib.samples = 2");
    snprintf(msg, sizeof msg, "%s: budget.target_bits = 20", p); /* cross-key messages name the file */
    expect_file_error("budget:\n  target_bits: 20\n", msg);
#undef AT
    char big[1400] = "run:\n  dir: ";
    memset(big + strlen(big), 'x', 1100);
    big[12 + 1100] = '\0';
    strcat(big, "\n");
    expect_file_error(big, "run.dir: the value has 1100 bytes, more than the 1023 allowed");

    bb_config c;
    char missing[1200];
    snprintf(missing, sizeof missing, "%s/does-not-exist.yaml", test_tmpdir());
    EXPECT_ERR(bb_config_load(missing, &c), BB_ERR_IO, "does-not-exist.yaml");
    EXPECT_ERR(bb_config_load(test_tmpdir(), &c), BB_ERR_IO, "not a regular file");
}

static void test_set(void) {
    bb_config c;
    EXPECT_OK(bb_config_defaults(&c));
    EXPECT_OK(bb_config_set(&c, "prune.per_wave=0.05"));
    EXPECT_NEAR(c.prune.per_wave, 0.05, 0);
    EXPECT_OK(bb_config_set(&c, "calib.samples= 256 "));
    EXPECT(c.calib.samples == 256, "samples %lld", (long long)c.calib.samples);
    EXPECT_OK(bb_config_set(&c, "heal.enabled=off"));
    EXPECT(!c.heal.enabled, "bool");
    EXPECT_OK(bb_config_set(&c, "model.path=/data/m=1.gguf"));
    EXPECT(strcmp(c.model.path, "/data/m=1.gguf") == 0, "string keeps everything after the first '=': %s",
           c.model.path);
    EXPECT_OK(bb_config_set(&c, "model.tokenizer="));
    EXPECT(c.model.tokenizer[0] == 0, "empty string");
    EXPECT_OK(bb_config_set(&c, "prune.pattern=4:8"));
    EXPECT(strcmp(c.prune.pattern, "4:8") == 0, "enum");
    EXPECT_OK(bb_config_set(&c, "budget.bits_choices=3,4,8"));
    EXPECT(c.budget.bits_choices.n == 3 && c.budget.bits_choices.v[2] == 8, "list");
    EXPECT_OK(bb_config_set(&c, "budget.bits_choices=[2, 4, 8, 16]"));
    EXPECT(c.budget.bits_choices.n == 4 && c.budget.bits_choices.v[3] == 16, "bracketed list");
    EXPECT_OK(bb_config_validate(&c));

    bb_config before = c;
    char which[128];
    EXPECT_ERR(bb_config_set(&c, "prune.per_wave=abc"), BB_ERR_CONFIG, "--set prune.per_wave=abc: expected a number");
    EXPECT_ERR(bb_config_set(&c, "prune.per_wave=1.5"), BB_ERR_CONFIG,
               "--set prune.per_wave=1.5: 1.5 is outside [0, 1]");
    EXPECT_ERR(bb_config_set(&c, "prune.per_wav=0.1"), BB_ERR_CONFIG,
               "--set prune.per_wav=0.1: unknown key 'prune.per_wav'; did you mean 'per_wave'?");
    EXPECT_ERR(bb_config_set(&c, "prnue.target=0.1"), BB_ERR_CONFIG, "unknown section 'prnue'; did you mean 'prune'?");
    EXPECT_ERR(bb_config_set(&c, "prune.target"), BB_ERR_CONFIG, "--set prune.target: expected section.key=value");
    EXPECT_ERR(bb_config_set(&c, "target=0.1"), BB_ERR_CONFIG, "--set target=0.1: expected section.key=value");
    EXPECT_ERR(bb_config_set(&c, "prune=0.1"), BB_ERR_CONFIG, "Keys of prune:");
    EXPECT_ERR(bb_config_set(&c, "prune.method=obs"), BB_ERR_CONFIG, "'obs' is not one of wanda, sparsegpt");
    EXPECT_ERR(bb_config_set(&c, "run.resume=2"), BB_ERR_CONFIG, "expected true or false, found '2'");
    EXPECT_ERR(bb_config_set(&c, "budget.bits_choices=4,"), BB_ERR_CONFIG, "expected an integer after the last ','");
    EXPECT_ERR(bb_config_set(&c, "budget.bits_choices="), BB_ERR_CONFIG,
               "expected a list of 1 to 16 integers, found 0");
    EXPECT_ERR(bb_config_set(&c, "budget.bits_choices=8,4"), BB_ERR_CONFIG, "strictly increasing");
    EXPECT_ERR(bb_config_set(&c, "run.name=\xff"), BB_ERR_CONFIG, "not valid UTF-8");
    EXPECT_ERR(bb_config_set(&c, NULL), BB_ERR_ARG, "section.key=value");
    EXPECT(configs_equal(&c, &before, which, sizeof which), "a failed --set changed %s", which);

    /* cross-key checks run on demand, after the last override */
    EXPECT_OK(bb_config_set(&c, "budget.target_bits=20"));
    EXPECT_ERR(bb_config_validate(&c), BB_ERR_CONFIG, "budget.target_bits = 20 is outside budget.bits_choices");
    /* validate also checks a hand-filled struct key by key */
    bb_config h;
    bb_config_defaults(&h);
    h.prune.per_wave = -1;
    EXPECT_ERR(bb_config_validate(&h), BB_ERR_CONFIG, "prune.per_wave = -1 is outside [0, 1]");
    bb_config_defaults(&h);
    strcpy(h.prune.method, "obs");
    EXPECT_ERR(bb_config_validate(&h), BB_ERR_CONFIG, "prune.method: 'obs' is not one of");
}

static bb_status dump_to(const bb_config *c, const char *name, char *path, size_t n) {
    snprintf(path, n, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    BB_CHECK(f, BB_ERR_IO, "cannot write %s", path);
    bb_status st = bb_config_dump(c, f);
    fclose(f);
    return st;
}

static void test_roundtrip(void) {
    bb_config c, back;
    EXPECT_OK(load_text(full_yaml, &c));
    /* strings that need quoting and escapes, and floats that need every digit */
    EXPECT_OK(bb_config_set(&c, "run.name=a \"quoted\" name: with # and \\ and caf\xc3\xa9"));
    EXPECT_OK(bb_config_set(
        &c, "model.tokenizer=tab\there\x0bvt \xc2\x85nel \xe2\x80\xa8ls \xef\xbb\xbf bom \xf0\x9f\x90\xa6"));
    EXPECT_OK(bb_config_set(&c, "prune.damp=0.123456789012345678"));
    EXPECT_OK(bb_config_set(&c, "heal.lr=1e-300"));
    EXPECT_OK(bb_config_set(&c, "stress.delta=-0"));
    EXPECT_OK(bb_config_set(&c, "usage.eps=123456789"));
    char path[1200], which[128], h1[65], h2[65];
    EXPECT_OK(dump_to(&c, "dump.yaml", path, sizeof path));
    EXPECT_OK(bb_config_load(path, &back));
    EXPECT(configs_equal(&c, &back, which, sizeof which), "dump -> load differs in %s", which);
    EXPECT_OK(bb_config_hash(&c, h1));
    EXPECT_OK(bb_config_hash(&back, h2));
    EXPECT(strcmp(h1, h2) == 0 && strlen(h1) == 64, "hash %s vs %s", h1, h2);

    /* the dump of the defaults loads back to the defaults */
    bb_config d, dd;
    bb_config_defaults(&d);
    EXPECT_OK(dump_to(&d, "dump-default.yaml", path, sizeof path));
    EXPECT_OK(bb_config_load(path, &dd));
    EXPECT(configs_equal(&d, &dd, which, sizeof which), "default dump differs in %s", which);

    /* the hash is the SHA-256 of the dump text */
    char *text = NULL;
    size_t len = 0;
    EXPECT_OK(bb_file_read_all(path, 1 << 20, &text, &len));
    char hd[65], hx[65];
    EXPECT_OK(bb_config_hash(&d, hd));
    if (text) bb_sha256_hex(text, len, hx);
    EXPECT(text && strcmp(hd, hx) == 0, "hash is not the SHA-256 of the dump");
    EXPECT(text && strstr(text, "prune:\n  method: wanda\n  pattern: unstructured\n  per_wave: 0.1\n"),
           "dump text:\n%s", text ? text : "");
    EXPECT(text && strstr(text, "  bits_choices: [2, 3, 4, 5, 6, 8, 16]\n") && strstr(text, "  owl_m: 5.0\n"),
           "dump formats");
    free(text);

    char v[64];
    EXPECT_OK(bb_config_format_value(&d, bb_config_key_find("heal.lr"), v, sizeof v));
    EXPECT(strcmp(v, "0.0002") == 0, "heal.lr formats as %s", v);
    EXPECT_ERR(bb_config_format_value(&d, bb_config_key_find("run.dir"), v, 4), BB_ERR_ARG, "does not fit");
}

static void test_hash(void) {
    bb_config a, b, c;
    char ha[65], hb[65], hc[65];
    EXPECT_OK(load_text("prune:\n  target: 0.25\n  method: sparsegpt\nbudget:\n  bits_choices: [4, 8, 16]\n", &a));
    EXPECT_OK(load_text("# the same settings, written differently\n"
                        "budget: {bits_choices: [ 4,8,16 ]}   # flow style\n"
                        "prune:\n"
                        "    method: \"sparsegpt\"\n"
                        "    target: 2.5e-1\n"
                        "run:\n"
                        "  seed: 1234  # the default, spelled out\n",
                        &b));
    EXPECT_OK(load_text("prune:\n  target: 0.26\n  method: sparsegpt\nbudget:\n  bits_choices: [4, 8, 16]\n", &c));
    EXPECT_OK(bb_config_hash(&a, ha));
    EXPECT_OK(bb_config_hash(&b, hb));
    EXPECT_OK(bb_config_hash(&c, hc));
    EXPECT(strcmp(ha, hb) == 0, "formatting changed the hash: %s vs %s", ha, hb);
    EXPECT(strcmp(ha, hc) != 0, "a value change kept the hash %s", ha);
    EXPECT_OK(bb_config_set(&b, "run.seed=1235"));
    EXPECT_OK(bb_config_hash(&b, hb));
    EXPECT(strcmp(ha, hb) != 0, "--set did not change the hash");
}

/* Compare `path` with the text a generator writes; with BB_REGEN_DOCS=1 rewrite it. */
static void check_generated(const char *rel, bb_status (*gen)(FILE *)) {
    char path[1200], fresh[1200];
    snprintf(path, sizeof path, "%s/%s", source_dir(), rel);
    snprintf(fresh, sizeof fresh, "%s/generated.txt", test_tmpdir());
    FILE *f = fopen(fresh, "w");
    EXPECT(f, "cannot write %s", fresh);
    if (!f) return;
    EXPECT_OK(gen(f));
    fclose(f);
    char *want = NULL, *have = NULL;
    size_t nw = 0, nh = 0;
    EXPECT_OK(bb_file_read_all(fresh, 1 << 22, &want, &nw));
    const char *regen = getenv("BB_REGEN_DOCS");
    if (regen && strcmp(regen, "1") == 0) {
        EXPECT_OK(bb_file_write_atomic(path, want, nw));
        printf("wrote %s\n", path);
        free(want);
        return;
    }
    bb_error_set_quiet(1);
    bb_status st = bb_file_read_all(path, 1 << 22, &have, &nh);
    bb_error_set_quiet(0);
    int line = 1;
    size_t i = 0;
    if (st == BB_OK && want)
        for (; i < nw && i < nh && want[i] == have[i]; i++) line += want[i] == '\n';
    EXPECT(st == BB_OK && want && nw == nh && i == nw,
           "%s is out of date with the key table (first difference at line %d); regenerate it with "
           "`cmake --build <build-dir> --target config-doc` (runs this test with BB_REGEN_DOCS=1)",
           path, line);
    free(want);
    free(have);
}

static bb_status gen_doc(FILE *f) { return bb_config_write_doc(f); }
static bb_status gen_default(FILE *f) {
    bb_config d;
    BB_CALL(bb_config_defaults(&d));
    return bb_config_write_annotated(&d, f);
}

static void test_generated_files(void) {
    check_generated("docs/config.md", gen_doc);
    check_generated("configs/default.yaml", gen_default);

    /* the example in the docs is a valid config */
    char path[1200], *md = NULL;
    snprintf(path, sizeof path, "%s/docs/config.md", source_dir());
    size_t n = 0;
    EXPECT_OK(bb_file_read_all(path, 1 << 22, &md, &n));
    const char *a = md ? strstr(md, "```yaml\n") : NULL;
    const char *b = a ? strstr(a + 8, "```") : NULL;
    EXPECT(a && b, "docs/config.md has no yaml example");
    if (a && b) {
        bb_config c;
        EXPECT_OK(bb_config_load_memory(a + 8, (size_t)(b - a - 8), "docs/config.md example", &c));
        EXPECT(strcmp(c.prune.method, "sparsegpt") == 0, "example not applied");
    }
    free(md);
}

static void test_presets(void) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/configs", source_dir());
    DIR *d = opendir(dir);
    EXPECT(d, "cannot open %s (set BB_SOURCE to the source root)", dir);
    if (!d) return;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0) continue;
        char path[1500];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        bb_config c;
        EXPECT_OK(bb_config_load(path, &c));
        n++;
    }
    closedir(d);
    EXPECT(n >= 5, "found %d presets in %s", n, dir);

    /* default.yaml is the embedded default: same resolved config */
    bb_config def, file;
    char hd[65], hf[65], path[1500];
    snprintf(path, sizeof path, "%s/default.yaml", dir);
    bb_config_defaults(&def);
    EXPECT_OK(bb_config_load(path, &file));
    bb_config_hash(&def, hd);
    bb_config_hash(&file, hf);
    EXPECT(strcmp(hd, hf) == 0, "configs/default.yaml resolves to something other than the defaults");

    bb_config big;
    snprintf(path, sizeof path, "%s/llama2-70b.yaml", dir);
    EXPECT_OK(bb_config_load(path, &big));
    EXPECT(big.calib.samples == 128 && big.calib.seq_len == 2048, "70B preset calibrates on 128 x 2048");
    EXPECT(strcmp(big.model.path, "synthetic:llama2-70b") == 0, "70B preset model %s", big.model.path);
}

int main(void) {
    TEST_RUN(test_table);
    TEST_RUN(test_defaults);
    TEST_RUN(test_full_file);
    TEST_RUN(test_errors);
    TEST_RUN(test_set);
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_hash);
    TEST_RUN(test_presets);
    TEST_RUN(test_generated_files);
    return TEST_DONE();
}
