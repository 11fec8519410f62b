/*
 * The neon tier's 32-block gemm micro-kernels with i8mm (smmla), for
 * prefill-sized tiles: one smmla multiplies a 2x8 int8 block of two
 * activation rows by an 8x2 block of two weight rows into 4 int32 sums, so
 * two rows x four columns of a 32-block take 8 smmla where sdot needs 16.
 * Rows and columns are interleaved 8 bytes at a time (zip of 64-bit lanes)
 * in registers; the activation and weight formats stay the driver's.
 * A one-row tile (decode) has nothing to pair and runs the dotprod code.
 *
 * Built with +dotprod+i8mm (setup.py FEATURES); its table line needs both
 * features. The integer sums are exact, and the float steps per output are
 * ec_step32's (the scalar kernel's, in its order), so results are bitwise
 * those of the scalar and dotprod kernels, for any pairing of rows: an odd
 * last row is paired with itself and the copy is dropped.
 */
#if !defined(__ARM_FEATURE_MATMUL_INT8) || !defined(__ARM_FEATURE_DOTPROD)
#error "i8mm kernels must be compiled with +dotprod+i8mm"
#endif
#include "../qgemm_neon.h"

#define PAIR_ROWS 8 /* the table's mr */

EC_INLINE int8x16_t zip_lo(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}
EC_INLINE int8x16_t zip_hi(int8x16_t a, int8x16_t b) {
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

/* sum over the 4 interleaved 8-byte chunks: [a.b, a.c, a'.b, a'.c] for
 * rows a, a' and columns b, c */
EC_INLINE int32x4_t mmla32(const int8x16_t xs[4], const int8x16_t ws[4]) {
    int32x4_t r = vmmlaq_s32(vdupq_n_s32(0), xs[0], ws[0]);
    r = vmmlaq_s32(r, xs[1], ws[1]);
    r = vmmlaq_s32(r, xs[2], ws[2]);
    return vmmlaq_s32(r, xs[3], ws[3]);
}

EC_INLINE void interleave(ec_q32x a, ec_q32x b, int8x16_t out[4]) {
    out[0] = zip_lo(a.lo, b.lo);
    out[1] = zip_hi(a.lo, b.lo);
    out[2] = zip_lo(a.hi, b.hi);
    out[3] = zip_hi(a.hi, b.hi);
}

/* Outputs (i, j0 .. j0 + 3) for i < MR (2..8, a constant after inlining). */
EC_INLINE void gemm32_pairs_cols4(size_t k, size_t MR, size_t nv, const char *x, size_t xs, const uint8_t *w,
                                  size_t ws, float *y, size_t ldy, size_t bb, ec_decode32_fn decode, int offset) {
    const uint8_t *r[4];
    for (size_t l = 0; l < 4; l++) r[l] = w + (l < nv ? l : nv - 1) * ws;
    float32x4_t acc[PAIR_ROWS];
    for (size_t i = 0; i < MR; i++) acc[i] = vdupq_n_f32(0.0f);
    for (size_t b = 0, o = 0; b < k / 32; b++, o += bb) {
        const uint8_t *rb[4] = {r[0] + o, r[1] + o, r[2] + o, r[3] + o};
        int8x16_t w01[4], w23[4];
        interleave(decode(rb[0]), decode(rb[1]), w01);
        interleave(decode(rb[2]), decode(rb[3]), w23);
        const float32x4_t d = ec_f16x4(rb, 0);
        const float32x4_t m = offset ? ec_f16x4(rb, 2) : vdupq_n_f32(0.0f);
        for (size_t i = 0; i < MR; i += 2) {
            const size_t i2 = i + 1 < MR ? i + 1 : i;
            const ec_act_q8_32 *xa = (const ec_act_q8_32 *)(x + i * xs) + b;
            const ec_act_q8_32 *xc = (const ec_act_q8_32 *)(x + i2 * xs) + b;
            int8x16_t xp[4];
            interleave((ec_q32x){vld1q_s8(xa->q), vld1q_s8(xa->q + 16)},
                       (ec_q32x){vld1q_s8(xc->q), vld1q_s8(xc->q + 16)}, xp);
            const int64x2_t s01 = vreinterpretq_s64_s32(mmla32(xp, w01)); /* [i c0, i c1 | i2 c0, i2 c1] */
            const int64x2_t s23 = vreinterpretq_s64_s32(mmla32(xp, w23));
            acc[i] = ec_step32(acc[i], d, m, xa, vreinterpretq_s32_s64(vzip1q_s64(s01, s23)), offset);
            if (i2 != i) acc[i2] = ec_step32(acc[i2], d, m, xc, vreinterpretq_s32_s64(vzip2q_s64(s01, s23)), offset);
        }
    }
    for (size_t i = 0; i < MR; i++) ec_store4(y + i * ldy, acc[i], nv);
}

EC_INLINE void gemm32_i8mm(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                           float *y, size_t ldy, size_t bb, ec_decode32_fn decode, int offset) {
    for (size_t i0 = 0; i0 < mr; i0 += PAIR_ROWS) {
        const char *xi = (const char *)x + i0 * xs;
        float *yi = y + i0 * ldy;
        const size_t rows = mr - i0 < PAIR_ROWS ? mr - i0 : PAIR_ROWS;
        for (size_t j = 0; j < nr; j += 4) {
            const size_t nv = nr - j < 4 ? nr - j : 4;
            const uint8_t *wj = (const uint8_t *)w + j * ws;
            float *yj = yi + j;
            switch (rows) {
            case 1: ec_gemm32_cols4(k, 1, nv, xi, xs, wj, ws, yj, ldy, bb, decode, offset); break;
            case 2: gemm32_pairs_cols4(k, 2, nv, xi, xs, wj, ws, yj, ldy, bb, decode, offset); break;
            case 3: gemm32_pairs_cols4(k, 3, nv, xi, xs, wj, ws, yj, ldy, bb, decode, offset); break;
            case 4: gemm32_pairs_cols4(k, 4, nv, xi, xs, wj, ws, yj, ldy, bb, decode, offset); break;
            case 5: gemm32_pairs_cols4(k, 5, nv, xi, xs, wj, ws, yj, ldy, bb, decode, offset); break;
            case 6: gemm32_pairs_cols4(k, 6, nv, xi, xs, wj, ws, yj, ldy, bb, decode, offset); break;
            case 7: gemm32_pairs_cols4(k, 7, nv, xi, xs, wj, ws, yj, ldy, bb, decode, offset); break;
            default: gemm32_pairs_cols4(k, 8, nv, xi, xs, wj, ws, yj, ldy, bb, decode, offset); break;
            }
        }
    }
}

#define GEMM32_I8MM(type, bytes, offset)                                                                  \
    void ec_qgemm_##type##_neon_i8mm(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, \
                                     size_t ws, float *y, size_t ldy) {                                   \
        gemm32_i8mm(k, mr, nr, x, xs, w, ws, y, ldy, bytes, ec_decode_##type, offset);                    \
    }

GEMM32_I8MM(q8_0, 34, 0)
GEMM32_I8MM(q4_0, 18, 0)
GEMM32_I8MM(q4_1, 20, 1)
GEMM32_I8MM(q5_0, 22, 0)
GEMM32_I8MM(q5_1, 24, 1)
