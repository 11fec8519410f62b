/*
 * Per-token kernels, AVX2 + FMA + F16C: RMSNorm / LayerNorm rows (with the
 * fused residual add), RoPE rows, f32 -> f16.
 *
 * Norm sums run in float32 over 4 independent 8-lane accumulators (32
 * partial sums of about d / 32 terms each, then a fixed tree): relative
 * error of a sum of squares <= (d / 32 + 6) 2^-24. Tails use masked loads,
 * so a row never reads or writes past d.
 */
#include <immintrin.h>
#include <math.h>

#include "../../common/internal.h"
#include "vmath_avx2.h"

#define EC_INLINE static inline __attribute__((always_inline))

EC_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Elements [i, i + 8) of row input s (x, or x + delta stored to sum). With
 * a mask only the active lanes are read and written; the others are 0. */
EC_INLINE __m256 input8(const float *x, const float *delta, float *sum, size_t i, const int residual) {
    __m256 v = _mm256_loadu_ps(x + i);
    if (residual) {
        v = _mm256_add_ps(v, _mm256_loadu_ps(delta + i));
        _mm256_storeu_ps(sum + i, v);
    }
    return v;
}

EC_INLINE __m256 input_masked(const float *x, const float *delta, float *sum, size_t i, __m256i mask,
                              const int residual) {
    __m256 v = _mm256_maskload_ps(x + i, mask);
    if (residual) {
        v = _mm256_add_ps(v, _mm256_maskload_ps(delta + i, mask));
        _mm256_maskstore_ps(sum + i, mask, v);
    }
    return v;
}

EC_INLINE __m256 weight8(const float *w, size_t i, __m256i mask, int masked, int unit_offset) {
    __m256 v = masked ? _mm256_maskload_ps(w + i, mask) : _mm256_loadu_ps(w + i);
    return unit_offset ? _mm256_add_ps(v, _mm256_set1_ps(1.0f)) : v;
}

/* Sum of s (and of (s - c)^2 when squares is set; c = 0 for RMSNorm) over
 * the row, reading x/delta (first pass, which also stores sum) or s. */
EC_INLINE float row_sum(const float *x, const float *delta, float *sum, size_t d, float c, const int squares,
                        const int residual) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256 cv = _mm256_set1_ps(c);
    size_t i = 0;
    for (; i + 32 <= d; i += 32)
        for (int u = 0; u < 4; u++) {
            __m256 v = input8(x, delta, sum, i + 8 * u, residual);
            if (squares) {
                v = _mm256_sub_ps(v, cv);
                acc[u] = _mm256_fmadd_ps(v, v, acc[u]);
            } else {
                acc[u] = _mm256_add_ps(acc[u], v);
            }
        }
    for (int u = 0; i < d; i += 8, u++) {
        const __m256i mask = ec_mask_avx2(d - i);
        __m256 v = input_masked(x, delta, sum, i, mask, residual);
        if (squares) { /* masked lanes: (0 - c) masked back to 0 */
            v = _mm256_and_ps(_mm256_sub_ps(v, cv), _mm256_castsi256_ps(mask));
            acc[u] = _mm256_fmadd_ps(v, v, acc[u]);
        } else {
            acc[u] = _mm256_add_ps(acc[u], v);
        }
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

/* out = ((s - mean) * inv) * w (+ b) */
EC_INLINE void row_scale(const ec_norm_args *a, const float *s, float *out, float mean, float inv) {
    const size_t d = a->d;
    const __m256 mv = _mm256_set1_ps(mean), iv = _mm256_set1_ps(inv);
    for (size_t i = 0; i < d; i += 8) {
        const int masked = d - i < 8;
        const __m256i mask = ec_mask_avx2(d - i);
        const __m256 v = masked ? _mm256_maskload_ps(s + i, mask) : _mm256_loadu_ps(s + i);
        __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(v, mv), iv), weight8(a->w, i, mask, masked, a->unit_offset));
        if (a->b) y = _mm256_add_ps(y, masked ? _mm256_maskload_ps(a->b + i, mask) : _mm256_loadu_ps(a->b + i));
        if (masked) _mm256_maskstore_ps(out + i, mask, y);
        else _mm256_storeu_ps(out + i, y);
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

void ec_rms_norm_rows_avx2(const ec_norm_args *a, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        if (a->delta) norm_row(a, r, 0, 1);
        else norm_row(a, r, 0, 0);
    }
}

void ec_layer_norm_rows_avx2(const ec_norm_args *a, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        if (a->delta) norm_row(a, r, 1, 1);
        else norm_row(a, r, 1, 0);
    }
}

/* ---- RoPE ------------------------------------------------------------------ */

/* (a, b) -> (a c - b s, b c + a s), with the products b s and a s rounded
 * and the other two fused (the same arithmetic in both forms and all lanes) */
static void rope_half(float *y, size_t half, const float *cos, const float *sin) {
    for (size_t i = 0; i < half; i += 8) {
        const int masked = half - i < 8;
        const __m256i mask = ec_mask_avx2(half - i);
        __m256 a, b, c, s;
        if (masked) {
            a = _mm256_maskload_ps(y + i, mask);
            b = _mm256_maskload_ps(y + half + i, mask);
            c = _mm256_maskload_ps(cos + i, mask);
            s = _mm256_maskload_ps(sin + i, mask);
        } else {
            a = _mm256_loadu_ps(y + i);
            b = _mm256_loadu_ps(y + half + i);
            c = _mm256_loadu_ps(cos + i);
            s = _mm256_loadu_ps(sin + i);
        }
        const __m256 ra = _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s));
        const __m256 rb = _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s));
        if (masked) {
            _mm256_maskstore_ps(y + i, mask, ra);
            _mm256_maskstore_ps(y + half + i, mask, rb);
        } else {
            _mm256_storeu_ps(y + i, ra);
            _mm256_storeu_ps(y + half + i, rb);
        }
    }
}

/* pairs (2i, 2i + 1): 4 pairs per vector; the swapped vector times the
 * duplicated sines, negated in the even lanes, is added to x times the
 * duplicated cosines */
static void rope_interleaved(float *y, size_t half, const float *cos, const float *sin) {
    const __m256 neg_even = _mm256_setr_ps(-0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f);
    for (size_t i = 0; i < half; i += 4) {
        const size_t pairs = half - i < 4 ? half - i : 4;
        const __m256i mask = ec_mask_avx2(2 * pairs);
        const __m128i mask4 = _mm256_castsi256_si128(ec_mask_avx2(pairs));
        const __m256 v = pairs < 4 ? _mm256_maskload_ps(y + 2 * i, mask) : _mm256_loadu_ps(y + 2 * i);
        const __m128 c4 = pairs < 4 ? _mm_maskload_ps(cos + i, mask4) : _mm_loadu_ps(cos + i);
        const __m128 s4 = pairs < 4 ? _mm_maskload_ps(sin + i, mask4) : _mm_loadu_ps(sin + i);
        const __m256 c = _mm256_set_m128(_mm_unpackhi_ps(c4, c4), _mm_unpacklo_ps(c4, c4));
        const __m256 s = _mm256_set_m128(_mm_unpackhi_ps(s4, s4), _mm_unpacklo_ps(s4, s4));
        const __m256 t = _mm256_xor_ps(_mm256_mul_ps(_mm256_permute_ps(v, 0xB1), s), neg_even);
        const __m256 r = _mm256_fmadd_ps(v, c, t);
        if (pairs < 4) _mm256_maskstore_ps(y + 2 * i, mask, r);
        else _mm256_storeu_ps(y + 2 * i, r);
    }
}

void ec_rope_row_avx2(float *x, size_t heads, size_t head_dim, size_t rot, const float *cos,
                      const float *sin, int interleaved) {
    for (size_t h = 0; h < heads; h++) {
        if (interleaved) rope_interleaved(x + h * head_dim, rot / 2, cos, sin);
        else rope_half(x + h * head_dim, rot / 2, cos, sin);
    }
}

/* ---- f32 -> f16 --------------------------------------------------------------- */

void ec_cvt_f32_f16_avx2(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (i < n) { /* the tail through the same instruction: identical bits, NaNs included */
        uint16_t buf[8];
        const __m256 v = _mm256_maskload_ps(src + i, ec_mask_avx2(n - i));
        _mm_storeu_si128((__m128i *)buf, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        for (size_t t = 0; i + t < n; t++) dst[i + t] = buf[t];
    }
}
