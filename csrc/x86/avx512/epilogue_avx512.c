/* Linear epilogues, avx512: bias + activation, and the GLU combine, on 16
 * lanes with the activations of vmath_avx512.h (the f32 linear's). The
 * scalar ones run libm's expf per element, which was 4% of a batch-8
 * SmolLM2 decode step. Both epilogues use the same activation code, so a
 * GLU's gate is bitwise the plain linear's activated output; each element
 * depends only on itself, so results stay batch and thread invariant. The
 * tail is masked: nothing past n is read or written. */
#include "../../common/qkernels.h"
#include "vmath_avx512.h"

void ec_bias_act_avx512(float *y, const float *bias, size_t n, int act) {
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = ec_mask_avx512(n - j);
        __m512 v = _mm512_maskz_loadu_ps(m, y + j);
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j));
        _mm512_mask_storeu_ps(y + j, m, ec_activate_avx512(v, act));
    }
}

void ec_glu_avx512(float *g, const float *gate_bias, float *u, const float *up_bias, size_t n, int act) {
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 m = ec_mask_avx512(n - j);
        __m512 up = _mm512_maskz_loadu_ps(m, u + j);
        if (up_bias) up = _mm512_add_ps(up, _mm512_maskz_loadu_ps(m, up_bias + j));
        __m512 gate = _mm512_maskz_loadu_ps(m, g + j);
        if (gate_bias) gate = _mm512_add_ps(gate, _mm512_maskz_loadu_ps(m, gate_bias + j));
        _mm512_mask_storeu_ps(u + j, m, up);
        _mm512_mask_storeu_ps(g + j, m, _mm512_mul_ps(ec_activate_avx512(gate, act), up));
    }
}
