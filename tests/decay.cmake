# decay.cmake — stage 2 (adaptive decay waves) against one-shot pruning on stories260K.
# decay.stories260k drives the pipeline's stages 0-2 for Wanda and SparseGPT at 20 % and 30 %: one-shot (must match
# DESIGN §7 within +-2 %) and waves of 10 % with the calibration statistics collected again between waves; checks
# the saved masks against prune.per_wave and prints the table of docs/pruning.md ("Waves vs one-shot"). It takes
# about ten minutes on the shared 2-core machine: label "reference", skipped (77) under BB_SKIP_SLOW.
add_executable(decay_stories ${CMAKE_CURRENT_SOURCE_DIR}/unit/decay_stories.c)
target_link_libraries(decay_stories PRIVATE birdbone_core)
add_test(NAME decay.stories260k COMMAND decay_stories ${BB_SHARED_DIR} ${CMAKE_CURRENT_BINARY_DIR}/tmp)
set_tests_properties(decay.stories260k PROPERTIES LABELS "reference" TIMEOUT 2400 SKIP_RETURN_CODE 77
                     ENVIRONMENT "${BB_MPI_ENV}")
