/*
 * NEON (AArch64) vector math for activations applied in registers: the same
 * algorithms as the x86 tiers (Cephes exp, Abramowitz & Stegun 7.1.26 erf)
 * on 4 lanes.
 */
#ifndef EDGECORE_VMATH_NEON_H
#define EDGECORE_VMATH_NEON_H

#include <arm_neon.h>

#include "edgecore/kernels.h"

static inline float32x4_t ec_exp_neon(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.0f)), vdupq_n_f32(88.0f));
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(r, p, vmulq_f32(r, r));
    p = vaddq_f32(p, vdupq_n_f32(1.0f));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

static inline float32x4_t ec_mul_sigmoid_neon(float32x4_t x, float32x4_t z) {
    const float32x4_t d = vaddq_f32(vdupq_n_f32(1.0f), ec_exp_neon(vnegq_f32(z)));
    return vdivq_f32(x, d);
}

static inline float32x4_t ec_erf_neon(float32x4_t x) {
    const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x80000000u));
    const float32x4_t ax = vabsq_f32(x);
    const float32x4_t t = vdivq_f32(vdupq_n_f32(1.0f), vfmaq_f32(vdupq_n_f32(1.0f), vdupq_n_f32(0.3275911f), ax));
    float32x4_t p = vdupq_n_f32(1.061405429f);
    p = vfmaq_f32(vdupq_n_f32(-1.453152027f), p, t);
    p = vfmaq_f32(vdupq_n_f32(1.421413741f), p, t);
    p = vfmaq_f32(vdupq_n_f32(-0.284496736f), p, t);
    p = vfmaq_f32(vdupq_n_f32(0.254829592f), p, t);
    p = vmulq_f32(p, t);
    const float32x4_t e = ec_exp_neon(vnegq_f32(vmulq_f32(ax, ax)));
    const float32x4_t y = vfmsq_f32(vdupq_n_f32(1.0f), p, e);
    return vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(y), sign));
}

static inline float32x4_t ec_activate_neon(float32x4_t v, int act) {
    switch (act) {
    case EC_ACT_RELU: return vmaxq_f32(v, vdupq_n_f32(0.0f)); /* FMAX propagates NaN */
    case EC_ACT_GELU: {
        const float32x4_t phi = vfmaq_f32(vdupq_n_f32(0.5f), vdupq_n_f32(0.5f),
                                          ec_erf_neon(vmulq_f32(v, vdupq_n_f32(0.70710678118654752f))));
        return vmulq_f32(v, phi);
    }
    case EC_ACT_GELU_TANH: {
        const float32x4_t v3 = vmulq_f32(vmulq_f32(v, v), v);
        const float32x4_t u = vmulq_f32(vdupq_n_f32(2.0f * 0.7978845608028654f),
                                        vfmaq_f32(v, vdupq_n_f32(0.044715f), v3));
        return ec_mul_sigmoid_neon(v, u);
    }
    case EC_ACT_SILU: return ec_mul_sigmoid_neon(v, v);
    default: return v;
    }
}

/* Load `count` (0..4) floats, zero-filling the rest; never reads past them. */
static inline float32x4_t ec_load_partial_neon(const float *p, size_t count) {
    float buf[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (size_t i = 0; i < count && i < 4; i++) buf[i] = p[i];
    return vld1q_f32(buf);
}

static inline void ec_store_partial_neon(float *p, float32x4_t v, size_t count) {
    float buf[4];
    vst1q_f32(buf, v);
    for (size_t i = 0; i < count && i < 4; i++) p[i] = buf[i];
}

#endif
