/*
 * Fused linear, AVX2 + FMA: y = act(x @ W^T + b) for output columns [n0, n1).
 *
 * [N, K] weights (HF layout): "dot" tiles. MR rows of x times NR rows of W,
 * accumulated along K in 8-lane vectors, then reduced with one hadd tree per
 * tile. Every weight row is read once per M-tile; with M <= 3 that is once
 * in total, which is what decode (M = 1..16) needs: the weights stream from
 * memory exactly once while x stays in L1.
 *
 * [K, N] weights (Conv1D layout): "broadcast" tiles. MR rows of x are
 * broadcast one k at a time against NV 8-column vectors of W row k.
 *
 * Larger M is blocked along K (KC) so a block of W and the x rows of a tile
 * stay in cache; partial sums accumulate in y, and bias + activation are
 * applied in registers on the last K block. The blocking depends only on M
 * and K, never on the thread split, so results are bitwise identical for any
 * thread count.
 */
#include <immintrin.h>

#include "../../common/internal.h"
#include "vmath_avx2.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define KC 256 /* K block for M > one tile: 3 rows x 1 KiB of x stay in L1 */

/* Apply the epilogue to `count` (1..8) columns of row m starting at n. */
EC_INLINE void store_cols(const ec_linear_args *a, size_t m, size_t n, size_t count, __m256 v,
                          int first, int last) {
    float *yp = a->y + m * a->n + n;
    if (count == 8) {
        if (!first) v = _mm256_add_ps(v, _mm256_loadu_ps(yp));
        if (last) {
            if (a->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(a->bias + n));
            v = ec_activate_avx2(v, a->act);
        }
        _mm256_storeu_ps(yp, v);
    } else {
        const __m256i mask = ec_mask_avx2(count);
        if (!first) v = _mm256_add_ps(v, _mm256_maskload_ps(yp, mask));
        if (last) {
            if (a->bias) v = _mm256_add_ps(v, _mm256_maskload_ps(a->bias + n, mask));
            v = ec_activate_avx2(v, a->act);
        }
        _mm256_maskstore_ps(yp, mask, v);
    }
}

/* [sum(a0), sum(a1), sum(a2), sum(a3)] in the low half, zeros above. Each
 * sum is ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)), the same order as reduce8. */
EC_INLINE __m256 reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    return _mm256_zextps128_ps256(s);
}

EC_INLINE __m256 reduce8(const __m256 *a) {
    const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    const __m256 lo = _mm256_permute2f128_ps(h0, h1, 0x20);
    const __m256 hi = _mm256_permute2f128_ps(h0, h1, 0x31);
    return _mm256_add_ps(lo, hi);
}

/*
 * Dot tile: rows [m0, m0+MR) x columns [n, n+NR) over k in [k0, k0+kc).
 * Columns past `valid` reuse row n (always in bounds); they are computed
 * and then not stored.
 */
EC_INLINE void dot_tile(const ec_linear_args *a, size_t m0, size_t n, size_t valid, size_t k0,
                        size_t kc, int first, int last, const int MR, const int NR) {
    const size_t K = a->k;
    const float *xr[3];
    const float *wr[8];
    for (int i = 0; i < MR; i++) xr[i] = a->x + (m0 + i) * K + k0;
    for (int j = 0; j < NR; j++) wr[j] = a->w + (n + ((size_t)j < valid ? (size_t)j : 0)) * K + k0;

    __m256 acc[3][8];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();

    size_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 xv[3];
        for (int i = 0; i < MR; i++) xv[i] = _mm256_loadu_ps(xr[i] + k);
        for (int j = 0; j < NR; j++) {
            const __m256 wv = _mm256_loadu_ps(wr[j] + k);
            for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    if (k < kc) { /* masked lanes load as zero and add nothing */
        const __m256i mask = ec_mask_avx2(kc - k);
        __m256 xv[3];
        for (int i = 0; i < MR; i++) xv[i] = _mm256_maskload_ps(xr[i] + k, mask);
        for (int j = 0; j < NR; j++) {
            const __m256 wv = _mm256_maskload_ps(wr[j] + k, mask);
            for (int i = 0; i < MR; i++) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    const size_t count = valid < (size_t)NR ? valid : (size_t)NR;
    for (int i = 0; i < MR; i++) {
        const __m256 s = NR == 8 ? reduce8(acc[i]) : reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        store_cols(a, m0 + i, n, count, s, first, last);
    }
}

static void linear_nt(const ec_linear_args *a, size_t n0, size_t n1) {
    const size_t M = a->m, K = a->k;
    const size_t kc = (M > 3 && K > KC) ? KC : K;
    if (K == 0) { /* empty sum: y = act(bias) */
        for (size_t m = 0; m < M; m++)
            for (size_t n = n0; n < n1; n += 8)
                store_cols(a, m, n, n1 - n < 8 ? n1 - n : 8, _mm256_setzero_ps(), 1, 1);
        return;
    }
    for (size_t nb = n0; nb < n1; nb += 8) {
        const size_t valid = n1 - nb < 8 ? n1 - nb : 8;
        for (size_t k0 = 0; k0 < K; k0 += kc) {
            const size_t kl = K - k0 < kc ? K - k0 : kc;
            const int first = k0 == 0, last = k0 + kl == K;
            size_t m = 0;
            for (; m + 3 <= M; m += 3) {
                dot_tile(a, m, nb, valid, k0, kl, first, last, 3, 4);
                if (valid > 4) dot_tile(a, m, nb + 4, valid - 4, k0, kl, first, last, 3, 4);
            }
            if (M - m == 2) {
                dot_tile(a, m, nb, valid, k0, kl, first, last, 2, 4);
                if (valid > 4) dot_tile(a, m, nb + 4, valid - 4, k0, kl, first, last, 2, 4);
            } else if (M - m == 1) {
                dot_tile(a, m, nb, valid, k0, kl, first, last, 1, 8);
            }
        }
    }
}

/*
 * Broadcast tile for [K, N] weights: rows [m0, m0+MR) x columns
 * [n, n + 8*NV) (only `valid` of them exist) over k in [k0, k0+kc).
 */
EC_INLINE void bcast_tile(const ec_linear_args *a, size_t m0, size_t n, size_t valid, size_t k0,
                          size_t kc, int first, int last, const int MR, const int NV) {
    const size_t K = a->k, N = a->n;
    const float *xr = a->x + m0 * K + k0;
    const float *wp = a->w + k0 * N + n;
    __m256 acc[4][12];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NV; j++) acc[i][j] = _mm256_setzero_ps();

    if (valid >= (size_t)(8 * NV)) {
        for (size_t k = 0; k < kc; k++, wp += N) {
            for (int j = 0; j < NV; j++) {
                const __m256 wv = _mm256_loadu_ps(wp + 8 * j);
                for (int i = 0; i < MR; i++)
                    acc[i][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(xr + i * K + k), wv, acc[i][j]);
            }
        }
    } else {
        __m256i mask[12];
        for (int j = 0; j < NV; j++)
            mask[j] = ec_mask_avx2(valid > (size_t)(8 * j) ? valid - 8 * j : 0);
        for (size_t k = 0; k < kc; k++, wp += N) {
            for (int j = 0; j < NV; j++) {
                const __m256 wv = _mm256_maskload_ps(wp + 8 * j, mask[j]);
                for (int i = 0; i < MR; i++)
                    acc[i][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(xr + i * K + k), wv, acc[i][j]);
            }
        }
    }
    for (int j = 0; j < NV; j++) {
        if ((size_t)(8 * j) >= valid) break;
        const size_t count = valid - 8 * j < 8 ? valid - 8 * j : 8;
        for (int i = 0; i < MR; i++) store_cols(a, m0 + i, n + 8 * j, count, acc[i][j], first, last);
    }
}

/* Column block: every tile width (96, 48, 24) divides it. */
#define T_NBLK 96

static void linear_t(const ec_linear_args *a, size_t n0, size_t n1) {
    const size_t M = a->m, K = a->k;
    const size_t kc = (M > 4 && K > KC) ? KC : (K ? K : 1);
    for (size_t nb = n0; nb < n1; nb += T_NBLK) {
        const size_t ne = n1 - nb < T_NBLK ? n1 : nb + T_NBLK;
        for (size_t k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kc) {
            const size_t kl = K - k0 < kc ? K - k0 : kc;
            const int first = k0 == 0, last = k0 + kl >= K;
            size_t m = 0;
            for (; m + 4 <= M; m += 4)
                for (size_t n = nb; n < ne; n += 24) bcast_tile(a, m, n, ne - n, k0, kl, first, last, 4, 3);
            if (M - m >= 2) {
                for (size_t n = nb; n < ne; n += 48) bcast_tile(a, m, n, ne - n, k0, kl, first, last, 2, 6);
                m += 2;
            }
            if (M - m == 1)
                for (size_t n = nb; n < ne; n += 96) bcast_tile(a, m, n, ne - n, k0, kl, first, last, 1, 12);
        }
    }
}

void ec_linear_f32_avx2(const ec_linear_args *a, size_t n0, size_t n1) {
    if (a->transposed) linear_t(a, n0, n1);
    else linear_nt(a, n0, n1);
}
