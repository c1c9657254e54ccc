# hf.cmake — numpy/safetensors fixtures for the Hugging Face reader test (unit.hf).
# hf.fixtures writes tiny good and broken model directories into the unit tests'
# scratch folder; unit.hf requires it, so CTest runs the script first.
set(BB_HF_FIXTURES ${CMAKE_CURRENT_BINARY_DIR}/tmp/hf_fixtures)
if(Python3_Interpreter_FOUND)
  add_test(NAME hf.fixtures
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/make_hf_fixtures.py ${BB_HF_FIXTURES})
else()
  add_test(NAME hf.fixtures COMMAND ${CMAKE_COMMAND} -E echo "hf.fixtures needs python3 with numpy and safetensors")
  set_tests_properties(hf.fixtures PROPERTIES WILL_FAIL TRUE)
endif()
set_tests_properties(hf.fixtures PROPERTIES LABELS unit FIXTURES_SETUP hf_fixtures TIMEOUT 300)
if(TEST unit.hf)
  set_tests_properties(unit.hf PROPERTIES FIXTURES_REQUIRED hf_fixtures)
endif()
