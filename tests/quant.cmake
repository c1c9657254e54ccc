# quant.cmake — GPTQ on the Q4_0 and Q8_0 grids against a straightforward numpy GPTQ.
# quant.dump writes random layers and birdbone's GPTQ/RTN results into a scratch folder;
# quant.numpy_ref (tests/py/gptq_ref.py) decodes the stored blocks, redoes GPTQ in numpy and compares.
# The fixture orders the two steps.
add_executable(quant_dump ${CMAKE_CURRENT_SOURCE_DIR}/unit/quant_dump.c)
target_link_libraries(quant_dump PRIVATE birdbone_core)

set(BB_QUANT_DIR ${CMAKE_CURRENT_BINARY_DIR}/tmp/quant)
file(MAKE_DIRECTORY ${BB_QUANT_DIR})
add_test(NAME quant.dump COMMAND quant_dump ${BB_QUANT_DIR})
set_tests_properties(quant.dump PROPERTIES LABELS unit TIMEOUT 120 FIXTURES_SETUP quant_layers)

if(Python3_Interpreter_FOUND)
  add_test(NAME quant.numpy_ref COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/gptq_ref.py
                                        ${BB_QUANT_DIR})
  # 77: numpy is not installed (pip install numpy); reported as skipped, not passed.
  set_tests_properties(quant.numpy_ref PROPERTIES LABELS "unit;python" TIMEOUT 300
                       FIXTURES_REQUIRED quant_layers SKIP_RETURN_CODE 77)
else()
  message(STATUS "quant.numpy_ref not registered: no Python 3 interpreter")
endif()
