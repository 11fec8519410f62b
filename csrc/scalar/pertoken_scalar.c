/*
 * Scalar reference kernels of the per-token path: norms, RoPE, f32 -> f16.
 * Plain loops; sums in double, so the only float32 roundings are those of
 * the final scale and products (the SIMD tiers' error bounds are stated in
 * docs/kernel-tiers.md against these).
 */
#include <math.h>

#include "../common/half.h"
#include "../common/internal.h"

/* Row r's input: x[r], or x[r] + delta[r] written to sum[r] first. */
static const float *norm_input(const ec_norm_args *a, size_t r) {
    const float *x = a->x + r * a->d;
    if (!a->delta) return x;
    const float *delta = a->delta + r * a->d;
    float *sum = a->sum + r * a->d;
    for (size_t i = 0; i < a->d; i++) sum[i] = x[i] + delta[i];
    return sum;
}

static float weight(const ec_norm_args *a, size_t i) { return a->unit_offset ? 1.0f + a->w[i] : a->w[i]; }

void ec_rms_norm_rows_scalar(const ec_norm_args *a, size_t r0, size_t r1) {
    const size_t d = a->d;
    for (size_t r = r0; r < r1; r++) {
        const float *s = norm_input(a, r);
        double ss = 0.0;
        for (size_t i = 0; i < d; i++) ss += (double)s[i] * s[i];
        const float inv = (float)(1.0 / sqrt(ss / (double)d + (double)a->eps));
        float *out = a->out + r * d;
        for (size_t i = 0; i < d; i++) out[i] = s[i] * inv * weight(a, i);
    }
}

void ec_layer_norm_rows_scalar(const ec_norm_args *a, size_t r0, size_t r1) {
    const size_t d = a->d;
    for (size_t r = r0; r < r1; r++) {
        const float *s = norm_input(a, r);
        double sum = 0.0;
        for (size_t i = 0; i < d; i++) sum += s[i];
        const double mean = sum / (double)d;
        double var = 0.0;
        for (size_t i = 0; i < d; i++) var += ((double)s[i] - mean) * ((double)s[i] - mean);
        const float inv = (float)(1.0 / sqrt(var / (double)d + (double)a->eps));
        const float meanf = (float)mean;
        float *out = a->out + r * d;
        for (size_t i = 0; i < d; i++) {
            const float y = (s[i] - meanf) * inv * weight(a, i);
            out[i] = a->b ? y + a->b[i] : y;
        }
    }
}

void ec_rope_row_scalar(float *x, size_t heads, size_t head_dim, size_t rot, const float *cos,
                        const float *sin, int interleaved) {
    const size_t half = rot / 2;
    for (size_t h = 0; h < heads; h++) {
        float *y = x + h * head_dim;
        for (size_t i = 0; i < half; i++) {
            float *pa = interleaved ? y + 2 * i : y + i;
            float *pb = interleaved ? y + 2 * i + 1 : y + half + i;
            const float a = *pa, b = *pb;
            *pa = a * cos[i] - b * sin[i];
            *pb = b * cos[i] + a * sin[i];
        }
    }
}

void ec_cvt_f32_f16_scalar(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ec_f32_to_f16(src[i]);
}
