# calib.cmake — numpy cross-check of the calibration statistics.
# calib.numpy_ref: random tiny llama2.c models through `test_calib --stats`, against
#   statistics of the inputs captured by a float64 numpy forward pass (tests/py/calib_ref.py).
if(Python3_Interpreter_FOUND)
  add_test(NAME calib.numpy_ref
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/py/calib_ref.py
            --runner $<TARGET_FILE:test_calib> --tmp ${CMAKE_CURRENT_BINARY_DIR}/tmp/calib_ref)
else()
  add_test(NAME calib.numpy_ref COMMAND ${CMAKE_COMMAND} -E echo "calib.numpy_ref needs python3 with numpy")
  set_tests_properties(calib.numpy_ref PROPERTIES WILL_FAIL TRUE)
endif()
set_tests_properties(calib.numpy_ref PROPERTIES LABELS "unit;python" TIMEOUT 300)
