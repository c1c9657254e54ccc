/* run.c — a compression run: config resolution, model, run directory, stage plan, summary. */
#define _GNU_SOURCE
#include "pipeline/run.h"

#include <cblas.h>
#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/events.h"
#include "core/parallel.h"
#include "core/log.h"
#include "core/mem.h"
#include "io/hash.h"
#include "io/synth.h"
#include "linalg/backend.h"
#include "model/forward.h"
#include "mpi/pipe.h"
#include "pipeline/resources.h"
#include "pipeline/stages.h"
#ifdef BB_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/comm_nccl.h"
#include "cuda/linalg_cuda.h"
#endif


/* The seed's stages in order (DESIGN §1). A stage without a run function is
 * listed in the plan as not built yet and skipped. */
static const bb_stage stages[] = {
    {"baseline", "Baseline mapping", "spectral scan; calibration and evaluation streams; dense perplexity and log-probs",
     bb_stage_baseline, NULL},
    {"usage", "Density assessment", "calibration forward: Gram, channel norms, activation frequency per input",
     bb_stage_usage, NULL},
    {"decay", "Adaptive decay wave", "per wave: remove <= prune.per_wave of the remaining weights with the lowest usage",
     bb_stage_waves, NULL},
    {"heal", "Healing phase", "per wave: closed-form low-rank compensation, then Adam steps on LoRA factors", NULL,
     bb_wave_heal},
    {"reinforce", "Structural reinforcement", "per wave: stress detection and precision boosts", NULL,
     bb_wave_reinforce},
    {"redistribute", "Density redistribution", "per wave: RigL, regrow the connections with the largest gradient",
     NULL, bb_wave_redistribute},
    {"quantize", "Quantize + low-rank merge", "GPTQ into GGUF block types under the global bit budget",
     bb_stage_quantize, NULL},
    {"version", "Version bump", "per wave: checkpoint, diff bundle; at the end: metrics, report, DONE",
     bb_stage_version, NULL},
};

int bb_pipeline_stages(const bb_stage **out) {
    *out = stages;
    return (int)(sizeof stages / sizeof stages[0]);
}

static bb_status resolve_config(bb_run *r, const char *path, char **overrides, int n) {
    BB_CALL(bb_config_defaults(&r->cfg));
    if (path) BB_CALL(bb_config_load(path, &r->cfg));
    for (int i = 0; i < n; i++) BB_CALL(bb_config_set(&r->cfg, overrides[i]));
    BB_CALL(bb_config_validate(&r->cfg));
    return BB_OK;
}

static bb_status dump_to_string(const bb_config *cfg, char **text, size_t *len) {
    FILE *f = open_memstream(text, len);
    BB_CHECK(f, BB_ERR_OOM, "out of memory: cannot buffer the resolved configuration");
    bb_status st = bb_config_dump(cfg, f);
    fclose(f);
    return st;
}

static bb_status write_run_files(bb_run *r) {
    BB_CALL(bb_mkdir_p(r->cfg.run.dir));
    char *text = NULL;
    size_t len = 0;
    BB_CALL(dump_to_string(&r->cfg, &text, &len));
    char path[1200];
    snprintf(path, sizeof path, "%s/config.yaml", r->cfg.run.dir);
    bb_status st = bb_file_write_atomic(path, text, len);
    free(text);
    return st;
}

/* What a previous run leaves in run.dir. */
static const char *const run_outputs[] = {"DONE", "metrics.json", "checkpoints", "diffs", "report", NULL};

static int is_wave_file(const char *name) {
    int k, n = 0;
    return sscanf(name, "wave_%d.h5%n", &k, &n) == 1 && name[n] == 0;
}

/* Refuse to overwrite a previous run unless forced; with force, clear its outputs. */
static bb_status check_run_dir(const bb_run *r) {
    const char *dir = r->cfg.run.dir;
    DIR *dp = opendir(dir);
    if (!dp) return BB_OK; /* nothing there yet */
    char found[256] = "";
    struct dirent *e;
    while ((e = readdir(dp)) && !found[0]) {
        int hit = is_wave_file(e->d_name);
        for (int i = 0; run_outputs[i] && !hit; i++) hit = !strcmp(e->d_name, run_outputs[i]);
        if (hit) snprintf(found, sizeof found, "%s", e->d_name);
    }
    closedir(dp);
    if (!found[0] || (r->flags & BB_RUN_RESUME)) return BB_OK;
    BB_CHECK(r->flags & BB_RUN_FORCE, BB_ERR_ARG,
             "run directory %s already holds a run (%s): pass --force to replace it, --resume %s to continue it, or "
             "choose another run.dir",
             dir, found, dir);
    bb_warn("--force: replacing the run in %s", dir);
    char path[1400];
    for (int i = 0; run_outputs[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, run_outputs[i]);
        BB_CALL(bb_remove_tree(path));
    }
    dp = opendir(dir);
    BB_CHECK(dp, BB_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    bb_status st = BB_OK;
    while ((e = readdir(dp)) && st == BB_OK)
        if (is_wave_file(e->d_name)) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            st = bb_remove_tree(path);
        }
    closedir(dp);
    return st;
}

/* BLAS threads of this rank: backend.threads, or (0) the cores this rank may
 * run on shared with the other ranks of its node. Results are bit-identical
 * for any rank count at the same thread count per rank (docs/distribution.md):
 * OpenBLAS's factorizations round differently with different thread counts. */
static void set_threads(bb_run *r) {
    int n = (int)r->cfg.backend.threads;
    if (n <= 0) {
        cpu_set_t set;
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
        /* a rank bound to some cores (srun, mpirun --bind-to) uses them; unbound ranks of one node split them */
        n = cores < online ? cores : cores / (r->dist->local_size > 0 ? r->dist->local_size : 1);
        if (n < 1) n = 1;
    }
    openblas_set_num_threads(n);
    bb_synth_set_threads(n);
    bb_parallel_set_default(n);
    r->threads = n;
}

/* backend.device: cpu, cuda, or auto (cuda when built in and this rank sees a GPU). With cuda the rank
 * binds GPU local_rank % count, linear algebra without an explicit backend goes to the "cuda" table,
 * and the prefill blocks of calibration and evaluation run on the GPU (model/forward.h). */
static bb_status set_device(bb_run *r) {
    const char *dev = r->cfg.backend.device;
    int want = !strcmp(dev, "cuda");
    r->gpu = -1;
#ifdef BB_HAVE_CUDA
    int n = bb_cuda_device_count();
    BB_CHECK(!want || n > 0, BB_ERR_CONFIG,
             "backend.device = cuda, but rank %d (on %s) sees no GPU: check nvidia-smi and CUDA_VISIBLE_DEVICES, or "
             "set backend.device = cpu (or auto)",
             r->dist->rank, r->dist->processor);
    if (want || (!strcmp(dev, "auto") && n > 0)) {
        BB_CALL(bb_cuda_bind(r->dist->local_rank, &r->gpu));
        BB_CALL(bb_cuda_backend_register());
        const bb_linalg_backend *be;
        BB_CALL(bb_linalg_backend_get("cuda-auto", &be));
        bb_linalg_backend_set_default(be);
        bb_forward_set_device(1);
        BB_CALL(bb_comm_nccl_register());
        BB_CALL(bb_cuda_describe(r->gpu, r->gpu_name, sizeof r->gpu_name));
    }
#else
    BB_CHECK(!want, BB_ERR_CONFIG,
             "backend.device = cuda, but this birdbone was built without CUDA (nvcc was not found when it was "
             "configured): rebuild with -DBB_ENABLE_CUDA=ON, or set backend.device = cpu");
#endif
    return BB_OK;
}

/* The sharding plan for this run's model, calibration and rank count. */
static bb_status make_plan(bb_run *r) {
    const bb_config *c = &r->cfg;
    bb_plan_opts po = {.tokens = c->calib.samples * c->calib.seq_len,
                       .seq_len = (int)c->calib.seq_len,
                       .micro_batch = (int)c->calib.micro_batch,
                       .in_flight = (int)c->calib.in_flight,
                       .gram_bytes = strcmp(c->calib.gram_precision, "f64") ? 4 : 8};
    BB_CALL(bb_plan_make(&r->model->cfg, &po, r->dist->size, &r->plan));
    const bb_plan_rank *pr = &r->plan.ranks[r->dist->rank];
    r->l0 = pr->layer_begin;
    r->l1 = pr->layer_end;
    return BB_OK;
}

/* The run's communicator for global decisions: backend.comm, where "auto"
 * takes NCCL only if every rank bound a GPU (set_device registers NCCL then). Collective. */
static bb_status make_comm(bb_run *r) {
    const bb_dist *d = r->dist;
    int gpu = r->gpu >= 0 && bb_comm_available(BB_COMM_NCCL), everywhere = gpu;
    BB_MPI_CALL(MPI_Allreduce(&gpu, &everywhere, 1, MPI_INT, MPI_MIN, d->comm));
    bb_comm_kind kind = BB_COMM_MPI;
    bb_status st = bb_comm_kind_parse(r->cfg.backend.comm, everywhere, &kind);
    if (st == BB_OK) st = bb_comm_create(kind, d, &r->comm);
    if (st == BB_OK) bb_pipe_set_comm_kind(kind); /* the pipelined forward's hidden states go the same way */
    return bb_dist_agree(d, st);
}

int bb_run_stage_enter(bb_run *r, int i) {
    bb_traffic now;
    bb_traffic_get(&now);
    bb_traffic d = bb_traffic_diff(&now, &r->booked);
    bb_stage_use *u = r->cur_stage >= 0 ? &r->stage_use[r->cur_stage] : &r->other_use;
    u->comm_seconds += d.seconds;
    u->bytes_sent += d.bytes_sent;
    u->bytes_recv += d.bytes_recv;
    double cpu = bb_cpu_seconds();
    u->cpu_seconds += cpu - r->booked_cpu;
    r->booked_cpu = cpu;
    int64_t peak = bb_mem_peak_bytes();
    if (peak > u->peak_rss) u->peak_rss = peak;
    r->booked = now;
    r->peak_resets &= bb_mem_peak_reset();
    int prev = r->cur_stage;
    r->cur_stage = i;
    return prev;
}

/* ---- the model's SHA-256, each tensor hashed by the rank that holds it ---- */

/* Blocks' tensors go to the block's owner, the embedding to the embedding's rank, the rest (final norm,
 * classifier) to the head's: the ranks that read those tensors anyway. */
static int tensor_owner(const bb_run *r, const char *name) {
    int layer;
    if (sscanf(name, "blk.%d.", &layer) == 1 && layer >= 0 && layer < r->plan.n_layers)
        return bb_plan_owner(&r->plan, layer);
    int emb = !strncmp(name, "token_embd", 10);
    for (int q = 0; q < r->plan.n_ranks; q++)
        if (emb ? r->plan.ranks[q].embed : r->plan.ranks[q].head) return q;
    return 0;
}

static int hash_mine(const char *name, void *ud) {
    const bb_run *r = ud;
    return tensor_owner(r, name) == r->dist->rank;
}

bb_status bb_run_model_hash(bb_run *r, uint8_t whole[32]) {
    bb_tensor_hash *list = NULL;
    int n = 0;
    bb_status st = bb_dist_agree(r->dist, bb_model_hash_some(r->model, 0, hash_mine, r, &list, &n));
    /* every entry is filled by one rank and zero elsewhere: the byte-wise XOR over ranks is that entry, exactly */
    if (st == BB_OK && n > 0 && r->dist->size > 1) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, list, (int)(sizeof *list * (size_t)n), MPI_BYTE, MPI_BXOR, r->dist->comm);
        if (rc != MPI_SUCCESS) st = bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Allreduce(tensor hashes)");
    }
    if (st == BB_OK) bb_hash_combine(list, n, whole);
    free(list);
    return st;
}

int bb_run_owner(const bb_run *r, int i) { return bb_plan_owner(&r->plan, i / BB_LIN_COUNT); }

int bb_run_mine(const bb_run *r, int i) {
    int l = i / BB_LIN_COUNT;
    return l >= r->l0 && l < r->l1;
}

bb_status bb_run_create(const bb_dist *d, const char *config_path, char **overrides, int n_overrides, unsigned flags,
                        bb_run **out) {
    *out = NULL;
    bb_run *r;
    BB_CALL(bb_calloc((void **)&r, 1, sizeof *r, "run state"));
    r->dist = d;
    r->flags = flags;
    r->t_start = bb_now();
    r->cur_stage = -1;
    bb_traffic_get(&r->booked);
    r->booked_cpu = bb_cpu_seconds();
    r->peak_resets = bb_mem_peak_reset();
    snprintf(r->config_path, sizeof r->config_path, "%s", config_path ? config_path : "(defaults)");
    bb_status st = d->rank == 0 ? resolve_config(r, config_path, overrides, n_overrides) : BB_OK;
    BB_CALL_GOTO(st, fail, bb_dist_agree(d, st));
    /* The struct holds no pointers: one broadcast gives every rank the same config. */
    BB_CHECK_GOTO(st, fail, MPI_Bcast(&r->cfg, (int)sizeof r->cfg, MPI_BYTE, 0, d->comm) == MPI_SUCCESS, BB_ERR_MPI,
                  "broadcast of the configuration failed");
    int level = bb_log_parse_level(r->cfg.run.log_level);
    if (level >= 0 && !getenv("BB_LOG_LEVEL")) bb_log_set_level((bb_log_level)level);
    set_threads(r);
    BB_CALL_GOTO(st, fail, bb_dist_agree(d, set_device(r)));
    int pmode = bb_progress_parse_mode(r->cfg.run.progress);
    if (pmode >= 0) bb_progress_set_mode(pmode);
    BB_CALL_GOTO(st, fail, bb_config_hash(&r->cfg, r->hash));
    BB_CALL_GOTO(st, fail, make_comm(r));
    /* every rank maps the model and checks its own part of it for NaN/Inf (its blocks' layers; rank 0 the
     * embedding, the head rank the final norm and output): the first failing rank names the tensor */
    st = bb_model_open(r->cfg.model.path, &r->model);
    if (st == BB_OK) st = make_plan(r);
    BB_CALL_GOTO(st, fail, bb_dist_agree(d, st));
    st = bb_model_check_finite_part(r->model, r->l0, r->l1, d->rank == 0, d->rank == bb_plan_head_rank(&r->plan));
    BB_CALL_GOTO(st, fail, bb_dist_agree(d, st));
    st = d->rank == 0 ? check_run_dir(r) : BB_OK;
    if (st == BB_OK && d->rank == 0) st = write_run_files(r);
    BB_CALL_GOTO(st, fail, bb_dist_agree(d, st));
    *out = r;
    return BB_OK;
fail:
    bb_run_destroy(&r);
    return st;
}

void bb_run_reset_waves(bb_run *r) {
    bb_decay_end(r);
    bb_state_free(&r->state);
    for (int i = 0; r->masks && i < r->n_masks; i++) bb_mask_destroy(&r->masks[i]);
    free(r->masks);
    r->masks = NULL;
    r->n_masks = 0;
    /* the working weights view the model: they go before it */
    bb_weights_destroy(&r->weights);
    free(r->wave_report);
    r->wave_report = NULL;
    free(r->factored);
    r->factored = NULL;
    free(r->tensor_hist);
    r->tensor_hist = NULL;
    r->hist_waves = 0;
    for (int i = 0; i < r->n_curves; i++) free(r->curves[i].loss);
    free(r->curves);
    r->curves = NULL;
    r->n_curves = 0;
    free(r->boosts);
    r->boosts = NULL;
    free(r->changed);
    r->changed = NULL;
    r->n_boosts = 0;
    r->n_waves = 0;
    r->sparsity = 0;
    r->stats_stale = 0;
}

void bb_run_destroy(bb_run **pr) {
    if (!pr || !*pr) return;
    /* the working weights view the model: they go first */
    bb_run_reset_waves(*pr);
    bb_plan_free(&(*pr)->plan);
    bb_model_destroy(&(*pr)->model);
    bb_tokens_free(&(*pr)->calib);
    bb_calib_destroy(&(*pr)->stats);
    for (int i = 0; (*pr)->dense && i < (*pr)->state.n_lin; i++) free((*pr)->dense[i]);
    free((*pr)->dense);
    free((*pr)->ckpt_shares);
    free((*pr)->gpu_report);
    bb_comm_destroy(&(*pr)->comm);
    free(*pr);
    *pr = NULL;
}

bb_status bb_run_weights(bb_run *r, bb_weights **out) {
    int L = r->model->cfg.n_layers;
    if (!r->weights) {
        /* every rank its own blocks' (rank 0 too: no file it writes needs the others'); an idle rank gets an
         * empty range */
        BB_CALL(bb_weights_create(r->model, r->l0 < r->l1 ? r->l0 : L, r->l0 < r->l1 ? r->l1 : L, &r->weights));
        if (r->masks) bb_weights_set_masks(r->weights, r->masks);
    }
    *out = r->weights;
    return BB_OK;
}

/* ---- moving tensors between their owner and rank 0 ---- */

static bb_status send_recv(void *buf, int64_t count, MPI_Datatype t, int peer, int send, MPI_Comm comm, const char *what) {
    /* counts beyond INT_MAX go in pieces */
    char *p = buf;
    int size = 0;
    MPI_Type_size(t, &size);
    while (count > 0) {
        int n = count > (1 << 30) ? (1 << 30) : (int)count;
        int rc = send ? MPI_Send(p, n, t, peer, 4242, comm) : MPI_Recv(p, n, t, peer, 4242, comm, MPI_STATUS_IGNORE);
        BB_CHECK(rc == MPI_SUCCESS, BB_ERR_MPI, "moving %s %s rank %d failed", what, send ? "to" : "from", peer);
        p += (size_t)n * (size_t)size;
        count -= n;
    }
    return BB_OK;
}

bb_status bb_run_move(bb_run *r, int i, int to_root, float *w, bb_mask *m, int *bits, bb_lora **lora) {
    int owner = bb_run_owner(r, i), me = r->dist->rank;
    if (owner <= 0 || (me != 0 && me != owner)) return BB_OK;
    const bb_tensor *t = r->state.t[i];
    int sender = to_root ? owner : 0, peer = me == 0 ? owner : 0, send = me == sender;
    MPI_Comm comm = r->dist->comm;
    if (w) BB_CALL(send_recv(w, bb_tensor_rows(t) * bb_tensor_cols(t), MPI_FLOAT, peer, send, comm, t->name));
    if (m) BB_CALL(send_recv(m->bits, m->rows * m->words_per_row, MPI_UINT64_T, peer, send, comm, t->name));
    if (bits) BB_CALL(send_recv(bits, 1, MPI_INT, peer, send, comm, t->name));
    if (!lora) return BB_OK;
    int rank = *lora ? (*lora)->rank : 0;
    BB_CALL(send_recv(&rank, 1, MPI_INT, peer, send, comm, t->name));
    if (!send) {
        if (!rank) bb_lora_destroy(lora);
        else if (!*lora || (*lora)->rank != rank) {
            bb_lora_destroy(lora);
            BB_CALL(bb_lora_create(bb_tensor_rows(t), bb_tensor_cols(t), rank, lora));
        }
    }
    if (rank) {
        bb_lora *l = *lora;
        BB_CALL(send_recv(l->a, l->rows * l->rank, MPI_FLOAT, peer, send, comm, t->name));
        BB_CALL(send_recv(l->b, l->cols * l->rank, MPI_FLOAT, peer, send, comm, t->name));
    }
    return BB_OK;
}

bb_status bb_run_gather_factors(bb_run *r) {
    if (r->dist->size == 1) return BB_OK;
    bb_state *s = &r->state;
    bb_status st = BB_OK;
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) st = bb_run_move(r, i, 1, NULL, NULL, &s->bits[i], &s->lora[i]);
    return bb_dist_agree(r->dist, st);
}

bb_status bb_run_masks(bb_run *r) {
    if (r->masks) return BB_OK;
    bb_weights *w = NULL;
    BB_CALL(bb_run_weights(r, &w));
    int n = r->model->cfg.n_layers * BB_LIN_COUNT;
    BB_CALL(bb_calloc((void **)&r->masks, (size_t)n, sizeof *r->masks, "masks"));
    r->n_masks = n;
    for (int i = 0; i < n; i++) {
        const bb_tensor *t = bb_layer_linear(&r->model->layers[i / BB_LIN_COUNT], (bb_linear_kind)(i % BB_LIN_COUNT));
        BB_CALL(bb_mask_create(bb_tensor_rows(t), bb_tensor_cols(t), 1, &r->masks[i]));
    }
    bb_weights_set_masks(w, r->masks);
    return BB_OK;
}

bb_status bb_run_report_line(bb_run *r, const char *line) {
    size_t have = r->wave_report ? strlen(r->wave_report) : 0, add = strlen(line);
    /* continuation lines line up under the summary's "waves        " label */
    const char *sep = "\n             ";
    size_t need = have + strlen(sep) + add + 1;
    char *grown = realloc(r->wave_report, need);
    BB_CHECK(grown, BB_ERR_OOM, "out of memory: the wave report needs %zu bytes", need);
    snprintf(grown + have, need - have, "%s%s", have ? sep : "", line);
    r->wave_report = grown;
    return BB_OK;
}

const bb_model *bb_run_current_model(const bb_run *r) { return r->weights ? bb_weights_model(r->weights) : r->model; }

static void human_bytes(double b, char *buf, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, n, "%.2f %s", b, u[i]);
}

static bb_status stored_bytes(const bb_tensor *t, void *ud) {
    *(double *)ud += (double)bb_tensor_numel(t) * (double)bb_dtype_size(t->dtype);
    return BB_OK;
}

static void print_plan_table(const bb_run *r) {
    if (r->dist->rank != 0 || bb_log_get_level() < BB_LOG_INFO) return;
    printf("---- sharding plan ----\n");
    bb_plan_print(&r->plan, stdout);
    fflush(stdout);
}

static void print_header(const bb_run *r) {
    const bb_dist *d = r->dist;
    bb_info("birdbone %s compress: %d rank%s x %d BLAS thread%s (rank 0 on %s)", BB_VERSION, d->size,
            d->size > 1 ? "s" : "", r->threads, r->threads > 1 ? "s" : "",
            d->processor);
    if (r->gpu >= 0)
        bb_info("device  cuda: GPU %d (%s) on rank 0; linear algebra and prefill on the GPU", r->gpu, r->gpu_name);
    else
        bb_info("device  cpu");
    bb_info("comm    %s (%d rank%s) for the global decisions", bb_comm_kind_name(bb_comm_kind_of(r->comm)),
            d->size, d->size > 1 ? "s" : "");
    bb_info("config  %s  sha256:%s", r->config_path, r->hash);
    bb_info("run dir %s", r->cfg.run.dir);
    if (d->rank == 0 && bb_log_get_level() >= BB_LOG_INFO) {
        printf("\n---- resolved configuration ----\n");
        bb_config_dump(&r->cfg, stdout);
        printf("---- model ----\n");
        bb_model_print(r->model, 0, stdout);
        fflush(stdout);
    }
    print_plan_table(r);
}

static void print_plan(void) {
    const bb_stage *s;
    int n = bb_pipeline_stages(&s);
    bb_info("\n---- plan ----");
    for (int i = 0; i < n; i++)
        bb_info("  %d  %-13s %-27s %-15s %s", i, s[i].name, s[i].seed_name,
                s[i].run || s[i].wave ? "will run" : "not built yet",
                s[i].what);
}

/* Device memory in use on this rank's GPU now (all processes' allocations on it), the peak kept. */
static void sample_gpu_memory(bb_run *r) {
#ifdef BB_HAVE_CUDA
    if (r->gpu < 0) return;
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && (int64_t)(tot - fr) > r->gpu_mem_peak)
        r->gpu_mem_peak = (int64_t)(tot - fr);
#else
    (void)r;
#endif
}

/* Every rank's GPU figures to rank 0 (r->gpu_report, GPU_REPORT per rank): device, peak memory at stage ends,
 * NCCL collectives, their bytes, point-to-point messages, bytes sent, bytes received, microseconds in NCCL
 * calls. Collective. */
#define GPU_REPORT 8
static bb_status gather_gpu_report(bb_run *r) {
    int64_t mine[GPU_REPORT] = {r->gpu, r->gpu_mem_peak, 0, 0, 0, 0, 0, 0};
#ifdef BB_HAVE_CUDA
    if (r->gpu >= 0) {
        bb_comm_nccl_stats ns;
        bb_comm_nccl_stats_get(&ns);
        int64_t v[6] = {ns.collectives, ns.bytes_collective, ns.p2p, ns.bytes_sent, ns.bytes_received,
                        (int64_t)(ns.seconds * 1e6)};
        memcpy(mine + 2, v, sizeof v);
    }
#endif
    int any = r->gpu >= 0, all_any = 0;
    BB_MPI_CALL(MPI_Allreduce(&any, &all_any, 1, MPI_INT, MPI_MAX, r->dist->comm));
    if (!all_any) return BB_OK;
    if (r->dist->rank == 0)
        BB_CALL(bb_calloc((void **)&r->gpu_report, (size_t)r->dist->size * GPU_REPORT, sizeof *r->gpu_report,
                          "gpu report"));
    BB_MPI_CALL(MPI_Gather(mine, GPU_REPORT, MPI_INT64_T, r->gpu_report, GPU_REPORT, MPI_INT64_T, 0, r->dist->comm));
    return BB_OK;
}

static void write_gpu_json(const bb_run *r, FILE *f) {
    if (!r->gpu_report) return;
    fprintf(f, "  \"gpu\": {\"device\": \"%s\", \"comm\": \"%s\", \"ranks\": [", r->gpu_name,
            bb_comm_kind_name(bb_comm_kind_of(r->comm)));
    for (int q = 0; q < r->dist->size; q++) {
        const int64_t *v = r->gpu_report + GPU_REPORT * q;
        fprintf(f, "%s\n    {\"rank\": %d, \"gpu\": %lld, \"memory_peak_bytes\": %lld, \"nccl_collectives\": %lld, "
                   "\"nccl_collective_bytes\": %lld, \"nccl_p2p\": %lld, \"nccl_sent_bytes\": %lld, "
                   "\"nccl_received_bytes\": %lld, \"nccl_seconds\": %.6f}",
                q ? "," : "", q, (long long)v[0], (long long)v[1], (long long)v[2], (long long)v[3], (long long)v[4],
                (long long)v[5], (long long)v[6], (double)v[7] / 1e6);
    }
    fprintf(f, "\n  ]},\n");
}

static bb_status write_summary_json(const bb_run *r, const bb_run_resources *res, double total_s, double bytes) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    BB_CHECK(f, BB_ERR_OOM, "out of memory: cannot buffer the run summary");
    const bb_stage *s;
    int n = bb_pipeline_stages(&s);
    fprintf(f, "{\n  \"birdbone\": \"%s\",\n  \"config_hash\": \"sha256:%s\",\n  \"ranks\": %d,\n", BB_VERSION, r->hash,
            r->dist->size);
    fprintf(f, "  \"model\": {\"path\": \"%s\", \"parameters\": %lld, \"bytes\": %.0f},\n", r->model->path,
            (long long)bb_model_param_count(r->model), bytes);
    fprintf(f, "  \"stages\": [");
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\n    {\"name\": \"%s\", \"built\": %s, \"seconds\": %.6f", i ? "," : "", s[i].name,
                s[i].run || s[i].wave ? "true" : "false", r->stage_seconds[i]);
        bb_run_resources_stage_json(res, i, f);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"dense\": {\"ppl\": %.6f, \"ppl_err\": %.6f, \"eval_tokens\": %lld, \"calib_tokens\": %lld},\n",
            r->dense_ppl, r->dense_ppl_err, (long long)r->eval_tokens, (long long)r->calib_tokens);
    if (r->ckpt_shares) {
        /* who wrote which part of the last checkpoint (parallel HDF5: each rank its own layers) */
        fprintf(f, "  \"checkpoint_shares\": [");
        for (int q = 0; q < r->dist->size; q++) {
            const int64_t *v = r->ckpt_shares + 5 * q;
            fprintf(f, "%s\n    {\"rank\": %d, \"layers\": [%lld, %lld], \"tensors\": %lld, \"tensor_bytes\": %lld, "
                       "\"other_bytes\": %lld}",
                    q ? "," : "", q, (long long)v[0], (long long)v[1], (long long)v[2], (long long)v[3],
                    (long long)v[4]);
        }
        fprintf(f, "\n  ],\n");
    }
    if (r->cfg.lowrank.enabled)
        fprintf(f, "  \"lowrank\": {\"factored\": %lld, \"bits_dense\": %.0f, \"bits_factors\": %.0f},\n",
                (long long)r->lowrank_factored, r->lowrank_bits[0], r->lowrank_bits[1]);
    if (r->scale_tensors)
        fprintf(f, "  \"scales\": {\"tensors\": %lld, \"loss_before\": %.9g, \"loss_after\": %.9g},\n",
                (long long)r->scale_tensors, r->scale_loss[0], r->scale_loss[1]);
    write_gpu_json(r, f);
    bb_run_resources_json(res, f);
    fprintf(f, "  \"seconds\": %.6f\n}\n", total_s);
    fclose(f);
    char path[1200];
    snprintf(path, sizeof path, "%s/summary.json", r->cfg.run.dir);
    bb_status st = bb_file_write_atomic(path, text, len);
    free(text);
    return st;
}

bb_status bb_run_execute(bb_run *r) {
    print_header(r);
    print_plan();
    const bb_stage *s;
    int n = bb_pipeline_stages(&s);
    int missing = 0;
    for (int i = 0; i < n; i++) {
        if (!s[i].run && !s[i].wave) missing++;
        if (s[i].wave) r->n_stages_run++; /* counted here, run inside the wave loop */
        if (!s[i].run || r->preempted) continue;
        bb_info("\n==> stage %d: %s (%s)", i, s[i].name, s[i].seed_name);
        char ev[64];
        snprintf(ev, sizeof ev, "stage.%s", s[i].name);
        bb_event_begin(ev);
        bb_run_stage_enter(r, i);
        double t0 = bb_now(), inner = 0;
        for (int j = 0; j < n; j++) inner -= r->stage_seconds[j];
        bb_status st = s[i].run(r);
        for (int j = 0; j < n; j++) inner += r->stage_seconds[j];
        bb_run_stage_enter(r, -1);
        /* the wave loop books its per-wave stages itself; the rest is this stage's */
        r->stage_seconds[i] += bb_now() - t0 - inner;
        bb_event_end(ev, 0, 0);
        sample_gpu_memory(r);
        BB_CALL(bb_dist_agree(r->dist, st));
        r->n_stages_run++;
    }
    if (r->preempted) {
        bb_warn("run stopped by a signal after wave %d: continue with birdbone compress --resume %s", r->n_waves,
                r->cfg.run.dir);
        return BB_OK;
    }
    BB_CALL(bb_dist_agree(r->dist, gather_gpu_report(r)));
    if (r->gpu_report) {
        int64_t coll = 0, cb = 0, p2p = 0, sent = 0, peak = 0, us = 0;
        for (int q = 0; q < r->dist->size; q++) {
            const int64_t *v = r->gpu_report + GPU_REPORT * q;
            coll += v[2], cb += v[3], p2p += v[4], sent += v[5];
            if (v[1] > peak) peak = v[1];
            if (v[7] > us) us = v[7];
        }
        bb_info("gpu          %s: peak device memory %.1f MiB (largest rank, at stage ends); %s: %lld collectives "
                "(%lld bytes), %lld point-to-point messages (%lld bytes sent), all ranks; %.2f s in them (the most "
                "on one rank)",
                r->gpu_name, peak / 1048576.0, bb_comm_kind_name(bb_comm_kind_of(r->comm)), (long long)coll,
                (long long)cb, (long long)p2p, (long long)sent, (double)us / 1e6);
    }
    double bytes = 0;
    bb_model_for_each_tensor(r->model, stored_bytes, &bytes);
    double total = bb_now() - r->t_start;
    char hb[32];
    human_bytes(bytes, hb, sizeof hb);
    bb_info("\n---- summary ----");
    bb_info("model        %s: %lld parameters, %s as stored", r->model->path, (long long)bb_model_param_count(r->model),
            hb);
    bb_info("stages       %d run, %d not built yet:", r->n_stages_run, missing);
    for (int i = 0; i < n; i++)
        if (!s[i].run && !s[i].wave) bb_info("               - %s (%s): %s", s[i].name, s[i].seed_name, s[i].what);
    if (r->eval_tokens)
        bb_info("dense        PPL %.4f +/- %.4f on %lld evaluation tokens; %lld calibration tokens", r->dense_ppl,
                r->dense_ppl_err, (long long)r->eval_tokens, (long long)r->calib_tokens);
    if (r->quant_bits > 0) {
        bb_info("output       %.3f bits per linear weight; PPL %.4f, KLD %.5f; GGUF %s", r->quant_bits, r->quant_ppl,
                r->quant_kld, r->gguf_path[0] ? r->gguf_path : "not written");
        if (r->out_bytes > 0) {
            char ho[32];
            human_bytes(r->out_bytes, ho, sizeof ho);
            bb_info("size         %s before, %s after (%.1f %%)", hb, ho, 100.0 * r->out_bytes / bytes);
        }
        if (r->cfg.lowrank.enabled) {
            double dq = r->lowrank_bits[0], df = r->lowrank_bits[1];
            bb_info("lowrank      %lld weights stored as f16 factors: %.1f KiB instead of %.1f KiB quantized dense "
                    "(%.1f %% saved on them; lowrank.export %s)",
                    (long long)r->lowrank_factored, df / 8192, dq / 8192, dq > 0 ? 100 * (1 - df / dq) : 0.0,
                    r->cfg.lowrank.export_);
        }
        if (r->scale_tensors)
            bb_info("scales       %lld tensors' scales trained: layer loss %.6g -> %.6g (%.2f %% lower)",
                    (long long)r->scale_tensors, r->scale_loss[0], r->scale_loss[1],
                    r->scale_loss[0] > 0 ? 100 * (1 - r->scale_loss[1] / r->scale_loss[0]) : 0.0);
    } else if (r->n_waves > 0) {
        bb_info("output       sparsity %.4f, weights kept in their float type (quant.method none)", r->sparsity);
    } else {
        bb_info("output       nothing compressed: no stage changed the weights");
    }
    if (r->wave_report) bb_info("waves        %s", r->wave_report);
    char times[512] = "";
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof times; i++)
        if (s[i].run || s[i].wave)
            used += (size_t)snprintf(times + used, sizeof times - used, "%s%s %.2f s", used ? ", " : "", s[i].name,
                                     r->stage_seconds[i]);
    bb_info("time         %.2f s: %s", total, times);
    bb_run_stage_enter(r, -1);
    bb_run_resources res;
    BB_CALL(bb_run_resources_gather(r, &res));
    bb_run_resources_print(&res);
    bb_info("run files    %s/config.yaml, %s/summary.json", r->cfg.run.dir, r->cfg.run.dir);
    bb_status st = r->dist->rank == 0 ? write_summary_json(r, &res, total, bytes) : BB_OK;
    bb_run_resources_free(&res);
    BB_CALL(bb_dist_agree(r->dist, st));
    return BB_OK;
}
