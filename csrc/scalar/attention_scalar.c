/*
 * Scalar reference micro-kernels of paged attention (csrc/common/attention.c
 * is the driver): q.K scores, the softmax block steps, P.V. Plain loops with
 * float accumulation in key / element order.
 */
#include <math.h>

#include "../common/half.h"
#include "../common/internal.h"

enum { F32, F16, Q8_0 }; /* the row formats (pertoken.h) */

/* Element i of a row; a Q8_0 element is d * q, exact in float32. */
static inline float elem(const void *row, size_t i, int fmt) {
    if (fmt == Q8_0) {
        const uint8_t *blk = (const uint8_t *)row + i / 32 * 34;
        return ec_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)) * (float)(int8_t)blk[2 + i % 32];
    }
    return fmt == F16 ? ec_f16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

static void scores(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                   size_t ld, int fmt) {
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < nk; j++) {
            float acc = 0.0f;
            for (size_t d = 0; d < hd; d++) acc += q[i * hd + d] * elem(rows[j], d, fmt);
            s[i * ld + j] = acc;
        }
}

static void pv(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows, size_t nk,
               size_t hd, float *o, int fmt) {
    for (size_t g = 0; g < ng; g++)
        for (size_t d = 0; d < hd; d++) {
            float acc = o[g * hd + d] * corr[g];
            for (size_t j = 0; j < nk; j++) acc += p[g * ld + j] * elem(rows[j], d, fmt);
            o[g * hd + d] = acc;
        }
}

void ec_attn_scores_f32_scalar(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd,
                               float *s, size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, F32);
}

void ec_attn_scores_f16_scalar(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd,
                               float *s, size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, F16);
}

void ec_attn_pv_f32_scalar(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                           size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, F32);
}

void ec_attn_pv_f16_scalar(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                           size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, F16);
}

void ec_attn_scores_q8_0_scalar(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd,
                                float *s, size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, Q8_0);
}

void ec_attn_pv_q8_0_scalar(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                            size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, Q8_0);
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
