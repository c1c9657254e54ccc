# tokenizer_hf.cmake — tokenizer.json and GGUF vocabularies against the `tokenizers` package.
# tokenizer_hf.fixtures trains tiny tokenizers on calib.txt, writes them as tokenizer.json, GGUF and
# tokenizer.bin, with the reference ids of the `tokenizers` package (pip packages tokenizers, gguf,
# numpy); unit.tokenizer_hf (tests/unit/test_tokenizer_hf.c) needs them. Without the packages the
# script leaves a marker and the C test reports itself skipped (exit 77).
set(_tokhf_dir ${CMAKE_CURRENT_BINARY_DIR}/tmp/tokenizer_fixtures)
if(Python3_Interpreter_FOUND)
  add_test(NAME tokenizer_hf.fixtures
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/make_tokenizer_fixtures.py ${_tokhf_dir})
else()
  add_test(NAME tokenizer_hf.fixtures COMMAND ${CMAKE_COMMAND} -E echo "tokenizer_hf.fixtures needs python3")
  set_tests_properties(tokenizer_hf.fixtures PROPERTIES WILL_FAIL TRUE)
endif()
set_tests_properties(tokenizer_hf.fixtures PROPERTIES LABELS "unit;python" FIXTURES_SETUP tokenizer_hf_fixtures
  TIMEOUT 300 ENVIRONMENT "BB_SHARED=${BB_SHARED_DIR}")
if(TEST unit.tokenizer_hf)
  set_tests_properties(unit.tokenizer_hf PROPERTIES FIXTURES_REQUIRED tokenizer_hf_fixtures SKIP_RETURN_CODE 77)
endif()
