# heal_block_stories.cmake — heal_block.stories260k: SparseGPT 30 %, GPTQ Q4_0 and both on stories260K, each
# before and after block-level healing of every block (compress/heal_block.h: rank-8 factors, kept weights with the
# mask fixed, and a straight-through estimator on GPTQ's Q4_0 grid); every healed row kept in its trained form must
# have a KLD against the dense model below its unhealed row's. It takes about 40 minutes on one core (calibration
# forward, 10 healings, perplexity runs): label "reference", opt-in with BB_LONG=1 (skipped otherwise, and always
# under BB_SKIP_SLOW): `BB_LONG=1 ctest -R heal_block.stories260k`.
add_executable(heal_block_stories ${CMAKE_CURRENT_SOURCE_DIR}/unit/heal_block_stories.c)
target_link_libraries(heal_block_stories PRIVATE birdbone_core)
add_test(NAME heal_block.stories260k COMMAND heal_block_stories ${BB_SHARED_DIR})
set_tests_properties(heal_block.stories260k PROPERTIES LABELS "reference" TIMEOUT 3600 SKIP_RETURN_CODE 77)
