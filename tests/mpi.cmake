# MPI tests: the same executables under mpiexec with 2, 3 and 4 ranks (oversubscribed on small machines).
function(bb_add_mpi_test name nranks exe)
  add_test(NAME ${name} COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${nranks} --oversubscribe
           ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${exe}> ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "mpi" TIMEOUT 600 PROCESSORS ${nranks}
    ENVIRONMENT "${BB_MPI_ENV};BB_SHARED=${BB_SHARED_DIR};BB_TEST_TMP=${CMAKE_CURRENT_BINARY_DIR}/tmp;BB_SOURCE=${PROJECT_SOURCE_DIR}")
endfunction()
foreach(n 2 3 4)
  bb_add_mpi_test(mpi.dist_${n} ${n} test_dist)
endforeach()
foreach(n 2 3 4)
  bb_add_mpi_test(mpi.comm_${n} ${n} test_comm)
endforeach()
