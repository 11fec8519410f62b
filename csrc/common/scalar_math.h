/*
 * Scalar activation functions, shared by the scalar reference kernels and
 * by the scalar tails of SIMD kernels. Written for clarity; libm does the
 * transcendental work.
 */
#ifndef EDGECORE_SCALAR_MATH_H
#define EDGECORE_SCALAR_MATH_H

#include <math.h>

#include "edgecore/kernels.h"

static inline float ec_act_scalar(float v, int act) {
    switch (act) {
    case EC_ACT_RELU: return v < 0.0f ? 0.0f : v; /* NaN passes through */
    case EC_ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case EC_ACT_GELU_TANH: {
        const float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        return 0.5f * v * (1.0f + tanhf(u));
    }
    case EC_ACT_SILU: return v / (1.0f + expf(-v));
    default: return v;
    }
}

#endif
