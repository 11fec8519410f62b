/*
 * gemm micro-kernels for the 32-element block types, plain AVX-512 (F/BW):
 * the integer dot products with vpmaddubsw + vpmaddwd. The kernels and
 * their numerical contract are in qgemm_avx512.h.
 */
#define EC_Q_VNNI 0
#include "qgemm_avx512.h"

EC_QGEMM32_AVX512(q8_0, QT_Q8_0, avx512)
EC_QGEMM32_AVX512(q4_0, QT_Q4_0, avx512)
EC_QGEMM32_AVX512(q4_1, QT_Q4_1, avx512)
EC_QGEMM32_AVX512(q5_0, QT_Q5_0, avx512)
EC_QGEMM32_AVX512(q5_1, QT_Q5_1, avx512)
