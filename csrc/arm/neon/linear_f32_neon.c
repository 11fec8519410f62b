/*
 * Fused linear, NEON: the same three paths as the x86 tiers (read
 * csrc/x86/avx2/linear_f32_avx2.c first) on 4-lane vectors, 32 registers.
 *
 * [N, K] weights, every M: "dot" tiles, up to 4 x rows by 4 weight rows (16
 * accumulators), or 1-2 rows by 8; each group of four accumulators reduces
 * with two pairwise adds.
 *
 * [K, N] weights, M <= 4: weight rows streamed in file order against
 * partial sums kept in y (L1).
 *
 * [K, N] weights, larger M: packed 8-column panels and an 8 x 8 micro-kernel
 * (16 accumulators) using FMLA by element: one x vector per row holds four
 * consecutive k, consumed lane by lane against four panel rows.
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
#include <arm_neon.h>

#include "../../common/internal.h"
#include "vmath_neon.h"

#define EC_INLINE static inline __attribute__((always_inline))

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

static __attribute__((noinline)) void store_cols_out(const ec_linear_args *a, size_t m, size_t n, size_t count,
                                                     float32x4_t v, int first, int last) {
    store_cols(a, m, n, count, v, first, last);
}

/* ---- [N, K] weights: dot tiles ------------------------------------------- */

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
 * Each pass applies four consecutive weight rows (or one, for the K tail) to
 * a chunk of output columns of every x row: the weights are read strictly in
 * file order, and the partial sums live in y, a few KiB that stay in L1.
 */
#define ROW_Y_BYTES 16384

/* acc + w[0..3] * x[k..k+3], one FMLA by element per weight row, k in order */
EC_INLINE float32x4_t fma4_lanes(float32x4_t acc, const float32x4_t *w, float32x4_t x) {
    acc = vfmaq_laneq_f32(acc, w[0], x, 0);
    acc = vfmaq_laneq_f32(acc, w[1], x, 1);
    acc = vfmaq_laneq_f32(acc, w[2], x, 2);
    return vfmaq_laneq_f32(acc, w[3], x, 3);
}

EC_INLINE float32x4_t rows_epilogue(const ec_linear_args *a, float32x4_t acc, size_t v, size_t count, int last) {
    if (last) {
        if (a->bias) acc = vaddq_f32(acc, count == 4 ? vld1q_f32(a->bias + v) : ec_load_partial_neon(a->bias + v, count));
        acc = ec_activate_neon(acc, a->act);
    }
    return acc;
}

/* KU = 4 (x vectors hold x[m, k..k+3]) or 1 (the K tail). */
EC_INLINE void rows_pass(const ec_linear_args *a, size_t nb, size_t ne, size_t k, int first, int last, const int MR,
                         const int KU) {
    const size_t N = a->n, K = a->k;
    const float *w = a->w + k * N;
    float32x4_t xv[4];
    for (int m = 0; m < MR; m++) xv[m] = KU == 4 ? vld1q_f32(a->x + m * K + k) : vdupq_n_f32(a->x[m * K + k]);
    size_t v = nb;
    for (; v + 4 <= ne; v += 4) {
        float32x4_t wv[4];
        for (int u = 0; u < KU; u++) wv[u] = vld1q_f32(w + u * N + v);
        for (int m = 0; m < MR; m++) {
            float *yp = a->y + m * N + v;
            float32x4_t acc = first ? vdupq_n_f32(0.0f) : vld1q_f32(yp);
            acc = KU == 4 ? fma4_lanes(acc, wv, xv[m]) : vfmaq_f32(acc, wv[0], xv[m]);
            vst1q_f32(yp, rows_epilogue(a, acc, v, 4, last));
        }
    }
    if (v < ne) {
        const size_t count = ne - v;
        float32x4_t wv[4];
        for (int u = 0; u < KU; u++) wv[u] = ec_load_partial_neon(w + u * N + v, count);
        for (int m = 0; m < MR; m++) {
            float *yp = a->y + m * N + v;
            float32x4_t acc = first ? vdupq_n_f32(0.0f) : ec_load_partial_neon(yp, count);
            acc = KU == 4 ? fma4_lanes(acc, wv, xv[m]) : vfmaq_f32(acc, wv[0], xv[m]);
            ec_store_partial_neon(yp, rows_epilogue(a, acc, v, count, last), count);
        }
    }
}

EC_INLINE void rows_chunk(const ec_linear_args *a, size_t nb, size_t ne, const int MR) {
    const size_t K = a->k;
    size_t k = 0;
    for (; k + 4 <= K; k += 4) rows_pass(a, nb, ne, k, k == 0, k + 4 == K, MR, 4);
    for (; k < K; k++) rows_pass(a, nb, ne, k, k == 0, k + 1 == K, MR, 1);
}

static void linear_t_rows(const ec_linear_args *a, size_t n0, size_t n1) {
    /* as many columns per chunk as keep M rows of partial sums in 16 KiB */
    const size_t chunk = ROW_Y_BYTES / (sizeof(float) * a->m) / 4 * 4;
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

/* ---- [K, N] weights, larger M: packed panels + 8x8 micro-kernel --------------
 *
 * For each K block and each 8-column panel, the panel of W is copied
 * into a stack buffer as TK rows of 8
 * floats, then reused from L1 by every 8-row tile of x: per four k, eight x
 * loads and eight panel loads feed 64 FMLAs by element. The K block is the
 * outer loop so x's block stays in L2 across all panels.
 */
#define PW 8
#define PR 8

/* panel[k][j] = W(k0 + k, nb + j) for j < valid, 0 for the missing columns. */
static void pack_panel(const ec_linear_args *a, size_t nb, size_t valid, size_t k0, size_t kl, float *panel) {
    const size_t N = a->n;
    const float *w = a->w + k0 * N + nb;
    if (valid == PW) {
        for (size_t k = 0; k < kl; k++) {
            vst1q_f32(panel + PW * k, vld1q_f32(w + k * N));
            vst1q_f32(panel + PW * k + 4, vld1q_f32(w + k * N + 4));
        }
    } else {
        const size_t c0 = valid < 4 ? valid : 4, c1 = valid > 4 ? valid - 4 : 0;
        for (size_t k = 0; k < kl; k++) {
            vst1q_f32(panel + PW * k, ec_load_partial_neon(w + k * N, c0));
            vst1q_f32(panel + PW * k + 4, ec_load_partial_neon(w + k * N + 4, c1));
        }
    }
}

EC_INLINE void micro_tile(const ec_linear_args *a, size_t m0, size_t nb, size_t valid, size_t kl, const float *xr,
                          const float *panel, int first, int last, const int MR) {
    const size_t K = a->k;
    float32x4_t acc[PR][2];
    /* after the first K block the chain continues from y (not a block sum
     * added to y): every output is one FMA chain over k in order, as in the
     * row-streaming path, so its value does not depend on M */
    if (first) {
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = vdupq_n_f32(0.0f);
    } else {
        for (int i = 0; i < MR; i++) {
            const float *yp = a->y + (m0 + i) * a->n + nb;
            acc[i][0] = ec_load_partial_neon(yp, valid < 4 ? valid : 4);
            acc[i][1] = valid > 4 ? ec_load_partial_neon(yp + 4, valid - 4 < 4 ? valid - 4 : 4) : vdupq_n_f32(0.0f);
        }
    }
    size_t k = 0;
    for (; k + 4 <= kl; k += 4) {
        float32x4_t xv[PR];
        for (int i = 0; i < MR; i++) xv[i] = vld1q_f32(xr + i * K + k);
        const float *p = panel + PW * k;
        /* lane u of xv is x[i, k + u]: FMLA by element, k in order */
#define EC_PANEL_ROW(u)                                                                                \
    do {                                                                                               \
        const float32x4_t b0 = vld1q_f32(p + PW * (u)), b1 = vld1q_f32(p + PW * (u) + 4);              \
        for (int i = 0; i < MR; i++) {                                                                 \
            acc[i][0] = vfmaq_laneq_f32(acc[i][0], b0, xv[i], (u));                                    \
            acc[i][1] = vfmaq_laneq_f32(acc[i][1], b1, xv[i], (u));                                    \
        }                                                                                              \
    } while (0)
        EC_PANEL_ROW(0);
        EC_PANEL_ROW(1);
        EC_PANEL_ROW(2);
        EC_PANEL_ROW(3);
#undef EC_PANEL_ROW
    }
    for (; k < kl; k++) {
        const float32x4_t b0 = vld1q_f32(panel + PW * k), b1 = vld1q_f32(panel + PW * k + 4);
        for (int i = 0; i < MR; i++) {
            const float xs = xr[i * K + k];
            acc[i][0] = vfmaq_n_f32(acc[i][0], b0, xs);
            acc[i][1] = vfmaq_n_f32(acc[i][1], b1, xs);
        }
    }
    /* fully unrolled, with the epilogue out of line: otherwise GCC keeps
     * `acc` addressable and stores it to the stack after every FMA */
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        store_cols_out(a, m0 + i, nb, valid < 4 ? valid : 4, acc[i][0], 1, last);
        if (valid > 4) store_cols_out(a, m0 + i, nb + 4, valid - 4, acc[i][1], 1, last);
    }
}

/* [K, N] weights are packed TW columns at a time, so each weight row is read
 * in 128-byte runs. */
#define TW 32
#define TK 128 /* K block for TW-wide packs: 16 KiB of panels */

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
        for (size_t n = n0; n < n1; n += 4) store_cols(a, m, n, n1 - n < 4 ? n1 - n : 4, vdupq_n_f32(0.0f), 1, 1);
}

void ec_linear_f32_neon(const ec_linear_args *a, size_t n0, size_t n1) {
    if (a->k == 0) bias_only(a, n0, n1);
    else if (a->transposed) (a->m <= 4 ? linear_t_rows : linear_packed)(a, n0, n1);
    else linear_nt(a, n0, n1);
}
