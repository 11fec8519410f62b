/*
 * Per-token kernels, AVX-512 F/BW/DQ/VL: RMSNorm / LayerNorm rows (with the
 * fused residual add), RoPE rows, f32 -> f16. The same algorithms as the
 * avx2 tier on 16 lanes; tails through masks.
 *
 * Norm sums: 4 independent 16-lane accumulators (64 partial sums of about
 * d / 64 terms each, then a fixed tree): relative error of a sum of squares
 * <= (d / 64 + 7) 2^-24.
 */
#include <immintrin.h>
#include <math.h>

#include "../../common/internal.h"
#include "vmath_avx512.h"

#define EC_INLINE static inline __attribute__((always_inline))

/* lanes summed as a fixed tree: 512 -> 256 -> 128 -> 1 */
EC_INLINE float hsum(__m512 v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Active lanes of elements [i, i + 16) of the row input (x, or x + delta
 * stored to sum); inactive lanes are 0 and nothing is touched there. */
EC_INLINE __m512 input16(const float *x, const float *delta, float *sum, size_t i, __mmask16 k, const int residual) {
    __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    if (residual) {
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, delta + i));
        _mm512_mask_storeu_ps(sum + i, k, v);
    }
    return v;
}

EC_INLINE float row_sum(const float *x, const float *delta, float *sum, size_t d, float c, const int squares,
                        const int residual) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512 cv = _mm512_set1_ps(c);
    size_t i = 0;
    for (; i + 64 <= d; i += 64)
        for (int u = 0; u < 4; u++) {
            __m512 v = input16(x, delta, sum, i + 16 * u, 0xffff, residual);
            if (squares) {
                v = _mm512_sub_ps(v, cv);
                acc[u] = _mm512_fmadd_ps(v, v, acc[u]);
            } else {
                acc[u] = _mm512_add_ps(acc[u], v);
            }
        }
    for (int u = 0; i < d; i += 16, u++) {
        const __mmask16 k = ec_mask_avx512(d - i);
        __m512 v = input16(x, delta, sum, i, k, residual);
        if (squares) {
            v = _mm512_maskz_mov_ps(k, _mm512_sub_ps(v, cv));
            acc[u] = _mm512_fmadd_ps(v, v, acc[u]);
        } else {
            acc[u] = _mm512_add_ps(acc[u], v);
        }
    }
    return hsum(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

EC_INLINE void row_scale(const ec_norm_args *a, const float *s, float *out, float mean, float inv) {
    const size_t d = a->d;
    const __m512 mv = _mm512_set1_ps(mean), iv = _mm512_set1_ps(inv), one = _mm512_set1_ps(1.0f);
    for (size_t i = 0; i < d; i += 16) {
        const __mmask16 k = ec_mask_avx512(d - i);
        __m512 w = _mm512_maskz_loadu_ps(k, a->w + i);
        if (a->unit_offset) w = _mm512_add_ps(w, one);
        __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv), iv), w);
        if (a->b) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(k, a->b + i));
        _mm512_mask_storeu_ps(out + i, k, y);
    }
}

EC_INLINE void norm_row(const ec_norm_args *a, size_t r, const int layer, const int residual) {
    const size_t d = a->d;
    const float *x = a->x + r * d, *delta = residual ? a->delta + r * d : NULL;
    float *sum = residual ? a->sum + r * d : NULL;
    const float *s = residual ? sum : x;
    float mean = 0.0f, ss;
    if (layer) {
        mean = row_sum(x, delta, sum, d, 0.0f, 0, residual) / (float)d;
        ss = row_sum(s, NULL, NULL, d, mean, 1, 0);
    } else {
        ss = row_sum(x, delta, sum, d, 0.0f, 1, residual);
    }
    const float inv = 1.0f / sqrtf(ss / (float)d + a->eps);
    row_scale(a, s, a->out + r * d, mean, inv);
}

void ec_rms_norm_rows_avx512(const ec_norm_args *a, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        if (a->delta) norm_row(a, r, 0, 1);
        else norm_row(a, r, 0, 0);
    }
}

void ec_layer_norm_rows_avx512(const ec_norm_args *a, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        if (a->delta) norm_row(a, r, 1, 1);
        else norm_row(a, r, 1, 0);
    }
}

/* ---- RoPE ------------------------------------------------------------------ */

static void rope_half(float *y, size_t half, const float *cos, const float *sin) {
    for (size_t i = 0; i < half; i += 16) {
        const __mmask16 k = ec_mask_avx512(half - i);
        const __m512 a = _mm512_maskz_loadu_ps(k, y + i), b = _mm512_maskz_loadu_ps(k, y + half + i);
        const __m512 c = _mm512_maskz_loadu_ps(k, cos + i), s = _mm512_maskz_loadu_ps(k, sin + i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_fmsub_ps(a, c, _mm512_mul_ps(b, s)));
        _mm512_mask_storeu_ps(y + half + i, k, _mm512_fmadd_ps(b, c, _mm512_mul_ps(a, s)));
    }
}

/* 8 pairs per vector: cos/sin duplicated into both lanes of a pair, the
 * pair-swapped x times the sines negated in the even lanes */
static void rope_interleaved(float *y, size_t half, const float *cos, const float *sin) {
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512 neg_even = _mm512_castsi512_ps(_mm512_set1_epi64(0x80000000LL));
    for (size_t i = 0; i < half; i += 8) {
        const size_t pairs = half - i < 8 ? half - i : 8;
        const __mmask16 k = ec_mask_avx512(2 * pairs), k8 = ec_mask_avx512(pairs);
        const __m512 v = _mm512_maskz_loadu_ps(k, y + 2 * i);
        const __m512 c = _mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(k8, cos + i));
        const __m512 s = _mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(k8, sin + i));
        const __m512 t = _mm512_xor_ps(_mm512_mul_ps(_mm512_permute_ps(v, 0xB1), s), neg_even);
        _mm512_mask_storeu_ps(y + 2 * i, k, _mm512_fmadd_ps(v, c, t));
    }
}

void ec_rope_row_avx512(float *x, size_t heads, size_t head_dim, size_t rot, const float *cos,
                        const float *sin, int interleaved) {
    for (size_t h = 0; h < heads; h++) {
        if (interleaved) rope_interleaved(x + h * head_dim, rot / 2, cos, sin);
        else rope_half(x + h * head_dim, rot / 2, cos, sin);
    }
}

/* ---- f32 -> f16 --------------------------------------------------------------- */

void ec_cvt_f32_f16_avx512(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = ec_mask_avx512(n - i);
        const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(k, src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(dst + i, k, h);
    }
}
