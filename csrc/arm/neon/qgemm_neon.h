/*
 * NEON gemm micro-kernels for the block-quantized weight types (contract in
 * csrc/common/qkernels.h), written once and compiled twice: by
 * qgemm_neon.c for the plain tier and by dotprod/qgemm_dotprod.c with
 * +dotprod. The only difference is ec_dot16 (the exact int8 dot product of
 * 16 pairs: sdot with dotprod, widening multiplies without). An includer
 * that defines EC_QGEMM_NAME(type) gets the public functions under those
 * names; i8mm/qgemm_i8mm.c takes only the pieces.
 *
 * Bitwise equal to the scalar kernels. Every integer sum is exact whatever
 * instruction forms it, and the float steps per output are the scalar
 * kernel's, in its order, one IEEE operation each (-ffp-contract=off):
 *   32-blocks: acc = acc + ((dw * dx) * isum [+ (mw * dx) * xsum])
 *   q4_k/q5_k: acc = acc + ((dx * d) * isc - (dx * dmin) * imin)
 *   q6_k:      acc = acc + (dx * d) * isc
 * 32-blocks keep 4 outputs (4 weight rows) in the lanes of one vector, so
 * those steps run 4 outputs at a time; K-quants have 8-16 integer
 * sub-sums per block, so their few float steps per block stay scalar.
 *
 * Tiles: up to 4 activation rows share each decoded weight block (mr = 4
 * in the table, decode is mr = 1); columns go 4 at a time (32-blocks) or
 * one at a time (K-quants). A column tail re-reads the last valid weight
 * row into the unused lanes and does not store them, so no lane's
 * operations depend on nr.
 */
#ifndef EDGECORE_QGEMM_NEON_H
#define EDGECORE_QGEMM_NEON_H

#include <arm_neon.h>

#include "../../common/qblocks.h"
#include "../../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define TILE_ROWS 4

/* ---- exact integer dot products ------------------------------------------ */

#if defined(__ARM_FEATURE_DOTPROD)
EC_INLINE int32x4_t ec_dot16(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#else
/* Two int8 products fit in int16: weights are in [-128, 127] and activation
 * q in [-127, 127] (the quantizer never makes -128), so a pair is at most
 * 2 * 128 * 127 = 32512. */
EC_INLINE int32x4_t ec_dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    const int16x8_t p = vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b);
    return vpadalq_s16(acc, p);
}
#endif

/* Lanes of the result are partial sums; their total is the dot product. */
EC_INLINE int32x4_t ec_dot32(int8x16_t w0, int8x16_t w1, int8x16_t x0, int8x16_t x1) {
    return ec_dot16(ec_dot16(vdupq_n_s32(0), w0, x0), w1, x1);
}

/* [sum c0, sum c1, sum c2, sum c3] */
EC_INLINE int32x4_t ec_hsum4(int32x4_t c0, int32x4_t c1, int32x4_t c2, int32x4_t c3) {
    return vpaddq_s32(vpaddq_s32(c0, c1), vpaddq_s32(c2, c3));
}

/* ---- 32-element blocks (q8_0, q4_0, q4_1, q5_0, q5_1) ---------------------- */

typedef struct {
    int8x16_t lo, hi; /* elements 0-15, 16-31 */
} ec_q32x;

typedef ec_q32x (*ec_decode32_fn)(const uint8_t *block);

EC_INLINE ec_q32x ec_nibbles(const uint8_t *qs, int offset) {
    const uint8x16_t v = vld1q_u8(qs);
    const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
    const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
    return (ec_q32x){vsubq_s8(lo, vdupq_n_s8((int8_t)offset)), vsubq_s8(hi, vdupq_n_s8((int8_t)offset))};
}

/* Bit 4 of element j is bit j of qh: each byte of qh spread over 8 lanes,
 * tested against that lane's bit. */
EC_INLINE ec_q32x ec_fifth_bits(uint32_t qh) {
    static const uint8_t spread_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    static const uint8_t spread_hi[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bytes = vreinterpretq_u8_u32(vdupq_n_u32(qh));
    const uint8x16_t mask = vld1q_u8(bit), sixteen = vdupq_n_u8(0x10);
    const uint8x16_t lo = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, vld1q_u8(spread_lo)), mask), sixteen);
    const uint8x16_t hi = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, vld1q_u8(spread_hi)), mask), sixteen);
    return (ec_q32x){vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)};
}

EC_INLINE ec_q32x ec_five_bit(const uint8_t *qs, uint32_t qh, int offset) {
    const ec_q32x low = ec_nibbles(qs, 0), top = ec_fifth_bits(qh);
    const int8x16_t off = vdupq_n_s8((int8_t)offset);
    return (ec_q32x){vsubq_s8(vorrq_s8(low.lo, top.lo), off), vsubq_s8(vorrq_s8(low.hi, top.hi), off)};
}

EC_INLINE ec_q32x ec_decode_q8_0(const uint8_t *b) {
    return (ec_q32x){vld1q_s8((const int8_t *)b + 2), vld1q_s8((const int8_t *)b + 18)};
}
EC_INLINE ec_q32x ec_decode_q4_0(const uint8_t *b) { return ec_nibbles(b + 2, 8); }
EC_INLINE ec_q32x ec_decode_q4_1(const uint8_t *b) { return ec_nibbles(b + 4, 0); }
EC_INLINE ec_q32x ec_decode_q5_0(const uint8_t *b) { return ec_five_bit(b + 6, ec_read_u32(b + 2), 16); }
EC_INLINE ec_q32x ec_decode_q5_1(const uint8_t *b) { return ec_five_bit(b + 8, ec_read_u32(b + 4), 0); }

/* The f16 at byte `at` of four blocks, widened (exactly) to float32. */
EC_INLINE float32x4_t ec_f16x4(const uint8_t *const r[4], size_t at) {
    uint16_t h[4];
    for (int l = 0; l < 4; l++) memcpy(&h[l], r[l] + at, 2);
    const uint64_t packed = h[0] | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 32 | (uint64_t)h[3] << 48;
    return vcvt_f32_f16(vreinterpret_f16_u64(vcreate_u64(packed)));
}

/* One block's float steps for 4 outputs of one activation row: the scalar
 * kernel's acc + ((dw * dx) * isum [+ (mw * dx) * xsum]), lane by lane. */
EC_INLINE float32x4_t ec_step32(float32x4_t acc, float32x4_t d, float32x4_t m, const ec_act_q8_32 *xb,
                                int32x4_t isum, int offset) {
    float32x4_t t = vmulq_f32(vmulq_n_f32(d, xb->d), vcvtq_f32_s32(isum));
    if (offset) t = vaddq_f32(t, vmulq_f32(vmulq_n_f32(m, xb->d), vdupq_n_f32((float)xb->sum)));
    return vaddq_f32(acc, t);
}

/* The first nv lanes of v to y. */
EC_INLINE void ec_store4(float *y, float32x4_t v, size_t nv) {
    if (nv == 4) {
        vst1q_f32(y, v);
    } else {
        float lanes[4];
        vst1q_f32(lanes, v);
        for (size_t l = 0; l < nv; l++) y[l] = lanes[l];
    }
}

/* Outputs (i, j0 .. j0 + 3) for i < MR (a constant after inlining); `nv`
 * of the 4 columns are real. Offset types (q4_1, q5_1) have m at byte 2. */
EC_INLINE void ec_gemm32_cols4(size_t k, size_t MR, size_t nv, const char *x, size_t xs, const uint8_t *w,
                               size_t ws, float *y, size_t ldy, size_t bb, ec_decode32_fn decode, int offset) {
    const uint8_t *r[4];
    for (size_t l = 0; l < 4; l++) r[l] = w + (l < nv ? l : nv - 1) * ws;
    float32x4_t acc[TILE_ROWS];
    for (size_t i = 0; i < MR; i++) acc[i] = vdupq_n_f32(0.0f);
    for (size_t b = 0, o = 0; b < k / 32; b++, o += bb) {
        const uint8_t *rb[4] = {r[0] + o, r[1] + o, r[2] + o, r[3] + o};
        const ec_q32x q0 = decode(rb[0]), q1 = decode(rb[1]), q2 = decode(rb[2]), q3 = decode(rb[3]);
        const float32x4_t d = ec_f16x4(rb, 0);
        const float32x4_t m = offset ? ec_f16x4(rb, 2) : vdupq_n_f32(0.0f);
        for (size_t i = 0; i < MR; i++) {
            const ec_act_q8_32 *xb = (const ec_act_q8_32 *)(x + i * xs) + b;
            const int8x16_t x0 = vld1q_s8(xb->q), x1 = vld1q_s8(xb->q + 16);
            const int32x4_t isum = ec_hsum4(ec_dot32(q0.lo, q0.hi, x0, x1), ec_dot32(q1.lo, q1.hi, x0, x1),
                                            ec_dot32(q2.lo, q2.hi, x0, x1), ec_dot32(q3.lo, q3.hi, x0, x1));
            acc[i] = ec_step32(acc[i], d, m, xb, isum, offset);
        }
    }
    for (size_t i = 0; i < MR; i++) ec_store4(y + i * ldy, acc[i], nv);
}

EC_INLINE void ec_gemm32(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                         float *y, size_t ldy, size_t bb, ec_decode32_fn decode, int offset) {
    for (size_t i0 = 0; i0 < mr; i0 += TILE_ROWS) {
        const char *xi = (const char *)x + i0 * xs;
        float *yi = y + i0 * ldy;
        for (size_t j = 0; j < nr; j += 4) {
            const size_t nv = nr - j < 4 ? nr - j : 4;
            const uint8_t *wj = (const uint8_t *)w + j * ws;
            switch (mr - i0 < TILE_ROWS ? mr - i0 : TILE_ROWS) {
            case 1: ec_gemm32_cols4(k, 1, nv, xi, xs, wj, ws, yi + j, ldy, bb, decode, offset); break;
            case 2: ec_gemm32_cols4(k, 2, nv, xi, xs, wj, ws, yi + j, ldy, bb, decode, offset); break;
            case 3: ec_gemm32_cols4(k, 3, nv, xi, xs, wj, ws, yi + j, ldy, bb, decode, offset); break;
            default: ec_gemm32_cols4(k, 4, nv, xi, xs, wj, ws, yi + j, ldy, bb, decode, offset); break;
            }
        }
    }
}

#ifdef EC_QGEMM_NAME
#define EC_GEMM32(type, bytes, offset)                                                                   \
    void EC_QGEMM_NAME(type)(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,   \
                             size_t ws, float *y, size_t ldy) {                                         \
        ec_gemm32(k, mr, nr, x, xs, w, ws, y, ldy, bytes, ec_decode_##type, offset);                    \
    }

EC_GEMM32(q8_0, 34, 0)
EC_GEMM32(q4_0, 18, 0)
EC_GEMM32(q4_1, 20, 1)
EC_GEMM32(q5_0, 22, 0)
EC_GEMM32(q5_1, 24, 1)
#endif

/* ---- 256-element super-blocks (q4_k, q5_k, q6_k) --------------------------- */

/* Hardware f16 -> f32 (FCVT). It only differs from ec_read_f16 on a
 * signalling NaN, which it quiets; every use multiplies the scale first,
 * and that quiets it the same way, so results are unchanged. */
EC_INLINE float ec_f16_hw(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, sizeof h);
    return (float)h;
}

/* The 12 scale bytes of q4_k/q5_k (see ec_unpack_k_scales) unpacked in
 * registers: lanes 0-7 the 6-bit scales, lanes 8-15 the 6-bit mins.
 * Reads 16 bytes at s (the block continues past the scales). */
EC_INLINE uint8x16_t ec_k_scales(const uint8_t *s) {
    static const uint8_t low_at[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11};
    static const uint8_t low_mask[16] = {63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0xF0, 0xF0, 0xF0, 0xF0};
    static const int8_t low_shift[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -4, -4, -4, -4};
    static const uint8_t top_at[16] = {255, 255, 255, 255, 0, 1, 2, 3, 255, 255, 255, 255, 4, 5, 6, 7};
    const uint8x16_t v = vld1q_u8(s);
    const uint8x16_t low = vshlq_u8(vandq_u8(vqtbl1q_u8(v, vld1q_u8(low_at)), vld1q_u8(low_mask)), vld1q_s8(low_shift));
    const uint8x16_t top = vshlq_n_u8(vshrq_n_u8(vqtbl1q_u8(v, vld1q_u8(top_at)), 6), 4); /* index 255 reads 0 */
    return vorrq_u8(low, top);
}

/* Chunk c (bytes 32c.. of qs) of a q4_k/q5_k super-block: out[0], out[1]
 * sub-block 2c (low nibbles), out[2], out[3] sub-block 2c + 1 (high
 * nibbles). q5_k (qh != NULL): bit s of qh[l] is bit 4 of element l of
 * sub-block s. */
EC_INLINE void ec_k45_chunk(const uint8_t *qs, const uint8_t *qh, int c, int8x16_t out[4]) {
    const uint8x16_t low = vdupq_n_u8(0x0F), sixteen = vdupq_n_u8(0x10);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t v = vld1q_u8(qs + 32 * c + 16 * h);
        uint8x16_t lo = vandq_u8(v, low), hi = vshrq_n_u8(v, 4);
        if (qh) {
            const uint8x16_t bits = vld1q_u8(qh + 16 * h);
            lo = vorrq_u8(lo, vandq_u8(vtstq_u8(bits, vdupq_n_u8((uint8_t)(1u << (2 * c)))), sixteen));
            hi = vorrq_u8(hi, vandq_u8(vtstq_u8(bits, vdupq_n_u8((uint8_t)(2u << (2 * c)))), sixteen));
        }
        out[h] = vreinterpretq_s8_u8(lo);
        out[2 + h] = vreinterpretq_s8_u8(hi);
    }
}

/* Chunk (h, p) of a q6_k super-block: out[s] = group 8h + 2s + p, the
 * elements 128 h + 32 s + 16 p .. + 15, whose low 4 bits come from
 * ql[64 h + 32 (s & 1) + 16 p ..] (low nibble for s < 2) and top 2 bits
 * from bits 2s, 2s + 1 of qh[32 h + 16 p ..]; value - 32. */
EC_INLINE void ec_q6k_chunk(const uint8_t *b, int h, int p, int8x16_t out[4]) {
    const uint8x16_t low = vdupq_n_u8(0x0F), top = vdupq_n_u8(0x30);
    const uint8x16_t l0 = vld1q_u8(b + 64 * h + 16 * p), l1 = vld1q_u8(b + 64 * h + 32 + 16 * p);
    const uint8x16_t hb = vld1q_u8(b + 128 + 32 * h + 16 * p);
    const uint8x16_t v[4] = {
        vorrq_u8(vandq_u8(l0, low), vandq_u8(vshlq_n_u8(hb, 4), top)),
        vorrq_u8(vandq_u8(l1, low), vandq_u8(vshlq_n_u8(hb, 2), top)),
        vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, top)),
        vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), top)),
    };
    for (int s = 0; s < 4; s++) out[s] = vsubq_s8(vreinterpretq_s8_u8(v[s]), vdupq_n_s8(32));
}

/* A whole super-block decoded (the row dequantizers use it): 16 vectors
 * in element order, and the scales. */
typedef struct {
    int8x16_t q[16];
    float d, dmin;
    uint8_t sc[8], mn[8]; /* q4_k, q5_k (contiguous: one store) */
    int8_t sc6[16];       /* q6_k */
} ec_qkx;

typedef void (*ec_decode_k_fn)(const uint8_t *block, ec_qkx *u);

EC_INLINE void ec_decode_k45(const uint8_t *b, ec_qkx *u, const uint8_t *qh) {
    u->d = ec_f16_hw(b);
    u->dmin = ec_f16_hw(b + 2);
    vst1q_u8(u->sc, ec_k_scales(b + 4));
    for (int c = 0; c < 4; c++) ec_k45_chunk(qh ? b + 48 : b + 16, qh, c, u->q + 4 * c);
}

EC_INLINE void ec_decode_q4_k(const uint8_t *b, ec_qkx *u) { ec_decode_k45(b, u, NULL); }
EC_INLINE void ec_decode_q5_k(const uint8_t *b, ec_qkx *u) { ec_decode_k45(b, u, b + 16); }

EC_INLINE void ec_decode_q6_k(const uint8_t *b, ec_qkx *u) {
    memcpy(u->sc6, b + 192, 16);
    u->d = ec_f16_hw(b + 208);
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 2; p++) {
            int8x16_t g[4];
            ec_q6k_chunk(b, h, p, g);
            for (int s = 0; s < 4; s++) u->q[8 * h + 2 * s + p] = g[s];
        }
}

/* int32 lanes of the 8-bit lanes lo..lo+3 of v */
EC_INLINE int32x4_t ec_widen4_u8(uint8x16_t v, int quarter) {
    const uint16x8_t h = quarter < 2 ? vmovl_u8(vget_low_u8(v)) : vmovl_high_u8(v);
    return vreinterpretq_s32_u32(quarter % 2 ? vmovl_high_u16(h) : vmovl_u16(vget_low_u16(h)));
}
EC_INLINE int32x4_t ec_widen4_s8(int8x16_t v, int quarter) {
    const int16x8_t h = quarter < 2 ? vmovl_s8(vget_low_s8(v)) : vmovl_high_s8(v);
    return quarter % 2 ? vmovl_high_s16(h) : vmovl_s16(vget_low_s16(h));
}

/* Output (i, j) for one weight row j and rows i < MR (a constant after
 * inlining), q4_k / q5_k. Per block and row: the 8 sub-block sums come
 * out 4 to a vector (pairwise adds), are scaled in int32 and reduced. */
EC_INLINE void ec_gemm_k45_col(size_t k, size_t MR, const char *x, size_t xs, const uint8_t *w, float *y, size_t ldy,
                               size_t bb, int q5) {
    float acc[TILE_ROWS] = {0};
    for (size_t b = 0; b < k / 256; b++) {
        const uint8_t *blk = w + b * bb;
        const uint8x16_t scmn = ec_k_scales(blk + 4);
        const int32x4_t sc03 = ec_widen4_u8(scmn, 0), sc47 = ec_widen4_u8(scmn, 1);
        const int16x8_t mn = vreinterpretq_s16_u16(vmovl_high_u8(scmn));
        const float d = ec_f16_hw(blk), dmin = ec_f16_hw(blk + 2);
        const uint8_t *qs = q5 ? blk + 48 : blk + 16, *qh = q5 ? blk + 16 : NULL;
        int32x4_t part[TILE_ROWS][4]; /* per row: pairwise sums of sub-blocks 2c, 2c + 1 */
        for (int c = 0; c < 4; c++) {
            int8x16_t q[4];
            ec_k45_chunk(qs, qh, c, q);
            for (size_t i = 0; i < MR; i++) {
                const int8_t *xq = ((const ec_act_q8_256 *)(x + i * xs) + b)->q + 64 * c;
                const int32x4_t lo = ec_dot32(q[0], q[1], vld1q_s8(xq), vld1q_s8(xq + 16));
                const int32x4_t hi = ec_dot32(q[2], q[3], vld1q_s8(xq + 32), vld1q_s8(xq + 48));
                part[i][c] = vpaddq_s32(lo, hi);
            }
        }
        for (size_t i = 0; i < MR; i++) {
            const ec_act_q8_256 *xb = (const ec_act_q8_256 *)(x + i * xs) + b;
            const int32x4_t s03 = vpaddq_s32(part[i][0], part[i][1]), s47 = vpaddq_s32(part[i][2], part[i][3]);
            const int32_t isc = vaddvq_s32(vmlaq_s32(vmulq_s32(s03, sc03), s47, sc47));
            /* sum_s mn_s (bsums[2s] + bsums[2s+1]); a pair is at most 32 * 127 */
            const int16x8_t pairs = vpaddq_s16(vld1q_s16(xb->bsums), vld1q_s16(xb->bsums + 8));
            const int32_t imin = vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(pairs), vget_low_s16(mn)), pairs, mn));
            acc[i] += (xb->d * d) * (float)isc - (xb->d * dmin) * (float)imin;
        }
    }
    for (size_t i = 0; i < MR; i++) y[i * ldy] = acc[i];
}

/* The same for q6_k: chunk (h, p) gives the sums of groups 8h + p + 2s,
 * s < 4, in one vector, scaled by those groups' scales (gathered in that
 * order once per block). */
EC_INLINE void ec_gemm_q6k_col(size_t k, size_t MR, const char *x, size_t xs, const uint8_t *w, float *y,
                               size_t ldy, size_t bb, int unused) {
    (void)unused;
    static const uint8_t chunk_order[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
    float acc[TILE_ROWS] = {0};
    for (size_t b = 0; b < k / 256; b++) {
        const uint8_t *blk = w + b * bb;
        const int8x16_t sc = vqtbl1q_s8(vld1q_s8((const int8_t *)blk + 192), vld1q_u8(chunk_order));
        const float d = ec_f16_hw(blk + 208);
        int32x4_t isc[TILE_ROWS];
        for (size_t i = 0; i < MR; i++) isc[i] = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++)
            for (int p = 0; p < 2; p++) {
                int8x16_t q[4];
                ec_q6k_chunk(blk, h, p, q);
                const int32x4_t scv = ec_widen4_s8(sc, 2 * h + p);
                for (size_t i = 0; i < MR; i++) {
                    const int8_t *xq = ((const ec_act_q8_256 *)(x + i * xs) + b)->q + 128 * h + 16 * p;
                    const int32x4_t zero = vdupq_n_s32(0);
                    const int32x4_t d0 = ec_dot16(zero, q[0], vld1q_s8(xq)), d1 = ec_dot16(zero, q[1], vld1q_s8(xq + 32));
                    const int32x4_t d2 = ec_dot16(zero, q[2], vld1q_s8(xq + 64)), d3 = ec_dot16(zero, q[3], vld1q_s8(xq + 96));
                    isc[i] = vmlaq_s32(isc[i], ec_hsum4(d0, d1, d2, d3), scv);
                }
            }
        for (size_t i = 0; i < MR; i++) {
            const ec_act_q8_256 *xb = (const ec_act_q8_256 *)(x + i * xs) + b;
            acc[i] += (xb->d * d) * (float)vaddvq_s32(isc[i]);
        }
    }
    for (size_t i = 0; i < MR; i++) y[i * ldy] = acc[i];
}

typedef void (*ec_gemm_col_fn)(size_t k, size_t MR, const char *x, size_t xs, const uint8_t *w, float *y,
                               size_t ldy, size_t bb, int variant);

EC_INLINE void ec_gemm_k(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                         float *y, size_t ldy, size_t bb, ec_gemm_col_fn col, int variant) {
    for (size_t i0 = 0; i0 < mr; i0 += TILE_ROWS) {
        const char *xi = (const char *)x + i0 * xs;
        for (size_t j = 0; j < nr; j++) {
            const uint8_t *wj = (const uint8_t *)w + j * ws;
            float *yj = y + i0 * ldy + j;
            switch (mr - i0 < TILE_ROWS ? mr - i0 : TILE_ROWS) {
            case 1: col(k, 1, xi, xs, wj, yj, ldy, bb, variant); break;
            case 2: col(k, 2, xi, xs, wj, yj, ldy, bb, variant); break;
            case 3: col(k, 3, xi, xs, wj, yj, ldy, bb, variant); break;
            default: col(k, 4, xi, xs, wj, yj, ldy, bb, variant); break;
            }
        }
    }
}

#ifdef EC_QGEMM_NAME
#define EC_GEMM_K(type, bytes, col, variant)                                                             \
    void EC_QGEMM_NAME(type)(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,   \
                             size_t ws, float *y, size_t ldy) {                                         \
        ec_gemm_k(k, mr, nr, x, xs, w, ws, y, ldy, bytes, col, variant);                                \
    }

EC_GEMM_K(q4_k, 144, ec_gemm_k45_col, 0)
EC_GEMM_K(q5_k, 176, ec_gemm_k45_col, 1)
EC_GEMM_K(q6_k, 210, ec_gemm_q6k_col, 0)
#endif

#endif /* EDGECORE_QGEMM_NEON_H */
