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

static const ec_qvariant weights[] = {
    /* type  features  gemm  mr nr  dequant */
#ifdef EC_BUILD_DOTPROD
    /* variants that need dotprod (sources in csrc/arm/neon/dotprod/) */
#endif
#ifdef EC_BUILD_I8MM
    /* variants that need i8mm (sources in csrc/arm/neon/i8mm/) */
#endif
    EC_QVARIANT_END,
};

static const ec_actq_variant activations[] = {
    EC_ACTQ_END,
};

const ec_tier_qkernels ec_qkernels_neon = {weights, activations, NULL, NULL};
