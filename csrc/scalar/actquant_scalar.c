/*
 * Activation quantization, the scalar reference (docs/quantization.md has
 * the contract every tier reproduces bit for bit):
 *
 *   a block holds a non-finite value -> d = NaN (0x7fc00000), every q = 0;
 *   amax = max |x| < 2^-119           -> d = 0, every q = 0;
 *   otherwise d = amax / 127, id = 1 / d (float32, correctly rounded),
 *             q = round-half-to-even(x * id), in [-127, 127].
 *
 * amax >= 2^-119 keeps d a normal float and id finite, so |x * id| <=
 * 127 (1 + 3 * 2^-24) and no clamp is needed. Every step is one IEEE
 * operation, so any tier that does the same steps gets the same bits.
 */
#include <math.h>

#include "../common/half.h"
#include "../common/qkernels.h"

static float quantize_block(const float *x, size_t n, int8_t *q) {
    float amax = 0.0f;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        if (!(a <= 3.40282347e38f)) finite = 0; /* inf or NaN */
        else if (a > amax) amax = a;
    }
    if (!finite || amax < 0x1p-119f) {
        for (size_t i = 0; i < n; i++) q[i] = 0;
        return finite ? 0.0f : ec_bits_to_f32(0x7fc00000u);
    }
    const float d = amax / 127.0f, id = 1.0f / d;
    for (size_t i = 0; i < n; i++) q[i] = (int8_t)lrintf(x[i] * id);
    return d;
}

static void actquant_q8_32_scalar(const float *x, void *out, size_t k) {
    ec_act_q8_32 *b = out;
    for (size_t i = 0; i < k / 32; i++, b++, x += 32) {
        b->d = quantize_block(x, 32, b->q);
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) sum += b->q[j];
        b->sum = sum;
    }
}

static void actquant_q8_256_scalar(const float *x, void *out, size_t k) {
    ec_act_q8_256 *b = out;
    for (size_t i = 0; i < k / 256; i++, b++, x += 256) {
        b->d = quantize_block(x, 256, b->q);
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += b->q[16 * g + j];
            b->bsums[g] = (int16_t)sum;
        }
    }
}

const ec_actq_variant ec_actq_scalar[] = {
    {EC_AF_Q8_32, 0, actquant_q8_32_scalar},
    {EC_AF_Q8_256, 0, actquant_q8_256_scalar},
    EC_ACTQ_END,
};
