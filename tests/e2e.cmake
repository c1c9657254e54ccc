# End-to-end tests of the birdbone program: the main job on 1 and 3 ranks, and
# one clear error (never a crash or a hang) for bad input on every rank count.
set(BB_E2E_ENV "BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR};${BB_MPI_ENV}")
set(BB_MPIRUN ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})

add_test(NAME e2e.compress_default
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/compress_outputs.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/run1 env)
add_test(NAME e2e.compress_default_3ranks
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/compress_outputs.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/run3
          ${BB_MPIRUN} 3 --oversubscribe)
set_tests_properties(e2e.compress_default e2e.compress_default_3ranks PROPERTIES
  LABELS "e2e" TIMEOUT 600 ENVIRONMENT "${BB_E2E_ENV}")
set_tests_properties(e2e.compress_default_3ranks PROPERTIES LABELS "e2e;mpi" PROCESSORS 3)

function(bb_expect_fail name code pattern)
  add_test(NAME ${name} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/expect_fail.sh ${code} ${pattern} -- ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "e2e" TIMEOUT 300 ENVIRONMENT "${BB_E2E_ENV}")
endfunction()
set(BB_BIN $<TARGET_FILE:birdbone>)
bb_expect_fail(e2e.bad_set 1 "prune.per_wave=abc: expected a number" ${BB_BIN} compress --set prune.per_wave=abc)
bb_expect_fail(e2e.bad_set_3ranks 1 "prune.per_wave=abc: expected a number"
  ${BB_MPIRUN} 3 --oversubscribe ${BB_BIN} compress --set prune.per_wave=abc)
bb_expect_fail(e2e.missing_model_3ranks 1 "model /nonexistent/model.bin does not exist"
  ${BB_MPIRUN} 3 --oversubscribe ${BB_BIN} compress --set model.path=/nonexistent/model.bin)
bb_expect_fail(e2e.missing_config 1 "cannot open /nonexistent.yaml" ${BB_BIN} compress -c /nonexistent.yaml)
bb_expect_fail(e2e.unknown_command 2 "unknown command 'compres'" ${BB_BIN} compres)
bb_expect_fail(e2e.inspect_missing 1 "does not exist" ${BB_BIN} inspect /nonexistent/dir/model.gguf)
add_test(NAME e2e.inspect_synth_70b COMMAND ${BB_BIN} inspect --brief synthetic:llama2-70b)
set_tests_properties(e2e.inspect_synth_70b PROPERTIES LABELS "e2e" PASS_REGULAR_EXPRESSION "68976648192 total")
# The sharding plan of a model never run: Llama-2-70B on 4 ranks, 20 blocks each, the table docs/distribution.md shows.
add_test(NAME e2e.inspect_plan_70b COMMAND ${BB_BIN} inspect --brief --plan 4 synthetic:llama2-70b)
set_tests_properties(e2e.inspect_plan_70b PROPERTIES LABELS "e2e"
  PASS_REGULAR_EXPRESSION "80 layers on 4 ranks \\(4 active\\), 262144 calibration tokens.*\n +3 60-79 +head")

# The stories260K model through the command line: golden greedy text, canaries, multiple choice.
set(BB_S260 ${BB_SHARED_DIR}/data/stories260K)
add_test(NAME e2e.generate_stories260k
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/generate_golden.sh ${BB_S260}/stories260K.bin ${BB_S260}/expected_greedy_200.txt)
add_test(NAME e2e.eval_tasks_stories260k
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/expect_output.sh "canaries: 4 of 4 passed" "MC acc = 1.0000" --
          ${BB_BIN} eval ${BB_S260}/stories260K.bin --canaries ${CMAKE_CURRENT_SOURCE_DIR}/data/canaries_stories260k.jsonl
          --mc ${CMAKE_CURRENT_SOURCE_DIR}/data/mc_example.jsonl)
set_tests_properties(e2e.generate_stories260k e2e.eval_tasks_stories260k PROPERTIES LABELS "e2e" TIMEOUT 300
  ENVIRONMENT "${BB_E2E_ENV}")

# Stage 2 (adaptive decay waves) on the default synthetic model, prune.target 0.3 by waves of at most 10 %: the
# per-wave lines during the stage and again in the summary, and the final sparsity in [0.29, 0.30] of the linear
# weights; then the same run on 3 ranks must write the same wave_*.h5 files (h5diff) and print the same waves.
add_test(NAME e2e.decay_default
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/expect_output.sh "^wave 1/5  sparsity 0\\.[0-9]+  PPL [0-9.]+  dPPL [-+][0-9.]+ %  KLD [0-9.]+"
          "^wave 4/5  sparsity 0\\.(29[0-9]{2}|3000)" "^waves +wave 1/5  sparsity"
          "^ +sparsity 0\\.(29[0-9]{2}|3000) of the linear weights after 4 waves; masks and usage maps in .*/wave_\\*\\.h5"
          -- ${BB_BIN} compress --force --set run.dir=${CMAKE_CURRENT_BINARY_DIR}/tmp/decay1 --set quant.method=none
          --set stoploss.enabled=false)
add_test(NAME e2e.decay_3ranks
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/decay_ranks.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/decay3
          ${BB_MPIRUN} 3 --oversubscribe)
set_tests_properties(e2e.decay_default e2e.decay_3ranks PROPERTIES LABELS "e2e" TIMEOUT 300
  ENVIRONMENT "${BB_E2E_ENV}")
set_tests_properties(e2e.decay_3ranks PROPERTIES LABELS "e2e;mpi" PROCESSORS 3)

# Stage 6: GPTQ under a 4.5-bit budget writes model.gguf; inspect reads it back; 3 ranks give the same bytes.
add_test(NAME e2e.compress_gguf
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/compress_gguf.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/gguf_run
          ${BB_MPIRUN} 3 --oversubscribe)
set_tests_properties(e2e.compress_gguf PROPERTIES LABELS "e2e;mpi" TIMEOUT 900 PROCESSORS 3
  ENVIRONMENT "${BB_E2E_ENV}")

# A model file with a NaN weight: one clear error naming the tensor, for every command.
add_test(NAME e2e.nan_weight_fixture
  COMMAND ${Python3_EXECUTABLE} -c "import numpy as np; b=bytearray(open('${BB_S260}/stories260K.bin','rb').read()); v=np.frombuffer(bytes(b[28:]),dtype=np.float32).copy(); v[70000]=np.nan; b[28:]=v.tobytes(); open('${CMAKE_CURRENT_BINARY_DIR}/tmp/nan/model.bin','wb').write(b)")
set_tests_properties(e2e.nan_weight_fixture PROPERTIES FIXTURES_SETUP nan_model LABELS "e2e")
file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/tmp/nan)
file(COPY ${BB_S260}/tok512.bin DESTINATION ${CMAKE_CURRENT_BINARY_DIR}/tmp/nan)
foreach(cmd eval generate)
  if(cmd STREQUAL eval)
    set(args --text ${BB_SHARED_DIR}/data/tinystories/dev.txt)
  else()
    set(args -n 4)
  endif()
  bb_expect_fail(e2e.nan_weight_${cmd} 1 "blk.3.attn_v.weight has a non-finite value \\(nan\\) at row 0, column 48"
    ${BB_BIN} ${cmd} ${CMAKE_CURRENT_BINARY_DIR}/tmp/nan/model.bin ${args})
  set_tests_properties(e2e.nan_weight_${cmd} PROPERTIES FIXTURES_REQUIRED nan_model)
endforeach()
bb_expect_fail(e2e.nan_weight_compress_2ranks 1 "has a non-finite value"
  ${BB_MPIRUN} 2 --oversubscribe ${BB_BIN} compress -c ${PROJECT_SOURCE_DIR}/configs/stories260K.yaml
  --set model.path=${CMAKE_CURRENT_BINARY_DIR}/tmp/nan/model.bin --set run.dir=${CMAKE_CURRENT_BINARY_DIR}/tmp/nanrun)
set_tests_properties(e2e.nan_weight_compress_2ranks PROPERTIES FIXTURES_REQUIRED nan_model)

# compress writes a Q4_0 GGUF; birdbone eval on it (decoded at open) gives the PPL compress reported.
add_test(NAME e2e.compress_eval_gguf
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/compress_eval_gguf.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/compress_eval_gguf
          ${BB_SHARED_DIR}/data)
set_tests_properties(e2e.compress_eval_gguf PROPERTIES SKIP_RETURN_CODE 77 LABELS "e2e" TIMEOUT 300 ENVIRONMENT "${BB_E2E_ENV}")

# birdbone export: F32 reproduces the golden greedy text; Q4_0 falls back to F16 for ffn_down and reads back.
add_test(NAME e2e.export_stories260k
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/export_cli.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/export_cli ${BB_S260})
set_tests_properties(e2e.export_stories260k PROPERTIES LABELS "e2e" TIMEOUT 300 ENVIRONMENT "${BB_E2E_ENV}")

# The stop-loss: the default run without healing loses > 3 % PPL two waves in a row, then rolls back to the last
# good wave over 3 waves (a third of the pruned weights per wave) and stops pruning; checked from metrics.json and
# the wave files.
add_test(NAME e2e.stoploss_default
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/stoploss.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/stoploss)
set_tests_properties(e2e.stoploss_default PROPERTIES LABELS "e2e" TIMEOUT 300 ENVIRONMENT "${BB_E2E_ENV}")

# run.dir protection: a finished run is refused as a target unless --force; --force clears the old outputs.
add_test(NAME e2e.run_dir_guard COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/run_dir_guard.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/guard)
set_tests_properties(e2e.run_dir_guard PROPERTIES LABELS "e2e" TIMEOUT 300 ENVIRONMENT "${BB_E2E_ENV}")

# --resume: SIGKILL in the middle of a rollback and SIGUSR1 after wave 1 both continue to byte-identical outputs.
add_test(NAME e2e.resume COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/resume.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/resume)
set_tests_properties(e2e.resume PROPERTIES SKIP_RETURN_CODE 77 LABELS "e2e" TIMEOUT 600 ENVIRONMENT "${BB_E2E_ENV}")

# Optional parts of a real run: the LoRA adapter export, phased synergy bundles, revert to wave 0.
add_test(NAME e2e.run_extras COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/run_extras.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/extras)
set_tests_properties(e2e.run_extras PROPERTIES SKIP_RETURN_CODE 77 LABELS "e2e;python" TIMEOUT 300 ENVIRONMENT "${BB_E2E_ENV}")
# backend.device = cuda on a machine without a usable GPU (CI), or in a build without CUDA: one clear error.
# On a GPU machine this check is skipped (the run would simply use the GPU).
add_test(NAME e2e.device_cuda_unavailable COMMAND sh -c "if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then echo 'skipped: a GPU is present'; exit 77; fi; ${BB_BIN} compress -c ${PROJECT_SOURCE_DIR}/configs/default.yaml --set backend.device=cuda --set run.dir=${CMAKE_CURRENT_BINARY_DIR}/device_cuda_run 2>&1; test $? -eq 1")
set_tests_properties(e2e.device_cuda_unavailable PROPERTIES LABELS "e2e" SKIP_RETURN_CODE 77
                     PASS_REGULAR_EXPRESSION "backend.device = cuda, but (rank 0 .* sees no GPU|this birdbone was built without CUDA)")

# Scaffold mode: factor rank k in wave k, tau halved by the scaffold's stop-loss after a forced loss rise, residual
# sparsity following tau, SIGUSR1 + --resume to the same checkpoint. About 40 s.
add_test(NAME e2e.scaffold COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/scaffold.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/scaffold)
set_tests_properties(e2e.scaffold PROPERTIES SKIP_RETURN_CODE 77 LABELS "e2e" TIMEOUT 300 ENVIRONMENT "${BB_E2E_ENV}")

# Factorization as compression: factored only where it is as accurate as q4_0 with fewer bits; saving in
# summary.json, factors in quantized.h5 and lora.gguf; a noisy model stays dense. About 30 s.
add_test(NAME e2e.lowrank COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/lowrank.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/lowrank)
set_tests_properties(e2e.lowrank PROPERTIES SKIP_RETURN_CODE 77 LABELS "e2e" TIMEOUT 300 ENVIRONMENT "${BB_E2E_ENV}")
bb_expect_fail(e2e.bad_lowrank_unquantized 1 "lowrank.enabled is true but quant.method is none"
  ${BB_BIN} compress --set lowrank.enabled=true --set lowrank.rank_budget=0.5 --set quant.method=none)
bb_expect_fail(e2e.bad_train_scales_unquantized 1 "no quantization scales to train"
  ${BB_BIN} compress --set heal.train_scales=true --set quant.method=none)
bb_expect_fail(e2e.bad_scaffold_rank 1 "lower waves.count to at most"
  ${BB_BIN} compress --set scaffold.enabled=true --set waves.count=200 --set quant.method=none)
