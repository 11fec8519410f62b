/* MoE routing kernels, NEON: EMA affinity pass and top-k selection. */
#include <arm_neon.h>

#include "../../common/internal.h"
#include "../../common/topk_select.h"
#include "vmath_neon.h"

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

/* Index of the first set lane of a compare result (which has one set). */
static inline unsigned first_lane(uint32x4_t eq) {
    const uint64_t bits = vget_lane_u64(vreinterpret_u64_u16(vmovn_u32(eq)), 0); /* 16 bits per lane */
    return (unsigned)__builtin_ctzll(bits) >> 4;
}

/*
 * Small rows (e <= EC_TOPK_PASS_MAX_E, k <= 8): k branch-free argmax passes
 * over a stack copy of the adjusted scores (NaN -> -inf), each removing its
 * winner; the lowest index among equal maxima wins (see routing_avx2.c).
 * Returns 0, or -1 when a pass finds no finite score (fewer than k finite).
 */
static int select_passes(const float *row, const float *bonus, size_t e, size_t k, int32_t *ids) {
    float buf[EC_TOPK_PASS_MAX_E + 4] __attribute__((aligned(16)));
    const size_t nv = (e + 3) / 4;
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    const uint32x4_t lane_index = {0, 1, 2, 3};
    for (size_t v = 0; v < nv; v++) {
        const size_t count = e - 4 * v < 4 ? e - 4 * v : 4;
        float32x4_t a = count == 4 ? vld1q_f32(row + 4 * v) : ec_load_partial_neon(row + 4 * v, count);
        if (bonus) a = vaddq_f32(a, count == 4 ? vld1q_f32(bonus + 4 * v) : ec_load_partial_neon(bonus + 4 * v, count));
        /* NaN (unequal to itself) and the padding lanes become -inf */
        const uint32x4_t keep = vandq_u32(vceqq_f32(a, a), vcltq_u32(lane_index, vdupq_n_u32((uint32_t)count)));
        vst1q_f32(buf + 4 * v, vbslq_f32(keep, a, ninf));
    }
    for (size_t j = 0; j < k; j++) {
        float32x4_t m0 = vld1q_f32(buf), m1 = ninf;
        for (size_t v = 1; v + 1 < nv; v += 2) {
            m0 = vmaxq_f32(m0, vld1q_f32(buf + 4 * v));
            m1 = vmaxq_f32(m1, vld1q_f32(buf + 4 * v + 4));
        }
        if (nv % 2 == 0 && nv > 1) m1 = vmaxq_f32(m1, vld1q_f32(buf + 4 * (nv - 1)));
        const float mx = vmaxvq_f32(vmaxq_f32(m0, m1));
        if (mx == -INFINITY) return -1;
        const float32x4_t mxv = vdupq_n_f32(mx);
        for (size_t v = 0;; v++) {
            const float32x4_t vec = vld1q_f32(buf + 4 * v);
            const uint32x4_t hit = vceqq_f32(vec, mxv);
            if (vmaxvq_u32(hit)) {
                const unsigned lane = first_lane(hit);
                ids[j] = (int32_t)(4 * v + lane);
                /* a full-vector store: a scalar one would stall the next
                 * pass's vector loads (no store forwarding) */
                const uint32x4_t sel = vceqq_u32(lane_index, vdupq_n_u32(lane));
                vst1q_f32(buf + 4 * v, vbslq_f32(sel, ninf, vec));
                break;
            }
        }
    }
    return 0;
}

/* weights = softmax of the chosen original logits (k <= 8), in two vectors. */
static int softmax_chosen(const float *row, const int32_t *ids, size_t k, float *weights) {
    float l[8];
    for (size_t j = 0; j < 8; j++) {
        l[j] = j < k ? row[ids[j]] : -INFINITY;
        if (j < k && !isfinite(l[j])) return -1;
    }
    const float32x4_t l0 = vld1q_f32(l), l1 = vld1q_f32(l + 4);
    const float32x4_t mx = vdupq_n_f32(vmaxvq_f32(vmaxq_f32(l0, l1)));
    /* the padding lanes (-inf) weigh exactly zero */
    const uint32x4_t lane_index = {0, 1, 2, 3};
    const uint32x4_t live0 = vcltq_u32(lane_index, vdupq_n_u32((uint32_t)k));
    const uint32x4_t live1 = vcltq_u32(vaddq_u32(lane_index, vdupq_n_u32(4)), vdupq_n_u32((uint32_t)k));
    const float32x4_t e0 = vreinterpretq_f32_u32(vandq_u32(live0, vreinterpretq_u32_f32(ec_exp_neon(vsubq_f32(l0, mx)))));
    const float32x4_t e1 = vreinterpretq_f32_u32(vandq_u32(live1, vreinterpretq_u32_f32(ec_exp_neon(vsubq_f32(l1, mx)))));
    const float32x4_t sum = vdupq_n_f32(vaddvq_f32(vaddq_f32(e0, e1)));
    float w[8];
    vst1q_f32(w, vdivq_f32(e0, sum));
    vst1q_f32(w + 4, vdivq_f32(e1, sum));
    for (size_t j = 0; j < k; j++) weights[j] = w[j];
    return 0;
}

/* Larger rows: threshold-filtered insertion (see topk_select.h). */
static void select_insert(const float *row, const float *bonus, size_t e, size_t k, int32_t *idr, float *vals) {
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
}

int64_t ec_topk_f32_neon(const float *logits, const float *bonus, size_t e, size_t k, size_t t0, size_t t1,
                         int32_t *ids, float *weights) {
    const int passes = e <= EC_TOPK_PASS_MAX_E && k <= 8;
    for (size_t t = t0; t < t1; t++) {
        const float *row = logits + t * e;
        float *w = weights + t * k;
        int32_t *idr = ids + t * k;
        if (passes) {
            if (select_passes(row, bonus, e, k, idr) != 0 || softmax_chosen(row, idr, k, w) != 0)
                return (int64_t)t;
        } else {
            select_insert(row, bonus, e, k, idr, w);
            if (ec_topk_finish(row, w, idr, k) != 0) return (int64_t)t;
        }
    }
    return -1;
}
