# heal_stories.cmake — heal.stories260k: SparseGPT 30 %, GPTQ Q4_0 and both on stories260K, each before and after
# block-level healing of every block with rank-8 factors (compress/heal_block.h); every healed row's KLD against the
# dense model must be below its unhealed row's. It takes minutes (calibration forward, healing, perplexity runs):
# label "reference", skipped under BB_SKIP_SLOW.
add_executable(heal_stories ${CMAKE_CURRENT_SOURCE_DIR}/unit/heal_stories.c)
target_link_libraries(heal_stories PRIVATE birdbone_core)
add_test(NAME heal.stories260k COMMAND heal_stories ${BB_SHARED_DIR})
set_tests_properties(heal.stories260k PROPERTIES LABELS "reference" TIMEOUT 1800 SKIP_RETURN_CODE 77)
