/*
 * AVX-512F vector math for activations applied in registers: the same
 * algorithms as vmath_avx2.h (Cephes exp, Abramowitz & Stegun 7.1.26 erf)
 * on 16 lanes.
 */
#ifndef EDGECORE_VMATH_AVX512_H
#define EDGECORE_VMATH_AVX512_H

#include <immintrin.h>

#include "edgecore/kernels.h"

static inline __m512 ec_exp_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    const __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

static inline __m512 ec_mul_sigmoid_avx512(__m512 x, __m512 z) {
    const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), ec_exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), z)));
    return _mm512_div_ps(x, d);
}

static inline __m512 ec_erf_avx512(__m512 x) {
    const __m512i sign_bit = _mm512_set1_epi32((int)0x80000000u);
    const __m512i xi = _mm512_castps_si512(x);
    const __m512i sign = _mm512_and_si512(xi, sign_bit);
    const __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, xi));
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                                   _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), ax, _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    const __m512 e = ec_exp_avx512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), ax), ax));
    const __m512 y = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0f));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
}

static inline __m512 ec_activate_avx512(__m512 v, int act) {
    switch (act) {
    case EC_ACT_RELU: return _mm512_max_ps(_mm512_setzero_ps(), v); /* NaN -> NaN */
    case EC_ACT_GELU: {
        const __m512 phi = _mm512_fmadd_ps(
            _mm512_set1_ps(0.5f), ec_erf_avx512(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f))),
            _mm512_set1_ps(0.5f));
        return _mm512_mul_ps(v, phi);
    }
    case EC_ACT_GELU_TANH: {
        const __m512 v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
        const __m512 u = _mm512_mul_ps(_mm512_set1_ps(2.0f * 0.7978845608028654f),
                                       _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), v3, v));
        return ec_mul_sigmoid_avx512(v, u);
    }
    case EC_ACT_SILU: return ec_mul_sigmoid_avx512(v, v);
    default: return v;
    }
}

/* Lanes [0, count) set, count in 0..16. */
static inline __mmask16 ec_mask_avx512(size_t count) {
    return count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1u);
}

#endif
