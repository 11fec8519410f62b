/*
 * gemm micro-kernels for the K-quants (q4_k, q5_k, q6_k), plain AVX-512.
 * Same layout as the 32-block kernels (qgemm_avx512.h, read that first):
 * 16 weight rows as four groups of four 128-bit lanes, one x row's 16
 * outputs per accumulator, and per super-block the scalar kernel's float
 * work on exact integer sums, so results are bitwise qgemm_scalar.c's:
 *
 *   q4_k, q5_k: acc += (dx d) isc - (dx dmin) imin
 *               isc = sum_j sc_j isum_j, imin = sum_j m_j xsum_j
 *   q6_k:       acc += (dx d) isc, isc = sum_g sc_g isum_g
 *
 * The 6-bit scales and mins of 16 columns are unpacked together, four per
 * dword, from the transposed 12 scale bytes; each group's sub-block scale
 * reaches its lanes as int16 (vpshufb) and multiplies the vpmaddubsw pair
 * sums in vpmaddwd. q6_k's codes are u = q + 32 (unsigned); its - 32 sum_g
 * sc_g xsum_g is one more vpmaddwd of the sign-extended scales with x's
 * block sums. Bounds: pair sums <= 2 * 2 * 31 * 127 (q5_k) and 2 * 63 * 127
 * (q6_k) fit int16; |isc| < 2^29.
 */
#define EC_Q_VNNI 0
#include "qgemm_avx512.h"
#include "qgemm_k_avx512.h"

/* Byte `b` of every dword r of v's lanes (v in column order) as int16 in
 * group r's lanes: lane l of group r is column 4 l + r = dword r of lane l. */
EC_INLINE __m512i group_u8_to_i16(__m512i v, int byte) { return _mm512_shuffle_epi8(v, _mm512_set1_epi16((short)(0x8000 | byte))); }

EC_INLINE __m512i bcast16(const int8_t *q) { return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)q)); }

/* Fold two groups' per-lane partials, then two such pairs (reduce_groups in steps). */
EC_INLINE __m512i fold_pair(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
EC_INLINE __m512i fold_halves(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

/* ---- q4_k, q5_k ------------------------------------------------------------ */

EC_INLINE void k45_tile(int five, size_t mr, size_t k, size_t nr, const void *x, size_t xs, const void *w,
                        size_t ws, float *y, size_t ldy) {
    const size_t bb = five ? 176 : 144, qs_at = five ? 48 : 16;
    const __m512i nib = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
    const uint8_t *p[QNR];
    for (size_t c = 0; c < QNR; c++) p[c] = (const uint8_t *)w + (c < nr ? c : 0) * ws;
    __m512 acc[QMR];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / 256; b++) {
        prefetch_ahead(w, ws, b, bb); /* as for the 32-block types */
        const size_t off = b * bb;
        k45_header hd;
        k45_unpack(p, off, &hd);
        __m512i half[2][QMR];
        for (int pair = 0; pair < 2; pair++) {
            __m512i g[2][QMR];
            for (int h = 0; h < 2; h++) {
                const int r = 2 * pair + h;
                for (size_t i = 0; i < mr; i++) g[h][i] = _mm512_setzero_si512();
                /* q5_k: qh[0..15], qh[16..31] of the group's columns */
                const __m512i h0 = five ? load_group(p, r, off + 16) : nib, h1 = five ? load_group(p, r, off + 32) : nib;
                for (int c = 0; c < 4; c++) {
                    const __m512i v0 = load_group(p, r, off + qs_at + 32 * c);
                    const __m512i v1 = load_group(p, r, off + qs_at + 32 * c + 16);
                    __m512i lo0 = _mm512_and_si512(v0, nib), lo1 = _mm512_and_si512(v1, nib);
                    __m512i hi0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), nib);
                    __m512i hi1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), nib);
                    if (five) { /* bit 2c (2c + 1) of qh[l]: bit 4 of element l of sub-block 2c (2c + 1) */
                        const __m512i lo_bit = _mm512_set1_epi8((char)(1 << (2 * c)));
                        const __m512i hi_bit = _mm512_set1_epi8((char)(2 << (2 * c)));
                        lo0 = _mm512_or_si512(lo0, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(h0, lo_bit), bit4));
                        lo1 = _mm512_or_si512(lo1, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(h1, lo_bit), bit4));
                        hi0 = _mm512_or_si512(hi0, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(h0, hi_bit), bit4));
                        hi1 = _mm512_or_si512(hi1, _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(h1, hi_bit), bit4));
                    }
                    /* sub-blocks 2c and 2c + 1: scales 0-3 in sc_lo, 4-7 in sc_hi */
                    const __m512i src = c < 2 ? hd.sc_lo : hd.sc_hi;
                    const __m512i s_lo = group_u8_to_i16(src, 4 * r + (2 * c) % 4);
                    const __m512i s_hi = group_u8_to_i16(src, 4 * r + (2 * c) % 4 + 1);
                    for (size_t i = 0; i < mr; i++) {
                        const int8_t *q = ((const ec_act_q8_256 *)((const char *)x + i * xs) + b)->q + 64 * c;
                        const __m512i pl = _mm512_add_epi16(_mm512_maddubs_epi16(lo0, bcast16(q)),
                                                            _mm512_maddubs_epi16(lo1, bcast16(q + 16)));
                        const __m512i ph = _mm512_add_epi16(_mm512_maddubs_epi16(hi0, bcast16(q + 32)),
                                                            _mm512_maddubs_epi16(hi1, bcast16(q + 48)));
                        g[h][i] = _mm512_add_epi32(g[h][i], _mm512_add_epi32(_mm512_madd_epi16(pl, s_lo),
                                                                              _mm512_madd_epi16(ph, s_hi)));
                    }
                }
            }
            for (size_t i = 0; i < mr; i++) half[pair][i] = fold_pair(g[0][i], g[1][i]);
        }
        for (size_t i = 0; i < mr; i++)
            acc[i] = k45_row(&hd, fold_halves(half[0][i], half[1][i]),
                             (const ec_act_q8_256 *)((const char *)x + i * xs) + b, acc[i]);
    }
    store_tile(y, ldy, acc, mr, nr);
}

/* ---- q6_k ---------------------------------------------------------------------- */

EC_INLINE void q6k_tile(size_t mr, size_t k, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                        float *y, size_t ldy) {
    const uint8_t *p[QNR];
    for (size_t c = 0; c < QNR; c++) p[c] = (const uint8_t *)w + (c < nr ? c : 0) * ws;
    __m512 acc[QMR];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / 256; b++) {
        prefetch_ahead(w, ws, b, 210);
        const size_t off = b * 210;
        const __m512 d = q6k_d(p, off);
        __m512i half[2][QMR];
        for (int pair = 0; pair < 2; pair++) {
            __m512i g[2][QMR];
            for (int hh = 0; hh < 2; hh++) {
                const int r = 2 * pair + hh;
                const __m512i sc = load_group(p, r, off + 192); /* lane l: column 4 l + r's 16 int8 scales */
                /* - 32 sum_g sc_g xsum_g, as 4 partials per lane: the scales
                 * sign-extended (two columns per register) times x's bsums */
                const __m512i sc_a = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(sc));
                const __m512i sc_b = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(sc, 1));
                for (size_t i = 0; i < mr; i++) {
                    const ec_act_q8_256 *xb = (const ec_act_q8_256 *)((const char *)x + i * xs) + b;
                    const __m512i bs = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xb->bsums));
                    const __m512i ca = _mm512_madd_epi16(sc_a, bs), cb = _mm512_madd_epi16(sc_b, bs);
                    const __m512i corr = _mm512_add_epi32(_mm512_shuffle_i32x4(ca, cb, 0x88), _mm512_shuffle_i32x4(ca, cb, 0xDD));
                    g[hh][i] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(corr, 5));
                }
                for (int h = 0; h < 2; h++)
                    for (int kk = 0; kk < 2; kk++) {
                        const __m512i a = load_group(p, r, off + 64 * h + 16 * kk);
                        const __m512i bq = load_group(p, r, off + 64 * h + 32 + 16 * kk);
                        const __m512i hb = load_group(p, r, off + 128 + 32 * h + 16 * kk);
                        __m512i u[4];
                        for (int s = 0; s < 4; s++) u[s] = q6k_code(a, bq, hb, s);
                        for (int s = 0; s < 4; s++) {
                            const int grp = 8 * h + 2 * s + kk; /* elements 128 h + 32 s + 16 kk .. + 15 */
                            const __m512i scale = _mm512_srai_epi16(
                                _mm512_shuffle_epi8(sc, _mm512_set1_epi16((short)((grp << 8) | 0x80))), 8);
                            for (size_t i = 0; i < mr; i++) {
                                const ec_act_q8_256 *xb = (const ec_act_q8_256 *)((const char *)x + i * xs) + b;
                                const __m512i pr = _mm512_maddubs_epi16(u[s], bcast16(xb->q + 16 * grp));
                                g[hh][i] = _mm512_add_epi32(g[hh][i], _mm512_madd_epi16(pr, scale));
                            }
                        }
                    }
            }
            for (size_t i = 0; i < mr; i++) half[pair][i] = fold_pair(g[0][i], g[1][i]);
        }
        for (size_t i = 0; i < mr; i++) {
            const ec_act_q8_256 *xb = (const ec_act_q8_256 *)((const char *)x + i * xs) + b;
            const __m512i isc = fold_halves(half[0][i], half[1][i]);
            acc[i] = _mm512_add_ps(acc[i], _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(xb->d), d), _mm512_cvtepi32_ps(isc)));
        }
    }
    store_tile(y, ldy, acc, mr, nr);
}

/* one instantiation per mr, so the accumulators stay in registers */
#define BY_MR(call_1, call_2, call_3, call_4) \
    switch (mr) {                             \
    case 1: call_1; break;                    \
    case 2: call_2; break;                    \
    case 3: call_3; break;                    \
    default: call_4; break;                   \
    }

void ec_qgemm_q4_k_avx512(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                          float *y, size_t ldy) {
    BY_MR(k45_tile(0, 1, k, nr, x, xs, w, ws, y, ldy), k45_tile(0, 2, k, nr, x, xs, w, ws, y, ldy),
          k45_tile(0, 3, k, nr, x, xs, w, ws, y, ldy), k45_tile(0, 4, k, nr, x, xs, w, ws, y, ldy))
}

void ec_qgemm_q5_k_avx512(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                          float *y, size_t ldy) {
    BY_MR(k45_tile(1, 1, k, nr, x, xs, w, ws, y, ldy), k45_tile(1, 2, k, nr, x, xs, w, ws, y, ldy),
          k45_tile(1, 3, k, nr, x, xs, w, ws, y, ldy), k45_tile(1, 4, k, nr, x, xs, w, ws, y, ldy))
}

void ec_qgemm_q6_k_avx512(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                          float *y, size_t ldy) {
    BY_MR(q6k_tile(1, k, nr, x, xs, w, ws, y, ldy), q6k_tile(2, k, nr, x, xs, w, ws, y, ldy),
          q6k_tile(3, k, nr, x, xs, w, ws, y, ldy), q6k_tile(4, k, nr, x, xs, w, ws, y, ldy))
}
