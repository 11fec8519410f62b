/*
 * The avx2 tier's weight-type kernels: one line per (type[, feature])
 * micro-kernel, contract in csrc/common/qkernels.h. A type without a line
 * here runs the best lower tier's kernel (ops.weight_types() and
 * ops.kernel_dispatch() say which); the empty epilogue slots likewise.
 *
 * To add one: write ec_qgemm_<type>_avx2 (and/or ec_dequant_<type>_avx2)
 * in this folder, declare it below, add its line. A variant that needs a
 * sub-feature lives in that feature's folder (built with its extra flags by
 * setup.py), and its line goes in the feature's #ifdef section, before the
 * plain line of the same type (the first line whose features are enabled
 * wins).
 */
#include "../../common/qkernels.h"

#define GEMM(type)                                                                                 \
    void ec_qgemm_##type##_avx2(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, \
                                size_t ws, float *y, size_t ldy);

GEMM(f16)
GEMM(bf16)
GEMM(q8_0)
GEMM(q4_0)
GEMM(q4_1)
GEMM(q5_0)
GEMM(q5_1)
GEMM(q4_k)
GEMM(q5_k)
GEMM(q6_k)
#ifdef EC_BUILD_AVX_VNNI
#define GEMM_VNNI(type)                                                                                 \
    void ec_qgemm_##type##_avx_vnni(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, \
                                    size_t ws, float *y, size_t ldy);
GEMM_VNNI(q8_0)
GEMM_VNNI(q4_0)
GEMM_VNNI(q4_1)
GEMM_VNNI(q5_0)
GEMM_VNNI(q5_1)
#endif

static const ec_qvariant weights[] = {
    /* type  features  gemm  mr nr  dequant  packer */
#ifdef EC_BUILD_AVX_VNNI
    /* variants that need AVX-VNNI (sources in csrc/x86/avx2/avx_vnni/): vpdpbusd block dots */
    {EC_WT_Q8_0, EC_FEAT_AVX_VNNI, ec_qgemm_q8_0_avx_vnni, 8, 8, NULL, NULL},
    {EC_WT_Q4_0, EC_FEAT_AVX_VNNI, ec_qgemm_q4_0_avx_vnni, 8, 8, NULL, NULL},
    {EC_WT_Q4_1, EC_FEAT_AVX_VNNI, ec_qgemm_q4_1_avx_vnni, 8, 8, NULL, NULL},
    {EC_WT_Q5_0, EC_FEAT_AVX_VNNI, ec_qgemm_q5_0_avx_vnni, 8, 8, NULL, NULL},
    {EC_WT_Q5_1, EC_FEAT_AVX_VNNI, ec_qgemm_q5_1_avx_vnni, 8, 8, NULL, NULL},
#endif
    /* f16/bf16: 4 activation rows x 3 weight rows per inner tile (qgemm_half_avx2.c) */
    {EC_WT_F16, 0, ec_qgemm_f16_avx2, 4, 6, NULL, NULL},
    {EC_WT_BF16, 0, ec_qgemm_bf16_avx2, 4, 6, NULL, NULL},
    /* 32-blocks: 8 weight rows x 8 activation rows (qgemm32_avx2.h) */
    {EC_WT_Q8_0, 0, ec_qgemm_q8_0_avx2, 8, 8, NULL, NULL},
    {EC_WT_Q4_0, 0, ec_qgemm_q4_0_avx2, 8, 8, NULL, NULL},
    {EC_WT_Q4_1, 0, ec_qgemm_q4_1_avx2, 8, 8, NULL, NULL},
    {EC_WT_Q5_0, 0, ec_qgemm_q5_0_avx2, 8, 8, NULL, NULL},
    {EC_WT_Q5_1, 0, ec_qgemm_q5_1_avx2, 8, 8, NULL, NULL},
    /* K-quants: one weight row at a time, decoded once per 8 activation rows (qgemmk_avx2.c) */
    {EC_WT_Q4_K, 0, ec_qgemm_q4_k_avx2, 8, 4, NULL, NULL},
    {EC_WT_Q5_K, 0, ec_qgemm_q5_k_avx2, 8, 4, NULL, NULL},
    {EC_WT_Q6_K, 0, ec_qgemm_q6_k_avx2, 8, 4, NULL, NULL},
    EC_QVARIANT_END,
};

/* activation quantizers: actquant_avx2.c */
extern const ec_actq_variant ec_actq_avx2[];

/* epilogues: epilogue_avx2.c */
void ec_bias_act_avx2(float *y, const float *bias, size_t n, int act);
void ec_glu_avx2(float *g, const float *gate_bias, float *u, const float *up_bias, size_t n, int act);

const ec_tier_qkernels ec_qkernels_avx2 = {weights, ec_actq_avx2, ec_bias_act_avx2, ec_glu_avx2};
