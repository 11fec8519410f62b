/*
 * The avx512 tier's weight-type kernels: one line per (type[, feature])
 * micro-kernel, contract in csrc/common/qkernels.h. A type without a line
 * here runs the best lower tier's kernel (ops.weight_types() and
 * ops.kernel_dispatch() say which); the empty epilogue slots likewise.
 *
 * To add one: write ec_qgemm_<type>_avx512 (and/or ec_dequant_<type>_avx512)
 * in this folder, declare it below, add its line. A variant that needs a
 * sub-feature lives in that feature's folder (built with its extra flags by
 * setup.py), and its line goes in the feature's #ifdef section, before the
 * plain line of the same type (the first line whose features are enabled
 * wins).
 */
#include "../../common/qkernels.h"

#define GEMM(type, suffix)                                                                                       \
    void ec_qgemm_##type##_##suffix(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, \
                                    size_t ws, float *y, size_t ldy);

GEMM(q8_0, avx512)
GEMM(q4_0, avx512)
GEMM(q4_1, avx512)
GEMM(q5_0, avx512)
GEMM(q5_1, avx512)
GEMM(q4_k, avx512)
GEMM(q5_k, avx512)
GEMM(q6_k, avx512)
GEMM(f16, avx512)
GEMM(bf16, avx512)
#ifdef EC_BUILD_AVX512_VNNI
GEMM(q8_0, avx512_vnni)
GEMM(q4_0, avx512_vnni)
GEMM(q4_1, avx512_vnni)
GEMM(q5_0, avx512_vnni)
GEMM(q5_1, avx512_vnni)
GEMM(q4_k, avx512_vnni)
GEMM(q5_k, avx512_vnni)
GEMM(q6_k, avx512_vnni)
#endif
/* the 32-block types' packers and packed kernels (qgemm_avx512.h); a
 * packed strip holds one qblock16, 640 bytes, per block (asserted there) */
#define PACKER(type, suffix)                                                                                    \
    void ec_qpack_##type##_##suffix(size_t k, size_t nr, const void *w, size_t ws, void *buf);                 \
    void ec_qgemm_packed_##type##_##suffix(size_t k, size_t mr, size_t nr, const void *x, size_t xs,           \
                                           const void *buf, size_t ws, float *y, size_t ldy);                  \
    static const ec_qpacker packer_##type##_##suffix = {ec_qpack_##type##_##suffix,                            \
                                                        ec_qgemm_packed_##type##_##suffix, 640};
PACKER(q8_0, avx512)
PACKER(q4_0, avx512)
PACKER(q4_1, avx512)
PACKER(q5_0, avx512)
PACKER(q5_1, avx512)
#ifdef EC_BUILD_AVX512_VNNI
PACKER(q8_0, avx512_vnni)
PACKER(q4_0, avx512_vnni)
PACKER(q4_1, avx512_vnni)
PACKER(q5_0, avx512_vnni)
PACKER(q5_1, avx512_vnni)
/* k-quants: bytes per super-block (q4_k / q5_k: one k45_block16; vnni/qgemm_k_avx512_vnni.c) */
#define PACKER_K(type, bytes)                                                                                   \
    void ec_qpack_##type##_avx512_vnni(size_t k, size_t nr, const void *w, size_t ws, void *buf);              \
    void ec_qgemm_packed_##type##_avx512_vnni(size_t k, size_t mr, size_t nr, const void *x, size_t xs,        \
                                              const void *buf, size_t ws, float *y, size_t ldy);               \
    static const ec_qpacker packer_##type##_avx512_vnni = {ec_qpack_##type##_avx512_vnni,                      \
                                                           ec_qgemm_packed_##type##_avx512_vnni, bytes};
PACKER_K(q4_k, 5120)
PACKER_K(q5_k, 5120)
PACKER_K(q6_k, 5184) /* one q6k_block16 per super-block */
#endif

void ec_dequant_f16_avx512(const void *w, float *out, size_t k);
void ec_dequant_bf16_avx512(const void *w, float *out, size_t k);
void ec_dequant_q8_0_avx512(const void *w, float *out, size_t k);
void ec_dequant_q4_0_avx512(const void *w, float *out, size_t k);
void ec_dequant_q4_1_avx512(const void *w, float *out, size_t k);

static const ec_qvariant weights[] = {
    /* type  features  gemm  mr nr  dequant  packer */
#ifdef EC_BUILD_AVX512_VNNI
    /* variants that need AVX-512 VNNI (sources in csrc/x86/avx512/vnni/) */
    {EC_WT_Q8_0, EC_FEAT_AVX512_VNNI, ec_qgemm_q8_0_avx512_vnni, 8, 16, NULL, &packer_q8_0_avx512_vnni},
    {EC_WT_Q4_0, EC_FEAT_AVX512_VNNI, ec_qgemm_q4_0_avx512_vnni, 8, 16, NULL, &packer_q4_0_avx512_vnni},
    {EC_WT_Q4_1, EC_FEAT_AVX512_VNNI, ec_qgemm_q4_1_avx512_vnni, 8, 16, NULL, &packer_q4_1_avx512_vnni},
    {EC_WT_Q5_0, EC_FEAT_AVX512_VNNI, ec_qgemm_q5_0_avx512_vnni, 8, 16, NULL, &packer_q5_0_avx512_vnni},
    {EC_WT_Q5_1, EC_FEAT_AVX512_VNNI, ec_qgemm_q5_1_avx512_vnni, 8, 16, NULL, &packer_q5_1_avx512_vnni},
    {EC_WT_Q4_K, EC_FEAT_AVX512_VNNI, ec_qgemm_q4_k_avx512_vnni, 8, 16, NULL, &packer_q4_k_avx512_vnni},
    {EC_WT_Q5_K, EC_FEAT_AVX512_VNNI, ec_qgemm_q5_k_avx512_vnni, 8, 16, NULL, &packer_q5_k_avx512_vnni},
    {EC_WT_Q6_K, EC_FEAT_AVX512_VNNI, ec_qgemm_q6_k_avx512_vnni, 8, 16, NULL, &packer_q6_k_avx512_vnni},
#endif
#ifdef EC_BUILD_AVX512_BF16
    /* variants that need AVX512-BF16 (sources in csrc/x86/avx512/bf16/) */
#endif
    /* f16 / bf16: 4 x 4 tiles of 16-lane FMA accumulators (qhalf_avx512.c) */
    {EC_WT_F16, 0, ec_qgemm_f16_avx512, 4, 4, ec_dequant_f16_avx512, NULL},
    {EC_WT_BF16, 0, ec_qgemm_bf16_avx512, 4, 4, ec_dequant_bf16_avx512, NULL},
    /* 8 x rows (k-quants: 4) by 16 weight rows: one accumulator per x row, a column per lane */
    {EC_WT_Q8_0, 0, ec_qgemm_q8_0_avx512, 8, 16, ec_dequant_q8_0_avx512, &packer_q8_0_avx512},
    {EC_WT_Q4_0, 0, ec_qgemm_q4_0_avx512, 8, 16, ec_dequant_q4_0_avx512, &packer_q4_0_avx512},
    {EC_WT_Q4_1, 0, ec_qgemm_q4_1_avx512, 8, 16, ec_dequant_q4_1_avx512, &packer_q4_1_avx512},
    {EC_WT_Q5_0, 0, ec_qgemm_q5_0_avx512, 8, 16, NULL, &packer_q5_0_avx512},
    {EC_WT_Q5_1, 0, ec_qgemm_q5_1_avx512, 8, 16, NULL, &packer_q5_1_avx512},
    {EC_WT_Q4_K, 0, ec_qgemm_q4_k_avx512, 4, 16, NULL, NULL},
    {EC_WT_Q5_K, 0, ec_qgemm_q5_k_avx512, 4, 16, NULL, NULL},
    {EC_WT_Q6_K, 0, ec_qgemm_q6_k_avx512, 4, 16, NULL, NULL},
    EC_QVARIANT_END,
};

/* activation quantizers: actquant_avx512.c */
extern const ec_actq_variant ec_actq_avx512[];
/* epilogues: epilogue_avx512.c */
void ec_bias_act_avx512(float *y, const float *bias, size_t n, int act);
void ec_glu_avx512(float *g, const float *gate_bias, float *u, const float *up_bias, size_t n, int act);

const ec_tier_qkernels ec_qkernels_avx512 = {weights, ec_actq_avx512, ec_bias_act_avx512, ec_glu_avx512};
