/*
 * f16 and bf16 gemm micro-kernels for the neon tier (contract in
 * csrc/common/qkernels.h), bitwise equal to the scalar kernels.
 *
 * The scalar kernel sums each output element by element in K order,
 * acc = acc + w[l] * x[l], one rounding per step. So the lanes of a vector
 * hold 4 outputs (4 weight rows), never 4 values of K: 8 K values of 4
 * weight rows are loaded, transposed in 16 bits (2 zip levels) and widened
 * (exactly: FCVTL for f16, a 16-bit shift for bf16), then each K step is
 * one multiply by a lane of x and one add, per lane the scalar's steps.
 * Those adds form one dependency chain per accumulator, so a pass keeps
 * about 4 accumulators in flight: 4 column groups for one activation row,
 * 2 for two or three, 1 for four.
 */
#include <arm_neon.h>

#include "../../common/half.h"
#include "../../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define TILE_ROWS 4
#define MAX_GROUPS 4

/* 8 K values of the 4 rows r, as 8 vectors of the 4 rows' values. */
EC_INLINE void transpose8(const uint16_t *const r[4], size_t l, int bf16, float32x4_t t[8]) {
    const uint16x8_t a = vld1q_u16(r[0] + l), b = vld1q_u16(r[1] + l);
    const uint16x8_t c = vld1q_u16(r[2] + l), d = vld1q_u16(r[3] + l);
    const uint32x4_t ab_lo = vreinterpretq_u32_u16(vzip1q_u16(a, b)), ab_hi = vreinterpretq_u32_u16(vzip2q_u16(a, b));
    const uint32x4_t cd_lo = vreinterpretq_u32_u16(vzip1q_u16(c, d)), cd_hi = vreinterpretq_u32_u16(vzip2q_u16(c, d));
    /* pair p holds K steps 2p and 2p + 1 */
    const uint16x8_t pair[4] = {
        vreinterpretq_u16_u32(vzip1q_u32(ab_lo, cd_lo)), vreinterpretq_u16_u32(vzip2q_u32(ab_lo, cd_lo)),
        vreinterpretq_u16_u32(vzip1q_u32(ab_hi, cd_hi)), vreinterpretq_u16_u32(vzip2q_u32(ab_hi, cd_hi))};
    for (int p = 0; p < 4; p++) {
        if (bf16) {
            t[2 * p] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(pair[p]), 16));
            t[2 * p + 1] = vreinterpretq_f32_u32(vshll_high_n_u16(pair[p], 16));
        } else {
            const float16x8_t h = vreinterpretq_f16_u16(pair[p]);
            t[2 * p] = vcvt_f32_f16(vget_low_f16(h));
            t[2 * p + 1] = vcvt_high_f32_f16(h);
        }
    }
}

EC_INLINE float widen(uint16_t v, int bf16) { return bf16 ? ec_bf16_to_f32(v) : ec_f16_to_f32(v); }

/* Outputs (i, 4g + c) for i < MR, g < G, c < 4; nv[g] of group g's columns
 * are real (the rest re-read its last real row and are not stored). */
EC_INLINE void half_pass(size_t k, size_t MR, size_t G, const size_t *nv, const void *x, size_t xs, const void *w,
                         size_t ws, float *y, size_t ldy, int bf16) {
    const uint16_t *r[MAX_GROUPS][4];
    for (size_t g = 0; g < G; g++)
        for (size_t c = 0; c < 4; c++)
            r[g][c] = (const uint16_t *)((const char *)w + (4 * g + (c < nv[g] ? c : nv[g] - 1)) * ws);
    const float *xr[TILE_ROWS];
    for (size_t i = 0; i < MR; i++) xr[i] = (const float *)((const char *)x + i * xs);
    float32x4_t acc[TILE_ROWS][MAX_GROUPS];
    for (size_t i = 0; i < MR; i++)
        for (size_t g = 0; g < G; g++) acc[i][g] = vdupq_n_f32(0.0f);
    size_t l = 0;
    for (; l + 8 <= k; l += 8) {
        for (size_t g = 0; g < G; g++) {
            float32x4_t t[8];
            transpose8(r[g], l, bf16, t);
            for (size_t i = 0; i < MR; i++) {
                const float32x4_t x0 = vld1q_f32(xr[i] + l), x1 = vld1q_f32(xr[i] + l + 4);
                float32x4_t a = acc[i][g];
                a = vaddq_f32(a, vmulq_laneq_f32(t[0], x0, 0));
                a = vaddq_f32(a, vmulq_laneq_f32(t[1], x0, 1));
                a = vaddq_f32(a, vmulq_laneq_f32(t[2], x0, 2));
                a = vaddq_f32(a, vmulq_laneq_f32(t[3], x0, 3));
                a = vaddq_f32(a, vmulq_laneq_f32(t[4], x1, 0));
                a = vaddq_f32(a, vmulq_laneq_f32(t[5], x1, 1));
                a = vaddq_f32(a, vmulq_laneq_f32(t[6], x1, 2));
                a = vaddq_f32(a, vmulq_laneq_f32(t[7], x1, 3));
                acc[i][g] = a;
            }
        }
    }
    for (; l < k; l++) /* K tail: the same two steps per lane */
        for (size_t g = 0; g < G; g++) {
            const float col[4] = {widen(r[g][0][l], bf16), widen(r[g][1][l], bf16), widen(r[g][2][l], bf16),
                                  widen(r[g][3][l], bf16)};
            const float32x4_t t = vld1q_f32(col);
            for (size_t i = 0; i < MR; i++) acc[i][g] = vaddq_f32(acc[i][g], vmulq_n_f32(t, xr[i][l]));
        }
    for (size_t i = 0; i < MR; i++)
        for (size_t g = 0; g < G; g++) {
            float lanes[4];
            vst1q_f32(lanes, acc[i][g]);
            for (size_t c = 0; c < nv[g]; c++) y[i * ldy + 4 * g + c] = lanes[c];
        }
}

/* Whole passes of G groups while 4G columns remain, then single groups. */
EC_INLINE void half_rows(size_t k, size_t MR, size_t G, size_t nr, const void *x, size_t xs, const void *w,
                         size_t ws, float *y, size_t ldy, int bf16) {
    static const size_t full[MAX_GROUPS] = {4, 4, 4, 4};
    size_t j = 0;
    for (; j + 4 * G <= nr; j += 4 * G)
        half_pass(k, MR, G, full, x, xs, (const char *)w + j * ws, ws, y + j, ldy, bf16);
    for (; j < nr; j += 4) {
        const size_t nv = nr - j < 4 ? nr - j : 4;
        half_pass(k, MR, 1, &nv, x, xs, (const char *)w + j * ws, ws, y + j, ldy, bf16);
    }
}

EC_INLINE void gemm_half(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                         float *y, size_t ldy, int bf16) {
    for (size_t i0 = 0; i0 < mr; i0 += TILE_ROWS) {
        const char *xi = (const char *)x + i0 * xs;
        float *yi = y + i0 * ldy;
        switch (mr - i0 < TILE_ROWS ? mr - i0 : TILE_ROWS) {
        case 1: half_rows(k, 1, 4, nr, xi, xs, w, ws, yi, ldy, bf16); break;
        case 2: half_rows(k, 2, 2, nr, xi, xs, w, ws, yi, ldy, bf16); break;
        case 3: half_rows(k, 3, 2, nr, xi, xs, w, ws, yi, ldy, bf16); break;
        default: half_rows(k, 4, 1, nr, xi, xs, w, ws, yi, ldy, bf16); break;
        }
    }
}

void ec_qgemm_f16_neon(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws, float *y,
                       size_t ldy) {
    gemm_half(k, mr, nr, x, xs, w, ws, y, ldy, 0);
}

void ec_qgemm_bf16_neon(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                        float *y, size_t ldy) {
    gemm_half(k, mr, nr, x, xs, w, ws, y, ldy, 1);
}
