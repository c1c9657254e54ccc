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
foreach(n 2 3 4)
  bb_add_mpi_test(mpi.comm_${n} ${n} test_comm)
endforeach()
# Checkpoints written and read collectively (mpi/ckpt.h): each rank its own weights, the serial file's contents,
# another owner assignment on read, one rank's bad arguments refused on every rank.
foreach(n 2 3 4)
  bb_add_mpi_test(mpi.ckpt_dist_${n} ${n} test_ckpt_dist)
endforeach()
# The pipelined forward: calibration statistics and perplexity bit-identical to one process (synthetic:tiny, a
# one-layer model that leaves ranks idle, stories260K), one OpenBLAS thread per rank on this 2-core machine.
foreach(n 2 3 4)
  bb_add_mpi_test(mpi.pipe_${n} ${n} test_pipe)
  set_property(TEST mpi.pipe_${n} APPEND PROPERTY ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
  set_tests_properties(mpi.pipe_${n} PROPERTIES TIMEOUT 120)
endforeach()
set_property(TEST unit.pipe APPEND PROPERTY ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
# An injected error on one rank of 3 (the middle one, then the head rank) ends the job with exit 3 and one message
# naming the rank and the cause; expect_fail.sh fails the test if it hangs.
foreach(r 1 2)
  add_test(NAME mpi.pipe_fail_${r}of3
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/sh/expect_fail.sh 3 "rank ${r}: injected failure in stage 'calib'" --
            ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 3 --oversubscribe ${MPIEXEC_PREFLAGS}
            $<TARGET_FILE:test_pipe> --inject synthetic:tiny)
  set_tests_properties(mpi.pipe_fail_${r}of3 PROPERTIES LABELS "mpi" TIMEOUT 150 PROCESSORS 3
    ENVIRONMENT "${BB_MPI_ENV};BB_INJECT_FAIL=${r}:calib;OPENBLAS_NUM_THREADS=1")
endforeach()

# The whole default run (waves, stop-loss rollback, checkpoints, history, GPTQ, GGUF) on 1-4 ranks: the same
# model.gguf bytes and the same checkpoint, wave and history contents (backend.threads=1 on every rank).
add_test(NAME mpi.ranks_identical
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/ranks_identical.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/ranks
          ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
set_tests_properties(mpi.ranks_identical PROPERTIES SKIP_RETURN_CODE 77 LABELS "mpi;e2e" TIMEOUT 900 PROCESSORS 4
  ENVIRONMENT "${BB_MPI_ENV};BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR}")

# More ranks than blocks: 6 ranks on the 4-layer default (rank 0 holds only the embedding, rank 5 only the head, so
# two ranks have no calibration statistics and no weights to prune): the same files as one rank.
add_test(NAME mpi.ranks_identical_6
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/ranks_identical.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/ranks6
          ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
set_tests_properties(mpi.ranks_identical_6 PROPERTIES SKIP_RETURN_CODE 77 LABELS "mpi;e2e" TIMEOUT 900 PROCESSORS 4
  ENVIRONMENT "${BB_MPI_ENV};BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR};BB_RANKS=1 6")

# Resume with another rank count: stopped (SIGUSR1) on 2 ranks, continued on 3, equal to one uninterrupted rank.
add_test(NAME mpi.resume_ranks
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/resume_ranks.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/resume_ranks
          ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
set_tests_properties(mpi.resume_ranks PROPERTIES SKIP_RETURN_CODE 77 LABELS "mpi;e2e" TIMEOUT 900 PROCESSORS 3
  ENVIRONMENT "${BB_MPI_ENV};BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR}")

# The same with block healing (the calibration stream handed from rank to rank) and layer healing both on.
add_test(NAME mpi.ranks_identical_block
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/ranks_identical.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/ranks_block
          ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
set_tests_properties(mpi.ranks_identical_block PROPERTIES SKIP_RETURN_CODE 77 LABELS "mpi;e2e" TIMEOUT 900 PROCESSORS 3
  ENVIRONMENT "${BB_MPI_ENV};BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR};BB_RANKS=1 3;BB_EXTRA=heal.level=both heal.block_steps=6 calib.samples=8 waves.count=3 prune.target=0.2")

# summary.json on 2 ranks: peak resident memory per stage and rank, MPI bytes and seconds (mpi/traffic.h).
add_test(NAME mpi.summary_resources
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/summary_resources.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/summary_resources
          ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe ${MPIEXEC_PREFLAGS})
set_tests_properties(mpi.summary_resources PROPERTIES LABELS "mpi;e2e" TIMEOUT 120 PROCESSORS 2
  ENVIRONMENT "${BB_MPI_ENV};BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR}")

# Parallel-HDF5 checkpoints: each of 3 ranks writes only its own layers' datasets (checked against summary.json's
# checkpoint_shares), and a checkpoint written by 3 ranks resumes on 2 and on 1 rank with the uninterrupted
# run's model.gguf.
add_test(NAME mpi.ckpt_parallel
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/ckpt_parallel.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/ckpt_parallel
          ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
set_tests_properties(mpi.ckpt_parallel PROPERTIES SKIP_RETURN_CODE 77 LABELS "mpi;e2e" TIMEOUT 900 PROCESSORS 3
  ENVIRONMENT "${BB_MPI_ENV};BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR}")

# Rank 0 never receives the other ranks' weights: on 3 ranks, summary.json's bytes received by rank 0 stay under 1/8
# of the other ranks' linear-weight bytes in the wave stages and under half of them over the whole run.
add_test(NAME mpi.rank0_traffic
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/rank0_traffic.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/rank0_traffic
          ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 3 --oversubscribe ${MPIEXEC_PREFLAGS})
set_tests_properties(mpi.rank0_traffic PROPERTIES LABELS "mpi;e2e" TIMEOUT 300 PROCESSORS 3
  ENVIRONMENT "${BB_MPI_ENV};BIRDBONE=$<TARGET_FILE:birdbone>;BB_SOURCE=${PROJECT_SOURCE_DIR}")
