/* config_keys.c — the table of configuration keys: the one place a key is declared. */
#include <math.h>
#include <string.h>

#include "io/config.h"

#define F(sec, field) offsetof(bb_config, sec.field), sizeof(((bb_config *)0)->sec.field)
#define INF HUGE_VAL

#define INT_(sec, name, field, def, lo, hi, doc)                                                                       \
    { #sec, name, BB_CFG_INT, F(sec, field), def, lo, hi, 0, NULL, doc }
#define FLT_(sec, name, field, def, lo, hi, flags, doc)                                                                \
    { #sec, name, BB_CFG_FLOAT, F(sec, field), def, lo, hi, flags, NULL, doc }
#define BOOL_(sec, name, field, def, doc)                                                                              \
    { #sec, name, BB_CFG_BOOL, F(sec, field), def, 0, 1, 0, NULL, doc }
#define STR_(sec, name, field, def, doc)                                                                               \
    { #sec, name, BB_CFG_STRING, F(sec, field), def, 0, 0, 0, NULL, doc }
#define ENUM_(sec, name, field, def, choices, doc)                                                                     \
    { #sec, name, BB_CFG_ENUM, F(sec, field), def, 0, 0, 0, choices, doc }
#define LIST_(sec, name, field, def, lo, hi, doc)                                                                      \
    { #sec, name, BB_CFG_INT_LIST, F(sec, field), def, lo, hi, 0, NULL, doc }

/* Every key in one place; the dump, the docs and configs/default.yaml follow
 * this order, so related keys stay together. Defaults are the seed's numbers. */
static const bb_config_key keys[] = {
    STR_(run, "name", name, "default", "Run name, shown in logs, reports and checkpoint metadata."),
    STR_(run, "dir", dir, "runs/default", "Directory for checkpoints, reports and outputs; created if missing."),
    INT_(run, "seed", seed, "1234", 0, INF,
         "Seed of every random draw (sketches, sampling, synthetic data): equal seeds give bit-identical runs."),
    ENUM_(run, "log_level", log_level, "info", "error|warn|info|debug", "Least severe message printed."),
    BOOL_(run, "resume", resume, "false", "Continue from the last complete wave checkpoint in run.dir."),
    ENUM_(
        run, "progress", progress, "auto", "auto|tty|plain|off",
        "Progress display: a line redrawn in place (tty), periodic lines (plain), none (off); auto picks by terminal."),
    BOOL_(run, "events", events, "true", "Print the timing-event table (min/avg/max over ranks) at the end."),

    STR_(model, "path", path, "synthetic:tiny",
         "The model: a Hugging Face directory, a .gguf file, a llama2.c .bin checkpoint, or synthetic:<spec>."),
    STR_(model, "tokenizer", tokenizer, "", "Tokenizer file; empty = found beside the model."),

    STR_(data, "calib", calib, "",
         "Calibration text (plain UTF-8). Empty = sequences sampled from the model itself (synthetic models only)."),
    STR_(data, "eval", eval, "",
         "Evaluation text for perplexity and KLD. Empty = held-out sequences drawn like data.calib."),
    STR_(data, "calib_tokens", calib_tokens, "",
         "Calibration token file, used instead of data.calib (set one of them)."),
    STR_(data, "eval_tokens", eval_tokens, "", "Evaluation token file, used instead of data.eval (set one of them)."),

    INT_(calib, "samples", samples, "32", 1, 1e7,
         "Calibration sequences (the defaults suit the embedded synthetic model; presets for real models use 128 "
         "or more)."),
    INT_(calib, "seq_len", seq_len, "128", 2, 1048576, "Tokens per calibration sequence."),
    INT_(calib, "micro_batch", micro_batch, "4", 1, 65536, "Sequences per forward micro-batch (pipeline granularity)."),
    INT_(calib, "in_flight", in_flight, "2", 1, 1024,
         "Micro-batch buffers per rank in the forward pipelined over ranks: 2 overlaps each send with the next "
         "micro-batch's compute, 3 also the receive; memory per rank grows by micro_batch x seq_len x dim x 4 bytes "
         "per buffer."),
    ENUM_(calib, "gram_precision", gram_precision, "f32", "f32|f64",
          "Accumulation precision of the Gram matrices X^T X."),

    INT_(eval, "n_ctx", n_ctx, "128", 8, 1048576,
         "Window length; llama.cpp's method (BOS per window, second half scored). Presets for real models use 512."),
    INT_(eval, "max_windows", max_windows, "0", 0, INF,
         "Evaluate at most this many windows; 0 = all (32 sampled windows for synthetic models)."),
    BOOL_(eval, "kld", kld, "true", "Also report KL divergence and top-1 agreement against the dense model."),

    BOOL_(scan, "enabled", enabled, "true", "Run the spectral scan (randomized SVD of every weight matrix)."),
    INT_(scan, "rank", rank, "64", 1, 65536, "Singular values kept per matrix."),
    INT_(scan, "oversample", oversample, "8", 0, 4096, "Extra sketch columns beyond scan.rank."),
    INT_(scan, "power_iters", power_iters, "2", 0, 32, "Subspace (power) iterations of the randomized SVD."),

    FLT_(usage, "eps", eps, "0.001", 0, INF, 0, "An activation counts as used when |a| > eps."),
    ENUM_(usage, "block", block, "tensor", "tensor|row|tile",
          "Granularity of the usage score s_b (and of the bits the budget assigns)."),
    INT_(usage, "tile_rows", tile_rows, "128", 1, 1048576, "Rows of a tile when usage.block = tile."),
    INT_(usage, "tile_cols", tile_cols, "128", 1, 1048576, "Columns of a tile when usage.block = tile."),

    ENUM_(prune, "method", method, "wanda", "wanda|sparsegpt|magnitude|none",
          "Score: Wanda |W|*||X||, SparseGPT (OBS saliency and weight update), magnitude |W|, or no pruning."),
    ENUM_(prune, "pattern", pattern, "unstructured", "unstructured|2:4|4:8",
          "Sparsity pattern; N:M keeps N of every M consecutive inputs (fixed 50 % sparsity)."),
    FLT_(prune, "per_wave", per_wave, "0.1", 0, 1, 0,
         "Fraction of the remaining weights removed per wave; the bird-bone method removes at most 0.10."),
    FLT_(prune, "target", target, "0.3", 0, 1, BB_CFG_MAX_OPEN,
         "Final sparsity; waves stop pruning once it is reached."),
    BOOL_(prune, "owl", owl, "false",
          "Outlier-weighted layer-wise ratios (OWL): layers with more outliers are pruned less."),
    FLT_(prune, "owl_lambda", owl_lambda, "0.08", 0, 1, 0, "OWL: largest deviation of a layer's ratio from the mean."),
    FLT_(prune, "owl_m", owl_m, "5", 0, 1e6, BB_CFG_MIN_OPEN,
         "OWL: an outlier exceeds owl_m times the layer's mean score."),
    FLT_(prune, "damp", damp, "0.01", 0, 1, 0, "SparseGPT: damping added to diag(H), as a fraction of its mean."),
    INT_(prune, "block_size", block_size, "128", 1, 65536, "SparseGPT: columns processed per block."),
    ENUM_(prune, "groups", groups, "row", "row|block",
          "Where the mask is chosen: per output row (within each SparseGPT column block; the DESIGN reference "
          "table, and better on small models) or over all rows of a block (the SparseGPT paper; magnitude: one "
          "threshold per matrix)."),

    INT_(waves, "count", count, "5", 1, 1000, "Waves R of prune, heal, redistribute, quantize."),
    FLT_(waves, "alpha_start", alpha_start, "0.3", 0, 1, 0,
         "Usage threshold alpha_1 of the first wave; alpha_k = start + (end - start)(k-1)/(R-1)."),
    FLT_(waves, "alpha_end", alpha_end, "0.7", 0, 1, 0, "Usage threshold alpha_R of the last wave."),

    BOOL_(heal, "enabled", enabled, "true", "Heal after each wave (local reconstruction of each layer's output)."),
    INT_(heal, "rank", rank, "8", 1, 65536, "Rank of the LoRA factors trained while healing."),
    INT_(heal, "steps", steps, "200", 0, 1e9,
         "Adam steps E_1 of the first wave; E_k = steps (1 - (k-1)/R) with heal.taper."),
    FLT_(heal, "lr", lr, "0.0002", 0, 1, BB_CFG_MIN_OPEN, "Learning rate lr_1; tapers like the steps."),
    BOOL_(heal, "taper", taper, "true", "Shrink steps and learning rate wave by wave, as the seed's schedule."),
    BOOL_(heal, "closed_form", closed_form, "true",
          "Start from the closed-form low-rank fit of the residual in the data metric."),
    BOOL_(heal, "train_weights", train_weights, "false", "Also train the kept weights (the mask stays fixed)."),
    BOOL_(heal, "train_scales", train_scales, "false",
          "Train the per-block scales of q8_0/q4_0/q5_0 weights at quantization (Adam, straight-through, codes "
          "fixed) against the layer loss tr(E H E^T); docs/healing.md."),
    INT_(heal, "scale_steps", scale_steps, "100", 1, 1e9, "Adam steps of heal.train_scales per weight."),
    FLT_(heal, "scale_lr", scale_lr, "0.001", 0, 1, BB_CFG_MIN_OPEN,
         "Learning rate of heal.train_scales, on the relative change of each scale."),
    ENUM_(heal, "level", level, "layer", "layer|block|both",
          "Layer healing fits each weight's factors to its own output (tr(E H E^T), cheap); block healing trains "
          "them through attention and the MLP against the dense block's outputs (costs about 2 block forwards per "
          "step, the larger gain: docs/healing-block.md); both does the layer fit first and starts the block training "
          "from it."),
    INT_(heal, "block_steps", block_steps, "60", 0, 1e9,
         "Adam steps of block healing in the first wave (each a pass over the calibration windows); tapers like "
         "heal.steps."),
    FLT_(heal, "block_lr", block_lr, "0.001", 0, 1, BB_CFG_MIN_OPEN, "Learning rate of block healing; tapers too."),

    BOOL_(scaffold, "enabled", enabled, "false", "Grow a low-rank scaffold, one singular direction per wave."),
    FLT_(scaffold, "tau1", tau1, "0.1", 0, 1, 0, "Residual entries below tau1 * sigma_1 are zeroed or quantized."),

    BOOL_(stress, "enabled", enabled, "true", "Boost the precision of stressed blocks."),
    FLT_(stress, "delta", delta, "0.01", 0, 1, 0,
         "A block is stressed when its loss rises by more than delta (relative)."),
    FLT_(stress, "gamma", gamma, "2", 1, 1e6, 0,
         "A block is also stressed when its gradient norm exceeds gamma times the mean."),
    INT_(stress, "boost_bits", boost_bits, "4", 1, 32, "Bits added to a stressed block."),
    INT_(stress, "max_bits", max_bits, "16", 1, 32,
         "Upper limit of a boosted block's bits (the largest of budget.bits_choices caps it too)."),

    BOOL_(rigl, "enabled", enabled, "true",
          "Regrow connections with the largest loss gradient, dropping as many weak ones."),
    FLT_(rigl, "fraction", fraction, "0.05", 0, 1, 0,
         "Fraction of the kept weights exchanged per wave; the bird-bone method moves at most 0.05."),

    BOOL_(bundles, "enabled", enabled, "false", "Cluster blocks into synergy bundles and stress one bundle per wave."),
    INT_(bundles, "count", count, "4", 1, 1024, "Number M of synergy bundles."),
    BOOL_(bundles, "phased", phased, "true",
          "Wave k stresses bundle (k-1) mod M only (one-bundle activation); false: every bundle every wave."),

    ENUM_(quant, "method", method, "gptq", "gptq|rtn|none",
          "GPTQ (error-compensating), round-to-nearest, or keep the weights in their float type."),
    ENUM_(quant, "type", type, "auto", "auto|f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q2_k|q3_k|q4_k|q5_k|q6_k",
          "GGUF type of every quantized tensor; auto = per tensor from the bit budget."),
    ENUM_(quant, "fallback", fallback, "f16", "f16|bf16|f32", "Type of a tensor whose row length fits no block type."),
    BOOL_(quant, "act_order", act_order, "false", "GPTQ: quantize columns in order of decreasing diag(H)."),
    FLT_(quant, "damp", damp, "0.01", 0, 1, 0, "GPTQ: damping added to diag(H), as a fraction of its mean."),
    FLT_(quant, "damp_max", damp_max, "10", 0, 1e6, 0,
         "GPTQ: when Cholesky fails the damping is raised x10 up to this fraction, then the tensor fails."),
    INT_(quant, "block_size", block_size, "128", 1, 65536, "GPTQ: columns processed per block (lazy batch updates)."),
    BOOL_(quant, "importance", importance, "true", "Weight the scale search by calibration statistics (diag(H))."),
    ENUM_(quant, "search", search, "auto", "auto|fast|full",
          "Block scale search: fast (13 candidates, vectorized), full (66 candidates); auto = full when the fit is "
          "weighted by calibration statistics, else fast."),

    ENUM_(budget, "policy", policy, "optimal", "optimal|lagrange|seed|uniform",
          "Bit allocation: optimal (Lagrangian on measured distortions; lagrange is an alias), the seed's 4/8 rule "
          "on s_b < alpha_k, or the same bits everywhere."),
    FLT_(budget, "target_bits", target_bits, "4", 1, 32, 0, "Average bits per weight over the whole model."),
    INT_(budget, "init_bits", init_bits, "8", 1, 32,
         "p_init: bits of high-usage blocks; the budget B is all blocks at p_init."),
    INT_(budget, "base_bits", base_bits, "4", 1, 32, "p_base: bits of low-usage blocks."),
    LIST_(budget, "bits_choices", bits_choices, "[2, 3, 4, 5, 6, 8, 16]", 1, 32,
          "Bit-widths a block may get (increasing)."),
    STR_(budget, "fortress", fortress, "",
         "FP16 fortress blocks by name: comma-separated patterns (fnmatch), e.g. \"output.weight, blk.0.*\"."),
    FLT_(budget, "fortress_top", fortress_top, "0", 0, 1, 0,
         "FP16 fortress blocks by sensitivity: this fraction of the blocks, those with the largest measured "
         "distortion at their narrowest width, kept at 16 bits."),

    BOOL_(stoploss, "enabled", enabled, "true", "Revert waves that cost too much perplexity."),
    FLT_(stoploss, "max_dppl", max_dppl, "0.03", 0, 10, BB_CFG_MIN_OPEN,
         "Relative perplexity rise per wave that counts as a loss."),
    INT_(stoploss, "patience", patience, "2", 1, 1000, "Consecutive losing waves that trigger a rollback."),
    INT_(stoploss, "rollback_waves", rollback_waves, "3", 1, 1000,
         "N_rb: waves over which a rollback restores the pruned weights and added bits, 1/N_rb each."),

    BOOL_(lowrank, "enabled", enabled, "false",
          "Factorization as compression: at quantization, store a weight as f16 factors A B (whitened SVD) where "
          "that is as accurate as its quantized dense form with fewer bits; docs/healing.md."),
    FLT_(lowrank, "rank_budget", rank_budget, "0", 0, 1, 0,
         "Bits a weight's factors may take, as a fraction of the bits of the same weight quantized dense."),
    ENUM_(lowrank, "export", export_, "merge", "merge|adapter",
          "Merge the factors into the weights, or write them as a GGUF LoRA adapter."),

    BOOL_(output, "gguf", gguf, "true", "Write the compressed model as GGUF."),
    STR_(output, "gguf_path", gguf_path, "", "GGUF output; empty = <run.dir>/model.gguf."),
    STR_(output, "lora_path", lora_path, "",
         "LoRA adapter output (lowrank.export = adapter); empty = <run.dir>/lora.gguf."),

    BOOL_(checkpoint, "enabled", enabled, "true", "Write an HDF5 checkpoint after every wave (needed by run.resume)."),
    ENUM_(checkpoint, "keep", keep, "last", "all|last", "Keep every wave's checkpoint, or only the last complete one."),

    ENUM_(backend, "device", device, "auto", "auto|cpu|cuda",
          "Where the numerics run; auto = CUDA when built in and a GPU is present."),
    ENUM_(backend, "comm", comm, "auto", "auto|mpi|nccl",
          "Collectives between ranks; auto = NCCL when every rank has a GPU."),
    INT_(backend, "threads", threads, "0", 0, 4096, "CPU threads per rank; 0 = all cores of the rank's share."),
    INT_(backend, "dense_cache_mib", dense_cache_mib, "16384", 0, HUGE_VAL,
         "MiB per rank of f32 copies of the dense linear weights kept between the wave stages that read them "
         "(healing, stress, RigL); beyond it a stage reads the model again. 0 = none."),

    INT_(dist, "max_matrix_bytes", max_matrix_bytes, "8589934592", 1048576, HUGE_VAL,
         "A matrix whose double-precision copy is larger than this many bytes is factored by a ScaLAPACK group of "
         "ranks instead of its owner alone (docs/scalapack.md)."),
};

static const bb_config_section sections[] = {
    {"run", "Where the run lives and how it reports."},
    {"model", "The model to compress."},
    {"data", "Calibration and evaluation text."},
    {"calib", "The calibration forward pass that collects activation statistics (Gram matrices, channel norms)."},
    {"eval", "Perplexity and KL divergence on the evaluation text, measured before the first and after every wave."},
    {"scan", "Phase 0: spectral scan of every weight matrix."},
    {"usage", "Usage profiling: per-weight scores |W_ij| ||X_j|| and per-block scores s_b = u_b / max u_b."},
    {"prune", "Adaptive decay: remove the least-used weights, a little per wave."},
    {"waves", "The wave schedule."},
    {"heal", "Healing after each wave: low-rank compensation of each layer's reconstruction error."},
    {"scaffold", "Low-rank scaffold grown across waves (the seed's rank-1 start and lattice growth)."},
    {"stress", "Structural reinforcement: extra precision for stressed blocks."},
    {"rigl", "Density redistribution (RigL)."},
    {"bundles", "Biophase density management: synergy bundles."},
    {"quant", "Quantization into GGUF block types."},
    {"budget", "The global bit budget."},
    {"stoploss", "Stop-loss and gradual rollback."},
    {"lowrank", "Low-rank factors in the final model."},
    {"output", "Files written at the end."},
    {"checkpoint", "Per-wave HDF5 checkpoints."},
    {"backend", "Devices, communication and threads."},
    {"dist", "Distribution over MPI ranks."},
};

int bb_config_key_count(void) { return (int)(sizeof keys / sizeof keys[0]); }

const bb_config_key *bb_config_key_at(int i) { return i >= 0 && i < bb_config_key_count() ? &keys[i] : NULL; }

const bb_config_key *bb_config_key_find(const char *dotted) {
    const char *dot = strchr(dotted, '.');
    if (!dot) return NULL;
    size_t ns = (size_t)(dot - dotted);
    for (int i = 0; i < bb_config_key_count(); i++)
        if (strlen(keys[i].section) == ns && memcmp(keys[i].section, dotted, ns) == 0 &&
            strcmp(keys[i].key, dot + 1) == 0)
            return &keys[i];
    return NULL;
}

int bb_config_section_count(void) { return (int)(sizeof sections / sizeof sections[0]); }

const bb_config_section *bb_config_section_at(int i) {
    return i >= 0 && i < bb_config_section_count() ? &sections[i] : NULL;
}
