/*
 * gemm micro-kernels for f16 and bf16 weights with float32 activations,
 * AVX2 + FMA + F16C. Not bitwise the scalar kernel (that one adds the
 * products one by one; an 8-lane sum cannot): each output (i, j) keeps one
 * 8-lane accumulator, acc_l = fma(w_l, x_l, acc_l) over k in steps of 8,
 * then the lanes are added in a fixed tree. The widening is exact, so the
 * only difference from scalar is the summation order (and the FMA's single
 * rounding): within the bound the tests allow (docs/quantization.md).
 *
 * The operations for one output never depend on mr, nr or its neighbours:
 * rows past mr or nr alias row 0 and are computed but not stored, and the
 * k tail (k % 8) is zero-padded the same way for every output. Tile: up to
 * 4 activation rows x 3 weight rows (12 accumulators + 3 weights + x fit
 * the 16 ymm registers); M = 1 runs a 1 x 3 tile, nothing wasted.
 */
#include <immintrin.h>

#include "../../common/half.h"
#include "../../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define MR 4
#define NR 3
/* Weight prefetch distance, in tiles. A tile reads its NR rows in step, 16
 * bytes of each per 8 elements: streams too short (2k bytes) for the
 * hardware prefetcher to learn. The rows a few tiles on are one contiguous
 * range (the driver's rows are dense, ws = 2k), so each step prefetches the
 * matching 2 NR bytes of the tile PF_TILES on, into L1. Timed on an AMD
 * Zen 4 (avx2 tier forced, 1 thread, cold weights): f16 576 x 49152 at
 * M = 1 5.97 -> 1.97 ms (the read bandwidth), 576 x 1536 1.85x, M = 4 and
 * 8 1.6-2.6x, M = 128 unchanged. */
#define PF_TILES 4

EC_INLINE __m256 widen8(const uint16_t *p, int bf16) {
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}

EC_INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* A tile of exactly tm x NR outputs (tm a constant); rows are pointers. */
EC_INLINE void tile(size_t k, size_t ws, int tm, const float *const xr[MR], const uint16_t *const wr[NR],
                    float out[MR][NR], int bf16) {
    __m256 acc[MR][NR];
    for (int i = 0; i < tm; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    size_t l = 0;
    const char *ahead = (const char *)wr[0] + (size_t)PF_TILES * NR * ws; /* past the end: no fault */
    for (; l + 8 <= k; l += 8) {
        _mm_prefetch(ahead + l * 2 * NR, _MM_HINT_T0);
        __m256 w[NR];
        for (int j = 0; j < NR; j++) w[j] = widen8(wr[j] + l, bf16);
        for (int i = 0; i < tm; i++) {
            const __m256 xv = _mm256_loadu_ps(xr[i] + l);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(w[j], xv, acc[i][j]);
        }
    }
    if (l < k) { /* zero-padded tail: 0 * 0 adds nothing, whatever the other lanes hold */
        const size_t rest = k - l;
        __m256 w[NR];
        for (int j = 0; j < NR; j++) {
            uint16_t pad[8] = {0};
            memcpy(pad, wr[j] + l, rest * sizeof(uint16_t));
            w[j] = widen8(pad, bf16);
        }
        for (int i = 0; i < tm; i++) {
            float pad[8] = {0};
            memcpy(pad, xr[i] + l, rest * sizeof(float));
            const __m256 xv = _mm256_loadu_ps(pad);
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(w[j], xv, acc[i][j]);
        }
    }
    for (int i = 0; i < tm; i++)
        for (int j = 0; j < NR; j++) out[i][j] = hsum_ps(acc[i][j]);
}

EC_INLINE void gemm_half(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                         float *y, size_t ldy, int bf16) {
    const float *xr[MR];
    const uint16_t *wr[NR];
    for (size_t i = 0; i < MR; i++) xr[i] = (const float *)((const char *)x + (i < mr ? i : 0) * xs);
    float out[MR][NR];
    for (size_t j0 = 0; j0 < nr; j0 += NR) {
        const size_t tn = nr - j0 < NR ? nr - j0 : NR;
        for (size_t j = 0; j < NR; j++) wr[j] = (const uint16_t *)((const char *)w + (j0 + (j < tn ? j : 0)) * ws);
        if (mr == 1) tile(k, ws, 1, xr, wr, out, bf16);
        else tile(k, ws, MR, xr, wr, out, bf16);
        for (size_t i = 0; i < mr; i++)
            for (size_t j = 0; j < tn; j++) y[i * ldy + j0 + j] = out[i][j];
    }
}

void ec_qgemm_f16_avx2(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                       float *y, size_t ldy) {
    gemm_half(k, mr, nr, x, xs, w, ws, y, ldy, 0);
}

void ec_qgemm_bf16_avx2(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                        float *y, size_t ldy) {
    gemm_half(k, mr, nr, x, xs, w, ws, y, ldy, 1);
}
