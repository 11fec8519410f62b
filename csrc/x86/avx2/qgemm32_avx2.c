/*
 * The plain AVX2 32-block gemm micro-kernels (q8_0, q4_0, q4_1, q5_0, q5_1;
 * the kernel is qgemm32_avx2.h): a block's dot product as maddubs (u8 x s8
 * pairs to int16) then madd with ones (pairs of pairs to int32).
 */
#include "qgemm32_avx2.h"

static inline __m256i dot32_maddubs(__m256i u, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

EC_GEMM32_ALL(avx2, dot32_maddubs)
