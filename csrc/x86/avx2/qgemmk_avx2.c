/*
 * gemm micro-kernels for the K-quants (q4_k, q5_k, q6_k), AVX2. Bit for bit
 * what the scalar kernels give.
 *
 * Per weight row and 256-element super-block, the weights are decoded once
 * (to unsigned bytes and 16-bit sub-block scales) and reused by every
 * activation row of the tile. Everything up to the super-block's float
 * update is an exact integer sum, so its order is free:
 *
 *   q4_k, q5_k: isc = sum_j sc_j isum_j, imin = sum_j m_j xsum_j
 *               acc += (dx d) isc - (dx dmin) imin
 *   q6_k:       isc = sum_g sc_g (dot_g - 32 xsum_g)
 *               acc += (dx d) isc
 *
 * and the float update is the scalar kernel's, one rounding per operation
 * (no FMA; setup.py builds with -ffp-contract=off). Each output is computed
 * alone over the super-blocks in order, so a value does not depend on mr,
 * nr or the other rows of the tile.
 *
 * Ranges: maddubs pairs are at most 2 * 63 * 127 < 2^15; a q6_k sub-block
 * term |sc (dot - 32 xsum)| <= 128 * 16 * 63 * 127 and 16 of them fit int32.
 */
#include <immintrin.h>

#include "../../common/qblocks.h"
#include "../../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define MR 8

/* (sum of a's lanes, sum of b's lanes) */
EC_INLINE void hsum2_epi32(__m256i a, __m256i b, int32_t *sa, int32_t *sb) {
    const __m256i h = _mm256_hadd_epi32(a, b); /* a01 a23 b01 b23 | a45 a67 b45 b67 */
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_hadd_epi32(s, s); /* a b a b */
    *sa = _mm_cvtsi128_si32(s);
    *sb = _mm_extract_epi32(s, 1);
}

/* Two f16 at p, p + 2, widened by F16C (exact, as ec_read_f16). */
EC_INLINE __m128 read_f16x2(const uint8_t *p) { return _mm_cvtph_ps(_mm_cvtsi32_si128((int)ec_read_u32(p))); }

/* ---- q4_k, q5_k ----------------------------------------------------------- */

typedef struct {
    float d, dmin;
    __m256i u[8];      /* sub-block j's 32 unsigned q */
    __m256i sc[8];     /* sc_j in every int16 */
    __m256i mins;      /* m_j in int16 lanes 2j, 2j + 1 (pairs with the 16 xsums) */
} kblock45;

/* The 12 scale bytes as 8 scales and 8 mins (ec_unpack_k_scales, four bytes at a time). */
EC_INLINE void k_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    const uint32_t a0 = ec_read_u32(s), a1 = ec_read_u32(s + 4), a2 = ec_read_u32(s + 8);
    const uint32_t sc_lo = a0 & 0x3f3f3f3fu, mn_lo = a1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (a2 & 0x0f0f0f0fu) | (((a0 >> 6) & 0x03030303u) << 4);
    const uint32_t mn_hi = ((a2 >> 4) & 0x0f0f0f0fu) | (((a1 >> 6) & 0x03030303u) << 4);
    memcpy(sc, &sc_lo, 4), memcpy(sc + 4, &sc_hi, 4);
    memcpy(mn, &mn_lo, 4), memcpy(mn + 4, &mn_hi, 4);
}

EC_INLINE void decode45(const uint8_t *b, int five, kblock45 *k) {
    const __m128 dd = read_f16x2(b);
    k->d = _mm_cvtss_f32(dd);
    k->dmin = _mm_cvtss_f32(_mm_movehdup_ps(dd));
    uint8_t sc[8], mn[8];
    k_scales(b + 4, sc, mn);
    /* sc_j to every int16 lane: the 8 scales widened once, then one byte shuffle each */
    const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
    for (int j = 0; j < 8; j++) k->sc[j] = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
    const __m128i m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)mn));
    k->mins = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const uint8_t *qs = b + (five ? 48 : 16);
    const __m256i qh = five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
        if (five) {
            /* bit 2c (2c + 1) of qh[l] is bit 4 of element l of sub-block 2c (2c + 1) */
            const __m256i one = _mm256_set1_epi8(1);
            const __m256i b_lo = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one);
            const __m256i b_hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(b_lo, 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(b_hi, 4));
        }
        k->u[2 * c] = lo;
        k->u[2 * c + 1] = hi;
    }
}

EC_INLINE float dot45(const kblock45 *k, const ec_act_q8_256 *xb) {
    __m256i acc = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
        const __m256i xq = _mm256_loadu_si256((const __m256i *)(xb->q + 32 * j));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(k->u[j], xq), k->sc[j]));
    }
    const __m256i bs = _mm256_loadu_si256((const __m256i *)xb->bsums);
    int32_t isc, imin;
    hsum2_epi32(acc, _mm256_madd_epi16(bs, k->mins), &isc, &imin);
    return (xb->d * k->d) * (float)isc - (xb->d * k->dmin) * (float)imin;
}

EC_INLINE void gemm45(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                      float *y, size_t ldy, size_t block_bytes, int five) {
    for (size_t j = 0; j < nr; j++) {
        const uint8_t *wr = (const uint8_t *)w + j * ws;
        float acc[MR] = {0};
        for (size_t b = 0; b < k / 256; b++) {
            kblock45 kb;
            decode45(wr + b * block_bytes, five, &kb);
            for (size_t i = 0; i < mr; i++)
                acc[i] += dot45(&kb, (const ec_act_q8_256 *)((const char *)x + i * xs) + b);
        }
        for (size_t i = 0; i < mr; i++) y[i * ldy + j] = acc[i];
    }
}

void ec_qgemm_q4_k_avx2(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                        float *y, size_t ldy) {
    if (mr == 1) gemm45(k, 1, nr, x, xs, w, ws, y, ldy, 144, 0);
    else gemm45(k, mr, nr, x, xs, w, ws, y, ldy, 144, 0);
}

void ec_qgemm_q5_k_avx2(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                        float *y, size_t ldy) {
    if (mr == 1) gemm45(k, 1, nr, x, xs, w, ws, y, ldy, 176, 1);
    else gemm45(k, mr, nr, x, xs, w, ws, y, ldy, 176, 1);
}

/* ---- q6_k ----------------------------------------------------------------- */

typedef struct {
    float d;
    __m256i u[8];   /* elements 32 t .. 32 t + 31, unsigned (q + 32) */
    __m256i sc[8];  /* sc of the chunk's two groups: low lane group 2t, high lane 2t + 1 */
    __m256i sc16;   /* the 16 group scales as int16 (pairs with the 16 xsums) */
} kblock6;

EC_INLINE void decode6(const uint8_t *b, kblock6 *k) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    uint16_t dh; /* the block's last two bytes: a 32-bit read would pass its end */
    memcpy(&dh, b + 208, 2);
    k->d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(dh)));
    const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h + 32));
        const __m256i hb = _mm256_loadu_si256((const __m256i *)(qh + 32 * h));
        /* top two bits of sub-chunk s: bits 2s, 2s + 1 of qh, moved to bits 4, 5 */
        const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(hb, 4), top2);
        const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(hb, 2), top2);
        const __m256i h2 = _mm256_and_si256(hb, top2);
        const __m256i h3 = _mm256_and_si256(_mm256_srli_epi16(hb, 2), top2);
        k->u[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, low4), h0);
        k->u[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, low4), h1);
        k->u[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), h2);
        k->u[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4), h3);
    }
    k->sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
    /* chunk t: int16 sc[2t] in the low lane, sc[2t + 1] in the high lane. Both
     * lanes of `half` hold groups 0-7 (t < 4) or 8-15, then one byte shuffle */
    for (int t = 0; t < 8; t++) {
        const __m256i half = (t < 4 ? _mm256_permute4x64_epi64(k->sc16, _MM_SHUFFLE(1, 0, 1, 0))
                                         : _mm256_permute4x64_epi64(k->sc16, _MM_SHUFFLE(3, 2, 3, 2)));
        const short lo = (short)(0x0100 + 0x0202 * (2 * (t & 3))), hi = (short)(lo + 0x0202);
        k->sc[t] = _mm256_shuffle_epi8(half, _mm256_setr_epi16(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi,
                                                               hi, hi));
    }
}

EC_INLINE float dot6(const kblock6 *k, const ec_act_q8_256 *xb) {
    __m256i acc = _mm256_setzero_si256();
    for (int t = 0; t < 8; t++) {
        const __m256i xq = _mm256_loadu_si256((const __m256i *)(xb->q + 32 * t));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(k->u[t], xq), k->sc[t]));
    }
    const __m256i bs = _mm256_loadu_si256((const __m256i *)xb->bsums);
    int32_t dots, xsc;
    hsum2_epi32(acc, _mm256_madd_epi16(bs, k->sc16), &dots, &xsc);
    const int32_t isc = dots - 32 * xsc;
    return (xb->d * k->d) * (float)isc;
}

EC_INLINE void gemm6(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                     float *y, size_t ldy) {
    for (size_t j = 0; j < nr; j++) {
        const uint8_t *wr = (const uint8_t *)w + j * ws;
        float acc[MR] = {0};
        for (size_t b = 0; b < k / 256; b++) {
            kblock6 kb;
            decode6(wr + b * 210, &kb);
            for (size_t i = 0; i < mr; i++) acc[i] += dot6(&kb, (const ec_act_q8_256 *)((const char *)x + i * xs) + b);
        }
        for (size_t i = 0; i < mr; i++) y[i * ldy + j] = acc[i];
    }
}

void ec_qgemm_q6_k_avx2(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                        float *y, size_t ldy) {
    if (mr == 1) gemm6(k, 1, nr, x, xs, w, ws, y, ldy);
    else gemm6(k, mr, nr, x, xs, w, ws, y, ldy);
}
