/*
 * Per-token kernels, NEON (AArch64): RMSNorm / LayerNorm rows (with the
 * fused residual add), RoPE rows, f32 -> f16. The same algorithms as the x86
 * tiers on 4 lanes.
 *
 * Norm sums: 4 independent 4-lane accumulators (16 partial sums of about
 * d / 16 terms each, then a fixed tree): relative error of a sum of squares
 * <= (d / 16 + 5) 2^-24. Tails go through zero-padded partial loads.
 */
#include <arm_neon.h>
#include <math.h>

#include "../../common/internal.h"
#include "vmath_neon.h"

#define EC_INLINE static inline __attribute__((always_inline))

EC_INLINE float32x4_t input4(const float *x, const float *delta, float *sum, size_t i, size_t n, const int residual) {
    float32x4_t v = n >= 4 ? vld1q_f32(x + i) : ec_load_partial_neon(x + i, n);
    if (residual) {
        v = vaddq_f32(v, n >= 4 ? vld1q_f32(delta + i) : ec_load_partial_neon(delta + i, n));
        if (n >= 4) vst1q_f32(sum + i, v);
        else ec_store_partial_neon(sum + i, v, n);
    }
    return v;
}

/* lanes [0, n) kept, the others zeroed */
EC_INLINE float32x4_t keep_lanes(float32x4_t v, size_t n) {
    static const uint32_t ones[8] = {~0u, ~0u, ~0u, ~0u, 0, 0, 0, 0};
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), vld1q_u32(ones + 4 - (n > 4 ? 4 : n))));
}

EC_INLINE float row_sum(const float *x, const float *delta, float *sum, size_t d, float c, const int squares,
                        const int residual) {
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    const float32x4_t cv = vdupq_n_f32(c);
    size_t i = 0;
    for (; i + 16 <= d; i += 16)
        for (int u = 0; u < 4; u++) {
            float32x4_t v = input4(x, delta, sum, i + 4 * u, 4, residual);
            if (squares) {
                v = vsubq_f32(v, cv);
                acc[u] = vfmaq_f32(acc[u], v, v);
            } else {
                acc[u] = vaddq_f32(acc[u], v);
            }
        }
    for (int u = 0; i < d; i += 4, u++) {
        const size_t n = d - i;
        float32x4_t v = input4(x, delta, sum, i, n, residual);
        if (squares) {
            v = keep_lanes(vsubq_f32(v, cv), n);
            acc[u] = vfmaq_f32(acc[u], v, v);
        } else {
            acc[u] = vaddq_f32(acc[u], v);
        }
    }
    const float32x4_t t = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    const float32x4_t p = vpaddq_f32(t, t);
    return vgetq_lane_f32(vpaddq_f32(p, p), 0);
}

EC_INLINE void row_scale(const ec_norm_args *a, const float *s, float *out, float mean, float inv) {
    const size_t d = a->d;
    const float32x4_t mv = vdupq_n_f32(mean), iv = vdupq_n_f32(inv), one = vdupq_n_f32(1.0f);
    for (size_t i = 0; i < d; i += 4) {
        const size_t n = d - i;
        float32x4_t w = n >= 4 ? vld1q_f32(a->w + i) : ec_load_partial_neon(a->w + i, n);
        if (a->unit_offset) w = vaddq_f32(w, one);
        const float32x4_t v = n >= 4 ? vld1q_f32(s + i) : ec_load_partial_neon(s + i, n);
        float32x4_t y = vmulq_f32(vmulq_f32(vsubq_f32(v, mv), iv), w);
        if (a->b) y = vaddq_f32(y, n >= 4 ? vld1q_f32(a->b + i) : ec_load_partial_neon(a->b + i, n));
        if (n >= 4) vst1q_f32(out + i, y);
        else ec_store_partial_neon(out + i, y, n);
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

void ec_rms_norm_rows_neon(const ec_norm_args *a, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        if (a->delta) norm_row(a, r, 0, 1);
        else norm_row(a, r, 0, 0);
    }
}

void ec_layer_norm_rows_neon(const ec_norm_args *a, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        if (a->delta) norm_row(a, r, 1, 1);
        else norm_row(a, r, 1, 0);
    }
}

/* ---- RoPE ------------------------------------------------------------------ */

/* (a, b) -> (a c - b s, b c + a s): b s and a s rounded, the rest fused, in
 * the vector loop and (fmaf) in the tail alike */
EC_INLINE void rotate_tail(float *pa, float *pb, float c, float s) {
    const float a = *pa, b = *pb;
    *pa = fmaf(a, c, -(b * s));
    *pb = fmaf(b, c, a * s);
}

static void rope_half(float *y, size_t half, const float *cos, const float *sin) {
    size_t i = 0;
    for (; i + 4 <= half; i += 4) {
        const float32x4_t a = vld1q_f32(y + i), b = vld1q_f32(y + half + i);
        const float32x4_t c = vld1q_f32(cos + i), s = vld1q_f32(sin + i);
        vst1q_f32(y + i, vfmaq_f32(vnegq_f32(vmulq_f32(b, s)), a, c));
        vst1q_f32(y + half + i, vfmaq_f32(vmulq_f32(a, s), b, c));
    }
    for (; i < half; i++) rotate_tail(y + i, y + half + i, cos[i], sin[i]);
}

/* vld2q splits 4 pairs into their first and second elements */
static void rope_interleaved(float *y, size_t half, const float *cos, const float *sin) {
    size_t i = 0;
    for (; i + 4 <= half; i += 4) {
        float32x4x2_t v = vld2q_f32(y + 2 * i);
        const float32x4_t c = vld1q_f32(cos + i), s = vld1q_f32(sin + i);
        const float32x4_t a = v.val[0], b = v.val[1];
        v.val[0] = vfmaq_f32(vnegq_f32(vmulq_f32(b, s)), a, c);
        v.val[1] = vfmaq_f32(vmulq_f32(a, s), b, c);
        vst2q_f32(y + 2 * i, v);
    }
    for (; i < half; i++) rotate_tail(y + 2 * i, y + 2 * i + 1, cos[i], sin[i]);
}

void ec_rope_row_neon(float *x, size_t heads, size_t head_dim, size_t rot, const float *cos,
                      const float *sin, int interleaved) {
    for (size_t h = 0; h < heads; h++) {
        if (interleaved) rope_interleaved(x + h * head_dim, rot / 2, cos, sin);
        else rope_half(x + h * head_dim, rot / 2, cos, sin);
    }
}

/* ---- f32 -> f16 --------------------------------------------------------------- */

void ec_cvt_f32_f16_neon(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    if (i < n) { /* the tail through the same instruction: identical bits, NaNs included */
        uint16_t buf[4];
        vst1_u16(buf, vreinterpret_u16_f16(vcvt_f16_f32(ec_load_partial_neon(src + i, n - i))));
        for (size_t t = 0; i + t < n; t++) dst[i + t] = buf[t];
    }
}
