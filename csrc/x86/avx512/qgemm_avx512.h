/*
 * The avx512 gemm micro-kernels for the 32-element block types (q8_0, q4_0,
 * q4_1, q5_0, q5_1), shared by the plain tier (qgemm_avx512.c) and the
 * AVX-512 VNNI variants (vnni/qgemm_avx512_vnni.c): the includer defines
 * EC_Q_VNNI to 0 or 1 and the name suffix, nothing else differs. The
 * k-quant kernels (qgemm_k_avx512.c) share the loading helpers.
 *
 * Layout: one call computes up to QMR32 x rows by QNR = 16 weight rows
 * (output columns), and a 512-bit accumulator holds one x row's 16 outputs,
 * one column per lane. Per block of K, each lane gets the block's exact
 * integer dot product isum and then does the scalar kernel's float work,
 * in its order:
 *
 *   acc += (dw dx) isum              (+ (mw dx) xsum for q4_1, q5_1)
 *
 * so every output is bitwise what qgemm_scalar.c gives, and depends only on
 * its own x row, weight row and k (M-, tile- and thread-invariant).
 *
 * The integer dot products, in one of two orders. The 16 columns are read
 * as four "groups" of four (group r: columns r, 4 + r, 8 + r, 12 + r in its
 * 128-bit lanes, 16 quant bytes per lane: block elements 0..15 in one
 * register, 16..31 in another).
 *   - Group order, for mr <= 2 (decode): x's elements 0..15 (16..31) are
 *     broadcast to all four lanes, so one multiply-add serves four columns;
 *     a group ends with four int32 partial sums per lane, and
 *     reduce_groups() folds the four groups into column order, per x row.
 *   - Column order, for mr > 2 (batched decode, prefill): the groups are
 *     turned into column order once per block of the tile, by a 4 x 4
 *     dword transpose within the lanes (transpose_dwords): register j holds
 *     in dword c column c's codes for elements 4j..4j+3 (j < 4) or
 *     16+4(j-4).. (j >= 4). Each x row then costs eight multiply-adds
 *     against x's dword j broadcast, whose sums land in column order with
 *     no per-row fold: the rows share the whole decode (QMR32 = 8). At
 *     mr = 1 the transpose costs as much as the fold it saves and group
 *     order was measured 8% faster (Zen 4, warm weights), so both stay.
 * The products are u8 x s8 (vpmaddubsw, or vpdpbusd with VNNI): 4- and
 * 5-bit codes are unsigned; q4_0 / q5_0 subtract their offset afterwards
 * as 8 xsum / 16 xsum (exact). q8_0's codes are signed: |w| (<= 128 fits
 * u8) times x with w's sign (x is in [-127, 127], so negating it is exact;
 * pair sums <= 2 * 128 * 127 fit int16); in column order with VNNI, w + 128
 * (w ^ 0x80, as u8, flipped once with the decode) times x, less 128 sum(x)
 * per x block (its stored sum): nothing per x row but the correction. All
 * integer sums are exact, so every order gives the same bits.
 *
 * The scales d (and m) of the 16 columns are the first dword of every
 * row's block, loaded as groups (a gather was no faster on Zen 4, and the
 * SIMDe build that tests this tier without AVX-512 has none).
 *
 * Tails: columns past nr read weight row 0 again (always in bounds) and are
 * not stored; rows past mr are never touched.
 */
#ifndef EDGECORE_QGEMM_AVX512_H
#define EDGECORE_QGEMM_AVX512_H

#include <immintrin.h>

#include "../../common/qblocks.h"
#include "../../common/qkernels.h"
#include "prefetch_avx512.h"

#ifndef EC_Q_VNNI
#error "define EC_Q_VNNI (0 or 1) before including qgemm_avx512.h"
#endif

#define EC_INLINE static inline __attribute__((always_inline))
#define QNR 16
#define QMR 4   /* x rows per call of the k-quant kernels */
#define QMR32 8 /* x rows per call of the 32-block kernels (their registry mr) */

enum { QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1 };

/* 16 bytes at p[r + 4 l] + off into 128-bit lane l, for l = 0..3. */
EC_INLINE __m512i load_group(const uint8_t *const *p, int r, size_t off) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p[r] + off)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[4 + r] + off)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[8 + r] + off)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[12 + r] + off)), 3);
}

/* Dwords e = 0..3 of every lane of groups 0..3, each in column order: lane
 * l of group r is column 4 l + r, and so is dword r of lane l of t[e]. */
EC_INLINE void transpose_dwords(const __m512i g[4], __m512i t[4]) {
    const __m512i a0 = _mm512_unpacklo_epi32(g[0], g[1]), a1 = _mm512_unpackhi_epi32(g[0], g[1]);
    const __m512i b0 = _mm512_unpacklo_epi32(g[2], g[3]), b1 = _mm512_unpackhi_epi32(g[2], g[3]);
    t[0] = _mm512_unpacklo_epi64(a0, b0);
    t[1] = _mm512_unpackhi_epi64(a0, b0);
    t[2] = _mm512_unpacklo_epi64(a1, b1);
    t[3] = _mm512_unpackhi_epi64(a1, b1);
}

/* Dword 0 of every lane of groups 0..3 -> 16 dwords in column order. */
EC_INLINE __m512i first_dwords(const __m512i g[4]) {
    return _mm512_unpacklo_epi64(_mm512_unpacklo_epi32(g[0], g[1]), _mm512_unpacklo_epi32(g[2], g[3]));
}

/* Four int32 partial sums per lane in groups 0..3 -> 16 sums in column order. */
EC_INLINE __m512i reduce_groups(const __m512i q[4]) {
    const __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi32(q[0], q[1]), _mm512_unpackhi_epi32(q[0], q[1]));
    const __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi32(q[2], q[3]), _mm512_unpackhi_epi32(q[2], q[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}

/* The f16 in the low (high) half of each dword -> float32 (exact). */
EC_INLINE __m512 f16_low(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
EC_INLINE __m512 f16_high(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }

/* sum over 4 consecutive bytes of u8 a times s8 b, per int32 lane, plus acc */
EC_INLINE __m512i dot_u8s8(__m512i acc, __m512i a, __m512i b) {
#if EC_Q_VNNI
    return _mm512_dpbusd_epi32(acc, a, b);
#else
    const __m512i pairs = _mm512_maddubs_epi16(a, b);
    return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
#endif
}

/* Bit 4 of the 5-bit codes: byte j of lane l of the result has bit j (lo)
 * or bit 16 + j (hi) of the column's qh, which sits at byte qh_at of its
 * lane in hdr. */
EC_INLINE __m512i fifth_bits(__m512i hdr, int qh_at, int high) {
    const int b = qh_at + 2 * high;
    const __m512i spread =
        _mm512_set_epi8(b + 1, b + 1, b + 1, b + 1, b + 1, b + 1, b + 1, b + 1, b, b, b, b, b, b, b, b, b + 1, b + 1,
                        b + 1, b + 1, b + 1, b + 1, b + 1, b + 1, b, b, b, b, b, b, b, b, b + 1, b + 1, b + 1, b + 1,
                        b + 1, b + 1, b + 1, b + 1, b, b, b, b, b, b, b, b, b + 1, b + 1, b + 1, b + 1, b + 1, b + 1,
                        b + 1, b + 1, b, b, b, b, b, b, b, b);
    const __m512i bit = _mm512_set1_epi64(0x8040201008040201ll);
    const __mmask64 set = _mm512_test_epi8_mask(_mm512_shuffle_epi8(hdr, spread), bit);
    return _mm512_maskz_mov_epi8(set, _mm512_set1_epi8(0x10));
}

/* One block of 16 columns, decoded. In column order (cols, see the top):
 * w[j] pairs with x's dword j (q8_0 with VNNI: w + 128, as u8). In group
 * order (decode, mr <= 2): w[r] and w[4 + r] are group r's codes for
 * elements 0..15 and 16..31. d, m: the scale fields as float. */
typedef struct {
    __m512i w[8];
    __m512 d, m;
} qblock16;

EC_INLINE void decode_block(int t, int cols, const uint8_t *const *p, size_t off, qblock16 *q) {
    const __m512i nib = _mm512_set1_epi8(0x0F);
    const int five = t == QT_Q5_0 || t == QT_Q5_1;
    __m512i hdr[4], lo[4], hi[4];
    for (int r = 0; r < 4; r++) {
        hdr[r] = load_group(p, r, off);
        if (t == QT_Q8_0) {
            lo[r] = load_group(p, r, off + 2);
            hi[r] = load_group(p, r, off + 18);
            continue;
        }
        const __m512i v = load_group(p, r, off + (t == QT_Q4_0 ? 2 : t == QT_Q4_1 ? 4 : t == QT_Q5_0 ? 6 : 8));
        if (cols && !five) {
            lo[r] = v; /* q4_0, q4_1: transpose the packed bytes, then split the nibbles */
            continue;
        }
        lo[r] = _mm512_and_si512(v, nib);
        hi[r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
        if (five) {
            const int qh_at = t == QT_Q5_0 ? 2 : 4;
            lo[r] = _mm512_or_si512(lo[r], fifth_bits(hdr[r], qh_at, 0));
            hi[r] = _mm512_or_si512(hi[r], fifth_bits(hdr[r], qh_at, 1));
        }
    }
    if (!cols) {
        for (int r = 0; r < 4; r++) q->w[r] = lo[r], q->w[4 + r] = hi[r];
    } else if (t == QT_Q4_0 || t == QT_Q4_1) {
        __m512i packed[4];
        transpose_dwords(lo, packed);
        for (int j = 0; j < 4; j++) {
            q->w[j] = _mm512_and_si512(packed[j], nib);
            q->w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(packed[j], 4), nib);
        }
    } else {
        transpose_dwords(lo, q->w);
        transpose_dwords(hi, q->w + 4);
    }
    const __m512i s = first_dwords(hdr);
    q->d = f16_low(s);
    q->m = f16_high(s); /* q4_1, q5_1: m follows d; unused otherwise */
#if EC_Q_VNNI
    if (t == QT_Q8_0 && cols)
        for (int j = 0; j < 8; j++) q->w[j] = _mm512_xor_si512(q->w[j], _mm512_set1_epi8((char)0x80));
#endif
}

/* x's dword j (its elements 4j..4j+3) in every lane */
EC_INLINE __m512i x_dword(const ec_act_q8_32 *xb, int j) {
    int32_t v;
    __builtin_memcpy(&v, xb->q + 4 * j, 4);
    return _mm512_set1_epi32(v);
}

/* Group order: x's elements 0..15 and 16..31 broadcast to the four lanes;
 * per group four partial sums per lane, folded by reduce_groups. */
EC_INLINE __m512i block_isum_groups(int t, const qblock16 *q, const ec_act_q8_32 *xb) {
    const __m512i xlo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb->q));
    const __m512i xhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb->q + 16)));
    const __m512i zero = _mm512_setzero_si512();
    __m512i part[4];
    for (int r = 0; r < 4; r++) {
        const __m512i lo = q->w[r], hi = q->w[4 + r];
        if (t == QT_Q8_0) {
            /* |w| x (x with w's sign) */
            const __m512i slo = _mm512_mask_sub_epi8(xlo, _mm512_movepi8_mask(lo), zero, xlo);
            const __m512i shi = _mm512_mask_sub_epi8(xhi, _mm512_movepi8_mask(hi), zero, xhi);
            part[r] = dot_u8s8(dot_u8s8(zero, _mm512_abs_epi8(lo), slo), _mm512_abs_epi8(hi), shi);
        } else {
#if EC_Q_VNNI
            part[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, xlo), hi, xhi);
#else
            /* 4- and 5-bit codes: four products <= 4 * 31 * 127 fit int16 */
            const __m512i pairs = _mm512_add_epi16(_mm512_maddubs_epi16(lo, xlo), _mm512_maddubs_epi16(hi, xhi));
            part[r] = _mm512_madd_epi16(pairs, _mm512_set1_epi16(1));
#endif
        }
    }
    return reduce_groups(part);
}

#if EC_Q_VNNI
/* init + sum_j w[j] . x's dword j, per column: two chains of multiply-adds
 * (the x rows are independent work for the out-of-order core; more chains
 * only cost adds) */
EC_INLINE __m512i dot_cols(__m512i init, const qblock16 *q, const ec_act_q8_32 *xb) {
    __m512i even = init, odd = _mm512_setzero_si512();
    for (int j = 0; j < 8; j += 2) {
        even = _mm512_dpbusd_epi32(even, q->w[j], x_dword(xb, j));
        odd = _mm512_dpbusd_epi32(odd, q->w[j + 1], x_dword(xb, j + 1));
    }
    return _mm512_add_epi32(even, odd);
}
#endif

/* Column order: x's dword j broadcast against w[j]; sums already in column
 * order. */
EC_INLINE __m512i block_isum_cols(int t, const qblock16 *q, const ec_act_q8_32 *xb) {
    const __m512i zero = _mm512_setzero_si512();
    if (t == QT_Q8_0) {
#if EC_Q_VNNI
        return dot_cols(_mm512_set1_epi32(-128 * xb->sum), q, xb); /* (w + 128) x, less 128 sum(x) */
#else
        /* |w| x (x with w's sign) */
        __m512i part[2] = {zero, zero};
        for (int j = 0; j < 8; j++) {
            const __m512i wj = q->w[j], xj = x_dword(xb, j);
            const __m512i sx = _mm512_mask_sub_epi8(xj, _mm512_movepi8_mask(wj), zero, xj);
            part[j & 1] = dot_u8s8(part[j & 1], _mm512_abs_epi8(wj), sx);
        }
        return _mm512_add_epi32(part[0], part[1]);
#endif
    }
#if EC_Q_VNNI
    return dot_cols(zero, q, xb);
#else
    /* 4- and 5-bit codes: eight products <= 8 * 31 * 127 per int16 pair sum */
    __m512i pairs[2];
    for (int h = 0; h < 2; h++)
        pairs[h] = _mm512_add_epi16(_mm512_add_epi16(_mm512_maddubs_epi16(q->w[2 * h], x_dword(xb, 2 * h)),
                                                     _mm512_maddubs_epi16(q->w[4 + 2 * h], x_dword(xb, 4 + 2 * h))),
                                    _mm512_add_epi16(_mm512_maddubs_epi16(q->w[2 * h + 1], x_dword(xb, 2 * h + 1)),
                                                     _mm512_maddubs_epi16(q->w[5 + 2 * h], x_dword(xb, 5 + 2 * h))));
    const __m512i ones = _mm512_set1_epi16(1);
    return _mm512_add_epi32(_mm512_madd_epi16(pairs[0], ones), _mm512_madd_epi16(pairs[1], ones));
#endif
}

/* acc += this block's contribution for one x block, the scalar kernel's ops. */
EC_INLINE __m512 block_row(int t, int cols, const qblock16 *q, const ec_act_q8_32 *xb, __m512 acc) {
    __m512i isum = cols ? block_isum_cols(t, q, xb) : block_isum_groups(t, q, xb);
    if (t == QT_Q4_0) isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(8 * xb->sum));
    if (t == QT_Q5_0) isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(16 * xb->sum));
    const __m512 xd = _mm512_set1_ps(xb->d);
    __m512 v = _mm512_mul_ps(_mm512_mul_ps(q->d, xd), _mm512_cvtepi32_ps(isum));
    if (t == QT_Q4_1 || t == QT_Q5_1)
        v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_mul_ps(q->m, xd), _mm512_set1_ps((float)xb->sum)));
    return _mm512_add_ps(acc, v);
}

/* The slice block b of this tile covers, 32 rows (two tiles) on, at every
 * mr (prefetch_avx512.h). */
EC_INLINE void prefetch_ahead(const void *w, size_t ws, size_t b, size_t bb) {
    ec_prefetch_rows_ahead(w, ws, b * QNR * bb, QNR * bb);
}

static const size_t qt_block_bytes[] = {34, 18, 20, 22, 24};

/* acc[i] (lane j: output column j) into y[i ldy + j] for i < mr, j < nr */
EC_INLINE void store_tile(float *y, size_t ldy, const __m512 *acc, size_t mr, size_t nr) {
    const __mmask16 keep = (__mmask16)((1u << nr) - 1);
    for (size_t i = 0; i < mr; i++) _mm512_mask_storeu_ps(y + i * ldy, keep, acc[i]);
}

/* The 16 weight rows of a tile; columns past nr read row 0 again. */
EC_INLINE void tile_rows(const void *w, size_t ws, size_t nr, const uint8_t *p[QNR]) {
    for (size_t c = 0; c < QNR; c++) p[c] = (const uint8_t *)w + (c < nr ? c : 0) * ws;
}

/* The whole tile for a constant mr (the accumulators stay in registers). */
EC_INLINE void gemm32_tile(int t, size_t mr, size_t k, size_t nr, const void *x, size_t xs, const void *w,
                           size_t ws, float *y, size_t ldy) {
    const size_t bb = qt_block_bytes[t];
    const uint8_t *p[QNR];
    tile_rows(w, ws, nr, p);
    const int cols = mr > 2; /* decode (mr <= 2) is cheaper in group order: see the top */
    __m512 acc[QMR32];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / 32; b++) {
        prefetch_ahead(w, ws, b, bb);
        qblock16 q;
        decode_block(t, cols, p, b * bb, &q);
        for (size_t i = 0; i < mr; i++)
            acc[i] = block_row(t, cols, &q, (const ec_act_q8_32 *)((const char *)x + i * xs) + b, acc[i]);
    }
    store_tile(y, ldy, acc, mr, nr);
}

EC_INLINE void gemm32(int t, size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                      float *y, size_t ldy) {
    switch (mr) {
    case 1: gemm32_tile(t, 1, k, nr, x, xs, w, ws, y, ldy); break;
    case 2: gemm32_tile(t, 2, k, nr, x, xs, w, ws, y, ldy); break;
    case 3: gemm32_tile(t, 3, k, nr, x, xs, w, ws, y, ldy); break;
    case 4: gemm32_tile(t, 4, k, nr, x, xs, w, ws, y, ldy); break;
    case 5: gemm32_tile(t, 5, k, nr, x, xs, w, ws, y, ldy); break;
    case 6: gemm32_tile(t, 6, k, nr, x, xs, w, ws, y, ldy); break;
    case 7: gemm32_tile(t, 7, k, nr, x, xs, w, ws, y, ldy); break;
    default: gemm32_tile(t, 8, k, nr, x, xs, w, ws, y, ldy); break;
    }
}

/* Packed strips (qkernels.h): the column-order qblock16 of every block,
 * decoded once and stored (640 bytes a block); the packed tile runs
 * block_row over them exactly as gemm32_tile does over its own decode
 * (group and column order give the same exact integer sums), so the bits
 * are the same. Measured on Zen 4, q4_0 at M = 128: the decode is about a
 * third of the unpacked tile's time. */
_Static_assert(sizeof(qblock16) == 640, "qkernels_avx512.c's PACKS declares 640 bytes per packed block");

EC_INLINE void pack32(int t, size_t k, size_t nr, const void *w, size_t ws, void *buf) {
    const size_t bb = qt_block_bytes[t];
    const uint8_t *p[QNR];
    tile_rows(w, ws, nr, p);
    qblock16 *out = (qblock16 *)buf;
    for (size_t b = 0; b < k / 32; b++) {
        prefetch_ahead(w, ws, b, bb);
        decode_block(t, 1, p, b * bb, &out[b]);
    }
}

EC_INLINE void gemm32_packed_tile(int t, size_t mr, size_t k, size_t nr, const void *x, size_t xs,
                                  const qblock16 *packed, float *y, size_t ldy) {
    __m512 acc[QMR32];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / 32; b++)
        for (size_t i = 0; i < mr; i++)
            acc[i] = block_row(t, 1, &packed[b], (const ec_act_q8_32 *)((const char *)x + i * xs) + b, acc[i]);
    store_tile(y, ldy, acc, mr, nr);
}

EC_INLINE void gemm32_packed(int t, size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *buf,
                             float *y, size_t ldy) {
    const qblock16 *pk = (const qblock16 *)buf;
    switch (mr) {
    case 1: gemm32_packed_tile(t, 1, k, nr, x, xs, pk, y, ldy); break;
    case 2: gemm32_packed_tile(t, 2, k, nr, x, xs, pk, y, ldy); break;
    case 3: gemm32_packed_tile(t, 3, k, nr, x, xs, pk, y, ldy); break;
    case 4: gemm32_packed_tile(t, 4, k, nr, x, xs, pk, y, ldy); break;
    case 5: gemm32_packed_tile(t, 5, k, nr, x, xs, pk, y, ldy); break;
    case 6: gemm32_packed_tile(t, 6, k, nr, x, xs, pk, y, ldy); break;
    case 7: gemm32_packed_tile(t, 7, k, nr, x, xs, pk, y, ldy); break;
    default: gemm32_packed_tile(t, 8, k, nr, x, xs, pk, y, ldy); break;
    }
}

/* ec_qgemm_<type>_<suffix>, its packer ec_qpack_... and packed kernel
 * ec_qgemm_packed_... */
#define EC_QGEMM32_AVX512(type, tag, suffix)                                                                  \
    void ec_qgemm_##type##_##suffix(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,  \
                                    size_t ws, float *y, size_t ldy) {                                        \
        gemm32(tag, k, mr, nr, x, xs, w, ws, y, ldy);                                                         \
    }                                                                                                         \
    void ec_qpack_##type##_##suffix(size_t k, size_t nr, const void *w, size_t ws, void *buf) {               \
        pack32(tag, k, nr, w, ws, buf);                                                                       \
    }                                                                                                         \
    void ec_qgemm_packed_##type##_##suffix(size_t k, size_t mr, size_t nr, const void *x, size_t xs,          \
                                           const void *buf, size_t ws, float *y, size_t ldy) {                \
        (void)ws;                                                                                             \
        gemm32_packed(tag, k, mr, nr, x, xs, buf, y, ldy);                                                    \
    }

#endif /* EDGECORE_QGEMM_AVX512_H */
