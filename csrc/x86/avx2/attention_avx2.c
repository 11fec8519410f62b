/*
 * Paged-attention micro-kernels, AVX2 + FMA + F16C (csrc/common/attention.c
 * is the driver). f16 K/V rows are widened in registers (vcvtph2ps), Q8_0
 * rows dequantized in registers (vpmovsxbd, one scale broadcast per chunk).
 *
 * Scores: tiles of up to 3 queries x 4 keys, 8-lane accumulators along the
 * head dim, one hadd tree per tile; each (query, key) pair gets the same
 * arithmetic whatever its place in the tile. P.V: up to 6 queries x 2-4
 * chunks of 8 head-dim lanes in registers over all keys, keys in order.
 * Head-dim tails use masked loads (f16: a zero-padded copy), so no row is
 * read past its end.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../../common/internal.h"
#include "vmath_avx2.h"

#define EC_INLINE static inline __attribute__((always_inline))

/* 8 elements of a K/V row from element d; `n` < 8 loads n and zeros. */
/* Row formats (pertoken.h). A Q8_0 chunk of lanes never straddles a block:
 * head-dim offsets step by the vector width from 0, and 32 is a multiple of
 * it. Its values d * q are exact in float32 (8-bit q, 11-bit d). */
enum { F32, F16, Q8_0 };

EC_INLINE __m256 load_row(const void *row, size_t d, size_t n, const int fmt) {
    if (fmt == Q8_0) {
        const uint8_t *blk = (const uint8_t *)row + d / 32 * 34;
        uint16_t bits;
        memcpy(&bits, blk, sizeof bits);
        const __m256 scale = _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
        int64_t q8 = 0;
        memcpy(&q8, blk + 2 + d % 32, n >= 8 ? 8 : n);
        const __m256i q = _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(q8));
        return _mm256_mul_ps(scale, _mm256_cvtepi32_ps(q));
    }
    if (fmt == F16) {
        const uint16_t *p = (const uint16_t *)row + d;
        if (n >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
        uint16_t buf[8] = {0};
        memcpy(buf, p, n * sizeof *p);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)buf));
    }
    const float *p = (const float *)row + d;
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, ec_mask_avx2(n));
}

EC_INLINE __m256 load_f32(const float *p, size_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, ec_mask_avx2(n));
}

/* [sum a0, sum a1, sum a2, sum a3], each ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)) */
EC_INLINE __m128 reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* acc[i][t] += q_i[d .. d + n) * K_t[d .. d + n) lane-wise (n <= 8) */
EC_INLINE void score_step(__m256 acc[3][4], const float *q, size_t hd, const void *const *k, size_t d, size_t n,
                          const int MR, const int fmt) {
    __m256 qv[3];
    for (int i = 0; i < MR; i++) qv[i] = load_f32(q + i * hd + d, n);
    for (int t = 0; t < 4; t++) {
        const __m256 kv = load_row(k[t], d, n, fmt);
        for (int i = 0; i < MR; i++) acc[i][t] = _mm256_fmadd_ps(qv[i], kv, acc[i][t]);
    }
}

EC_INLINE void score_tile(const float *q, size_t hd, const void *const *rows, size_t valid, float *s, size_t ld,
                          const int MR, const int fmt) {
    const void *k[4];
    for (int t = 0; t < 4; t++) k[t] = rows[(size_t)t < valid ? t : 0]; /* spare keys recompute key 0 */
    __m256 acc[3][4];
    for (int i = 0; i < MR; i++)
        for (int t = 0; t < 4; t++) acc[i][t] = _mm256_setzero_ps();
    size_t d = 0;
    for (; d + 8 <= hd; d += 8) score_step(acc, q, hd, k, d, 8, MR, fmt);
    if (d < hd) score_step(acc, q, hd, k, d, hd - d, MR, fmt);
    for (int i = 0; i < MR; i++) {
        const __m128 r = reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        if (valid >= 4) {
            _mm_storeu_ps(s + i * ld, r);
        } else {
            float buf[4];
            _mm_storeu_ps(buf, r);
            for (size_t t = 0; t < valid; t++) s[i * ld + t] = buf[t];
        }
    }
}

EC_INLINE void scores(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                      size_t ld, const int fmt) {
    for (size_t i = 0; i < nq; i += 3) {
        const size_t mr = nq - i < 3 ? nq - i : 3;
        for (size_t j = 0; j < nk; j += 4) {
            const size_t valid = nk - j < 4 ? nk - j : 4;
            float *sp = s + i * ld + j;
            const float *qp = q + i * hd;
            if (mr == 3) score_tile(qp, hd, rows + j, valid, sp, ld, 3, fmt);
            else if (mr == 2) score_tile(qp, hd, rows + j, valid, sp, ld, 2, fmt);
            else score_tile(qp, hd, rows + j, valid, sp, ld, 1, fmt);
        }
    }
}

/* o_g[d .. d + n) = o_g * corr_g + sum_j p_g[j] V_j[d .. d + n) (n <= 8) */
EC_INLINE void pv_step(const float *p, size_t ld, const float *corr, const void *const *rows, size_t nk,
                       size_t hd, float *o, size_t d, size_t n, const int NG, const int fmt) {
    __m256 acc[6];
    for (int g = 0; g < NG; g++) acc[g] = _mm256_mul_ps(load_f32(o + g * hd + d, n), _mm256_set1_ps(corr[g]));
    for (size_t j = 0; j < nk; j++) {
        const __m256 v = load_row(rows[j], d, n, fmt);
        for (int g = 0; g < NG; g++) acc[g] = _mm256_fmadd_ps(_mm256_broadcast_ss(p + g * ld + j), v, acc[g]);
    }
    for (int g = 0; g < NG; g++) {
        if (n >= 8) _mm256_storeu_ps(o + g * hd + d, acc[g]);
        else _mm256_maskstore_ps(o + g * hd + d, ec_mask_avx2(n), acc[g]);
    }
}

/* CG full 8-lane chunks of NG queries' outputs held in registers across all
 * nk keys: each V chunk is loaded once per key, each weight broadcast once
 * per key and chunk group. The same operations per element as pv_step, in
 * the same order. */
EC_INLINE void pv_block(const float *p, size_t ld, const float *corr, const void *const *rows, size_t nk,
                        size_t hd, float *o, size_t d, const int NG, const int CG, const int fmt) {
    __m256 acc[6][4];
    for (int g = 0; g < NG; g++)
        for (int c = 0; c < CG; c++)
            acc[g][c] = _mm256_mul_ps(_mm256_loadu_ps(o + g * hd + d + 8 * c), _mm256_set1_ps(corr[g]));
    for (size_t j = 0; j < nk; j++) {
        __m256 v[4];
        for (int c = 0; c < CG; c++) v[c] = load_row(rows[j], d + 8 * c, 8, fmt);
        for (int g = 0; g < NG; g++) {
            const __m256 w = _mm256_broadcast_ss(p + g * ld + j);
            for (int c = 0; c < CG; c++) acc[g][c] = _mm256_fmadd_ps(w, v[c], acc[g][c]);
        }
    }
    for (int g = 0; g < NG; g++)
        for (int c = 0; c < CG; c++) _mm256_storeu_ps(o + g * hd + d + 8 * c, acc[g][c]);
}

EC_INLINE void pv_tile(const float *p, size_t ld, const float *corr, const void *const *rows, size_t nk,
                       size_t hd, float *o, const int NG, const int fmt) {
    const int CG = NG <= 2 ? 4 : 2; /* NG * CG accumulators + CG rows + 1 weight <= 16 registers */
    size_t d = 0;
    for (; d + 8 * (size_t)CG <= hd; d += 8 * (size_t)CG) pv_block(p, ld, corr, rows, nk, hd, o, d, NG, CG, fmt);
    for (; d + 8 <= hd; d += 8) pv_block(p, ld, corr, rows, nk, hd, o, d, NG, 1, fmt);
    if (d < hd) pv_step(p, ld, corr, rows, nk, hd, o, d, hd - d, NG, fmt);
}

EC_INLINE void pv(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows, size_t nk,
                  size_t hd, float *o, const int fmt) {
    for (size_t g = 0; g < ng; g += 6) {
        const float *pg = p + g * ld;
        float *og = o + g * hd;
        switch (ng - g < 6 ? ng - g : 6) {
        case 1: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 1, fmt); break;
        case 2: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 2, fmt); break;
        case 3: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 3, fmt); break;
        case 4: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 4, fmt); break;
        case 5: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 5, fmt); break;
        default: pv_tile(pg, ld, corr + g, rows, nk, hd, og, 6, fmt); break;
        }
    }
}

void ec_attn_scores_f32_avx2(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                             size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, F32);
}

void ec_attn_scores_f16_avx2(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd, float *s,
                             size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, F16);
}

void ec_attn_pv_f32_avx2(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                         size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, F32);
}

void ec_attn_pv_f16_avx2(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                         size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, F16);
}

void ec_attn_scores_q8_0_avx2(const float *q, size_t nq, const void *const *rows, size_t nk, size_t hd,
                                  float *s, size_t ld) {
    scores(q, nq, rows, nk, hd, s, ld, Q8_0);
}

void ec_attn_pv_q8_0_avx2(const float *p, size_t ld, size_t ng, const float *corr, const void *const *rows,
                              size_t nk, size_t hd, float *o) {
    pv(p, ld, ng, corr, rows, nk, hd, o, Q8_0);
}

/* cap * tanh(x / cap), tanh(y) = sign(y) (1 - 2 / (exp(2 |y|) + 1)) */
EC_INLINE __m256 softcap8(__m256 x, __m256 cap, __m256 inv_cap) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 y = _mm256_mul_ps(x, inv_cap);
    const __m256 e = ec_exp_avx2(_mm256_mul_ps(_mm256_set1_ps(2.0f), _mm256_andnot_ps(sign, y)));
    const __m256 t = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                                   _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    return _mm256_mul_ps(cap, _mm256_or_ps(t, _mm256_and_ps(sign, y)));
}

float ec_attn_max_avx2(float *s, size_t n, float softcap) {
    const __m256 cap = _mm256_set1_ps(softcap), inv_cap = _mm256_set1_ps(1.0f / softcap);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf, nan = _mm256_setzero_ps();
    for (size_t j = 0; j < n; j += 8) {
        const __m256i mask = ec_mask_avx2(n - j);
        __m256 v = load_f32(s + j, n - j);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        if (softcap > 0.0f) {
            v = softcap8(v, cap, inv_cap);
            _mm256_maskstore_ps(s + j, mask, v);
        }
        mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, v, _mm256_castsi256_ps(mask)));
    }
    if (_mm256_movemask_ps(nan)) return NAN;
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

float ec_attn_expsum_avx2(float *s, size_t n, float m) {
    const __m256 mv = _mm256_set1_ps(m), cut = _mm256_set1_ps(-87.0f);
    __m256 acc = _mm256_setzero_ps();
    for (size_t j = 0; j < n; j += 8) {
        const __m256i mask = ec_mask_avx2(n - j);
        const __m256 x = _mm256_sub_ps(load_f32(s + j, n - j), mv);
        const __m256 keep = _mm256_and_ps(_mm256_cmp_ps(x, cut, _CMP_GE_OQ), _mm256_castsi256_ps(mask));
        const __m256 e = _mm256_and_ps(ec_exp_avx2(x), keep);
        _mm256_maskstore_ps(s + j, mask, e);
        acc = _mm256_add_ps(acc, e);
    }
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}
