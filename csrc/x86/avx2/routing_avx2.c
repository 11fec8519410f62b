/*
 * MoE routing kernels, AVX2: the EMA affinity pass and top-k selection.
 */
#include <immintrin.h>

#include "../../common/internal.h"
#include "../../common/topk_select.h"

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

int64_t ec_topk_f32_avx2(const float *logits, const float *bonus, size_t e, size_t k,
                         size_t t0, size_t t1, int32_t *ids, float *weights) {
    for (size_t t = t0; t < t1; t++) {
        const float *row = logits + t * e;
        float *vals = weights + t * k;
        int32_t *idr = ids + t * k;
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
        if (ec_topk_finish(row, vals, idr, k) != 0) return (int64_t)t;
    }
    return -1;
}
