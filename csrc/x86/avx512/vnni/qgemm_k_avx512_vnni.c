/*
 * gemm micro-kernels for q4_k, q5_k and q6_k with AVX-512 VNNI, in column order
 * (qgemm_avx512.h, read that first): up to 8 x rows per call. Per
 * super-block each 32-byte chunk of codes of the 16 columns is transposed
 * once into column order (register j: elements 4j..4j+3 of a sub-block,
 * one column per dword), and each x row then costs, per sub-block, eight
 * vpdpbusd against broadcast x dwords and one vpmulld by the column's
 * 6-bit sub-block scale:
 *
 *   isc = sum_j sc_j isum_j,  imin = sum_j m_j xsum_j  (exact int32)
 *   acc += (dx d) isc - (dx dmin) imin
 *
 * the plain kernel's float work in its order, so results are bitwise
 * qgemm_scalar.c's. The plain kernel (qgemm_k_avx512.c) spends two
 * instructions (vpmaddubsw + vpmaddwd) per 64 products and folds four
 * groups per row; here one, and no fold. For q4_k/q5_k at mr <= 2 the
 * transposes cost more than they save and the plain kernel runs (as for
 * the 32-block types); q6_k (below) measured the same as its plain kernel
 * at mr = 1 and runs in column order throughout. Bounds: isum_j <= 32 * 31
 * * 127, |isc| < 2^30.
 */
#define EC_Q_VNNI 1
#include "../qgemm_avx512.h"
#include "../qgemm_k_avx512.h"

#include <string.h>

#define QMRK 8 /* x rows per call (the registry's mr) */

void ec_qgemm_q4_k_avx512(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                          float *y, size_t ldy);
void ec_qgemm_q5_k_avx512(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                          float *y, size_t ldy);

/* x's elements e..e+3 (one dword) in every lane */
EC_INLINE __m512i xk_dword(const ec_act_q8_256 *xb, int e) {
    int32_t v;
    memcpy(&v, xb->q + e, 4);
    return _mm512_set1_epi32(v);
}

/* byte b of every dword (a column's byte), zero-extended */
EC_INLINE __m512i dword_byte(__m512i v, int b) {
    return _mm512_and_si512(_mm512_srli_epi32(v, 8 * b), _mm512_set1_epi32(0xFF));
}

/* Sub-block `sub` (= 2c + half) of a super-block, in column order: wv[j]
 * holds elements 4j..4j+3 of each column (one per dword), from `packed`
 * (the 32 code bytes of sub-blocks 2c and 2c + 1, transposed) and, for
 * q5_k, the transposed qh bytes. */
EC_INLINE void k45_sub_codes(int five, const __m512i packed[8], const __m512i qh[8], int half, int sub,
                             __m512i wv[8]) {
    const __m512i nib = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
    for (int j = 0; j < 8; j++) {
        wv[j] = _mm512_and_si512(half ? _mm512_srli_epi16(packed[j], 4) : packed[j], nib);
        if (five) /* bit `sub` of qh[l]: bit 4 of element l of sub-block `sub` */
            wv[j] = _mm512_or_si512(
                wv[j], _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(qh[j], _mm512_set1_epi8((char)(1 << sub))), bit4));
    }
}

/* isc + scale * (sub-block `sub`'s codes . x row), per column */
EC_INLINE __m512i k45_sub_row(__m512i isc, const __m512i wv[8], __m512i scale, const ec_act_q8_256 *xb, int sub) {
    const int e = 32 * sub;
    __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
    for (int j = 0; j < 8; j += 2) {
        even = _mm512_dpbusd_epi32(even, wv[j], xk_dword(xb, e + 4 * j));
        odd = _mm512_dpbusd_epi32(odd, wv[j + 1], xk_dword(xb, e + 4 * j + 4));
    }
    return _mm512_add_epi32(isc, _mm512_mullo_epi32(_mm512_add_epi32(even, odd), scale));
}

/* q5_k: qh bytes 0..31 of the columns in column order, as the codes */
EC_INLINE void k45_high_bits(const uint8_t *const *p, size_t off, __m512i qh[8]) {
    __m512i g[4];
    for (int h = 0; h < 2; h++) {
        for (int r = 0; r < 4; r++) g[r] = load_group(p, r, off + 16 + 16 * h);
        transpose_dwords(g, qh + 4 * h);
    }
}

/* the 32 code bytes of sub-blocks 2c (low nibbles) and 2c + 1 (high), transposed */
EC_INLINE void k45_chunk(const uint8_t *const *p, size_t off, __m512i packed[8]) {
    __m512i g[4];
    for (int h = 0; h < 2; h++) {
        for (int r = 0; r < 4; r++) g[r] = load_group(p, r, off + 16 * h);
        transpose_dwords(g, packed + 4 * h);
    }
}

/* sub-block scale `sub` of the 16 columns, one per dword: 0-3 in sc_lo, 4-7 in sc_hi */
EC_INLINE __m512i k45_scale(const k45_header *hd, int sub) { return dword_byte(sub < 4 ? hd->sc_lo : hd->sc_hi, sub % 4); }

EC_INLINE void k45_cols(int five, size_t mr, size_t k, size_t nr, const void *x, size_t xs, const void *w,
                        size_t ws, float *y, size_t ldy) {
    const size_t bb = five ? 176 : 144, qs_at = five ? 48 : 16;
    const uint8_t *p[QNR];
    tile_rows(w, ws, nr, p);
    __m512 acc[QMRK];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / 256; b++) {
        prefetch_ahead(w, ws, b, bb);
        const size_t off = b * bb;
        k45_header hd;
        k45_unpack(p, off, &hd);
        __m512i qh[8];
        if (five) k45_high_bits(p, off, qh);
        __m512i isc[QMRK];
        for (size_t i = 0; i < mr; i++) isc[i] = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            __m512i packed[8];
            k45_chunk(p, off + qs_at + 32 * c, packed);
            for (int half = 0; half < 2; half++) {
                const int sub = 2 * c + half;
                const __m512i scale = k45_scale(&hd, sub);
                __m512i wv[8];
                k45_sub_codes(five, packed, qh, half, sub, wv);
                for (size_t i = 0; i < mr; i++)
                    isc[i] = k45_sub_row(isc[i], wv, scale, (const ec_act_q8_256 *)((const char *)x + i * xs) + b, sub);
            }
        }
        for (size_t i = 0; i < mr; i++)
            acc[i] = k45_row(&hd, isc[i], (const ec_act_q8_256 *)((const char *)x + i * xs) + b, acc[i]);
    }
    store_tile(y, ldy, acc, mr, nr);
}

/* Packed strips (qkernels.h): per super-block, the header and every
 * sub-block's codes and scale as k45_cols computes them, stored; the packed
 * tile runs k45_sub_row and k45_row over them in k45_cols's order, so the
 * bits are its (and the plain kernel's, which runs at mr <= 2). */
typedef struct {
    __m512i wv[8][8];
    __m512i scale[8];
    k45_header hd;
} k45_block16;
_Static_assert(sizeof(k45_block16) == 5120, "qkernels_avx512.c declares 5120 bytes per packed q4_k/q5_k block");

EC_INLINE void k45_pack(int five, size_t k, size_t nr, const void *w, size_t ws, void *buf) {
    const size_t bb = five ? 176 : 144, qs_at = five ? 48 : 16;
    const uint8_t *p[QNR];
    tile_rows(w, ws, nr, p);
    k45_block16 *out = (k45_block16 *)buf;
    for (size_t b = 0; b < k / 256; b++) {
        prefetch_ahead(w, ws, b, bb);
        const size_t off = b * bb;
        k45_unpack(p, off, &out[b].hd);
        __m512i qh[8];
        if (five) k45_high_bits(p, off, qh);
        for (int c = 0; c < 4; c++) {
            __m512i packed[8];
            k45_chunk(p, off + qs_at + 32 * c, packed);
            for (int half = 0; half < 2; half++) {
                const int sub = 2 * c + half;
                out[b].scale[sub] = k45_scale(&out[b].hd, sub);
                k45_sub_codes(five, packed, qh, half, sub, out[b].wv[sub]);
            }
        }
    }
}

EC_INLINE void k45_packed_tile(size_t mr, size_t k, size_t nr, const void *x, size_t xs, const k45_block16 *pk,
                               float *y, size_t ldy) {
    __m512 acc[QMRK];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / 256; b++) {
        __m512i isc[QMRK];
        for (size_t i = 0; i < mr; i++) isc[i] = _mm512_setzero_si512();
        for (int sub = 0; sub < 8; sub++)
            for (size_t i = 0; i < mr; i++)
                isc[i] = k45_sub_row(isc[i], pk[b].wv[sub], pk[b].scale[sub],
                                     (const ec_act_q8_256 *)((const char *)x + i * xs) + b, sub);
        for (size_t i = 0; i < mr; i++)
            acc[i] = k45_row(&pk[b].hd, isc[i], (const ec_act_q8_256 *)((const char *)x + i * xs) + b, acc[i]);
    }
    store_tile(y, ldy, acc, mr, nr);
}

EC_INLINE void k45_packed(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *buf, float *y,
                          size_t ldy) {
    const k45_block16 *pk = (const k45_block16 *)buf;
    switch (mr) {
    case 1: k45_packed_tile(1, k, nr, x, xs, pk, y, ldy); break;
    case 2: k45_packed_tile(2, k, nr, x, xs, pk, y, ldy); break;
    case 3: k45_packed_tile(3, k, nr, x, xs, pk, y, ldy); break;
    case 4: k45_packed_tile(4, k, nr, x, xs, pk, y, ldy); break;
    case 5: k45_packed_tile(5, k, nr, x, xs, pk, y, ldy); break;
    case 6: k45_packed_tile(6, k, nr, x, xs, pk, y, ldy); break;
    case 7: k45_packed_tile(7, k, nr, x, xs, pk, y, ldy); break;
    default: k45_packed_tile(8, k, nr, x, xs, pk, y, ldy); break;
    }
}

void ec_qpack_q4_k_avx512_vnni(size_t k, size_t nr, const void *w, size_t ws, void *buf) {
    k45_pack(0, k, nr, w, ws, buf);
}
void ec_qpack_q5_k_avx512_vnni(size_t k, size_t nr, const void *w, size_t ws, void *buf) {
    k45_pack(1, k, nr, w, ws, buf);
}
void ec_qgemm_packed_q4_k_avx512_vnni(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *buf,
                                      size_t ws, float *y, size_t ldy) {
    (void)ws;
    k45_packed(k, mr, nr, x, xs, buf, y, ldy);
}
void ec_qgemm_packed_q5_k_avx512_vnni(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *buf,
                                      size_t ws, float *y, size_t ldy) {
    (void)ws;
    k45_packed(k, mr, nr, x, xs, buf, y, ldy);
}

/* ---- q6_k ------------------------------------------------------------------
 * Codes u = q + 32 (unsigned 6-bit), 16 sub-blocks of 16 elements with int8
 * scales. Per super-block the 16 columns' scales are transposed once (byte
 * g of dword g / 4: sub-block g); per (half h, 16-byte step kk) the low-bit
 * streams a, bq and the high bits hb are transposed, and the four 16-element
 * sub-blocks they hold are rebuilt in column order. Per x row a sub-block
 * is four vpdpbusd, started from -32 bsums_g (the offset, exact), and one
 * vpmulld by its scale: isc = sum_g sc_g (sum u x - 32 bsums_g), the plain
 * kernel's integer, then its float work. |isc| < 2^28. */
/* the low-bit streams a (ql[l]), bq (ql[l + 32]) and high bits hb of half
 * h, 16-byte step kk, transposed to column order */
EC_INLINE void q6k_streams(const uint8_t *const *p, size_t off, int h, int kk, __m512i a[4], __m512i bq[4],
                           __m512i hb[4]) {
    __m512i g[4];
    for (int r = 0; r < 4; r++) g[r] = load_group(p, r, off + 64 * h + 16 * kk);
    transpose_dwords(g, a);
    for (int r = 0; r < 4; r++) g[r] = load_group(p, r, off + 64 * h + 32 + 16 * kk);
    transpose_dwords(g, bq);
    for (int r = 0; r < 4; r++) g[r] = load_group(p, r, off + 128 + 32 * h + 16 * kk);
    transpose_dwords(g, hb);
}

/* sub-block grp's int8 scale, sign-extended per column: (u ^ 128) - 128 */
EC_INLINE __m512i q6k_scale(const __m512i sc[4], int grp) {
    const __m512i m128 = _mm512_set1_epi32(0x80);
    return _mm512_sub_epi32(_mm512_xor_si512(dword_byte(sc[grp / 4], grp % 4), m128), m128);
}

/* the 16 columns' scales, transposed: the dword of column c in sc[j] holds its scales 4j..4j+3 */
EC_INLINE void q6k_scales(const uint8_t *const *p, size_t off, __m512i sc[4]) {
    __m512i g[4];
    for (int r = 0; r < 4; r++) g[r] = load_group(p, r, off + 192);
    transpose_dwords(g, sc);
}

/* isc + scale * (sum u x - 32 bsums_grp) for one x row and sub-block grp */
EC_INLINE __m512i q6k_group_row(__m512i isc, const __m512i u[4], __m512i scale, const ec_act_q8_256 *xb, int grp) {
    __m512i even = _mm512_set1_epi32(-32 * xb->bsums[grp]), odd = _mm512_setzero_si512();
    even = _mm512_dpbusd_epi32(even, u[0], xk_dword(xb, 16 * grp));
    odd = _mm512_dpbusd_epi32(odd, u[1], xk_dword(xb, 16 * grp + 4));
    even = _mm512_dpbusd_epi32(even, u[2], xk_dword(xb, 16 * grp + 8));
    odd = _mm512_dpbusd_epi32(odd, u[3], xk_dword(xb, 16 * grp + 12));
    return _mm512_add_epi32(isc, _mm512_mullo_epi32(_mm512_add_epi32(even, odd), scale));
}

/* acc + (dx d) isc */
EC_INLINE __m512 q6k_row(__m512 acc, __m512 d, __m512i isc, const ec_act_q8_256 *xb) {
    return _mm512_add_ps(acc, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(xb->d), d), _mm512_cvtepi32_ps(isc)));
}

EC_INLINE void q6k_cols(size_t mr, size_t k, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                        float *y, size_t ldy) {
    const uint8_t *p[QNR];
    tile_rows(w, ws, nr, p);
    __m512 acc[QMRK];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / 256; b++) {
        prefetch_ahead(w, ws, b, 210);
        const size_t off = b * 210;
        const __m512 d = q6k_d(p, off);
        __m512i sc[4];
        q6k_scales(p, off, sc);
        __m512i isc[QMRK];
        for (size_t i = 0; i < mr; i++) isc[i] = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++)
            for (int kk = 0; kk < 2; kk++) {
                __m512i a[4], bq[4], hb[4];
                q6k_streams(p, off, h, kk, a, bq, hb);
                for (int s = 0; s < 4; s++) {
                    const int grp = 8 * h + 2 * s + kk; /* elements 16 grp .. 16 grp + 15 */
                    const __m512i scale = q6k_scale(sc, grp);
                    __m512i u[4];
                    for (int j = 0; j < 4; j++) u[j] = q6k_code(a[j], bq[j], hb[j], s);
                    for (size_t i = 0; i < mr; i++)
                        isc[i] = q6k_group_row(isc[i], u, scale,
                                               (const ec_act_q8_256 *)((const char *)x + i * xs) + b, grp);
                }
            }
        for (size_t i = 0; i < mr; i++)
            acc[i] = q6k_row(acc[i], d, isc[i], (const ec_act_q8_256 *)((const char *)x + i * xs) + b);
    }
    store_tile(y, ldy, acc, mr, nr);
}

/* Packed strips for q6_k: per super-block d and, in q6k_cols's order of
 * sub-blocks, each one's codes and scale; the packed tile adds the
 * sub-blocks in that same order (same bits). */
typedef struct {
    __m512i u[16][4];
    __m512i scale[16];
    __m512 d;
} q6k_block16;
_Static_assert(sizeof(q6k_block16) == 5184, "qkernels_avx512.c declares 5184 bytes per packed q6_k block");

EC_INLINE void q6k_pack(size_t k, size_t nr, const void *w, size_t ws, void *buf) {
    const uint8_t *p[QNR];
    tile_rows(w, ws, nr, p);
    q6k_block16 *out = (q6k_block16 *)buf;
    for (size_t b = 0; b < k / 256; b++) {
        prefetch_ahead(w, ws, b, 210);
        const size_t off = b * 210;
        out[b].d = q6k_d(p, off);
        __m512i sc[4];
        q6k_scales(p, off, sc);
        int n = 0; /* slot n holds the n-th sub-block q6k_cols adds */
        for (int h = 0; h < 2; h++)
            for (int kk = 0; kk < 2; kk++) {
                __m512i a[4], bq[4], hb[4];
                q6k_streams(p, off, h, kk, a, bq, hb);
                for (int s = 0; s < 4; s++, n++) {
                    out[b].scale[n] = q6k_scale(sc, 8 * h + 2 * s + kk);
                    for (int j = 0; j < 4; j++) out[b].u[n][j] = q6k_code(a[j], bq[j], hb[j], s);
                }
            }
    }
}

EC_INLINE void q6k_packed_tile(size_t mr, size_t k, size_t nr, const void *x, size_t xs, const q6k_block16 *pk,
                               float *y, size_t ldy) {
    __m512 acc[QMRK];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / 256; b++) {
        __m512i isc[QMRK];
        for (size_t i = 0; i < mr; i++) isc[i] = _mm512_setzero_si512();
        for (int n = 0; n < 16; n++) {
            const int h = n / 8, kk = (n / 4) % 2, s = n % 4, grp = 8 * h + 2 * s + kk;
            for (size_t i = 0; i < mr; i++)
                isc[i] = q6k_group_row(isc[i], pk[b].u[n], pk[b].scale[n],
                                       (const ec_act_q8_256 *)((const char *)x + i * xs) + b, grp);
        }
        for (size_t i = 0; i < mr; i++)
            acc[i] = q6k_row(acc[i], pk[b].d, isc[i], (const ec_act_q8_256 *)((const char *)x + i * xs) + b);
    }
    store_tile(y, ldy, acc, mr, nr);
}

void ec_qpack_q6_k_avx512_vnni(size_t k, size_t nr, const void *w, size_t ws, void *buf) { q6k_pack(k, nr, w, ws, buf); }

void ec_qgemm_packed_q6_k_avx512_vnni(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *buf,
                                      size_t ws, float *y, size_t ldy) {
    (void)ws;
    const q6k_block16 *pk = (const q6k_block16 *)buf;
    switch (mr) {
    case 1: q6k_packed_tile(1, k, nr, x, xs, pk, y, ldy); break;
    case 2: q6k_packed_tile(2, k, nr, x, xs, pk, y, ldy); break;
    case 3: q6k_packed_tile(3, k, nr, x, xs, pk, y, ldy); break;
    case 4: q6k_packed_tile(4, k, nr, x, xs, pk, y, ldy); break;
    case 5: q6k_packed_tile(5, k, nr, x, xs, pk, y, ldy); break;
    case 6: q6k_packed_tile(6, k, nr, x, xs, pk, y, ldy); break;
    case 7: q6k_packed_tile(7, k, nr, x, xs, pk, y, ldy); break;
    default: q6k_packed_tile(8, k, nr, x, xs, pk, y, ldy); break;
    }
}

/* one instantiation per mr, so the accumulators stay in registers */
#define BY_MR_COLS(five, plain)                                                       \
    switch (mr) {                                                                     \
    case 1:                                                                           \
    case 2: plain(k, mr, nr, x, xs, w, ws, y, ldy); break;                            \
    case 3: k45_cols(five, 3, k, nr, x, xs, w, ws, y, ldy); break;                    \
    case 4: k45_cols(five, 4, k, nr, x, xs, w, ws, y, ldy); break;                    \
    case 5: k45_cols(five, 5, k, nr, x, xs, w, ws, y, ldy); break;                    \
    case 6: k45_cols(five, 6, k, nr, x, xs, w, ws, y, ldy); break;                    \
    case 7: k45_cols(five, 7, k, nr, x, xs, w, ws, y, ldy); break;                    \
    default: k45_cols(five, 8, k, nr, x, xs, w, ws, y, ldy); break;                   \
    }

void ec_qgemm_q4_k_avx512_vnni(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                               float *y, size_t ldy) {
    BY_MR_COLS(0, ec_qgemm_q4_k_avx512)
}

void ec_qgemm_q5_k_avx512_vnni(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                               float *y, size_t ldy) {
    BY_MR_COLS(1, ec_qgemm_q5_k_avx512)
}

void ec_qgemm_q6_k_avx512_vnni(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                               float *y, size_t ldy) {
    switch (mr) {
    case 1: q6k_cols(1, k, nr, x, xs, w, ws, y, ldy); break;
    case 2: q6k_cols(2, k, nr, x, xs, w, ws, y, ldy); break;
    case 3: q6k_cols(3, k, nr, x, xs, w, ws, y, ldy); break;
    case 4: q6k_cols(4, k, nr, x, xs, w, ws, y, ldy); break;
    case 5: q6k_cols(5, k, nr, x, xs, w, ws, y, ldy); break;
    case 6: q6k_cols(6, k, nr, x, xs, w, ws, y, ldy); break;
    case 7: q6k_cols(7, k, nr, x, xs, w, ws, y, ldy); break;
    default: q6k_cols(8, k, nr, x, xs, w, ws, y, ldy); break;
    }
}
