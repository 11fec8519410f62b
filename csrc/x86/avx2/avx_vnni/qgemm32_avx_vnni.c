/*
 * The AVX-VNNI 32-block gemm micro-kernels (q8_0, q4_0, q4_1, q5_0, q5_1;
 * the kernel is ../qgemm32_avx2.h): a block's dot product as one VEX
 * vpdpbusd (u8 x s8, four products per int32 lane), where plain AVX2 needs
 * maddubs + madd. The int32 lanes are the same sums of four products
 * (nothing saturates in either), so the results are bitwise the plain
 * kernels' and the scalar kernels'.
 *
 * This CPU class cannot be run on the development box; the kernels are
 * checked under SIMDe emulation (tests/kernels/test_avx_vnni_emulated.py).
 */
#include "../qgemm32_avx2.h"

static inline __m256i dot32_vnni(__m256i u, __m256i x) {
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, x);
}

EC_GEMM32_ALL(avx_vnni, dot32_vnni)
