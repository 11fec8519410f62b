/*
 * Activation quantization for the neon tier, bit for bit the scalar
 * reference (csrc/scalar/actquant_scalar.c, docs/quantization.md): the
 * same IEEE steps, 4 lanes at a time.
 *   - finite check: |x| <= FLT_MAX in every lane (false for inf and NaN);
 *   - amax: max of |x| (exact, order-free);
 *   - d = amax / 127 and id = 1 / d in scalar float, as the reference;
 *   - q = round-half-to-even(x * id): FCVTNS, which is lrintf in the
 *     default rounding mode; |x * id| <= 127 (1 + 3 * 2^-24), so the
 *     narrowing to int8 never saturates.
 * Block sums of q are exact integer adds.
 */
#include <arm_neon.h>

#include "../../common/half.h"
#include "../../common/qkernels.h"

/* One block of n (a multiple of 16) values: q and the returned d. */
static float quantize_block(const float *x, size_t n, int8_t *q) {
    float32x4_t amax = vdupq_n_f32(0.0f);
    uint32x4_t finite = vdupq_n_u32(~0u);
    const float32x4_t big = vdupq_n_f32(3.40282347e38f);
    for (size_t i = 0; i < n; i += 4) {
        const float32x4_t a = vabsq_f32(vld1q_f32(x + i));
        finite = vandq_u32(finite, vcleq_f32(a, big));
        amax = vmaxq_f32(amax, a);
    }
    const float m = vmaxvq_f32(amax);
    if (vminvq_u32(finite) == 0 || m < 0x1p-119f) {
        memset(q, 0, n);
        return vminvq_u32(finite) ? 0.0f : ec_bits_to_f32(0x7fc00000u);
    }
    const float d = m / 127.0f, id = 1.0f / d;
    for (size_t i = 0; i < n; i += 16) {
        const int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i), id));
        const int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 4), id));
        const int32x4_t c = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 8), id));
        const int32x4_t e = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + i + 12), id));
        const int16x8_t ab = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
        const int16x8_t ce = vcombine_s16(vmovn_s32(c), vmovn_s32(e));
        vst1q_s8(q + i, vcombine_s8(vmovn_s16(ab), vmovn_s16(ce)));
    }
    return d;
}

static void actquant_q8_32_neon(const float *x, void *out, size_t k) {
    ec_act_q8_32 *b = out;
    for (size_t i = 0; i < k / 32; i++, b++, x += 32) {
        b->d = quantize_block(x, 32, b->q);
        b->sum = vaddlvq_s8(vld1q_s8(b->q)) + vaddlvq_s8(vld1q_s8(b->q + 16));
    }
}

static void actquant_q8_256_neon(const float *x, void *out, size_t k) {
    ec_act_q8_256 *b = out;
    for (size_t i = 0; i < k / 256; i++, b++, x += 256) {
        b->d = quantize_block(x, 256, b->q);
        for (int g = 0; g < 16; g++) b->bsums[g] = vaddlvq_s8(vld1q_s8(b->q + 16 * g));
    }
}

const ec_actq_variant ec_actq_neon[] = {
    {EC_AF_Q8_32, 0, actquant_q8_32_neon},
    {EC_AF_Q8_256, 0, actquant_q8_256_neon},
    EC_ACTQ_END,
};
