/*
 * Activation quantization, AVX-512: the steps of actquant_scalar.c (the
 * contract in docs/quantization.md) on 16 lanes, so the bytes are the same:
 * max |x| is exact in any order, d = amax / 127 and id = 1 / d are the same
 * scalar divisions, x * id is one correctly rounded multiply and vcvtps2dq
 * rounds to nearest even under the default MXCSR, as lrintf does.
 */
#include <immintrin.h>
#include <math.h>

#include "../../common/half.h"
#include "../../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))

/* 16 * nv elements at x -> q; returns d (0 or NaN for the special blocks). */
EC_INLINE float quantize_block(const float *x, int nv, int8_t *q) {
    const __m512 big = _mm512_set1_ps(3.40282347e38f);
    __m512 amax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int v = 0; v < nv; v++) {
        const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + 16 * v));
        bad |= _mm512_cmp_ps_mask(a, big, _CMP_NLE_UQ); /* inf or NaN */
        amax = _mm512_max_ps(amax, a);
    }
    const float m = _mm512_reduce_max_ps(amax);
    if (bad || m < 0x1p-119f) {
        memset(q, 0, (size_t)(16 * nv));
        return bad ? ec_bits_to_f32(0x7fc00000u) : 0.0f;
    }
    const float d = m / 127.0f, id = 1.0f / d;
    const __m512 vid = _mm512_set1_ps(id);
    for (int v = 0; v < nv; v++) {
        const __m512i qi = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * v), vid));
        _mm_storeu_si128((__m128i *)(q + 16 * v), _mm512_cvtepi32_epi8(qi));
    }
    return d;
}

/* sum of 16 int8 */
EC_INLINE int sum16(const int8_t *q) {
    return _mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
}

static void actquant_q8_32_avx512(const float *x, void *out, size_t k) {
    ec_act_q8_32 *b = out;
    for (size_t i = 0; i < k / 32; i++, b++, x += 32) {
        b->d = quantize_block(x, 2, b->q);
        b->sum = sum16(b->q) + sum16(b->q + 16);
    }
}

static void actquant_q8_256_avx512(const float *x, void *out, size_t k) {
    ec_act_q8_256 *b = out;
    for (size_t i = 0; i < k / 256; i++, b++, x += 256) {
        b->d = quantize_block(x, 16, b->q);
        for (int g = 0; g < 16; g++) b->bsums[g] = (int16_t)sum16(b->q + 16 * g);
    }
}

const ec_actq_variant ec_actq_avx512[] = {
    {EC_AF_Q8_32, 0, actquant_q8_32_avx512},
    {EC_AF_Q8_256, 0, actquant_q8_256_avx512},
    EC_ACTQ_END,
};
