/*
 * gemm micro-kernels for the 32-element block types (q8_0, q4_0, q4_1,
 * q5_0, q5_1), AVX2, shared by the plain tier (qgemm32_avx2.c: maddubs +
 * madd) and the AVX-VNNI variant (avx_vnni/qgemm32_avx_vnni.c: vpdpbusd),
 * which differ only in the block's 8-lane integer dot product `dot`; both
 * give exactly the same integers, so both are bit for bit the scalar
 * kernels.
 *
 * A tile is up to 8 weight rows (nr) by up to 8 activation rows (mr). For
 * each block of K, the 8 weight blocks are decoded once into bytes and
 * reused by every activation row. A block's integer dot product is exact
 * (maddubs pairs, then pairs of pairs, then a transposing hadd tree that
 * leaves row r's sum in lane r), so only the float part has an order, and
 * it is the scalar kernel's, per lane:
 *
 *   acc += (dw dx) isum                      (q8_0, q4_0, q5_0)
 *   acc += (dw dx) isum + (mw dx) xsum       (q4_1, q5_1)
 *
 * with one rounding per operation (setup.py builds with -ffp-contract=off,
 * and nothing here is an FMA). The lanes of a tile never mix, so a value
 * does not depend on mr, nr or on its neighbours (qkernels.h).
 *
 * The weights are decoded to unsigned bytes u (0..15 or 0..31, or |q| for
 * q8_0), as maddubs needs its first operand unsigned. The symmetric 4- and
 * 5-bit types store q - 8 and q - 16: their isum is dot(u, x) - 8 xsum (or
 * 16 xsum), exact in int32. q8_0 moves q's sign onto x (|q| (sign(q) x));
 * a pair sum is at most 2 * 128 * 127 < 2^15, so maddubs never saturates.
 */
#ifndef EDGECORE_QGEMM32_AVX2_H
#define EDGECORE_QGEMM32_AVX2_H

#include <immintrin.h>

#include "../../common/qblocks.h"
#include "../../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define NR 8
#define MR 8

enum { EC_Q8_0, EC_Q4_0, EC_Q4_1, EC_Q5_0, EC_Q5_1 };

/* e, f: two levels of hadd over rows 0-3 and 4-7 (low 128-bit lane holds
 * elements 0-3 of each row's pair sums, high lane 4-7); lane r of the
 * result = row r's total. */
EC_INLINE __m256i fold_quads(__m256i e, __m256i f) {
    return _mm256_add_epi32(_mm256_permute2x128_si256(e, f, 0x20), _mm256_permute2x128_si256(e, f, 0x31));
}

/* Lane r of the result = the sum of the 8 int32 lanes of p[r]. */
EC_INLINE __m256i reduce8(const __m256i p[NR]) {
    const __m256i a = _mm256_hadd_epi32(p[0], p[1]), b = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i c = _mm256_hadd_epi32(p[4], p[5]), d = _mm256_hadd_epi32(p[6], p[7]);
    return fold_quads(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
}

/* 16 bytes of nibbles -> 32 bytes: element j from the low nibble of byte
 * j, element j + 16 from its high nibble. The bytes are broadcast to both
 * 128-bit lanes by the load itself, and the high lane's dwords shift right
 * by 4, which brings each byte's high nibble down (the next byte's low
 * nibble lands above it and is masked off): no shuffle. */
EC_INLINE __m256i nibbles(const uint8_t *qs) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    const __m256i shifted = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F));
}

/* Bit j of qh -> 0x10 in byte j. */
EC_INLINE __m256i fifth_bits(const uint8_t *qh_bytes) {
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  /* */
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)ec_read_u32(qh_bytes)), shuf);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* The block's weights as bytes for maddubs (see the top comment). */
EC_INLINE __m256i decode(const uint8_t *b, int type) {
    switch (type) {
    case EC_Q8_0: return _mm256_loadu_si256((const __m256i *)(b + 2)); /* signed q; |q| taken by the caller */
    case EC_Q4_0: return nibbles(b + 2);
    case EC_Q4_1: return nibbles(b + 4);
    case EC_Q5_0: return _mm256_or_si256(nibbles(b + 6), fifth_bits(b + 2));
    default: return _mm256_or_si256(nibbles(b + 8), fifth_bits(b + 4));
    }
}

/* The f16 pair at the start of the 8 rows' blocks (d and, for q4_1 and
 * q5_1, m; for the others the second half is quantized data, unused),
 * widened (exact): one 32-bit load per row. */
EC_INLINE void scales8(const uint8_t *const rows[NR], size_t off, __m256 *d, __m256 *m) {
    const __m256i v = _mm256_setr_epi32((int)ec_read_u32(rows[0] + off), (int)ec_read_u32(rows[1] + off),
                                        (int)ec_read_u32(rows[2] + off), (int)ec_read_u32(rows[3] + off),
                                        (int)ec_read_u32(rows[4] + off), (int)ec_read_u32(rows[5] + off),
                                        (int)ec_read_u32(rows[6] + off), (int)ec_read_u32(rows[7] + off));
    /* per 128-bit lane: the four low halves to bytes 0-7, the high halves to 8-15 */
    const __m256i split = _mm256_shuffle_epi8(
        v, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, /* */
                            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    const __m256i halves = _mm256_permute4x64_epi64(split, _MM_SHUFFLE(3, 1, 2, 0)); /* d0-7 | m0-7 */
    *d = _mm256_cvtph_ps(_mm256_castsi256_si128(halves));
    *m = _mm256_cvtph_ps(_mm256_extracti128_si256(halves, 1));
}

/* acc + the block's float update for one activation row (the top
 * comment's formula; isum before the bias correction of the symmetric
 * 4- and 5-bit types, which store q - bias). */
EC_INLINE __m256 block_update(__m256 acc, __m256i isum, __m256 dw, __m256 mw, const ec_act_q8_32 *xb, int type) {
    const int bias = type == EC_Q4_0 ? 8 : type == EC_Q5_0 ? 16 : 0;
    if (bias) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(bias * xb->sum));
    const __m256 dx = _mm256_set1_ps(xb->d);
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(isum));
    if (type == EC_Q4_1 || type == EC_Q5_1)
        t = _mm256_add_ps(t, _mm256_mul_ps(_mm256_mul_ps(mw, dx), _mm256_set1_ps((float)xb->sum)));
    return _mm256_add_ps(acc, t);
}

/* acc[i] (lane r = output r) into y[i ldy + r] for r < nr. */
EC_INLINE void store_rows(float *y, size_t ldy, const __m256 *acc, size_t mr, size_t nr) {
    for (size_t i = 0; i < mr; i++) {
        if (nr == NR) {
            _mm256_storeu_ps(y + i * ldy, acc[i]);
        } else {
            float tmp[NR];
            _mm256_storeu_ps(tmp, acc[i]);
            memcpy(y + i * ldy, tmp, nr * sizeof(float));
        }
    }
}

/* Prefetch the next tile's weights, the slice block `blk` of this tile
 * covers. A tile reads its 8 rows in step, block by block: 8 streams only
 * one row (K / 32 blocks, e.g. 18 cache lines of q8_0 at K = 576) long,
 * too short for the hardware prefetcher to learn before they end. The 8
 * rows are one contiguous range, and so are the next tile's (rows j + 8 ..
 * j + 15, whether or not this call computes them), so fetching 1 / (K / 32)
 * of that range per block has it in cache when the next tile starts, in
 * the order it is read. The decode path was at 25-35% of the read
 * bandwidth without it (bench_qlinear, cold weights). A prefetch past the
 * end of the matrix does not fault. gemm32 prefetches too: when M is at
 * most one M tile (batched decode, M = 3..8) its single pass over each
 * panel is the one that reads the weights from memory; timed on an AMD
 * Zen 4 (2 threads, cold weights, avx2 tier forced), M = 4 and 8 ran
 * 1.2-2.1x faster with it and prefill at M = 128 3-10% faster (later M
 * tiles find the panel in cache and the prefetches cost little). */
EC_INLINE void prefetch_next_tile(const void *w, size_t ws, size_t blk, size_t block_bytes) {
    const char *ahead = (const char *)w + NR * ws + blk * NR * block_bytes;
    for (size_t l = 0; l < NR * block_bytes; l += 64) _mm_prefetch(ahead + l, _MM_HINT_T0);
}

/* 8 int32 lanes whose sum is sum_l u[l] x[l] (u unsigned, x signed bytes;
 * no pair sum exceeds int16 for the ranges above). */
typedef __m256i (*ec_dot32_fn)(__m256i u, __m256i x);

/* `dot` is a constant at every call site, so it is inlined. */
EC_INLINE void gemm32(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                      float *y, size_t ldy, size_t block_bytes, int type, ec_dot32_fn dot) {
    const uint8_t *rows[NR];
    /* rows past nr repeat row 0: valid memory, computed in their own lanes, never stored */
    for (size_t r = 0; r < NR; r++) rows[r] = (const uint8_t *)w + (r < nr ? r : 0) * ws;
    __m256 acc[MR];
    for (size_t i = 0; i < MR; i++) acc[i] = _mm256_setzero_ps();

    for (size_t blk = 0; blk < k / 32; blk++) {
        const size_t off = blk * block_bytes;
        prefetch_next_tile(w, ws, blk, block_bytes);
        __m256i u[NR], sgn[NR]; /* sgn: q8_0's signed q */
        for (int r = 0; r < NR; r++) {
            u[r] = decode(rows[r] + off, type);
            if (type == EC_Q8_0) {
                sgn[r] = u[r];
                u[r] = _mm256_sign_epi8(u[r], u[r]); /* |q|; -128 gives 0x80 = 128 unsigned */
            }
        }
        __m256 dw, mw;
        scales8(rows, off, &dw, &mw);

        for (size_t i = 0; i < mr; i++) {
            const ec_act_q8_32 *xb = (const ec_act_q8_32 *)((const char *)x + i * xs) + blk;
            const __m256i xq = _mm256_loadu_si256((const __m256i *)xb->q);
            __m256i p[NR];
            for (int r = 0; r < NR; r++) {
                const __m256i xv = type == EC_Q8_0 ? _mm256_sign_epi8(xq, sgn[r]) : xq;
                p[r] = dot(u[r], xv);
            }
            __m256i isum = reduce8(p);
            acc[i] = block_update(acc[i], isum, dw, mw, xb, type);
        }
    }

    store_rows(y, ldy, acc, mr, nr);
}

/* mr = 1 or 2 (decode; refined decode runs x and its residual as 2 rows):
 * the same sums in the same order as gemm32, but each weight row's block
 * is decoded, multiplied and folded into the hadd tree before the next
 * row's is decoded. gemm32 keeps all 8 decoded rows live for reuse across
 * up to 8 activation rows; with one or two that only costs registers (8
 * rows + 8 products, + q8_0's 8 signs, do not fit 16 ymm registers) and
 * the spills made decode 2-4x slower than this. */
#define GEMV_MR 2
EC_INLINE void gemv32(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws, float *y,
                      size_t ldy, size_t block_bytes, int type, ec_dot32_fn dot) {
    const uint8_t *rows[NR];
    for (size_t r = 0; r < NR; r++) rows[r] = (const uint8_t *)w + (r < nr ? r : 0) * ws;
    __m256 acc[GEMV_MR];
    for (size_t i = 0; i < mr; i++) acc[i] = _mm256_setzero_ps();
    for (size_t blk = 0; blk < k / 32; blk++) {
        const size_t off = blk * block_bytes;
        prefetch_next_tile(w, ws, blk, block_bytes);
        const ec_act_q8_32 *xb[GEMV_MR];
        __m256i xq[GEMV_MR], pair[GEMV_MR][NR / 2], quad[GEMV_MR][2];
        for (size_t i = 0; i < mr; i++) {
            xb[i] = (const ec_act_q8_32 *)((const char *)x + i * xs) + blk;
            xq[i] = _mm256_loadu_si256((const __m256i *)xb[i]->q);
        }
        for (int r = 0; r < NR; r += 2) {
            const __m256i u0 = decode(rows[r] + off, type), u1 = decode(rows[r + 1] + off, type);
            for (size_t i = 0; i < mr; i++) {
                __m256i p0, p1;
                if (type == EC_Q8_0) {
                    p0 = dot(_mm256_sign_epi8(u0, u0), _mm256_sign_epi8(xq[i], u0));
                    p1 = dot(_mm256_sign_epi8(u1, u1), _mm256_sign_epi8(xq[i], u1));
                } else {
                    p0 = dot(u0, xq[i]), p1 = dot(u1, xq[i]);
                }
                pair[i][r / 2] = _mm256_hadd_epi32(p0, p1);
                if (r % 4 == 2) quad[i][r / 4] = _mm256_hadd_epi32(pair[i][r / 2 - 1], pair[i][r / 2]);
            }
        }
        __m256 dw, mw;
        scales8(rows, off, &dw, &mw);
        for (size_t i = 0; i < mr; i++) {
            acc[i] = block_update(acc[i], fold_quads(quad[i][0], quad[i][1]), dw, mw, xb[i], type);
        }
    }
    store_rows(y, ldy, acc, mr, nr);
}

/* The five kernels ec_qgemm_<type>_<suffix>, with `dot`. */
#define EC_GEMM32(name, bytes, type, suffix, dot)                                                      \
    void ec_qgemm_##name##_##suffix(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, \
                                    size_t ws, float *y, size_t ldy) {                                 \
        if (mr == 1)                                                                                   \
            gemv32(k, 1, nr, x, xs, w, ws, y, ldy, bytes, type, dot);                                  \
        else if (mr == 2)                                                                              \
            gemv32(k, 2, nr, x, xs, w, ws, y, ldy, bytes, type, dot);                                  \
        else                                                                                           \
            gemm32(k, mr, nr, x, xs, w, ws, y, ldy, bytes, type, dot);                                 \
    }

#define EC_GEMM32_ALL(suffix, dot)                 \
    EC_GEMM32(q8_0, 34, EC_Q8_0, suffix, dot)      \
    EC_GEMM32(q4_0, 18, EC_Q4_0, suffix, dot)      \
    EC_GEMM32(q4_1, 20, EC_Q4_1, suffix, dot)      \
    EC_GEMM32(q5_0, 22, EC_Q5_0, suffix, dot)      \
    EC_GEMM32(q5_1, 24, EC_Q5_1, suffix, dot)

#endif /* EDGECORE_QGEMM32_AVX2_H */
