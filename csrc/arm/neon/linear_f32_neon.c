/*
 * Fused linear, NEON: the same structure as the x86 tiers (read
 * csrc/x86/avx2/linear_f32_avx2.c first) on 4-lane vectors, 32 registers.
 *
 * [N, K] "dot" tiles: up to 4 x rows by 4 weight rows (16 accumulators), or
 * 1-2 rows by 8; each group of four accumulators reduces with two pairwise
 * adds. [K, N] "broadcast" tiles use FMLA by-element: one x vector holds
 * four k values, consumed lane by lane.
 */
#include <arm_neon.h>

#include "../../common/internal.h"
#include "vmath_neon.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define KC 256

/* Epilogue for `count` (1..4) columns of row m starting at n. */
EC_INLINE void store_cols(const ec_linear_args *a, size_t m, size_t n, size_t count, float32x4_t v,
                          int first, int last) {
    float *yp = a->y + m * a->n + n;
    if (count == 4) {
        if (!first) v = vaddq_f32(v, vld1q_f32(yp));
        if (last) {
            if (a->bias) v = vaddq_f32(v, vld1q_f32(a->bias + n));
            v = ec_activate_neon(v, a->act);
        }
        vst1q_f32(yp, v);
    } else {
        if (!first) v = vaddq_f32(v, ec_load_partial_neon(yp, count));
        if (last) {
            if (a->bias) v = vaddq_f32(v, ec_load_partial_neon(a->bias + n, count));
            v = ec_activate_neon(v, a->act);
        }
        ec_store_partial_neon(yp, v, count);
    }
}

/* [sum a0, sum a1, sum a2, sum a3], each as (l0 + l1) + (l2 + l3). */
EC_INLINE float32x4_t reduce4(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
    return vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3));
}

EC_INLINE void dot_tile(const ec_linear_args *a, size_t m0, size_t n, size_t valid, size_t k0,
                        size_t kc, int first, int last, const int MR, const int NR) {
    const size_t K = a->k;
    const float *xr[4];
    const float *wr[8];
    for (int i = 0; i < MR; i++) xr[i] = a->x + (m0 + i) * K + k0;
    for (int j = 0; j < NR; j++) wr[j] = a->w + (n + ((size_t)j < valid ? (size_t)j : 0)) * K + k0;

    float32x4_t acc[4][8];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = vdupq_n_f32(0.0f);
    size_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        float32x4_t xv[4];
        for (int i = 0; i < MR; i++) xv[i] = vld1q_f32(xr[i] + k);
        for (int j = 0; j < NR; j++) {
            const float32x4_t wv = vld1q_f32(wr[j] + k);
            for (int i = 0; i < MR; i++) acc[i][j] = vfmaq_f32(acc[i][j], xv[i], wv);
        }
    }
    if (k < kc) { /* zero-filled tails add nothing */
        float32x4_t xv[4];
        for (int i = 0; i < MR; i++) xv[i] = ec_load_partial_neon(xr[i] + k, kc - k);
        for (int j = 0; j < NR; j++) {
            const float32x4_t wv = ec_load_partial_neon(wr[j] + k, kc - k);
            for (int i = 0; i < MR; i++) acc[i][j] = vfmaq_f32(acc[i][j], xv[i], wv);
        }
    }
    for (int i = 0; i < MR; i++) {
        for (int g = 0; g < NR; g += 4) {
            if ((size_t)g >= valid) break;
            const size_t count = valid - g < 4 ? valid - g : 4;
            const float32x4_t s = reduce4(acc[i][g], acc[i][g + 1], acc[i][g + 2], acc[i][g + 3]);
            store_cols(a, m0 + i, n + g, count, s, first, last);
        }
    }
}

static void linear_nt(const ec_linear_args *a, size_t n0, size_t n1) {
    const size_t M = a->m, K = a->k;
    const size_t kc = (M > 4 && K > KC) ? KC : K;
    if (K == 0) {
        for (size_t m = 0; m < M; m++)
            for (size_t n = n0; n < n1; n += 4)
                store_cols(a, m, n, n1 - n < 4 ? n1 - n : 4, vdupq_n_f32(0.0f), 1, 1);
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
    float32x4_t acc[4][8];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NV; j++) acc[i][j] = vdupq_n_f32(0.0f);
    const int full = valid >= (size_t)(4 * NV);
    for (size_t k = 0; k < kc; k++, wp += N) {
        float32x4_t wv[8];
        for (int j = 0; j < NV; j++) {
            const size_t left = valid > (size_t)(4 * j) ? valid - 4 * j : 0;
            wv[j] = full || left >= 4 ? vld1q_f32(wp + 4 * j) : ec_load_partial_neon(wp + 4 * j, left);
        }
        for (int i = 0; i < MR; i++) {
            const float32x4_t xb = vdupq_n_f32(xr[i * K + k]);
            for (int j = 0; j < NV; j++) acc[i][j] = vfmaq_f32(acc[i][j], xb, wv[j]);
        }
    }
    for (int j = 0; j < NV; j++) {
        if ((size_t)(4 * j) >= valid) break;
        const size_t count = valid - 4 * j < 4 ? valid - 4 * j : 4;
        for (int i = 0; i < MR; i++) store_cols(a, m0 + i, n + 4 * j, count, acc[i][j], first, last);
    }
}

#define T_NBLK 32 /* every tile width (16, 32) divides it */

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
                for (size_t n = nb; n < ne; n += 16) bcast_tile(a, m, n, ne - n, k0, kl, first, last, 4, 4);
            if (M - m >= 2) {
                bcast_tile(a, m, nb, ne - nb, k0, kl, first, last, 2, 8);
                m += 2;
            }
            if (M - m == 1) bcast_tile(a, m, nb, ne - nb, k0, kl, first, last, 1, 8);
        }
    }
}

void ec_linear_f32_neon(const ec_linear_args *a, size_t n0, size_t n1) {
    if (a->transposed) linear_t(a, n0, n1);
    else linear_nt(a, n0, n1);
}
