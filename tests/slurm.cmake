# Slurm: the launcher's filled scripts (no Slurm needed), and the recipes under a private
# single-node Slurm that the test brings up and stops itself (tests/sh/slurm_cluster.sh). The
# Slurm tests skip (exit 77) with the reason where the daemons cannot start: not root, or
# slurm-wlm / munge missing (scripts/setup.sh installs them).
set(BB_SLURM_MPIRUN ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG})

add_test(NAME slurm.submit_dry_run COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/slurm_submit.sh)
# The resume loop (slurm/lib/job.sh) with stand-ins for srun, scontrol and birdbone.
add_test(NAME slurm.job_loop COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/slurm_job_loop.sh)
set_tests_properties(slurm.submit_dry_run slurm.job_loop PROPERTIES LABELS "slurm" TIMEOUT 120
  ENVIRONMENT "${BB_E2E_ENV}")

# The cpu recipe with 2 tasks (srun --mpi=pmix) against mpirun -np 2 of the same configuration.
add_test(NAME slurm.cpu_recipe
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/slurm_local.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/slurm_cpu/run ${BB_SLURM_MPIRUN})
set_tests_properties(slurm.cpu_recipe PROPERTIES LABELS "slurm;e2e" TIMEOUT 300 PROCESSORS 2
  SKIP_RETURN_CODE 77 RUN_SERIAL ON ENVIRONMENT "${BB_E2E_ENV}")

# The strong-scaling array for CPU ranks, elements 1 and 2: the same GGUF from both.
add_test(NAME slurm.strong_array
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/slurm_array.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/slurm_strong/run)
set_tests_properties(slurm.strong_array PROPERTIES LABELS "slurm;e2e" TIMEOUT 300 PROCESSORS 2
  SKIP_RETURN_CODE 77 RUN_SERIAL ON ENVIRONMENT "${BB_E2E_ENV}")

# The GPU recipes (gpu, multinode, strong) on a node with 2 stand-in GPUs and a stand-in
# birdbone: one rank per GPU, every allocated GPU visible to each rank, NVLS off.
add_test(NAME slurm.gpu_recipes
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/slurm_gpu.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/slurm_gpu)
set_tests_properties(slurm.gpu_recipes PROPERTIES LABELS "slurm" TIMEOUT 300 PROCESSORS 2
  SKIP_RETURN_CODE 77 RUN_SERIAL ON ENVIRONMENT "${BB_E2E_ENV}")

# Interrupt (SIGUSR1 to the batch shell), requeue, resume, compare with an uninterrupted run.
option(BB_TEST_SLURM_REQUEUE "Register slurm.requeue_resume" ON)
if(BB_TEST_SLURM_REQUEUE)
  add_test(NAME slurm.requeue_resume
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/sh/slurm_requeue.sh ${CMAKE_CURRENT_BINARY_DIR}/tmp/slurm_requeue/run
            ${BB_SLURM_MPIRUN})
  set_tests_properties(slurm.requeue_resume PROPERTIES LABELS "slurm;e2e" TIMEOUT 600 PROCESSORS 2
    SKIP_RETURN_CODE 77 RUN_SERIAL ON ENVIRONMENT "${BB_E2E_ENV}")
endif()
