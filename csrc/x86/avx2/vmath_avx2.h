/*
 * AVX2+FMA vector math for activations applied in registers.
 *
 * exp: Cephes-style range reduction x = n ln2 + r with a degree-6 polynomial
 * (relative error ~1e-7 on the clamped range [-87, 88]); erf:
 * Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7). NaN inputs stay NaN
 * through every activation because each ends with a multiply by x.
 */
#ifndef EDGECORE_VMATH_AVX2_H
#define EDGECORE_VMATH_AVX2_H

#include <immintrin.h>

#include "edgecore/kernels.h"

static inline __m256 ec_exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* x * sigmoid(z) = x / (1 + exp(-z)) */
static inline __m256 ec_mul_sigmoid_avx2(__m256 x, __m256 z) {
    const __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), ec_exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), z)));
    return _mm256_div_ps(x, d);
}

static inline __m256 ec_erf_avx2(__m256 x) {
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    const __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                                   _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    const __m256 e = ec_exp_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), ax), ax));
    const __m256 y = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
    return _mm256_or_ps(y, sign);
}

static inline __m256 ec_activate_avx2(__m256 v, int act) {
    switch (act) {
    case EC_ACT_RELU: return _mm256_max_ps(_mm256_setzero_ps(), v); /* NaN -> NaN */
    case EC_ACT_GELU: {
        const __m256 phi = _mm256_fmadd_ps(
            _mm256_set1_ps(0.5f), ec_erf_avx2(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f))),
            _mm256_set1_ps(0.5f));
        return _mm256_mul_ps(v, phi);
    }
    case EC_ACT_GELU_TANH: {
        /* 0.5 x (1 + tanh(u)) == x * sigmoid(2u) */
        const __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
        const __m256 u = _mm256_mul_ps(_mm256_set1_ps(2.0f * 0.7978845608028654f),
                                       _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), v3, v));
        return ec_mul_sigmoid_avx2(v, u);
    }
    case EC_ACT_SILU: return ec_mul_sigmoid_avx2(v, v);
    default: return v;
    }
}

/* Lanes [0, count) set, count in 0..8. */
static inline __m256i ec_mask_avx2(size_t count) {
    static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(bits + 8 - (count > 8 ? 8 : count)));
}

#endif
