/*
 * Paged-attention micro-kernels, NEON (csrc/common/attention.c is the
 * driver): the x86 tiers' structure on 4 lanes. Scores: tiles of up to 4
 * queries x 4 keys, one pairwise-add tree per tile. P.V: up to 8 queries x
 * 3-4 chunks of 4 head-dim lanes in registers over all keys, keys in order. Q8_0 rows
 * are dequantized in registers (vmovl_s8, times the block scale). f16 rows
 * are widened in registers (fcvtl); head-dim tails go through zero-padded
 * copies of exactly the remaining elements.
 */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "../../common/internal.h"
#include "vmath_neon.h"

#define EC_INLINE static inline __attribute__((always_inline))

/* Row formats (pertoken.h). A Q8_0 chunk of lanes never straddles a block:
 * head-dim offsets step by the vector width from 0, and 32 is a multiple of
 * it. Its values d * q are exact in float32 (8-bit q, 11-bit d). */
enum { F32, F16, Q8_0 };

EC_INLINE float32x4_t load_row(const void *row, size_t d, size_t n, const int fmt) {
    if (fmt == Q8_0) {
        const uint8_t *blk = (const uint8_t *)row + d / 32 * 34;
        uint16_t bits;
        memcpy(&bits, blk, sizeof bits);
        const float scale = vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(bits))), 0);
        int8_t buf[8] = {0};
        memcpy(buf, blk + 2 + d % 32, n >= 4 ? 4 : n);
        const int32x4_t q = vmovl_s16(vget_low_s16(vmovl_s8(vld1_s8(buf))));
        return vmulq_n_f32(vcvtq_f32_s32(q), scale);
    }
    if (fmt == F16) {
        const uint16_t *p = (const uint16_t *)row + d;
        if (n >= 4) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
        uint16_t buf[4] = {0, 0, 0, 0};
        memcpy(buf, p, n * sizeof *p);
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(buf)));
    }
    const float *p = (const float *)row + d;
    return n >= 4 ? vld1q_f32(p) : ec_load_partial_neon(p, n);
}

EC_INLINE float32x4_t load_f32(const float *p, size_t n) { return n >= 4 ? vld1q_f32(p) : ec_load_partial_neon(p, n); }

/* [sum a0, sum a1, sum a2, sum a3], each (l0 + l1) + (l2 + l3) */
EC_INLINE float32x4_t reduce4(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
    return vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
}

EC_INLINE void score_step(float32x4_t acc[4][4], const float *q, size_t hd, const void *const *k, size_t d,
                          size_t n, const int MR, const int fmt) {
    float32x4_t qv[4];
    for (int i = 0; i < MR; i++) qv[i] = load_f32(q + i * hd + d, n);
    for (int t = 0; t < 4; t++) {
        const float32x4_t kv = load_row(k[t], d, n, fmt);
        for (int i = 0; i < MR; i++) acc[i][t] = vfmaq_f32(acc[i][t], qv[i], kv);
    }
}

EC_INLINE void score_tile(const float *q, size_t hd, const void *const *rows, size_t valid, float *s, size_t ld,
                          const int MR, const int fmt) {
    const void *k[4];
    for (int t = 0; t < 4; t++) k[t] = rows[(size_t)t < valid ? t : 0]; /* spare keys recompute key 0 */
    float32x4_t acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int t = 0; t < 4; t++) acc[i][t] = vdupq_n_f32(0.0f);
    size_t d = 0;
    for (; d + 4 <= hd; d += 4) score_step(acc, q, hd, k, d, 4, MR, fmt);
    if (d < hd) score_step(acc, q, hd, k, d, hd - d, MR, fmt);
    for (int i = 0; i < MR; i++) {
        const float32x4_t r = reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        if (valid >= 4) vst1q_f32(s + i * ld, r);
        else ec_store_partial_neon(s + i * ld, r, valid);
    }
}

EC_INLINE void scores(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                      size_t ld, const int fmt) {
    for (size_t i = 0; i < nq; i += 4) {
        const size_t mr = nq - i < 4 ? nq - i : 4;
        for (size_t j = 0; j < nk; j += 4) {
            const size_t valid = nk - j < 4 ? nk - j : 4;
            float *sp = s + i * ld + j;
            const float *qp = q + i * hd;
            switch (mr) {
            case 4: score_tile(qp, hd, rows + j, valid, sp, ld, 4, fmt); break;
            case 3: score_tile(qp, hd, rows + j, valid, sp, ld, 3, fmt); break;
            case 2: score_tile(qp, hd, rows + j, valid, sp, ld, 2, fmt); break;
            default: score_tile(qp, hd, rows + j, valid, sp, ld, 1, fmt); break;
            }
        }
    }
}

EC_INLINE void pv_step(const float *p, size_t ld, const float *corr, const void *const *rows, size_t nk,
                       size_t hd, float *o, size_t d, size_t n, const int NG, const int fmt) {
    float32x4_t acc[8];
    for (int g = 0; g < NG; g++) acc[g] = vmulq_n_f32(load_f32(o + g * hd + d, n), corr[g]);
    for (size_t j = 0; j < nk; j++) {
        const float32x4_t v = load_row(rows[j], d, n, fmt);
        for (int g = 0; g < NG; g++) acc[g] = vfmaq_n_f32(acc[g], v, p[g * ld + j]);
    }
    for (int g = 0; g < NG; g++) {
        if (n >= 4) vst1q_f32(o + g * hd + d, acc[g]);
        else ec_store_partial_neon(o + g * hd + d, acc[g], n);
    }
}

/* CG full 4-lane chunks of NG queries' outputs held in registers across all
 * nk keys: each V chunk is loaded once per key. The same operations per
 * element as pv_step, in the same order. */
EC_INLINE void pv_block(const float *p, size_t ld, const float *corr, const void *const *rows, size_t nk,
                        size_t hd, float *o, size_t d, const int NG, const int CG, const int fmt) {
    float32x4_t acc[8][4];
    for (int g = 0; g < NG; g++)
        for (int c = 0; c < CG; c++) acc[g][c] = vmulq_n_f32(vld1q_f32(o + g * hd + d + 4 * c), corr[g]);
    for (size_t j = 0; j < nk; j++) {
        float32x4_t v[4];
        for (int c = 0; c < CG; c++) v[c] = load_row(rows[j], d + 4 * c, 4, fmt);
        for (int g = 0; g < NG; g++) {
            const float w = p[g * ld + j];
            for (int c = 0; c < CG; c++) acc[g][c] = vfmaq_n_f32(acc[g][c], v[c], w);
        }
    }
    for (int g = 0; g < NG; g++)
        for (int c = 0; c < CG; c++) vst1q_f32(o + g * hd + d + 4 * c, acc[g][c]);
}

EC_INLINE void pv_tile(const float *p, size_t ld, const float *corr, const void *const *rows, size_t nk,
                       size_t hd, float *o, const int NG, const int fmt) {
    const int CG = NG <= 5 ? 4 : 3; /* NG * CG accumulators + CG rows + 1 weight <= 32 registers */
    size_t d = 0;
    for (; d + 4 * (size_t)CG <= hd; d += 4 * (size_t)CG) pv_block(p, ld, corr, rows, nk, hd, o, d, NG, CG, fmt);
    for (; d + 4 <= hd; d += 4) pv_block(p, ld, corr, rows, nk, hd, o, d, NG, 1, fmt);
    if (d < hd) pv_step(p, ld, corr, rows, nk, hd, o, d, hd - d, NG, fmt);
}

EC_INLINE void pv(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows, size_t nk,
                  size_t hd, float *o, const int fmt) {
    for (size_t g = 0; g < ng; g += 8) {
        const float *pg = p + g * ld;
        float *og = o + g * hd;
        switch (ng - g < 8 ? ng - g : 8) {
        case 1: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 1, fmt); break;
        case 2: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 2, fmt); break;
        case 3: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 3, fmt); break;
        case 4: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 4, fmt); break;
        case 5: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 5, fmt); break;
        case 6: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 6, fmt); break;
        case 7: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 7, fmt); break;
        default: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 8, fmt); break;
        }
    }
}

void ec_attn_scores_f32_neon(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                             size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, F32);
}

void ec_attn_scores_f16_neon(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                             size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, F16);
}

void ec_attn_pv_f32_neon(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                         size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, F32);
}

void ec_attn_pv_f16_neon(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                         size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, F16);
}

/* lanes [0, n) of all-ones */
EC_INLINE uint32x4_t lane_mask(size_t n) {
    static const uint32_t ones[8] = {~0u, ~0u, ~0u, ~0u, 0, 0, 0, 0};
    return vld1q_u32(ones + 4 - (n > 4 ? 4 : n));
}

void ec_attn_scores_q8_0_neon(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd,
                                  float *s, size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, Q8_0);
}

void ec_attn_pv_q8_0_neon(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                              size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, Q8_0);
}

/* cap * tanh(x / cap), tanh(y) = sign(y) (1 - 2 / (exp(2 |y|) + 1)) */
EC_INLINE float32x4_t softcap4(float32x4_t x, float32x4_t cap, float32x4_t inv_cap) {
    const float32x4_t y = vmulq_f32(x, inv_cap);
    const float32x4_t e = ec_exp_neon(vmulq_n_f32(vabsq_f32(y), 2.0f));
    const float32x4_t t = vsubq_f32(vdupq_n_f32(1.0f), vdivq_f32(vdupq_n_f32(2.0f), vaddq_f32(e, vdupq_n_f32(1.0f))));
    const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(y), vdupq_n_u32(0x80000000u));
    return vmulq_f32(cap, vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(t), sign)));
}

float ec_attn_max_neon(float *s, size_t n, float softcap) {
    const float32x4_t cap = vdupq_n_f32(softcap), inv_cap = vdupq_n_f32(1.0f / softcap);
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    float32x4_t mx = ninf;
    uint32x4_t nan = vdupq_n_u32(0);
    for (size_t j = 0; j < n; j += 4) {
        const size_t cnt = n - j;
        const uint32x4_t live = lane_mask(cnt);
        float32x4_t v = load_f32(s + j, cnt);
        nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(v, v)));
        if (softcap > 0.0f) {
            v = softcap4(v, cap, inv_cap);
            if (cnt >= 4) vst1q_f32(s + j, v);
            else ec_store_partial_neon(s + j, v, cnt);
        }
        mx = vmaxq_f32(mx, vbslq_f32(live, v, ninf));
    }
    if (vmaxvq_u32(nan)) return NAN;
    return vmaxvq_f32(mx);
}

float ec_attn_expsum_neon(float *s, size_t n, float m) {
    const float32x4_t mv = vdupq_n_f32(m), cut = vdupq_n_f32(-87.0f);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (size_t j = 0; j < n; j += 4) {
        const size_t cnt = n - j;
        const float32x4_t x = vsubq_f32(load_f32(s + j, cnt), mv);
        const uint32x4_t keep = vandq_u32(vcgeq_f32(x, cut), lane_mask(cnt));
        const float32x4_t e = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(ec_exp_neon(x)), keep));
        if (cnt >= 4) vst1q_f32(s + j, e);
        else ec_store_partial_neon(s + j, e, cnt);
        acc = vaddq_f32(acc, e);
    }
    const float32x4_t p = vpaddq_f32(acc, acc);
    return vgetq_lane_f32(vpaddq_f32(p, p), 0);
}
