/*
 * MoE routing kernels, AVX2: the EMA affinity pass and top-k selection.
 */
#include <immintrin.h>

#include "../../common/internal.h"
#include "../../common/topk_select.h"
#include "vmath_avx2.h"

/* Lane i set iff bit i of `byte` is set. */
static inline __m256 bits_to_mask(uint32_t byte) {
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i b = _mm256_and_si256(_mm256_set1_epi32((int)byte), lane_bit);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, lane_bit));
}

void ec_ema_f32_avx2(float *s, size_t n, const uint64_t *bits, float decay, float boost,
                     float max_score) {
    const __m256 vd = _mm256_set1_ps(decay), vb = _mm256_set1_ps(boost);
    const __m256 vmax = _mm256_set1_ps(max_score), zero = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint32_t byte = (uint32_t)(bits[i >> 6] >> (i & 63)) & 0xff;
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + i), vd);
        v = _mm256_add_ps(v, _mm256_and_ps(bits_to_mask(byte), vb));
        v = _mm256_max_ps(v, zero); /* NaN in the first operand -> 0 */
        _mm256_storeu_ps(s + i, _mm256_min_ps(v, vmax));
    }
    for (; i < n; i++) {
        float v = s[i] * decay;
        if ((bits[i >> 6] >> (i & 63)) & 1) v += boost;
        v = v > 0.0f ? v : 0.0f;
        s[i] = v < max_score ? v : max_score;
    }
}

/* Max of 8 lanes, broadcast to every lane. */
static inline __m256 hmax_avx2(__m256 v) {
    v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 0x01));
    v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm256_max_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
}

/*
 * Small rows (e <= EC_TOPK_PASS_MAX_E, k <= 8): k branch-free argmax passes
 * over a stack copy of the adjusted scores (NaN -> -inf), each removing its
 * winner; the lowest index among equal maxima wins. Random logits make the
 * insertion path mispredict on most inserts; this one only loops.
 * Returns 0, or -1 when a pass finds no finite score (fewer than k finite).
 */
static int select_passes(const float *row, const float *bonus, size_t e, size_t k, int32_t *ids) {
    float buf[EC_TOPK_PASS_MAX_E + 8] __attribute__((aligned(32)));
    const size_t nv = (e + 7) / 8;
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (size_t v = 0; v < nv; v++) {
        const __m256i live = ec_mask_avx2(e - 8 * v);
        __m256 a = _mm256_maskload_ps(row + 8 * v, live);
        if (bonus) a = _mm256_add_ps(a, _mm256_maskload_ps(bonus + 8 * v, live));
        /* NaN and the padding lanes become -inf */
        const __m256 keep = _mm256_and_ps(_mm256_cmp_ps(a, a, _CMP_ORD_Q), _mm256_castsi256_ps(live));
        _mm256_store_ps(buf + 8 * v, _mm256_blendv_ps(ninf, a, keep));
    }
    for (size_t j = 0; j < k; j++) {
        __m256 m0 = _mm256_load_ps(buf), m1 = ninf;
        for (size_t v = 1; v + 1 < nv; v += 2) {
            m0 = _mm256_max_ps(m0, _mm256_load_ps(buf + 8 * v));
            m1 = _mm256_max_ps(m1, _mm256_load_ps(buf + 8 * v + 8));
        }
        if (nv % 2 == 0 && nv > 1) m1 = _mm256_max_ps(m1, _mm256_load_ps(buf + 8 * (nv - 1)));
        const __m256 mx = hmax_avx2(_mm256_max_ps(m0, m1));
        if (_mm256_cvtss_f32(mx) == -INFINITY) return -1;
        for (size_t v = 0;; v++) {
            const __m256 vec = _mm256_load_ps(buf + 8 * v);
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(vec, mx, _CMP_EQ_OQ));
            if (hit) {
                const int lane = __builtin_ctz((unsigned)hit);
                ids[j] = (int32_t)(8 * v + (size_t)lane);
                /* remove the winner with a full-vector store: a scalar store
                 * would stall the next pass's vector loads (no forwarding) */
                const __m256i sel = _mm256_cmpeq_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                       _mm256_set1_epi32(lane));
                _mm256_store_ps(buf + 8 * v, _mm256_blendv_ps(vec, ninf, _mm256_castsi256_ps(sel)));
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
    const __m256i live = ec_mask_avx2(k);
    const __m256 v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(l, live),
                                      _mm256_castsi256_ps(live));
    const __m256 mx = hmax_avx2(v);
    const __m256 ex = _mm256_and_ps(ec_exp_avx2(_mm256_sub_ps(v, mx)), _mm256_castsi256_ps(live));
    __m256 sum = _mm256_add_ps(ex, _mm256_permute2f128_ps(ex, ex, 0x01));
    sum = _mm256_add_ps(sum, _mm256_shuffle_ps(sum, sum, _MM_SHUFFLE(1, 0, 3, 2)));
    sum = _mm256_add_ps(sum, _mm256_shuffle_ps(sum, sum, _MM_SHUFFLE(2, 3, 0, 1)));
    _mm256_maskstore_ps(weights, live, _mm256_div_ps(ex, sum));
    return 0;
}

/* Larger rows: threshold-filtered insertion (see topk_select.h). */
static int select_insert(const float *row, const float *bonus, size_t e, size_t k, int32_t *idr,
                         float *vals) {
    ec_topk_reset(vals, idr, k);
    __m256 thr = _mm256_set1_ps(-INFINITY);
    size_t j = 0;
    for (; j + 8 <= e; j += 8) {
        __m256 v = _mm256_loadu_ps(row + j);
        if (bonus) v = _mm256_add_ps(v, _mm256_loadu_ps(bonus + j));
        /* ordered compare: NaN lanes never pass */
        unsigned mask = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, thr, _CMP_GT_OQ));
        if (!mask) continue;
        float lanes[8];
        _mm256_storeu_ps(lanes, v);
        while (mask) {
            const unsigned l = (unsigned)__builtin_ctz(mask);
            mask &= mask - 1;
            if (lanes[l] > vals[k - 1]) ec_topk_insert(vals, idr, k, lanes[l], (int32_t)(j + l));
        }
        thr = _mm256_set1_ps(vals[k - 1]);
    }
    for (; j < e; j++) {
        const float v = bonus ? row[j] + bonus[j] : row[j];
        if (v > vals[k - 1]) ec_topk_insert(vals, idr, k, v, (int32_t)j);
    }
    return 0;
}

int64_t ec_topk_f32_avx2(const float *logits, const float *bonus, size_t e, size_t k,
                         size_t t0, size_t t1, int32_t *ids, float *weights) {
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
