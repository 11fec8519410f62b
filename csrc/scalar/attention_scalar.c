/*
 * Scalar reference micro-kernels of paged attention (csrc/common/attention.c
 * is the driver): q.K scores, the softmax block steps, P.V. Plain loops with
 * float accumulation in key / element order.
 */
#include <math.h>

#include "../common/half.h"
#include "../common/internal.h"

static inline float elem(const void *row, size_t i, int f16) {
    return f16 ? ec_f16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

static void scores(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                   size_t ld, int f16) {
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < nk; j++) {
            float acc = 0.0f;
            for (size_t d = 0; d < hd; d++) acc += q[i * hd + d] * elem(rows[j], d, f16);
            s[i * ld + j] = acc;
        }
}

static void pv(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows, size_t nk,
               size_t hd, float *o, int f16) {
    for (size_t g = 0; g < ng; g++)
        for (size_t d = 0; d < hd; d++) {
            float acc = o[g * hd + d] * corr[g];
            for (size_t j = 0; j < nk; j++) acc += p[g * ld + j] * elem(rows[j], d, f16);
            o[g * hd + d] = acc;
        }
}

void ec_attn_scores_f32_scalar(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd,
                               float *s, size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, 0);
}

void ec_attn_scores_f16_scalar(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd,
                               float *s, size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, 1);
}

void ec_attn_pv_f32_scalar(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                           size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, 0);
}

void ec_attn_pv_f16_scalar(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                           size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, 1);
}

float ec_attn_max_scalar(float *s, size_t n, float softcap) {
    float m = -INFINITY;
    int nan = 0;
    for (size_t j = 0; j < n; j++) {
        if (softcap > 0.0f) s[j] = softcap * tanhf(s[j] / softcap);
        if (isnan(s[j])) nan = 1;
        else if (s[j] > m) m = s[j];
    }
    return nan ? NAN : m;
}

float ec_attn_expsum_scalar(float *s, size_t n, float m) {
    float sum = 0.0f;
    for (size_t j = 0; j < n; j++) {
        const float x = s[j] - m;
        s[j] = x < -87.0f ? 0.0f : expf(x);
        sum += s[j];
    }
    return sum;
}
