/*
 * Fused linear, AVX-512: the same structure as linear_f32_avx2.c (read that
 * first) on 16-lane vectors, with mask registers for every tail.
 *
 * [N, K] "dot" tiles: up to 4 x rows by 4 or 8 weight rows (16 accumulators
 * of 32 registers). A tile's sums are folded 16 -> 8 lanes and reduced with
 * a hadd tree. [K, N] "broadcast" tiles: MR rows x NV 16-column vectors.
 */
#include <immintrin.h>

#include "../../common/internal.h"
#include "vmath_avx512.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define KC 256

/* Epilogue for `count` (1..16) columns of row m starting at n. */
EC_INLINE void store_cols(const ec_linear_args *a, size_t m, size_t n, size_t count, __m512 v,
                          int first, int last) {
    float *yp = a->y + m * a->n + n;
    const __mmask16 mask = ec_mask_avx512(count);
    if (!first) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, yp));
    if (last) {
        if (a->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, a->bias + n));
        v = ec_activate_avx512(v, a->act);
    }
    _mm512_mask_storeu_ps(yp, mask, v);
}

EC_INLINE __m256 fold(__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}

/* Sums of up to 8 accumulators in lanes 0..7 (zero above); per accumulator
 * the order is fixed, so a column's result does not depend on NR. */
EC_INLINE __m512 reduce(const __m512 *acc, const int NR) {
    __m256 f[8];
    for (int j = 0; j < 8; j++) f[j] = j < NR ? fold(acc[j]) : _mm256_setzero_ps();
    const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(f[0], f[1]), _mm256_hadd_ps(f[2], f[3]));
    const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(f[4], f[5]), _mm256_hadd_ps(f[6], f[7]));
    const __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
    return _mm512_zextps256_ps512(s);
}

EC_INLINE void dot_tile(const ec_linear_args *a, size_t m0, size_t n, size_t valid, size_t k0,
                        size_t kc, int first, int last, const int MR, const int NR) {
    const size_t K = a->k;
    const float *xr[4];
    const float *wr[8];
    for (int i = 0; i < MR; i++) xr[i] = a->x + (m0 + i) * K + k0;
    for (int j = 0; j < NR; j++) wr[j] = a->w + (n + ((size_t)j < valid ? (size_t)j : 0)) * K + k0;

    __m512 acc[4][8];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 16 <= kc; k += 16) {
        __m512 xv[4];
        for (int i = 0; i < MR; i++) xv[i] = _mm512_loadu_ps(xr[i] + k);
        for (int j = 0; j < NR; j++) {
            const __m512 wv = _mm512_loadu_ps(wr[j] + k);
            for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    if (k < kc) {
        const __mmask16 mask = ec_mask_avx512(kc - k);
        __m512 xv[4];
        for (int i = 0; i < MR; i++) xv[i] = _mm512_maskz_loadu_ps(mask, xr[i] + k);
        for (int j = 0; j < NR; j++) {
            const __m512 wv = _mm512_maskz_loadu_ps(mask, wr[j] + k);
            for (int i = 0; i < MR; i++) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    const size_t count = valid < (size_t)NR ? valid : (size_t)NR;
    for (int i = 0; i < MR; i++) store_cols(a, m0 + i, n, count, reduce(acc[i], NR), first, last);
}

static void linear_nt(const ec_linear_args *a, size_t n0, size_t n1) {
    const size_t M = a->m, K = a->k;
    const size_t kc = (M > 4 && K > KC) ? KC : K;
    if (K == 0) {
        for (size_t m = 0; m < M; m++)
            for (size_t n = n0; n < n1; n += 16)
                store_cols(a, m, n, n1 - n < 16 ? n1 - n : 16, _mm512_setzero_ps(), 1, 1);
        return;
    }
    for (size_t nb = n0; nb < n1; nb += 8) {
        const size_t valid = n1 - nb < 8 ? n1 - nb : 8;
        for (size_t k0 = 0; k0 < K; k0 += kc) {
            const size_t kl = K - k0 < kc ? K - k0 : kc;
            const int first = k0 == 0, last = k0 + kl == K;
            size_t m = 0;
            for (; m + 4 <= M; m += 4) {
                dot_tile(a, m, nb, valid, k0, kl, first, last, 4, 4);
                if (valid > 4) dot_tile(a, m, nb + 4, valid - 4, k0, kl, first, last, 4, 4);
            }
            if (M - m == 3) {
                dot_tile(a, m, nb, valid, k0, kl, first, last, 3, 4);
                if (valid > 4) dot_tile(a, m, nb + 4, valid - 4, k0, kl, first, last, 3, 4);
            } else if (M - m == 2) {
                dot_tile(a, m, nb, valid, k0, kl, first, last, 2, 8);
            } else if (M - m == 1) {
                dot_tile(a, m, nb, valid, k0, kl, first, last, 1, 8);
            }
        }
    }
}

EC_INLINE void bcast_tile(const ec_linear_args *a, size_t m0, size_t n, size_t valid, size_t k0,
                          size_t kc, int first, int last, const int MR, const int NV) {
    const size_t K = a->k, N = a->n;
    const float *xr = a->x + m0 * K + k0;
    const float *wp = a->w + k0 * N + n;
    __m512 acc[4][8];
    __mmask16 mask[8];
    for (int j = 0; j < NV; j++) {
        mask[j] = ec_mask_avx512(valid > (size_t)(16 * j) ? valid - 16 * j : 0);
        for (int i = 0; i < MR; i++) acc[i][j] = _mm512_setzero_ps();
    }
    if (valid >= (size_t)(16 * NV)) {
        for (size_t k = 0; k < kc; k++, wp += N)
            for (int j = 0; j < NV; j++) {
                const __m512 wv = _mm512_loadu_ps(wp + 16 * j);
                for (int i = 0; i < MR; i++)
                    acc[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(xr[i * K + k]), wv, acc[i][j]);
            }
    } else {
        for (size_t k = 0; k < kc; k++, wp += N)
            for (int j = 0; j < NV; j++) {
                const __m512 wv = _mm512_maskz_loadu_ps(mask[j], wp + 16 * j);
                for (int i = 0; i < MR; i++)
                    acc[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(xr[i * K + k]), wv, acc[i][j]);
            }
    }
    for (int j = 0; j < NV; j++) {
        if ((size_t)(16 * j) >= valid) break;
        const size_t count = valid - 16 * j < 16 ? valid - 16 * j : 16;
        for (int i = 0; i < MR; i++) store_cols(a, m0 + i, n + 16 * j, count, acc[i][j], first, last);
    }
}

#define T_NBLK 128 /* every tile width (128, 64) divides it */

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
                for (size_t n = nb; n < ne; n += 64) bcast_tile(a, m, n, ne - n, k0, kl, first, last, 4, 4);
            if (M - m >= 2) {
                bcast_tile(a, m, nb, ne - nb, k0, kl, first, last, 2, 8);
                m += 2;
            }
            if (M - m == 1) bcast_tile(a, m, nb, ne - nb, k0, kl, first, last, 1, 8);
        }
    }
}

void ec_linear_f32_avx512(const ec_linear_args *a, size_t n0, size_t n1) {
    if (a->transposed) linear_t(a, n0, n1);
    else linear_nt(a, n0, n1);
}
