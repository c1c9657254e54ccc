# history.cmake — checkpoints, DeltaHistory and the diff / hash / revert commands on a fake run directory.
# history_run makes RUN_DIR from random waves over a synthetic model (checkpoint.keep = last, a delta per wave);
# history.cli (tests/sh/history_cli.sh) then checks: `hash` is deterministic; `revert --to-wave 0` gives the
# model's linear weights bit for bit (per-tensor SHA-256 against `birdbone hash MODEL`), also through
# --export (the F32 GGUF hashes like the model); wave K rebuilt and written equals the checkpoint of wave K;
# `diff` of a checkpoint against the model and of wave 0 against the model; and the refusals (no complete
# checkpoint, a missing delta, an existing output without --force).
add_executable(history_run ${CMAKE_CURRENT_SOURCE_DIR}/unit/history_run.c)
target_link_libraries(history_run PRIVATE birdbone_core)
target_include_directories(history_run PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)

set(BB_HISTORY_DIR ${CMAKE_CURRENT_BINARY_DIR}/tmp/history)
set(BB_HISTORY_SPEC "synthetic:tiny,layers=2,vocab=128")
add_test(NAME history.make_run
  COMMAND ${CMAKE_COMMAND} -E env bash -c "rm -rf '${BB_HISTORY_DIR}' && mkdir -p '${BB_HISTORY_DIR}' && $<TARGET_FILE:history_run> '${BB_HISTORY_SPEC}' '${BB_HISTORY_DIR}/run' 4")
set_tests_properties(history.make_run PROPERTIES LABELS unit TIMEOUT 120 FIXTURES_SETUP history_run)
add_test(NAME history.cli
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sh/history_cli.sh $<TARGET_FILE:birdbone> ${BB_HISTORY_DIR} ${BB_HISTORY_SPEC})
set_tests_properties(history.cli PROPERTIES LABELS unit TIMEOUT 300 FIXTURES_REQUIRED history_run)
