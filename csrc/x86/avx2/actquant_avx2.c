/*
 * Activation quantization, AVX2: the same bytes as actquant_scalar.c (the
 * contract is in docs/quantization.md). Every step is the scalar one done
 * eight lanes at a time: |x| and max are exact, d = amax / 127 and
 * id = 1 / d are the same scalar divisions, x * id is one rounding, and
 * cvtps2dq rounds to nearest even under the default MXCSR, as lrintf does
 * under the default rounding mode. The q stay in [-127, 127], so the
 * saturating packs never saturate.
 */
#include <float.h>
#include <immintrin.h>

#include "../../common/half.h"
#include "../../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))

/* Quantizes n = 8 * nv floats into q (n int32 lanes, in v), returns d. */
EC_INLINE float quantize_block(const float *x, int nv, __m256i *v) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 big = _mm256_set1_ps(FLT_MAX);
    __m256 amax = _mm256_setzero_ps();
    __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (int i = 0; i < nv; i++) {
        const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + 8 * i), abs_mask);
        finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, big, _CMP_LE_OQ)); /* false for inf, NaN */
        amax = _mm256_max_ps(amax, a);
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amx = _mm_cvtss_f32(m);
    const int all_finite = _mm256_movemask_ps(finite) == 0xff;
    if (!all_finite || amx < 0x1p-119f) {
        for (int i = 0; i < nv; i++) v[i] = _mm256_setzero_si256();
        return all_finite ? 0.0f : ec_bits_to_f32(0x7fc00000u);
    }
    const float d = amx / 127.0f, id = 1.0f / d;
    const __m256 vid = _mm256_set1_ps(id);
    for (int i = 0; i < nv; i++) v[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), vid));
    return d;
}

/* 32 int32 lanes (4 vectors) -> 32 int8 in order. */
EC_INLINE void store_q32(const __m256i v[4], int8_t *q) {
    const __m256i w01 = _mm256_packs_epi32(v[0], v[1]), w23 = _mm256_packs_epi32(v[2], v[3]);
    /* packs work per 128-bit lane: undo the interleave at the end */
    const __m256i b = _mm256_packs_epi16(w01, w23);
    const __m256i fixed = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, fixed);
}

/* Lane r of the result = the sum of the 8 int32 lanes of p[r]. */
EC_INLINE __m256i reduce8(const __m256i p[8]) {
    const __m256i a = _mm256_hadd_epi32(p[0], p[1]), b = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i c = _mm256_hadd_epi32(p[4], p[5]), d = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i e = _mm256_hadd_epi32(a, b), f = _mm256_hadd_epi32(c, d);
    return _mm256_add_epi32(_mm256_permute2x128_si256(e, f, 0x20), _mm256_permute2x128_si256(e, f, 0x31));
}

EC_INLINE int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static void actquant_q8_32_avx2(const float *x, void *out, size_t k) {
    ec_act_q8_32 *b = out;
    for (size_t i = 0; i < k / 32; i++, b++, x += 32) {
        __m256i v[4];
        b->d = quantize_block(x, 4, v);
        store_q32(v, b->q);
        b->sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3])));
    }
}

static void actquant_q8_256_avx2(const float *x, void *out, size_t k) {
    ec_act_q8_256 *b = out;
    for (size_t i = 0; i < k / 256; i++, b++, x += 256) {
        __m256i v[32];
        b->d = quantize_block(x, 32, v);
        for (int c = 0; c < 8; c++) store_q32(v + 4 * c, b->q + 32 * c);
        /* bsums[g] = the 16 q of v[2g], v[2g + 1] */
        __m256i g[16];
        for (int j = 0; j < 16; j++) g[j] = _mm256_add_epi32(v[2 * j], v[2 * j + 1]);
        const __m256i s0 = reduce8(g), s1 = reduce8(g + 8);
        const __m256i s16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(s0, s1), _MM_SHUFFLE(3, 1, 2, 0));
        _mm256_storeu_si256((__m256i *)b->bsums, s16);
    }
}

const ec_actq_variant ec_actq_avx2[] = {
    {EC_AF_Q8_32, 0, actquant_q8_32_avx2},
    {EC_AF_Q8_256, 0, actquant_q8_256_avx2},
    EC_ACTQ_END,
};
