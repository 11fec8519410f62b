/*
 * Paged-attention micro-kernels, AVX-512 F/BW/DQ/VL (csrc/common/attention.c
 * is the driver): the avx2 tier's structure on 16 lanes. Scores: tiles of up
 * to 4 queries x 4 keys, reduced 512 -> 256 bits, then one hadd tree per
 * tile. P.V: up to 8 queries x 3-4 chunks of 16 head-dim lanes in
 * registers over all keys, keys in order. f16 rows are widened in registers, Q8_0 rows
 * dequantized in registers (vpmovsxbd, one scale broadcast per chunk); head-dim tails
 * are masked loads of exactly the remaining elements.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../../common/internal.h"
#include "vmath_avx512.h"

#define EC_INLINE static inline __attribute__((always_inline))

/* Row formats (pertoken.h). A Q8_0 chunk of lanes never straddles a block:
 * head-dim offsets step by the vector width from 0, and 32 is a multiple of
 * it. Its values d * q are exact in float32 (8-bit q, 11-bit d). */
enum { F32, F16, Q8_0 };

/* 16 Q8_0 elements from element d, lanes outside k zero */
EC_INLINE __m512 load_q8_0(const void *row, size_t d, __mmask16 k) {
    const uint8_t *blk = (const uint8_t *)row + d / 32 * 34;
    uint16_t bits;
    memcpy(&bits, blk, sizeof bits);
    const __m512 scale = _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
    /* AVX-512F only (no BW/VL byte masks): the masked case (never reached
     * with whole blocks) goes through a zeroed copy */
    __m128i bytes;
    if (k == 0xffff) {
        bytes = _mm_loadu_si128((const __m128i *)(blk + 2 + d % 32));
    } else {
        int8_t buf[16] = {0};
        memcpy(buf, blk + 2 + d % 32, (size_t)__builtin_popcount(k));
        bytes = _mm_loadu_si128((const __m128i *)buf);
    }
    const __m512i q = _mm512_cvtepi8_epi32(bytes);
    return _mm512_mul_ps(scale, _mm512_cvtepi32_ps(q));
}

EC_INLINE __m512 load_row(const void *row, size_t d, __mmask16 k, const int fmt) {
    if (fmt == Q8_0) return load_q8_0(row, d, k);
    if (fmt == F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t *)row + d));
    return _mm512_maskz_loadu_ps(k, (const float *)row + d);
}

EC_INLINE __m512 load_row_full(const void *row, size_t d, const int fmt) {
    if (fmt == Q8_0) return load_q8_0(row, d, 0xffff);
    if (fmt == F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + d)));
    return _mm512_loadu_ps((const float *)row + d);
}

/* [sum a0, sum a1, sum a2, sum a3]: halves added, then the avx2 hadd tree */
EC_INLINE __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
#define EC_HALVES(a) _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1))
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(EC_HALVES(a0), EC_HALVES(a1)),
                                    _mm256_hadd_ps(EC_HALVES(a2), EC_HALVES(a3)));
#undef EC_HALVES
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

EC_INLINE void score_step(__m512 acc[4][4], const float *q, size_t hd, const void *const *k, size_t d,
                          __mmask16 mask, const int full, const int MR, const int fmt) {
    __m512 qv[4];
    for (int i = 0; i < MR; i++) qv[i] = full ? _mm512_loadu_ps(q + i * hd + d) : _mm512_maskz_loadu_ps(mask, q + i * hd + d);
    for (int t = 0; t < 4; t++) {
        const __m512 kv = full ? load_row_full(k[t], d, fmt) : load_row(k[t], d, mask, fmt);
        for (int i = 0; i < MR; i++) acc[i][t] = _mm512_fmadd_ps(qv[i], kv, acc[i][t]);
    }
}

EC_INLINE void score_tile(const float *q, size_t hd, const void *const *rows, size_t valid, float *s, size_t ld,
                          const int MR, const int fmt) {
    const void *k[4];
    for (int t = 0; t < 4; t++) k[t] = rows[(size_t)t < valid ? t : 0]; /* spare keys recompute key 0 */
    __m512 acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int t = 0; t < 4; t++) acc[i][t] = _mm512_setzero_ps();
    size_t d = 0;
    for (; d + 16 <= hd; d += 16) score_step(acc, q, hd, k, d, 0xffff, 1, MR, fmt);
    if (d < hd) score_step(acc, q, hd, k, d, ec_mask_avx512(hd - d), 0, MR, fmt);
    for (int i = 0; i < MR; i++) {
        const __m128 r = reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        _mm_mask_storeu_ps(s + i * ld, (__mmask8)((1u << (valid < 4 ? valid : 4)) - 1u), r);
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
                       size_t hd, float *o, size_t d, __mmask16 mask, const int full, const int NG, const int fmt) {
    __m512 acc[8];
    for (int g = 0; g < NG; g++) {
        const __m512 ov = full ? _mm512_loadu_ps(o + g * hd + d) : _mm512_maskz_loadu_ps(mask, o + g * hd + d);
        acc[g] = _mm512_mul_ps(ov, _mm512_set1_ps(corr[g]));
    }
    for (size_t j = 0; j < nk; j++) {
        const __m512 v = full ? load_row_full(rows[j], d, fmt) : load_row(rows[j], d, mask, fmt);
        for (int g = 0; g < NG; g++) acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(p[g * ld + j]), v, acc[g]);
    }
    for (int g = 0; g < NG; g++) _mm512_mask_storeu_ps(o + g * hd + d, mask, acc[g]);
}

/* CG full 16-lane chunks of NG queries' outputs held in registers across
 * all nk keys: each V chunk is loaded once per key, each weight broadcast
 * once per key and chunk group. The same operations per element as
 * pv_step, in the same order. */
EC_INLINE void pv_block(const float *p, size_t ld, const float *corr, const void *const *rows, size_t nk,
                        size_t hd, float *o, size_t d, const int NG, const int CG, const int fmt) {
    __m512 acc[8][4];
    for (int g = 0; g < NG; g++)
        for (int c = 0; c < CG; c++)
            acc[g][c] = _mm512_mul_ps(_mm512_loadu_ps(o + g * hd + d + 16 * c), _mm512_set1_ps(corr[g]));
    for (size_t j = 0; j < nk; j++) {
        __m512 v[4];
        for (int c = 0; c < CG; c++) v[c] = load_row_full(rows[j], d + 16 * c, fmt);
        for (int g = 0; g < NG; g++) {
            const __m512 w = _mm512_set1_ps(p[g * ld + j]);
            for (int c = 0; c < CG; c++) acc[g][c] = _mm512_fmadd_ps(w, v[c], acc[g][c]);
        }
    }
    for (int g = 0; g < NG; g++)
        for (int c = 0; c < CG; c++) _mm512_storeu_ps(o + g * hd + d + 16 * c, acc[g][c]);
}

EC_INLINE void pv_tile(const float *p, size_t ld, const float *corr, const void *const *rows, size_t nk,
                       size_t hd, float *o, const int NG, const int fmt) {
    const int CG = NG <= 6 ? 4 : 3; /* NG * CG accumulators + CG rows + 1 weight <= 32 registers */
    size_t d = 0;
    for (; d + 16 * (size_t)CG <= hd; d += 16 * (size_t)CG) pv_block(p, ld, corr, rows, nk, hd, o, d, NG, CG, fmt);
    for (; d + 16 <= hd; d += 16) pv_block(p, ld, corr, rows, nk, hd, o, d, NG, 1, fmt);
    if (d < hd) pv_step(p, ld, corr, rows, nk, hd, o, d, ec_mask_avx512(hd - d), 0, NG, fmt);
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

void ec_attn_scores_f32_avx512(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                               size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, F32);
}

void ec_attn_scores_f16_avx512(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                               size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, F16);
}

void ec_attn_pv_f32_avx512(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                           size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, F32);
}

void ec_attn_pv_f16_avx512(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                           size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, F16);
}

void ec_attn_scores_q8_0_avx512(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd,
                                    float *s, size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, Q8_0);
}

void ec_attn_pv_q8_0_avx512(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                                size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, Q8_0);
}

/* cap * tanh(x / cap), tanh(y) = sign(y) (1 - 2 / (exp(2 |y|) + 1)) */
EC_INLINE __m512 softcap16(__m512 x, __m512 cap, __m512 inv_cap) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512 y = _mm512_mul_ps(x, inv_cap);
    const __m512i yi = _mm512_castps_si512(y);
    const __m512 ay = _mm512_castsi512_ps(_mm512_andnot_si512(sign, yi));
    const __m512 e = ec_exp_avx512(_mm512_mul_ps(_mm512_set1_ps(2.0f), ay));
    const __m512 t = _mm512_sub_ps(_mm512_set1_ps(1.0f),
                                   _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    const __m512i st = _mm512_or_si512(_mm512_castps_si512(t), _mm512_and_si512(sign, yi));
    return _mm512_mul_ps(cap, _mm512_castsi512_ps(st));
}

float ec_attn_max_avx512(float *s, size_t n, float softcap) {
    const __m512 cap = _mm512_set1_ps(softcap), inv_cap = _mm512_set1_ps(1.0f / softcap);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf;
    __mmask16 nan = 0;
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 k = ec_mask_avx512(n - j);
        __m512 v = _mm512_mask_loadu_ps(ninf, k, s + j);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        if (softcap > 0.0f) {
            v = _mm512_mask_mov_ps(ninf, k, softcap16(v, cap, inv_cap));
            _mm512_mask_storeu_ps(s + j, k, v);
        }
        mx = _mm512_max_ps(mx, v);
    }
    if (nan) return NAN;
    __m256 h = _mm256_max_ps(_mm512_castps512_ps256(mx), _mm512_extractf32x8_ps(mx, 1));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

float ec_attn_expsum_avx512(float *s, size_t n, float m) {
    const __m512 mv = _mm512_set1_ps(m), cut = _mm512_set1_ps(-87.0f);
    __m512 acc = _mm512_setzero_ps();
    for (size_t j = 0; j < n; j += 16) {
        const __mmask16 k = ec_mask_avx512(n - j);
        const __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), mv);
        const __mmask16 keep = _mm512_mask_cmp_ps_mask(k, x, cut, _CMP_GE_OQ);
        const __m512 e = _mm512_maskz_mov_ps(keep, ec_exp_avx512(x));
        _mm512_mask_storeu_ps(s + j, k, e);
        acc = _mm512_add_ps(acc, e);
    }
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}
