/* MoE routing kernels, AVX-512: EMA affinity pass and top-k selection. */
#include <immintrin.h>

#include "../../common/internal.h"
#include "../../common/topk_select.h"
#include "vmath_avx512.h"

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

/* Max of 16 lanes, broadcast to every lane. */
static inline __m512 hmax_avx512(__m512 v) {
    v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    v = _mm512_max_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_max_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* Sum of 16 lanes, broadcast to every lane. */
static inline __m512 hsum_avx512(__m512 v) {
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
}

/*
 * Small rows (e <= EC_TOPK_PASS_MAX_E, k <= 8): k branch-free argmax passes
 * over a stack copy of the adjusted scores (NaN -> -inf), each removing its
 * winner; the lowest index among equal maxima wins (see routing_avx2.c).
 * Returns 0, or -1 when a pass finds no finite score (fewer than k finite).
 */
static int select_passes(const float *row, const float *bonus, size_t e, size_t k, int32_t *ids) {
    float buf[EC_TOPK_PASS_MAX_E + 16] __attribute__((aligned(64)));
    const size_t nv = (e + 15) / 16;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (size_t v = 0; v < nv; v++) {
        const __mmask16 live = ec_mask_avx512(e - 16 * v);
        __m512 a = _mm512_maskz_loadu_ps(live, row + 16 * v);
        if (bonus) a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(live, bonus + 16 * v));
        /* NaN and the padding lanes become -inf */
        const __mmask16 keep = _mm512_mask_cmp_ps_mask(live, a, a, _CMP_ORD_Q);
        _mm512_store_ps(buf + 16 * v, _mm512_mask_blend_ps(keep, ninf, a));
    }
    for (size_t j = 0; j < k; j++) {
        __m512 m0 = _mm512_load_ps(buf), m1 = ninf;
        for (size_t v = 1; v + 1 < nv; v += 2) {
            m0 = _mm512_max_ps(m0, _mm512_load_ps(buf + 16 * v));
            m1 = _mm512_max_ps(m1, _mm512_load_ps(buf + 16 * v + 16));
        }
        if (nv % 2 == 0 && nv > 1) m1 = _mm512_max_ps(m1, _mm512_load_ps(buf + 16 * (nv - 1)));
        const __m512 mx = hmax_avx512(_mm512_max_ps(m0, m1));
        if (_mm512_cvtss_f32(mx) == -INFINITY) return -1;
        for (size_t v = 0;; v++) {
            const __m512 vec = _mm512_load_ps(buf + 16 * v);
            const unsigned hit = _mm512_cmp_ps_mask(vec, mx, _CMP_EQ_OQ);
            if (hit) {
                const unsigned lane = (unsigned)__builtin_ctz(hit);
                ids[j] = (int32_t)(16 * v + lane);
                /* a full-vector store: a scalar one would stall the next
                 * pass's vector loads (no store forwarding) */
                _mm512_store_ps(buf + 16 * v, _mm512_mask_mov_ps(vec, (__mmask16)(1u << lane), ninf));
                break;
            }
        }
    }
    return 0;
}

/* weights = softmax of the chosen original logits (k <= 8), in one vector. */
static int softmax_chosen(const float *row, const int32_t *ids, size_t k, float *weights) {
    float l[8];
    for (size_t j = 0; j < k; j++) {
        l[j] = row[ids[j]];
        if (!isfinite(l[j])) return -1;
    }
    const __mmask16 live = ec_mask_avx512(k);
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), live, l);
    const __m512 ex = _mm512_maskz_mov_ps(live, ec_exp_avx512(_mm512_sub_ps(v, hmax_avx512(v))));
    _mm512_mask_storeu_ps(weights, live, _mm512_div_ps(ex, hsum_avx512(ex)));
    return 0;
}

/* Larger rows: threshold-filtered insertion (see topk_select.h). */
static void select_insert(const float *row, const float *bonus, size_t e, size_t k, int32_t *idr, float *vals) {
    ec_topk_reset(vals, idr, k);
    __m512 thr = _mm512_set1_ps(-INFINITY);
    for (size_t j = 0; j < e; j += 16) {
        const __mmask16 live = ec_mask_avx512(e - j);
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
}

int64_t ec_topk_f32_avx512(const float *logits, const float *bonus, size_t e, size_t k, size_t t0, size_t t1,
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
