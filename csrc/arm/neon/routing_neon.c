/* MoE routing kernels, NEON: EMA affinity pass and top-k selection. */
#include <arm_neon.h>

#include "../../common/internal.h"
#include "../../common/topk_select.h"

void ec_ema_f32_neon(float *s, size_t n, const uint64_t *bits, float decay, float boost,
                     float max_score) {
    const float32x4_t vd = vdupq_n_f32(decay), vb = vdupq_n_f32(boost);
    const float32x4_t vmax = vdupq_n_f32(max_score), zero = vdupq_n_f32(0.0f);
    const uint32x4_t lane_bit = {1, 2, 4, 8};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t nib = (uint32_t)(bits[i >> 6] >> (i & 63)) & 0xf;
        const uint32x4_t hit = vtstq_u32(vdupq_n_u32(nib), lane_bit);
        float32x4_t v = vmulq_f32(vld1q_f32(s + i), vd);
        v = vaddq_f32(v, vreinterpretq_f32_u32(vandq_u32(hit, vreinterpretq_u32_f32(vb))));
        v = vmaxnmq_f32(v, zero); /* maxNum: NaN -> 0 */
        vst1q_f32(s + i, vminq_f32(v, vmax));
    }
    for (; i < n; i++) {
        float v = s[i] * decay;
        if ((bits[i >> 6] >> (i & 63)) & 1) v += boost;
        v = v > 0.0f ? v : 0.0f;
        s[i] = v < max_score ? v : max_score;
    }
}

int64_t ec_topk_f32_neon(const float *logits, const float *bonus, size_t e, size_t k,
                         size_t t0, size_t t1, int32_t *ids, float *weights) {
    for (size_t t = t0; t < t1; t++) {
        const float *row = logits + t * e;
        float *vals = weights + t * k;
        int32_t *idr = ids + t * k;
        ec_topk_reset(vals, idr, k);
        float32x4_t thr = vdupq_n_f32(-INFINITY);
        size_t j = 0;
        for (; j + 4 <= e; j += 4) {
            float32x4_t v = vld1q_f32(row + j);
            if (bonus) v = vaddq_f32(v, vld1q_f32(bonus + j));
            /* FCMGT is false for NaN: NaN lanes never pass */
            if (vmaxvq_u32(vcgtq_f32(v, thr)) == 0) continue;
            float lanes[4];
            vst1q_f32(lanes, v);
            for (int l = 0; l < 4; l++)
                if (lanes[l] > vals[k - 1]) ec_topk_insert(vals, idr, k, lanes[l], (int32_t)(j + l));
            thr = vdupq_n_f32(vals[k - 1]);
        }
        for (; j < e; j++) {
            const float v = bonus ? row[j] + bonus[j] : row[j];
            if (v > vals[k - 1]) ec_topk_insert(vals, idr, k, v, (int32_t)j);
        }
        if (ec_topk_finish(row, vals, idr, k) != 0) return (int64_t)t;
    }
    return -1;
}
