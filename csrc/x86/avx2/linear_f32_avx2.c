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
 * Larger M with [K, N] weights: packed panels and a 6 x 16 micro-kernel.
 * [N, K] weights take the dot tiles at every M: packing them (a transpose)
 * measured no faster at M = 32-128, and the dot order is what keeps a row's
 * value independent of M.
 *
 * Batch invariance: every output's operations are the same for every M
 * (the engine's batched step relies on it: a sequence's tokens never depend
 * on its batch-mates). [N, K] outputs are one lane-split sum over the whole
 * K, reduced by a fixed tree, whatever the tile; [K, N] outputs are one FMA
 * chain over k in order, whether rows stream or panels are packed (after a
 * panel's first K block the chain continues from y).
 * Blocking depends only on M, K and the layout, never on the thread split,
 * so results are bitwise identical for any thread count.
 */
#include <immintrin.h>

#include "../../common/internal.h"
#include "vmath_avx2.h"

#define EC_INLINE static inline __attribute__((always_inline))

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

static __attribute__((noinline)) void store_cols_out(const ec_linear_args *a, size_t m, size_t n, size_t count,
                                                     __m256 v, int first, int last) {
    store_cols(a, m, n, count, v, first, last);
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
    for (size_t nb = n0; nb < n1; nb += 8) {
        const size_t valid = n1 - nb < 8 ? n1 - nb : 8;
        size_t m = 0;
        for (; m + 3 <= M; m += 3) {
            dot_tile(a, m, nb, valid, 0, K, 1, 1, 3, 4);
            if (valid > 4) dot_tile(a, m, nb + 4, valid - 4, 0, K, 1, 1, 3, 4);
        }
        if (M - m == 2) {
            dot_tile(a, m, nb, valid, 0, K, 1, 1, 2, 4);
            if (valid > 4) dot_tile(a, m, nb + 4, valid - 4, 0, K, 1, 1, 2, 4);
        } else if (M - m == 1) {
            dot_tile(a, m, nb, valid, 0, K, 1, 1, 1, 8);
        }
    }
}

/* ---- [K, N] weights, M <= 4: stream weight rows ----------------------------
 *
 * Each pass applies ROW_KU consecutive weight rows to a chunk of output
 * columns of every x row: the weights are read strictly in file
 * order (decode streams them once, at memory speed), and the partial sums
 * live in y, a few KiB that stay in L1.
 */
#define ROW_Y_BYTES 16384
#define ROW_KU 4

EC_INLINE void rows_pass(const ec_linear_args *a, size_t nb, size_t ne, size_t k, int first, int last,
                         const int MR, const int KU) {
    const size_t N = a->n, K = a->k;
    const float *w = a->w + k * N;
    __m256 xb[4][ROW_KU];
    for (int m = 0; m < MR; m++)
        for (int u = 0; u < KU; u++) xb[m][u] = _mm256_set1_ps(a->x[m * K + k + u]);
    size_t v = nb;
    for (; v + 8 <= ne; v += 8) {
        __m256 wv[ROW_KU];
        for (int u = 0; u < KU; u++) wv[u] = _mm256_loadu_ps(w + u * N + v);
        for (int m = 0; m < MR; m++) {
            float *yp = a->y + m * N + v;
            __m256 acc = first ? _mm256_setzero_ps() : _mm256_loadu_ps(yp);
            for (int u = 0; u < KU; u++) acc = _mm256_fmadd_ps(xb[m][u], wv[u], acc);
            if (last) {
                if (a->bias) acc = _mm256_add_ps(acc, _mm256_loadu_ps(a->bias + v));
                acc = ec_activate_avx2(acc, a->act);
            }
            _mm256_storeu_ps(yp, acc);
        }
    }
    if (v < ne) {
        const __m256i mask = ec_mask_avx2(ne - v);
        __m256 wv[ROW_KU];
        for (int u = 0; u < KU; u++) wv[u] = _mm256_maskload_ps(w + u * N + v, mask);
        for (int m = 0; m < MR; m++) {
            float *yp = a->y + m * N + v;
            __m256 acc = first ? _mm256_setzero_ps() : _mm256_maskload_ps(yp, mask);
            for (int u = 0; u < KU; u++) acc = _mm256_fmadd_ps(xb[m][u], wv[u], acc);
            if (last) {
                if (a->bias) acc = _mm256_add_ps(acc, _mm256_maskload_ps(a->bias + v, mask));
                acc = ec_activate_avx2(acc, a->act);
            }
            _mm256_maskstore_ps(yp, mask, acc);
        }
    }
}

EC_INLINE void rows_chunk(const ec_linear_args *a, size_t nb, size_t ne, const int MR) {
    const size_t K = a->k;
    size_t k = 0;
    for (; k + ROW_KU <= K; k += ROW_KU) rows_pass(a, nb, ne, k, k == 0, k + ROW_KU == K, MR, ROW_KU);
    for (; k < K; k++) rows_pass(a, nb, ne, k, k == 0, k + 1 == K, MR, 1);
}

static void linear_t_rows(const ec_linear_args *a, size_t n0, size_t n1) {
    /* as many columns per chunk as keep M rows of partial sums in 16 KiB of
     * L1: long contiguous runs of each weight row */
    const size_t chunk = ROW_Y_BYTES / (sizeof(float) * a->m) / 8 * 8;
    for (size_t nb = n0; nb < n1; nb += chunk) {
        const size_t ne = n1 - nb < chunk ? n1 : nb + chunk;
        switch (a->m) {
        case 1: rows_chunk(a, nb, ne, 1); break;
        case 2: rows_chunk(a, nb, ne, 2); break;
        case 3: rows_chunk(a, nb, ne, 3); break;
        default: rows_chunk(a, nb, ne, 4); break;
        }
    }
}

/* ---- [K, N] weights, larger M: packed panels + 6x16 micro-kernel ----------
 *
 * For each K block and each 16-column panel, the panel of W is copied
 * into a stack buffer as TK rows of 16
 * floats, then reused from L1 by every 6-row tile of x: per k, 2 panel
 * loads and 6 broadcasts feed 12 FMAs, with no horizontal sums. The K block
 * is the outer loop so x's block stays in L2 across all panels.
 */
#define PW 16
#define PR 6

/* panel[k][j] = W(k0 + k, nb + j) for j < valid, 0 for the missing columns. */
static void pack_panel(const ec_linear_args *a, size_t nb, size_t valid, size_t k0, size_t kl, float *panel) {
    const size_t N = a->n;
    const float *w = a->w + k0 * N + nb;
    if (valid == PW) {
        for (size_t k = 0; k < kl; k++) {
            _mm256_store_ps(panel + PW * k, _mm256_loadu_ps(w + k * N));
            _mm256_store_ps(panel + PW * k + 8, _mm256_loadu_ps(w + k * N + 8));
        }
    } else {
        const __m256i m0 = ec_mask_avx2(valid), m1 = ec_mask_avx2(valid > 8 ? valid - 8 : 0);
        for (size_t k = 0; k < kl; k++) {
            _mm256_store_ps(panel + PW * k, _mm256_maskload_ps(w + k * N, m0));
            _mm256_store_ps(panel + PW * k + 8, _mm256_maskload_ps(w + k * N + 8, m1));
        }
    }
}

EC_INLINE void micro_tile(const ec_linear_args *a, size_t m0, size_t nb, size_t valid, size_t kl,
                          const float *xr, const float *panel, int first, int last, const int MR) {
    const size_t K = a->k;
    __m256 acc[PR][2];
    /* after the first K block the chain continues from y (not a block sum
     * added to y): every output is one FMA chain over k in order, as in the
     * row-streaming path, so its value does not depend on M */
    if (first) {
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    } else {
        const __m256i lo = ec_mask_avx2(valid < 8 ? valid : 8), hi = ec_mask_avx2(valid > 8 ? valid - 8 : 0);
        for (int i = 0; i < MR; i++) {
            const float *yp = a->y + (m0 + i) * a->n + nb;
            acc[i][0] = _mm256_maskload_ps(yp, lo);
            acc[i][1] = _mm256_maskload_ps(yp + 8, hi);
        }
    }
    for (size_t k = 0; k < kl; k++) {
        const __m256 b0 = _mm256_load_ps(panel + PW * k), b1 = _mm256_load_ps(panel + PW * k + 8);
        for (int i = 0; i < MR; i++) {
            const __m256 xb = _mm256_broadcast_ss(xr + i * K + k);
            acc[i][0] = _mm256_fmadd_ps(xb, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(xb, b1, acc[i][1]);
        }
    }
    /* fully unrolled, with the epilogue out of line: otherwise GCC keeps
     * `acc` addressable and stores it to the stack after every FMA */
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        store_cols_out(a, m0 + i, nb, valid < 8 ? valid : 8, acc[i][0], 1, last);
        if (valid > 8) store_cols_out(a, m0 + i, nb + 8, valid - 8, acc[i][1], 1, last);
    }
}

/* Weights are packed TW columns at a time: each weight row is then read in
 * 256-byte runs instead of 64-byte ones (fewer pages and streams per panel). */
#define TW 64
#define TK 128 /* K block for TW-wide packs: 32 KiB of panels */

static void linear_packed(const ec_linear_args *a, size_t n0, size_t n1) {
    const size_t M = a->m, K = a->k;
    const size_t width = TW, kc = TK;
    float panels[TW * TK] __attribute__((aligned(64)));
    for (size_t k0 = 0; k0 < K; k0 += kc) {
        const size_t kl = K - k0 < kc ? K - k0 : kc;
        const int first = k0 == 0, last = k0 + kl == K;
        for (size_t nw = n0; nw < n1; nw += width) {
            const size_t subpanels = ((n1 - nw < width ? n1 - nw : width) + PW - 1) / PW;
            for (size_t p = 0; p < subpanels; p++)
                pack_panel(a, nw + PW * p, n1 - nw - PW * p < PW ? n1 - nw - PW * p : PW, k0, kl, panels + p * PW * kl);
            for (size_t p = 0; p < subpanels; p++) {
                const size_t nb = nw + PW * p, valid = n1 - nb < PW ? n1 - nb : PW;
                const float *panel = panels + p * PW * kl;
                size_t m = 0;
                for (; m + PR <= M; m += PR) micro_tile(a, m, nb, valid, kl, a->x + m * K + k0, panel, first, last, 6);
                const float *xr = a->x + m * K + k0;
                switch (M - m) {
                case 5: micro_tile(a, m, nb, valid, kl, xr, panel, first, last, 5); break;
                case 4: micro_tile(a, m, nb, valid, kl, xr, panel, first, last, 4); break;
                case 3: micro_tile(a, m, nb, valid, kl, xr, panel, first, last, 3); break;
                case 2: micro_tile(a, m, nb, valid, kl, xr, panel, first, last, 2); break;
                case 1: micro_tile(a, m, nb, valid, kl, xr, panel, first, last, 1); break;
                default: break;
                }
            }
        }
    }
}

/* y = act(bias) when K == 0 (an empty sum). */
static void bias_only(const ec_linear_args *a, size_t n0, size_t n1) {
    for (size_t m = 0; m < a->m; m++)
        for (size_t n = n0; n < n1; n += 8) store_cols(a, m, n, n1 - n < 8 ? n1 - n : 8, _mm256_setzero_ps(), 1, 1);
}

void ec_linear_f32_avx2(const ec_linear_args *a, size_t n0, size_t n1) {
    if (a->k == 0) bias_only(a, n0, n1);
    else if (a->transposed) (a->m <= 4 ? linear_t_rows : linear_packed)(a, n0, n1);
    else linear_nt(a, n0, n1);
}
