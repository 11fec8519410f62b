/* The neon tier's gemm micro-kernels with the dotprod extension (sdot),
 * built with +dotprod (setup.py FEATURES) and selected only when the CPU
 * reports it; the bodies are in ../qgemm_neon.h, shared with the plain tier. */
#ifndef __ARM_FEATURE_DOTPROD
#error "dotprod kernels must be compiled with +dotprod"
#endif
#define EC_QGEMM_NAME(type) ec_qgemm_##type##_neon_dotprod
#include "../qgemm_neon.h"
