/*
 * gemm micro-kernels for the 32-element block types with AVX-512 VNNI:
 * vpdpbusd does the u8 x s8 products and their four-way sums in one
 * instruction (plain tier: vpmaddubsw + vpmaddwd + vpaddd). Same kernels,
 * same bits: qgemm_avx512.h.
 */
#define EC_Q_VNNI 1
#include "../qgemm_avx512.h"

EC_QGEMM32_AVX512(q8_0, QT_Q8_0, avx512_vnni)
EC_QGEMM32_AVX512(q4_0, QT_Q4_0, avx512_vnni)
EC_QGEMM32_AVX512(q4_1, QT_Q4_1, avx512_vnni)
EC_QGEMM32_AVX512(q5_0, QT_Q5_0, avx512_vnni)
EC_QGEMM32_AVX512(q5_1, QT_Q5_1, avx512_vnni)
