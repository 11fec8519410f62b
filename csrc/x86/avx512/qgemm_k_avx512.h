/*
 * What the avx512 k-quant kernels share (the plain group-order ones,
 * qgemm_k_avx512.c, and the VNNI column-order ones,
 * vnni/qgemm_k_avx512_vnni.c): for q4_k/q5_k the super-block header of 16
 * columns unpacked in column order and the per-row float work on the exact
 * integer sums, in the scalar kernel's order; for q6_k the scale d and the
 * rebuilt 6-bit codes. Include after qgemm_avx512.h.
 */
#ifndef EDGECORE_QGEMM_K_AVX512_H
#define EDGECORE_QGEMM_K_AVX512_H

/* d, dmin as float; the 6-bit scales 0-3 (sc_lo) and 4-7 (sc_hi), one per
 * byte of each column's dword; the mins as int16 pairs (m0, m2), (m1, m3),
 * (m4, m6), (m5, m7) per dword, for vpmaddwd with x's paired block sums */
typedef struct {
    __m512 d, dmin;
    __m512i sc_lo, sc_hi, m02, m13, m46, m57;
} k45_header;

EC_INLINE void k45_unpack(const uint8_t *const *p, size_t off, k45_header *h) {
    const __m512i six = _mm512_set1_epi32(0x3F3F3F3F), top2 = _mm512_set1_epi32(0x30303030);
    const __m512i low4 = _mm512_set1_epi32(0x0F0F0F0F), even16 = _mm512_set1_epi32(0x00FF00FF);
    __m512i g[4], t[4];
    for (int r = 0; r < 4; r++) g[r] = load_group(p, r, off);
    transpose_dwords(g, t); /* d|dmin, scale bytes 0-3, 4-7, 8-11 */
    h->d = f16_low(t[0]);
    h->dmin = f16_high(t[0]);
    h->sc_lo = _mm512_and_si512(t[1], six);
    h->sc_hi = _mm512_or_si512(_mm512_and_si512(t[3], low4), _mm512_and_si512(_mm512_srli_epi32(t[1], 2), top2));
    const __m512i mn_lo = _mm512_and_si512(t[2], six);
    const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(t[3], 4), low4),
                                          _mm512_and_si512(_mm512_srli_epi32(t[2], 2), top2));
    h->m02 = _mm512_and_si512(mn_lo, even16);
    h->m13 = _mm512_and_si512(_mm512_srli_epi32(mn_lo, 8), even16);
    h->m46 = _mm512_and_si512(mn_hi, even16);
    h->m57 = _mm512_and_si512(_mm512_srli_epi32(mn_hi, 8), even16);
}

/* acc += (dx d) isc - (dx dmin) imin for one x row, imin = sum_j m_j xsum_j */
EC_INLINE __m512 k45_row(const k45_header *h, __m512i isc, const ec_act_q8_256 *xb, __m512 acc) {
    int xsum[8];
    for (int j = 0; j < 8; j++) xsum[j] = xb->bsums[2 * j] + xb->bsums[2 * j + 1];
#define PAIR16(a, c) _mm512_set1_epi32((int)(((uint32_t)(uint16_t)xsum[a]) | ((uint32_t)(uint16_t)xsum[c] << 16)))
    __m512i imin = _mm512_madd_epi16(h->m02, PAIR16(0, 2));
    imin = _mm512_add_epi32(imin, _mm512_madd_epi16(h->m13, PAIR16(1, 3)));
    imin = _mm512_add_epi32(imin, _mm512_madd_epi16(h->m46, PAIR16(4, 6)));
    imin = _mm512_add_epi32(imin, _mm512_madd_epi16(h->m57, PAIR16(5, 7)));
#undef PAIR16
    const __m512 xd = _mm512_set1_ps(xb->d);
    const __m512 v = _mm512_sub_ps(_mm512_mul_ps(_mm512_mul_ps(xd, h->d), _mm512_cvtepi32_ps(isc)),
                                   _mm512_mul_ps(_mm512_mul_ps(xd, h->dmin), _mm512_cvtepi32_ps(imin)));
    return _mm512_add_ps(acc, v);
}

/* q6_k: the 16 columns' d (bytes 208-209: the high half of dword 3 of the
 * 16 bytes at 194) as float */
EC_INLINE __m512 q6k_d(const uint8_t *const *p, size_t off) {
    __m512i g[4];
    for (int r = 0; r < 4; r++) g[r] = load_group(p, r, off + 194);
    return f16_high(_mm512_unpackhi_epi64(_mm512_unpackhi_epi32(g[0], g[1]), _mm512_unpackhi_epi32(g[2], g[3])));
}

/* q6_k: stream s (0..3) of the codes u = q + 32 held by the low bits a
 * (ql[l]), bq (ql[l + 32]) and the high bits hb (qh[l]) of one half: s = 0
 * low nibbles of a, 1 of bq, 2 high nibbles of a, 3 of bq, each with bits
 * 2s, 2s + 1 of hb on top. Bytewise, in whatever order the lanes hold. */
EC_INLINE __m512i q6k_code(__m512i a, __m512i bq, __m512i hb, int s) {
    const __m512i nib = _mm512_set1_epi8(0x0F), two = _mm512_set1_epi8(0x30);
    const __m512i lo = s & 1 ? bq : a;
    const __m512i low = _mm512_and_si512(s < 2 ? lo : _mm512_srli_epi16(lo, 4), nib);
    const __m512i high = 2 * s < 4 ? _mm512_slli_epi16(hb, 4 - 2 * s) : _mm512_srli_epi16(hb, 2 * s - 4);
    return _mm512_or_si512(low, _mm512_and_si512(high, two));
}

#endif /* EDGECORE_QGEMM_K_AVX512_H */
