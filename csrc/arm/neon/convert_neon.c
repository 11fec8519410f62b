/* bf16 / f16 -> f32 widening, NEON. */
#include <arm_neon.h>

#include "../../common/half.h"
#include "../../common/internal.h"

void ec_cvt_bf16_f32_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src + i), 16)));
    for (; i < n; i++) dst[i] = ec_bf16_to_f32(src[i]);
}

void ec_cvt_f16_f32_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < n; i++) dst[i] = ec_f16_to_f32(src[i]);
}
