/*
 * Scalar reference kernels: always compiled, the ground truth every SIMD
 * tier is tested against, and the fallback on CPUs without a SIMD tier.
 * Plain loops, no tricks: read these to know what the SIMD code must do.
 */
#include "../common/half.h"
#include "../common/internal.h"
#include "../common/scalar_math.h"
#include "../common/topk_select.h"

void ec_linear_f32_scalar(const ec_linear_args *a, size_t n0, size_t n1) {
    const size_t K = a->k, N = a->n;
    /* n outer: each weight row is read once for all M rows */
    for (size_t n = n0; n < n1; n++) {
        for (size_t m = 0; m < a->m; m++) {
            const float *x = a->x + m * K;
            float acc = 0.0f;
            if (a->transposed)
                for (size_t k = 0; k < K; k++) acc += x[k] * a->w[k * N + n];
            else
                for (size_t k = 0; k < K; k++) acc += x[k] * a->w[n * K + k];
            if (a->bias) acc += a->bias[n];
            a->y[m * N + n] = ec_act_scalar(acc, a->act);
        }
    }
}

void ec_ema_f32_scalar(float *s, size_t n, const uint64_t *bits, float decay, float boost,
                       float max_score) {
    for (size_t i = 0; i < n; i++) {
        float v = s[i] * decay;
        if ((bits[i >> 6] >> (i & 63)) & 1) v += boost;
        v = v > 0.0f ? v : 0.0f; /* NaN -> 0 */
        s[i] = v < max_score ? v : max_score;
    }
}

int64_t ec_topk_f32_scalar(const float *logits, const float *bonus, size_t e, size_t k,
                           size_t t0, size_t t1, int32_t *ids, float *weights) {
    for (size_t t = t0; t < t1; t++) {
        const float *row = logits + t * e;
        float *vals = weights + t * k;
        int32_t *idr = ids + t * k;
        ec_topk_reset(vals, idr, k);
        for (size_t j = 0; j < e; j++) {
            const float v = bonus ? row[j] + bonus[j] : row[j];
            if (v > vals[k - 1]) ec_topk_insert(vals, idr, k, v, (int32_t)j);
        }
        if (ec_topk_finish(row, vals, idr, k) != 0) return (int64_t)t;
    }
    return -1;
}

void ec_cvt_bf16_f32_scalar(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ec_bf16_to_f32(src[i]);
}

void ec_cvt_f16_f32_scalar(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = ec_f16_to_f32(src[i]);
}
