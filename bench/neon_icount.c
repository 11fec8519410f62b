/*
 * The aarch64 program bench/neon_icount.py runs under qemu-aarch64: it
 * reads the scalar and neon weight tables (the registry, nothing listed
 * here) and runs one line's gemm micro-kernel over an N x K weight the way
 * the linear driver tiles it (mr x nr tiles over one panel).
 *
 *   neon_icount list                      one line per table entry
 *   neon_icount run TIER LINE M CALLS     TIER 0 = scalar, 1 = neon
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qkernels.h"

#define N_COLS 64
#define K_ELEMS 1536 /* a multiple of 256: every type */

static const ec_tier_qkernels *const tiers[2] = {&ec_qkernels_scalar, &ec_qkernels_neon};

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "list")) {
        for (int t = 0; t < 2; t++)
            for (int l = 0; tiers[t]->weights[l].wtype >= 0; l++) {
                const ec_qvariant *v = &tiers[t]->weights[l];
                printf("%d %d %s %u %d %d %d\n", t, l, ec_wtype_find(v->wtype)->name, v->features, v->mr, v->nr,
                       v->gemm != NULL);
            }
        return 0;
    }
    if (argc != 6 || strcmp(argv[1], "run")) {
        fprintf(stderr, "usage: neon_icount list | run TIER LINE M CALLS\n");
        return 2;
    }
    const ec_qvariant *v = &tiers[atoi(argv[2]) & 1]->weights[atoi(argv[3])];
    const size_t m = (size_t)atoi(argv[4]), calls = (size_t)atoi(argv[5]);
    const ec_wtype_info *t = ec_wtype_find(v->wtype);
    const size_t ws = ec_wtype_row_bytes(t, K_ELEMS);
    unsigned char *w = calloc(N_COLS, ws); /* values do not change the instruction count */
    float *x = malloc(m * K_ELEMS * sizeof(float)), *y = malloc(m * N_COLS * sizeof(float));
    for (size_t i = 0; i < m * K_ELEMS; i++) x[i] = (float)(i % 7) - 3.0f;
    const char *xa = (const char *)x;
    size_t xs = K_ELEMS * sizeof(float);
    if (t->act_format != EC_AF_F32) {
        xs = ec_act_row_bytes(t->act_format, K_ELEMS);
        char *q = malloc(m * xs);
        for (const ec_actq_variant *a = ec_qkernels_scalar.activations; a->format >= 0; a++)
            if (a->format == t->act_format)
                for (size_t i = 0; i < m; i++) a->quantize(x + i * K_ELEMS, q + i * xs, K_ELEMS);
        xa = q;
    }
    for (size_t c = 0; c < calls; c++)
        for (size_t i = 0; i < m; i += v->mr)
            for (size_t j = 0; j < N_COLS; j += v->nr)
                v->gemm(K_ELEMS, m - i < v->mr ? m - i : v->mr, N_COLS - j < v->nr ? N_COLS - j : v->nr,
                        xa + i * xs, xs, w + j * ws, ws, y + i * N_COLS + j, N_COLS);
    printf("%zu %g\n", ws * N_COLS, y[0]);
    return 0;
}
