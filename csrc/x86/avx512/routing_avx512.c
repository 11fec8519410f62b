/* MoE routing kernels, AVX-512: EMA affinity pass and top-k selection. */
#include <immintrin.h>

#include "../../common/internal.h"
#include "../../common/topk_select.h"

void ec_ema_f32_avx512(float *s, size_t n, const uint64_t *bits, float decay, float boost,
                       float max_score) {
    const __m512 vd = _mm512_set1_ps(decay), vb = _mm512_set1_ps(boost);
    const __m512 vmax = _mm512_set1_ps(max_score), zero = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        /* the activated-id bitmap is the add mask, 16 experts at a time */
        const __mmask16 hit = (__mmask16)(bits[i >> 6] >> (i & 63));
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(s + i), vd);
        v = _mm512_mask_add_ps(v, hit, v, vb);
        v = _mm512_max_ps(v, zero); /* NaN in the first operand -> 0 */
        _mm512_storeu_ps(s + i, _mm512_min_ps(v, vmax));
    }
    for (; i < n; i++) {
        float v = s[i] * decay;
        if ((bits[i >> 6] >> (i & 63)) & 1) v += boost;
        v = v > 0.0f ? v : 0.0f;
        s[i] = v < max_score ? v : max_score;
    }
}

int64_t ec_topk_f32_avx512(const float *logits, const float *bonus, size_t e, size_t k,
                           size_t t0, size_t t1, int32_t *ids, float *weights) {
    for (size_t t = t0; t < t1; t++) {
        const float *row = logits + t * e;
        float *vals = weights + t * k;
        int32_t *idr = ids + t * k;
        ec_topk_reset(vals, idr, k);
        __m512 thr = _mm512_set1_ps(-INFINITY);
        for (size_t j = 0; j < e; j += 16) {
            const __mmask16 live = (__mmask16)(e - j >= 16 ? 0xffff : (1u << (e - j)) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(live, row + j);
            if (bonus) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(live, bonus + j));
            /* ordered compare: NaN lanes never pass */
            unsigned mask = _mm512_mask_cmp_ps_mask(live, v, thr, _CMP_GT_OQ);
            if (!mask) continue;
            float lanes[16];
            _mm512_storeu_ps(lanes, v);
            while (mask) {
                const unsigned l = (unsigned)__builtin_ctz(mask);
                mask &= mask - 1;
                if (lanes[l] > vals[k - 1]) ec_topk_insert(vals, idr, k, lanes[l], (int32_t)(j + l));
            }
            thr = _mm512_set1_ps(vals[k - 1]);
        }
        if (ec_topk_finish(row, vals, idr, k) != 0) return (int64_t)t;
    }
    return -1;
}
