/*
 * The scalar tier's weight-type kernels: the reference every other tier is
 * tested against, and the fallback for any (type, tier) slot a tier leaves
 * empty. One line per type; the contract is in csrc/common/qkernels.h.
 * (f32 has no gemm line: the driver runs f32 through the tier's tuned
 * linear kernel, ec_active->linear_f32.)
 */
#include "../common/qkernels.h"

#define KERNELS(type)                                                                    \
    void ec_qgemm_##type##_scalar(size_t k, size_t mr, size_t nr, const void *x, size_t xs, \
                                  const void *w, size_t ws, float *y, size_t ldy);        \
    void ec_dequant_##type##_scalar(const void *w, float *out, size_t k);

KERNELS(f16)
KERNELS(bf16)
KERNELS(q8_0)
KERNELS(q4_0)
KERNELS(q4_1)
KERNELS(q5_0)
KERNELS(q5_1)
KERNELS(q4_k)
KERNELS(q5_k)
KERNELS(q6_k)
void ec_dequant_f32_scalar(const void *w, float *out, size_t k);
void ec_glu_scalar(float *g, const float *gate_bias, float *u, const float *up_bias, size_t n, int act);
extern const ec_actq_variant ec_actq_scalar[];

/* mr x nr: 4 activation rows share each decoded weight block. */
static const ec_qvariant weights[] = {
    /* type       features gemm                 mr nr  dequant  packer */
    {EC_WT_F32, 0, NULL, 0, 0, ec_dequant_f32_scalar, NULL},
    {EC_WT_F16, 0, ec_qgemm_f16_scalar, 4, 4, ec_dequant_f16_scalar, NULL},
    {EC_WT_BF16, 0, ec_qgemm_bf16_scalar, 4, 4, ec_dequant_bf16_scalar, NULL},
    {EC_WT_Q8_0, 0, ec_qgemm_q8_0_scalar, 4, 4, ec_dequant_q8_0_scalar, NULL},
    {EC_WT_Q4_0, 0, ec_qgemm_q4_0_scalar, 4, 4, ec_dequant_q4_0_scalar, NULL},
    {EC_WT_Q4_1, 0, ec_qgemm_q4_1_scalar, 4, 4, ec_dequant_q4_1_scalar, NULL},
    {EC_WT_Q5_0, 0, ec_qgemm_q5_0_scalar, 4, 4, ec_dequant_q5_0_scalar, NULL},
    {EC_WT_Q5_1, 0, ec_qgemm_q5_1_scalar, 4, 4, ec_dequant_q5_1_scalar, NULL},
    {EC_WT_Q4_K, 0, ec_qgemm_q4_k_scalar, 4, 4, ec_dequant_q4_k_scalar, NULL},
    {EC_WT_Q5_K, 0, ec_qgemm_q5_k_scalar, 4, 4, ec_dequant_q5_k_scalar, NULL},
    {EC_WT_Q6_K, 0, ec_qgemm_q6_k_scalar, 4, 4, ec_dequant_q6_k_scalar, NULL},
    EC_QVARIANT_END,
};

const ec_tier_qkernels ec_qkernels_scalar = {weights, ec_actq_scalar, ec_bias_act_scalar, ec_glu_scalar};
