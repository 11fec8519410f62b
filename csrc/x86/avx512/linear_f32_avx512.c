/*
 * Fused linear, AVX-512: the same three paths as linear_f32_avx2.c (read
 * that first) on 16-lane vectors, with mask registers for every tail.
 *
 * [N, K] weights, every M: "dot" tiles, up to 4 x rows by 4 or 8 weight rows
 * (16 accumulators of 32 registers); a tile's sums are folded 16 -> 8 lanes
 * and reduced with a hadd tree. Every weight row is read once per M-tile.
 *
 * [K, N] weights, M <= 4: weight rows streamed in file order against
 * partial sums kept in y (L1).
 *
 * [K, N] weights, larger M: packed 32-column panels and an 8 x 32 micro-kernel
 * (16 accumulators; per k two panel loads and eight broadcasts feed sixteen
 * FMAs).
 *
 * Batch invariance: every output's operations are the same for every M
 * (the engine's batched step relies on it: a sequence's tokens never depend
 * on its batch-mates). [N, K] outputs are one lane-split sum over the whole
 * K, reduced by a fixed tree, whatever the tile; [K, N] outputs are one FMA
 * chain over k in order, whether rows stream or panels are packed (after a
 * panel's first K block the chain continues from y).
 *
 * Blocking depends only on M, K and the layout, never on the column range a
 * thread is given, so results are bitwise identical for any thread count.
 */
#include <immintrin.h>

#include "../../common/internal.h"
#include "vmath_avx512.h"

#define EC_INLINE static inline __attribute__((always_inline))

/* Epilogue for `count` (1..16) columns of row m starting at n. */
EC_INLINE void store_cols(const ec_linear_args *a, size_t m, size_t n, size_t count, __m512 v, int first,
                          int last) {
    float *yp = a->y + m * a->n + n;
    if (count == 16) {
        if (!first) v = _mm512_add_ps(v, _mm512_loadu_ps(yp));
        if (last) {
            if (a->bias) v = _mm512_add_ps(v, _mm512_loadu_ps(a->bias + n));
            v = ec_activate_avx512(v, a->act);
        }
        _mm512_storeu_ps(yp, v);
    } else {
        const __mmask16 mask = ec_mask_avx512(count);
        if (!first) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, yp));
        if (last) {
            if (a->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, a->bias + n));
            v = ec_activate_avx512(v, a->act);
        }
        _mm512_mask_storeu_ps(yp, mask, v);
    }
}

static __attribute__((noinline)) void store_cols_out(const ec_linear_args *a, size_t m, size_t n, size_t count,
                                                     __m512 v, int first, int last) {
    store_cols(a, m, n, count, v, first, last);
}

/* ---- [N, K] weights: dot tiles ------------------------------------------- */

EC_INLINE __m256 fold(__m512 v) { return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)); }

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

/*
 * Rows [m0, m0+MR) x columns [n, n+NR) over k in [k0, k0+kc). Columns past
 * `valid` reuse row n (always in bounds); they are computed and not stored.
 */
EC_INLINE void dot_tile(const ec_linear_args *a, size_t m0, size_t n, size_t valid, size_t k0, size_t kc, int first,
                        int last, const int MR, const int NR) {
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
    if (k < kc) { /* masked lanes load as zero and add nothing */
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
    for (size_t nb = n0; nb < n1; nb += 8) {
        const size_t valid = n1 - nb < 8 ? n1 - nb : 8;
        size_t m = 0;
        for (; m + 4 <= M; m += 4) {
            dot_tile(a, m, nb, valid, 0, K, 1, 1, 4, 4);
            if (valid > 4) dot_tile(a, m, nb + 4, valid - 4, 0, K, 1, 1, 4, 4);
        }
        if (M - m == 3) {
            dot_tile(a, m, nb, valid, 0, K, 1, 1, 3, 4);
            if (valid > 4) dot_tile(a, m, nb + 4, valid - 4, 0, K, 1, 1, 3, 4);
        } else if (M - m == 2) {
            dot_tile(a, m, nb, valid, 0, K, 1, 1, 2, 8);
        } else if (M - m == 1) {
            dot_tile(a, m, nb, valid, 0, K, 1, 1, 1, 8);
        }
    }
}

/* ---- [K, N] weights, M <= 4: stream weight rows ----------------------------
 *
 * Each pass applies ROW_KU consecutive weight rows to a chunk of output
 * columns of every x row: the weights are read strictly in file order, and
 * the partial sums live in y, a few KiB that stay in L1.
 */
#define ROW_Y_BYTES 16384
#define ROW_KU 4

EC_INLINE void rows_pass(const ec_linear_args *a, size_t nb, size_t ne, size_t k, int first, int last, const int MR,
                         const int KU) {
    const size_t N = a->n, K = a->k;
    const float *w = a->w + k * N;
    __m512 xb[4][ROW_KU];
    for (int m = 0; m < MR; m++)
        for (int u = 0; u < KU; u++) xb[m][u] = _mm512_set1_ps(a->x[m * K + k + u]);
    size_t v = nb;
    for (; v + 16 <= ne; v += 16) {
        __m512 wv[ROW_KU];
        for (int u = 0; u < KU; u++) wv[u] = _mm512_loadu_ps(w + u * N + v);
        for (int m = 0; m < MR; m++) {
            float *yp = a->y + m * N + v;
            __m512 acc = first ? _mm512_setzero_ps() : _mm512_loadu_ps(yp);
            for (int u = 0; u < KU; u++) acc = _mm512_fmadd_ps(xb[m][u], wv[u], acc);
            if (last) {
                if (a->bias) acc = _mm512_add_ps(acc, _mm512_loadu_ps(a->bias + v));
                acc = ec_activate_avx512(acc, a->act);
            }
            _mm512_storeu_ps(yp, acc);
        }
    }
    if (v < ne) {
        const __mmask16 mask = ec_mask_avx512(ne - v);
        __m512 wv[ROW_KU];
        for (int u = 0; u < KU; u++) wv[u] = _mm512_maskz_loadu_ps(mask, w + u * N + v);
        for (int m = 0; m < MR; m++) {
            float *yp = a->y + m * N + v;
            __m512 acc = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mask, yp);
            for (int u = 0; u < KU; u++) acc = _mm512_fmadd_ps(xb[m][u], wv[u], acc);
            if (last) {
                if (a->bias) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask, a->bias + v));
                acc = ec_activate_avx512(acc, a->act);
            }
            _mm512_mask_storeu_ps(yp, mask, acc);
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
    /* as many columns per chunk as keep M rows of partial sums in 16 KiB */
    const size_t chunk = ROW_Y_BYTES / (sizeof(float) * a->m) / 16 * 16;
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

/* ---- [K, N] weights, larger M: packed panels + 8x32 micro-kernel -------------
 *
 * For each K block and each 32-column panel, the panel of W is copied
 * into a stack buffer as TK rows of 32
 * floats, then reused from L1 by every 8-row tile of x. The K block is the
 * outer loop so x's block stays in L2 across all panels.
 */
#define PW 32
#define PR 8

/* panel[k][j] = W(k0 + k, nb + j) for j < valid, 0 for the missing columns. */
static void pack_panel(const ec_linear_args *a, size_t nb, size_t valid, size_t k0, size_t kl, float *panel) {
    const size_t N = a->n;
    const float *w = a->w + k0 * N + nb;
    if (valid == PW) {
        for (size_t k = 0; k < kl; k++) {
            _mm512_store_ps(panel + PW * k, _mm512_loadu_ps(w + k * N));
            _mm512_store_ps(panel + PW * k + 16, _mm512_loadu_ps(w + k * N + 16));
        }
    } else {
        const __mmask16 m0 = ec_mask_avx512(valid), m1 = ec_mask_avx512(valid > 16 ? valid - 16 : 0);
        for (size_t k = 0; k < kl; k++) {
            _mm512_store_ps(panel + PW * k, _mm512_maskz_loadu_ps(m0, w + k * N));
            _mm512_store_ps(panel + PW * k + 16, _mm512_maskz_loadu_ps(m1, w + k * N + 16));
        }
    }
}

EC_INLINE void micro_tile(const ec_linear_args *a, size_t m0, size_t nb, size_t valid, size_t kl, const float *xr,
                          const float *panel, int first, int last, const int MR) {
    const size_t K = a->k;
    __m512 acc[PR][2];
    /* after the first K block the chain continues from y (not a block sum
     * added to y): every output is one FMA chain over k in order, as in the
     * row-streaming path, so its value does not depend on M */
    if (first) {
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    } else {
        const __mmask16 lo = (__mmask16)((1u << (valid < 16 ? valid : 16)) - 1u);
        const __mmask16 hi = (__mmask16)(valid > 16 ? (1u << (valid - 16)) - 1u : 0u);
        for (int i = 0; i < MR; i++) {
            const float *yp = a->y + (m0 + i) * a->n + nb;
            acc[i][0] = _mm512_maskz_loadu_ps(lo, yp);
            acc[i][1] = _mm512_maskz_loadu_ps(hi, yp + 16);
        }
    }
    for (size_t k = 0; k < kl; k++) {
        const __m512 b0 = _mm512_load_ps(panel + PW * k), b1 = _mm512_load_ps(panel + PW * k + 16);
        for (int i = 0; i < MR; i++) {
            const __m512 xb = _mm512_set1_ps(xr[i * K + k]);
            acc[i][0] = _mm512_fmadd_ps(xb, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(xb, b1, acc[i][1]);
        }
    }
    /* fully unrolled, with the epilogue out of line: otherwise GCC keeps
     * `acc` addressable and stores it to the stack after every FMA */
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        store_cols_out(a, m0 + i, nb, valid < 16 ? valid : 16, acc[i][0], 1, last);
        if (valid > 16) store_cols_out(a, m0 + i, nb + 16, valid - 16, acc[i][1], 1, last);
    }
}

/* [K, N] weights are packed TW columns at a time, so each weight row is read
 * in 256-byte runs. */
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
                pack_panel(a, nw + PW * p, n1 - nw - PW * p < PW ? n1 - nw - PW * p : PW, k0, kl,
                           panels + p * PW * kl);
            for (size_t p = 0; p < subpanels; p++) {
                const size_t nb = nw + PW * p, valid = n1 - nb < PW ? n1 - nb : PW;
                const float *panel = panels + p * PW * kl;
                size_t m = 0;
                for (; m + PR <= M; m += PR)
                    micro_tile(a, m, nb, valid, kl, a->x + m * K + k0, panel, first, last, PR);
                const float *xr = a->x + m * K + k0;
                switch (M - m) {
                case 7: micro_tile(a, m, nb, valid, kl, xr, panel, first, last, 7); break;
                case 6: micro_tile(a, m, nb, valid, kl, xr, panel, first, last, 6); break;
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
        for (size_t n = n0; n < n1; n += 16)
            store_cols(a, m, n, n1 - n < 16 ? n1 - n : 16, _mm512_setzero_ps(), 1, 1);
}

void ec_linear_f32_avx512(const ec_linear_args *a, size_t n0, size_t n1) {
    if (a->k == 0) bias_only(a, n0, n1);
    else if (a->transposed) (a->m <= 4 ? linear_t_rows : linear_packed)(a, n0, n1);
    else linear_nt(a, n0, n1);
}
