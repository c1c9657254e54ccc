# heal.stories260k: Wanda and SparseGPT at 30 % and GPTQ Q4_0 on stories260K, alone and healed (closed-form rank 8,
# Adam, both, and Adam with the kept weights): per-matrix reconstruction loss, PPL and KLD against the dense model.
# Checks that no healing step raises a matrix's loss and that healing lowers the model's KLD in every setting. Minutes: label "reference",
# skipped under BB_SKIP_SLOW.
add_executable(heal_stories ${CMAKE_CURRENT_SOURCE_DIR}/unit/heal_stories.c)
target_link_libraries(heal_stories PRIVATE birdbone_core)
add_test(NAME heal.stories260k COMMAND heal_stories ${BB_SHARED_DIR})
set_tests_properties(heal.stories260k PROPERTIES LABELS "reference" TIMEOUT 1200 SKIP_RETURN_CODE 77)
