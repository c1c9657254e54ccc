# gguf.cmake — GGUF tests: Python fixtures (needs pip packages gguf and numpy), the C test
# unit.gguf (tests/unit/test_gguf.c) on them, then the gguf package reading what C wrote.
if(Python3_EXECUTABLE AND TARGET test_gguf)
  set(_gguf_tmp ${CMAKE_CURRENT_BINARY_DIR}/tmp)
  add_test(NAME gguf.fixtures
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/make_gguf_fixtures.py ${_gguf_tmp}/gguf_fixtures)
  set_tests_properties(gguf.fixtures PROPERTIES LABELS "unit;python" FIXTURES_SETUP gguf_fixtures TIMEOUT 300)
  set_tests_properties(unit.gguf PROPERTIES FIXTURES_REQUIRED gguf_fixtures FIXTURES_SETUP gguf_written)
  add_test(NAME gguf.check_written
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/check_gguf_written.py ${_gguf_tmp}/gguf_written.gguf)
  set_tests_properties(gguf.check_written PROPERTIES LABELS "unit;python" FIXTURES_REQUIRED gguf_written TIMEOUT 300)
endif()
