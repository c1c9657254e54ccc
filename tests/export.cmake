# export.cmake — the GGUF export read back: unit.export (birdbone's own reader and forward pass; it needs the
# HF fixtures for the rotary permutation check and the tokenizer fixtures for tokenizer.json vocabularies)
# writes its files to tmp/export, which export.gguf_py then reads with the gguf Python package (keys,
# vocabulary form, tensor types, dequantization).
if(TEST unit.export)
  set_tests_properties(unit.export PROPERTIES FIXTURES_REQUIRED "hf_fixtures;tokenizer_hf_fixtures"
                       FIXTURES_SETUP export_files)
endif()
if(Python3_EXECUTABLE)
  add_test(NAME export.gguf_py COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/check_export_gguf.py
                                       ${CMAKE_CURRENT_BINARY_DIR}/tmp/export)
  # 77: the gguf package is not installed; reported as skipped, not passed.
  set_tests_properties(export.gguf_py PROPERTIES LABELS "unit;python" TIMEOUT 300 FIXTURES_REQUIRED export_files
                       SKIP_RETURN_CODE 77)
endif()

# unit.export_lora writes base / adapter / merged GGUF files to tmp/export_lora; export.lora_py reads them with
# the gguf package (adapter keys, llama.cpp's shape rule, (alpha/rank) B A == merged - base).
if(TEST unit.export_lora)
  set_tests_properties(unit.export_lora PROPERTIES FIXTURES_SETUP lora_files)
endif()
if(Python3_EXECUTABLE)
  add_test(NAME export.lora_py COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/check_lora_gguf.py
                                       ${CMAKE_CURRENT_BINARY_DIR}/tmp/export_lora)
  set_tests_properties(export.lora_py PROPERTIES LABELS "unit;python" TIMEOUT 300 FIXTURES_REQUIRED lora_files
                       SKIP_RETURN_CODE 77)
endif()
