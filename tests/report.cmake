# The run report (docs/report.md): birdbone report on the hand-written fixture, and after a real compress run;
# tests/py/check_report.py parses every SVG and report.html as XML and compares the CSVs with metrics.json.
if(Python3_EXECUTABLE)
  set(BB_REPORT_ENV "BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR};PYTHON=${Python3_EXECUTABLE};${BB_MPI_ENV}")
  add_test(NAME report.fixture
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/report_run.sh fixture ${CMAKE_CURRENT_BINARY_DIR}/tmp/report_fixture_cli
            ppl kld time_waves time_stages density bits healing spectra)
  add_test(NAME e2e.compress_report
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/report_run.sh compress ${CMAKE_CURRENT_BINARY_DIR}/tmp/report_run
            ppl usage spectra)
  set_tests_properties(report.fixture PROPERTIES LABELS "unit" TIMEOUT 120 ENVIRONMENT "${BB_REPORT_ENV}")
  set_tests_properties(e2e.compress_report PROPERTIES LABELS "e2e" TIMEOUT 600 ENVIRONMENT "${BB_REPORT_ENV}")
endif()
bb_expect_fail(e2e.report_missing_metrics 1 "metrics.json does not exist" ${BB_BIN} report ${CMAKE_CURRENT_SOURCE_DIR})
bb_expect_fail(e2e.report_usage 2 "report needs a run directory" ${BB_BIN} report)
