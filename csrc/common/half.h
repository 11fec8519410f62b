/* Scalar IEEE half -> float, used by the scalar tier and SIMD tails. */
#ifndef EDGECORE_HALF_H
#define EDGECORE_HALF_H

#include <stdint.h>
#include <string.h>

static inline float ec_bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float ec_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return ec_bits_to_f32(sign | 0x7f800000u | (man << 13)); /* inf/NaN */
    if (exp != 0) return ec_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
    if (man == 0) return ec_bits_to_f32(sign); /* +-0 */
    /* subnormal half: man * 2^-24, exact in float */
    const float mag = (float)man * 5.9604644775390625e-8f;
    return sign ? -mag : mag;
}

static inline float ec_bf16_to_f32(uint16_t b) { return ec_bits_to_f32((uint32_t)b << 16); }

#endif
