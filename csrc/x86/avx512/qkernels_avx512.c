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

static const ec_qvariant weights[] = {
    /* type  features  gemm  mr nr  dequant */
#ifdef EC_BUILD_AVX512_VNNI
    /* variants that need AVX-512 VNNI (sources in csrc/x86/avx512/vnni/) */
#endif
#ifdef EC_BUILD_AVX512_BF16
    /* variants that need AVX512-BF16 (sources in csrc/x86/avx512/bf16/) */
#endif
    EC_QVARIANT_END,
};

static const ec_actq_variant activations[] = {
    EC_ACTQ_END,
};

const ec_tier_qkernels ec_qkernels_avx512 = {weights, activations, NULL, NULL};
