# llama2c.cmake — numpy cross-checks of the llama2.c reader and the forward pass.
# llama2c.check_stories260k: numpy reads stories260K.bin on its own and compares with
#   `test_llama2c --dump` (header, offsets, shapes, values).
# forward.numpy_ref: random tiny models (llama2.c legacy/v1 files and in-memory raw models)
#   through `test_forward --logits`, against a float64 numpy forward pass (rel err <= 1e-5).
set(_l2c_env "BB_SHARED=${BB_SHARED_DIR}")
if(Python3_Interpreter_FOUND)
  add_test(NAME llama2c.check_stories260k
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/check_stories260k.py
            --dump $<TARGET_FILE:test_llama2c> --model ${BB_SHARED_DIR}/data/stories260K/stories260K.bin)
  add_test(NAME forward.numpy_ref
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/forward_ref.py
            --runner $<TARGET_FILE:test_forward> --tmp ${CMAKE_CURRENT_BINARY_DIR}/tmp/forward_ref)
else()
  foreach(t llama2c.check_stories260k forward.numpy_ref)
    add_test(NAME ${t} COMMAND ${CMAKE_COMMAND} -E echo "${t} needs python3 with numpy")
    set_tests_properties(${t} PROPERTIES WILL_FAIL TRUE)
  endforeach()
endif()
set_tests_properties(llama2c.check_stories260k forward.numpy_ref PROPERTIES
  LABELS "unit;python" TIMEOUT 300 ENVIRONMENT "${_l2c_env}")
