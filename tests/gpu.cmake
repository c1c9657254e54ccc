# GPU tests: label gpu; they exit 77 (skipped) without CUDA or without a GPU.
set_tests_properties(unit.cuda_smoke PROPERTIES LABELS "gpu" SKIP_RETURN_CODE 77)
set_tests_properties(unit.cuda_linalg unit.cuda_gptq unit.cuda_wanda unit.cuda_sparsegpt unit.cuda_forward unit.cuda_comm PROPERTIES LABELS "gpu" SKIP_RETURN_CODE 77)
