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

# ScaLAPACK process groups (mpi/scalapack.h) against single-rank LAPACK and pdgesvd, on 1-4 ranks.
add_executable(mpi_scalapack ${CMAKE_CURRENT_SOURCE_DIR}/unit/mpi_scalapack.c)
target_link_libraries(mpi_scalapack PRIVATE birdbone_core)
target_include_directories(mpi_scalapack PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)
foreach(n 1 2 3 4)
  bb_add_mpi_test(mpi.scalapack_${n} ${n} mpi_scalapack)
endforeach()
