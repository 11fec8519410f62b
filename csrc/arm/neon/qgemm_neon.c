/* The plain neon tier's gemm micro-kernels (widening int8 multiplies); the
 * bodies are in qgemm_neon.h, shared with the dotprod variants. */
#define EC_QGEMM_NAME(type) ec_qgemm_##type##_neon
#include "qgemm_neon.h"
