/* Linear epilogues, avx2: bias + activation, and the GLU combine, on 8
 * lanes with the activations of vmath_avx2.h (the f32 linear's), as the
 * avx512 tier does (epilogue_avx512.c) instead of the scalar tier's libm
 * expf per element. Both epilogues use the same activation code, so a
 * GLU's gate is bitwise the plain linear's activated output; each element
 * depends only on itself, so results stay batch and thread invariant. The
 * tail goes through masked loads and stores: nothing past n is touched. */
#include "../../common/qkernels.h"
#include "vmath_avx2.h"

void ec_bias_act_avx2(float *y, const float *bias, size_t n, int act) {
    for (size_t j = 0; j < n; j += 8) {
        const __m256i m = ec_mask_avx2(n - j);
        __m256 v = _mm256_maskload_ps(y + j, m);
        if (bias) v = _mm256_add_ps(v, _mm256_maskload_ps(bias + j, m));
        _mm256_maskstore_ps(y + j, m, ec_activate_avx2(v, act));
    }
}

void ec_glu_avx2(float *g, const float *gate_bias, float *u, const float *up_bias, size_t n, int act) {
    for (size_t j = 0; j < n; j += 8) {
        const __m256i m = ec_mask_avx2(n - j);
        __m256 up = _mm256_maskload_ps(u + j, m);
        if (up_bias) up = _mm256_add_ps(up, _mm256_maskload_ps(up_bias + j, m));
        __m256 gate = _mm256_maskload_ps(g + j, m);
        if (gate_bias) gate = _mm256_add_ps(gate, _mm256_maskload_ps(gate_bias + j, m));
        _mm256_maskstore_ps(u + j, m, up);
        _mm256_maskstore_ps(g + j, m, _mm256_mul_ps(ec_activate_avx2(gate, act), up));
    }
}
