# GGUF block formats against the gguf Python package: qformat_dump writes birdbone's encodings and
# decodings (plus random block bytes) to a scratch folder, then check_qformat.py dequantizes them
# with gguf.quants and requires identical floats. The fixture orders the two steps.
add_executable(qformat_dump ${CMAKE_CURRENT_SOURCE_DIR}/unit/qformat_dump.c)
target_link_libraries(qformat_dump PRIVATE birdbone_core)

set(BB_QFORMAT_DIR ${CMAKE_CURRENT_BINARY_DIR}/tmp/qformat)
file(MAKE_DIRECTORY ${BB_QFORMAT_DIR})
add_test(NAME qformat.dump COMMAND qformat_dump ${BB_QFORMAT_DIR})
set_tests_properties(qformat.dump PROPERTIES LABELS unit TIMEOUT 120 FIXTURES_SETUP qformat_blocks)

if(Python3_EXECUTABLE)
  add_test(NAME qformat.gguf_py COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/check_qformat.py
                                        ${BB_QFORMAT_DIR})
  # 77: numpy or gguf is not installed (pip install numpy gguf); reported as skipped, not passed.
  set_tests_properties(qformat.gguf_py PROPERTIES LABELS "unit;python" TIMEOUT 300
                       FIXTURES_REQUIRED qformat_blocks SKIP_RETURN_CODE 77)
else()
  message(STATUS "qformat.gguf_py not registered: no Python 3 interpreter")
endif()
