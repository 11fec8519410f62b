/*
 * The neon tier's weight-type kernels: one line per (type[, feature])
 * micro-kernel, contract in csrc/common/qkernels.h. A type without a line
 * here runs the best lower tier's kernel (ops.weight_types() and
 * ops.kernel_dispatch() say which); the empty epilogue slots likewise.
 *
 * To add one: write ec_qgemm_<type>_neon (and/or ec_dequant_<type>_neon)
 * in this folder, declare it below, add its line. A variant that needs a
 * sub-feature lives in that feature's folder (built with its extra flags by
 * setup.py), and its line goes in the feature's #ifdef section, before the
 * plain line of the same type (the first line whose features are enabled
 * wins).
 */
#include "../../common/qkernels.h"

#define GEMM(name) \
    void name(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws, float *y, size_t ldy);

GEMM(ec_qgemm_f16_neon)
GEMM(ec_qgemm_bf16_neon)
GEMM(ec_qgemm_q8_0_neon)
GEMM(ec_qgemm_q4_0_neon)
GEMM(ec_qgemm_q4_1_neon)
GEMM(ec_qgemm_q5_0_neon)
GEMM(ec_qgemm_q5_1_neon)
GEMM(ec_qgemm_q4_k_neon)
GEMM(ec_qgemm_q5_k_neon)
GEMM(ec_qgemm_q6_k_neon)
#define DEQUANT(name) void name(const void *w, float *out, size_t k);
DEQUANT(ec_dequant_bf16_neon)
DEQUANT(ec_dequant_q8_0_neon)
DEQUANT(ec_dequant_q4_0_neon)
DEQUANT(ec_dequant_q4_1_neon)
DEQUANT(ec_dequant_q5_0_neon)
DEQUANT(ec_dequant_q5_1_neon)
DEQUANT(ec_dequant_q4_k_neon)
DEQUANT(ec_dequant_q5_k_neon)
DEQUANT(ec_dequant_q6_k_neon)
#ifdef EC_BUILD_DOTPROD
GEMM(ec_qgemm_q8_0_neon_dotprod)
GEMM(ec_qgemm_q4_0_neon_dotprod)
GEMM(ec_qgemm_q4_1_neon_dotprod)
GEMM(ec_qgemm_q5_0_neon_dotprod)
GEMM(ec_qgemm_q5_1_neon_dotprod)
GEMM(ec_qgemm_q4_k_neon_dotprod)
GEMM(ec_qgemm_q5_k_neon_dotprod)
GEMM(ec_qgemm_q6_k_neon_dotprod)
#endif
#ifdef EC_BUILD_I8MM
GEMM(ec_qgemm_q8_0_neon_i8mm)
GEMM(ec_qgemm_q4_0_neon_i8mm)
GEMM(ec_qgemm_q4_1_neon_i8mm)
GEMM(ec_qgemm_q5_0_neon_i8mm)
GEMM(ec_qgemm_q5_1_neon_i8mm)
#endif

static const ec_qvariant weights[] = {
    /* type  features  gemm  mr nr  dequant  packer */
#ifdef EC_BUILD_I8MM
    /* variants that need i8mm (sources in csrc/arm/neon/i8mm/); their one-row
     * tiles use sdot, so they need dotprod too. mr = 8: 4 row pairs share
     * each decoded and interleaved weight block. */
    {EC_WT_Q8_0, EC_FEAT_I8MM | EC_FEAT_DOTPROD, ec_qgemm_q8_0_neon_i8mm, 8, 16, NULL, NULL},
    {EC_WT_Q4_0, EC_FEAT_I8MM | EC_FEAT_DOTPROD, ec_qgemm_q4_0_neon_i8mm, 8, 16, NULL, NULL},
    {EC_WT_Q4_1, EC_FEAT_I8MM | EC_FEAT_DOTPROD, ec_qgemm_q4_1_neon_i8mm, 8, 16, NULL, NULL},
    {EC_WT_Q5_0, EC_FEAT_I8MM | EC_FEAT_DOTPROD, ec_qgemm_q5_0_neon_i8mm, 8, 16, NULL, NULL},
    {EC_WT_Q5_1, EC_FEAT_I8MM | EC_FEAT_DOTPROD, ec_qgemm_q5_1_neon_i8mm, 8, 16, NULL, NULL},
#endif
#ifdef EC_BUILD_DOTPROD
    /* variants that need dotprod (sources in csrc/arm/neon/dotprod/) */
    {EC_WT_Q8_0, EC_FEAT_DOTPROD, ec_qgemm_q8_0_neon_dotprod, 4, 16, NULL, NULL},
    {EC_WT_Q4_0, EC_FEAT_DOTPROD, ec_qgemm_q4_0_neon_dotprod, 4, 16, NULL, NULL},
    {EC_WT_Q4_1, EC_FEAT_DOTPROD, ec_qgemm_q4_1_neon_dotprod, 4, 16, NULL, NULL},
    {EC_WT_Q5_0, EC_FEAT_DOTPROD, ec_qgemm_q5_0_neon_dotprod, 4, 16, NULL, NULL},
    {EC_WT_Q5_1, EC_FEAT_DOTPROD, ec_qgemm_q5_1_neon_dotprod, 4, 16, NULL, NULL},
    {EC_WT_Q4_K, EC_FEAT_DOTPROD, ec_qgemm_q4_k_neon_dotprod, 4, 16, NULL, NULL},
    {EC_WT_Q5_K, EC_FEAT_DOTPROD, ec_qgemm_q5_k_neon_dotprod, 4, 16, NULL, NULL},
    {EC_WT_Q6_K, EC_FEAT_DOTPROD, ec_qgemm_q6_k_neon_dotprod, 4, 16, NULL, NULL},
#endif
    {EC_WT_F16, 0, ec_qgemm_f16_neon, 4, 16, NULL, NULL},
    {EC_WT_BF16, 0, ec_qgemm_bf16_neon, 4, 16, ec_dequant_bf16_neon, NULL},
    {EC_WT_Q8_0, 0, ec_qgemm_q8_0_neon, 4, 16, ec_dequant_q8_0_neon, NULL},
    {EC_WT_Q4_0, 0, ec_qgemm_q4_0_neon, 4, 16, ec_dequant_q4_0_neon, NULL},
    {EC_WT_Q4_1, 0, ec_qgemm_q4_1_neon, 4, 16, ec_dequant_q4_1_neon, NULL},
    {EC_WT_Q5_0, 0, ec_qgemm_q5_0_neon, 4, 16, ec_dequant_q5_0_neon, NULL},
    {EC_WT_Q5_1, 0, ec_qgemm_q5_1_neon, 4, 16, ec_dequant_q5_1_neon, NULL},
    {EC_WT_Q4_K, 0, ec_qgemm_q4_k_neon, 4, 16, ec_dequant_q4_k_neon, NULL},
    {EC_WT_Q5_K, 0, ec_qgemm_q5_k_neon, 4, 16, ec_dequant_q5_k_neon, NULL},
    {EC_WT_Q6_K, 0, ec_qgemm_q6_k_neon, 4, 16, ec_dequant_q6_k_neon, NULL},
    EC_QVARIANT_END,
};

extern const ec_actq_variant ec_actq_neon[]; /* actquant_neon.c */

const ec_tier_qkernels ec_qkernels_neon = {weights, ec_actq_neon, NULL, NULL};
