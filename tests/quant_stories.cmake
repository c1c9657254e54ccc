# quant_stories.cmake — quant.stories260k: RTN and GPTQ at Q8_0, Q5_0, Q4_1, Q4_0 and the lagrange bit budget on
# stories260K against the reference table of DESIGN §7 (GPTQ Q4_0 / Q4_1 within +-2 % or better, GPTQ below RTN at
# every 4-bit type, the lagrange budget at the uniform Q4_1 size below uniform GPTQ Q4_1 in KLD and at the Q4_0 size
# not worse than uniform Q4_0). It takes minutes (calibration forward, 10 quantizations and perplexity runs):
# label "reference", skipped under BB_SKIP_SLOW.
add_executable(quant_stories ${CMAKE_CURRENT_SOURCE_DIR}/unit/quant_stories.c)
target_link_libraries(quant_stories PRIVATE birdbone_core)
add_test(NAME quant.stories260k COMMAND quant_stories ${BB_SHARED_DIR})
set_tests_properties(quant.stories260k PROPERTIES LABELS "reference" TIMEOUT 1200 SKIP_RETURN_CODE 77)
