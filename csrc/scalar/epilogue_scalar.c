/* Linear epilogues, scalar reference: bias + activation, and the GLU
 * combine, applied by the driver to a row segment after the micro-kernels. */
#include "../common/qkernels.h"
#include "../common/scalar_math.h"

void ec_bias_act_scalar(float *y, const float *bias, size_t n, int act) {
    for (size_t j = 0; j < n; j++) y[j] = ec_act_scalar(bias ? y[j] + bias[j] : y[j], act);
}

void ec_glu_scalar(float *g, const float *gate_bias, float *u, const float *up_bias, size_t n, int act) {
    for (size_t j = 0; j < n; j++) {
        const float up = up_bias ? u[j] + up_bias[j] : u[j];
        u[j] = up;
        g[j] = ec_act_scalar(gate_bias ? g[j] + gate_bias[j] : g[j], act) * up;
    }
}
