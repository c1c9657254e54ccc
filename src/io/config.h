/* config.h — the run configuration: YAML (libyaml) into one validated struct, driven by one key table.
 *
 * Every key is one row of a table {section, key, type, field, default, range, doc}
 * (io/config_keys.c). Parsing, validation, defaults, --set overrides, the resolved
 * dump, its hash and the Markdown reference all read that table, so a key added
 * there is everywhere at once.
 *
 * Enum values are stored as their text (prune.method = "wanda"): the modules that
 * consume them look the name up in their own registries.
 *
 * Errors are BB_ERR_CONFIG with one message that names the place (file:line:col,
 * 1-based, or "--set a.b=v") and the key; an unreadable file is BB_ERR_IO. On any
 * error the bb_config passed in is left unchanged. None of these functions is
 * collective: rank 0 loads and the distributed layer broadcasts the struct (it
 * holds no pointers). */
#ifndef BB_IO_CONFIG_H
#define BB_IO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

#define BB_CONFIG_PATH_MAX 1024 /* file paths and model specs, with the NUL */
#define BB_CONFIG_NAME_MAX 128  /* short names */
#define BB_CONFIG_ENUM_MAX 16   /* enum values */
#define BB_CONFIG_LIST_MAX 16   /* elements of an integer list */

typedef struct {
    int n;
    int64_t v[BB_CONFIG_LIST_MAX];
} bb_config_int_list;

typedef struct {
    char name[BB_CONFIG_NAME_MAX];
    char dir[BB_CONFIG_PATH_MAX];
    int64_t seed;
    char log_level[BB_CONFIG_ENUM_MAX]; /* error|warn|info|debug */
    bool resume;
    char progress[BB_CONFIG_ENUM_MAX]; /* auto|tty|plain|off */
    bool events;
} bb_config_run;

typedef struct {
    char path[BB_CONFIG_PATH_MAX];
    char tokenizer[BB_CONFIG_PATH_MAX];
} bb_config_model;

typedef struct {
    char calib[BB_CONFIG_PATH_MAX];
    char eval[BB_CONFIG_PATH_MAX];
    char calib_tokens[BB_CONFIG_PATH_MAX];
    char eval_tokens[BB_CONFIG_PATH_MAX];
} bb_config_data;

typedef struct {
    int64_t samples;
    int64_t seq_len;
    int64_t micro_batch;
    int64_t in_flight; /* micro-batch buffers per rank in the pipelined forward */
    char gram_precision[BB_CONFIG_ENUM_MAX]; /* f32|f64 */
} bb_config_calib;

typedef struct {
    int64_t n_ctx;
    int64_t max_windows; /* 0 = all */
    bool kld;
} bb_config_eval;

typedef struct {
    bool enabled;
    int64_t rank;
    int64_t oversample;
    int64_t power_iters;
} bb_config_scan;

typedef struct {
    double eps;
    char block[BB_CONFIG_ENUM_MAX]; /* tensor|row|tile */
    int64_t tile_rows;
    int64_t tile_cols;
} bb_config_usage;

typedef struct {
    char method[BB_CONFIG_ENUM_MAX];  /* wanda|sparsegpt|magnitude|none */
    char pattern[BB_CONFIG_ENUM_MAX]; /* unstructured|2:4|4:8 */
    double per_wave;
    double target;
    bool owl;
    double owl_lambda;
    double owl_m;
    double damp;
    int64_t block_size;
    char groups[BB_CONFIG_ENUM_MAX]; /* row|block: where SparseGPT and magnitude choose their masks */
} bb_config_prune;

typedef struct {
    int64_t count;
    double alpha_start;
    double alpha_end;
} bb_config_waves;

typedef struct {
    bool enabled;
    int64_t rank;
    int64_t steps;
    double lr;
    bool taper;
    bool closed_form;
    bool train_weights;
    bool train_scales;
    int64_t scale_steps;
    double scale_lr;
    char level[BB_CONFIG_ENUM_MAX]; /* layer|block|both */
    int64_t block_steps;
    double block_lr;
} bb_config_heal;

typedef struct {
    bool enabled;
    double tau1;
} bb_config_scaffold;

typedef struct {
    bool enabled;
    double delta;
    double gamma;
    int64_t boost_bits;
    int64_t max_bits;
} bb_config_stress;

typedef struct {
    bool enabled;
    double fraction;
} bb_config_rigl;

typedef struct {
    bool enabled;
    int64_t count;
    bool phased;
} bb_config_bundles;

typedef struct {
    char method[BB_CONFIG_ENUM_MAX];   /* gptq|rtn|none */
    char type[BB_CONFIG_ENUM_MAX];     /* a GGUF type name, or auto */
    char fallback[BB_CONFIG_ENUM_MAX]; /* f16|bf16|f32 */
    bool act_order;
    double damp;
    double damp_max; /* cap of the automatic damping raise */
    int64_t block_size;
    bool importance;
    char search[BB_CONFIG_ENUM_MAX]; /* auto|fast|full */
} bb_config_quant;

typedef struct {
    char policy[BB_CONFIG_ENUM_MAX]; /* optimal|lagrange|seed|uniform (lagrange = optimal) */
    double target_bits;
    int64_t init_bits;
    int64_t base_bits;
    bb_config_int_list bits_choices; /* strictly increasing */
    char fortress[BB_CONFIG_PATH_MAX]; /* comma-separated name patterns kept at 16 bits */
    double fortress_top;               /* fraction of the blocks, the most sensitive, kept at 16 bits */
} bb_config_budget;

typedef struct {
    bool enabled;
    double max_dppl;
    int64_t patience;
    int64_t rollback_waves;
} bb_config_stoploss;

typedef struct {
    bool enabled;
    double rank_budget;
    char export_[BB_CONFIG_ENUM_MAX]; /* merge|adapter (YAML key "export") */
} bb_config_lowrank;

typedef struct {
    bool gguf;
    char gguf_path[BB_CONFIG_PATH_MAX];
    char lora_path[BB_CONFIG_PATH_MAX];
} bb_config_output;

typedef struct {
    bool enabled;
    char keep[BB_CONFIG_ENUM_MAX]; /* all|last */
} bb_config_checkpoint;

typedef struct {
    char device[BB_CONFIG_ENUM_MAX]; /* auto|cpu|cuda */
    char comm[BB_CONFIG_ENUM_MAX];   /* auto|mpi|nccl */
    int64_t threads;                 /* 0 = all cores */
    int64_t dense_cache_mib;         /* dense weights kept in memory between wave stages */
} bb_config_backend;

typedef struct {
    int64_t max_matrix_bytes; /* a Gram or matrix larger than this (in double) goes to a ScaLAPACK group */
} bb_config_dist;

typedef struct {
    bb_config_run run;
    bb_config_model model;
    bb_config_data data;
    bb_config_calib calib;
    bb_config_eval eval;
    bb_config_scan scan;
    bb_config_usage usage;
    bb_config_prune prune;
    bb_config_waves waves;
    bb_config_heal heal;
    bb_config_scaffold scaffold;
    bb_config_stress stress;
    bb_config_rigl rigl;
    bb_config_bundles bundles;
    bb_config_quant quant;
    bb_config_budget budget;
    bb_config_stoploss stoploss;
    bb_config_lowrank lowrank;
    bb_config_output output;
    bb_config_checkpoint checkpoint;
    bb_config_backend backend;
    bb_config_dist dist;
} bb_config;

/* ---- the key table ---------------------------------------------------- */

typedef enum {
    BB_CFG_INT = 0,  /* int64_t */
    BB_CFG_FLOAT,    /* double, finite */
    BB_CFG_BOOL,     /* bool: true|false (also yes|no|on|off) */
    BB_CFG_STRING,   /* char[size], UTF-8 without NUL */
    BB_CFG_ENUM,     /* char[size], one of `choices` */
    BB_CFG_INT_LIST, /* bb_config_int_list, strictly increasing, each in the range */
    BB_CFG_TYPE_COUNT
} bb_config_type;

/* Bounds flags: an open bound excludes the value itself, (0, 1]. */
enum { BB_CFG_MIN_OPEN = 1, BB_CFG_MAX_OPEN = 2 };

typedef struct {
    const char *section;
    const char *key;
    bb_config_type type;
    size_t offset;       /* offsetof(bb_config, section.field) */
    size_t size;         /* sizeof the field (string capacity with the NUL) */
    const char *def;     /* default, in the text form --set accepts */
    double min, max;     /* numbers and list elements; +-HUGE_VAL = unbounded */
    int flags;           /* BB_CFG_MIN_OPEN, BB_CFG_MAX_OPEN */
    const char *choices; /* enums: allowed values, "a|b|c" */
    const char *doc;     /* one line */
} bb_config_key;

typedef struct {
    const char *name;
    const char *doc;
} bb_config_section;

/* The table, in dump order; entries of a section are contiguous. */
int bb_config_key_count(void);
const bb_config_key *bb_config_key_at(int i); /* NULL if i is out of range */
/* "prune.per_wave" -> its entry, or NULL. */
const bb_config_key *bb_config_key_find(const char *dotted);
int bb_config_section_count(void);
const bb_config_section *bb_config_section_at(int i); /* NULL if out of range */

/* ---- loading and overriding ------------------------------------------- */

/* Every key at its default. BB_ERR_INTERNAL only if the table is broken. */
bb_status bb_config_defaults(bb_config *cfg);

/* Defaults, then the YAML file at path (NULL or "" = defaults only), then the
 * cross-key checks of bb_config_validate. An empty file gives the defaults.
 * Errors: BB_ERR_IO if the file cannot be read, BB_ERR_CONFIG for anything wrong
 * in it. *cfg is written only on success. */
bb_status bb_config_load(const char *path, bb_config *cfg);

/* Same from memory: text[0..len) (need not be NUL-terminated); `name` stands for
 * the file in messages. */
bb_status bb_config_load_memory(const char *text, size_t len, const char *name, bb_config *cfg);

/* Apply one "section.key=value" override with the key's type and range checks.
 * Values are plain text (no YAML quoting): a list is "2,3,4" or "[2, 3, 4]", a
 * string takes everything after the first '='. Cross-key checks are not run:
 * call bb_config_validate after the last override. *cfg is unchanged on error. */
bb_status bb_config_set(bb_config *cfg, const char *assignment);

/* Cross-key checks (e.g. budget.target_bits within budget.bits_choices), plus
 * each key's own type and range so a hand-filled struct is checked too. */
bb_status bb_config_validate(const bb_config *cfg);

/* ---- output ------------------------------------------------------------ */

/* The value of one key as canonical text (what the dump writes), into buf[n].
 * BB_ERR_ARG if it does not fit. */
bb_status bb_config_format_value(const bb_config *cfg, const bb_config_key *k, char *buf, size_t n);

/* Canonical YAML: every section and key in table order, one fixed spelling per
 * value (floats in the shortest form that reads back to the same double), no
 * comments. Loading it gives back an equal struct. BB_ERR_IO on a write error. */
bb_status bb_config_dump(const bb_config *cfg, FILE *f);

/* SHA-256 (hex, 64 chars + NUL) of exactly the bb_config_dump text: equal
 * configurations hash equal whatever the layout of the files they came from. */
bb_status bb_config_hash(const bb_config *cfg, char hex[65]);

/* The dump with each key's description, range and default as comments, under a
 * header: what configs/default.yaml holds for the defaults. */
bb_status bb_config_write_annotated(const bb_config *cfg, FILE *f);

/* The Markdown reference (docs/config.md): intro, example, a table per section. */
bb_status bb_config_write_doc(FILE *f);

#endif
