/* Scalar IEEE half <-> float and bfloat16 <-> float, used by the scalar tier,
 * SIMD tails and the weight quantizers. */
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

static inline uint32_t ec_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/*
 * float -> IEEE half, round to nearest even; overflow gives inf; a NaN keeps
 * its sign and the top 10 payload bits (bit 0 set if those are all zero, so
 * it stays a NaN). This is NumPy's astype(float16), which the gguf package's
 * quantizers use for block scales.
 */
static inline uint16_t ec_f32_to_f16(float f) {
    const uint32_t u = ec_f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        const uint32_t payload = (a >> 13) & 0x3ff;
        if (a == 0x7f800000u) return sign | 0x7c00;
        return (uint16_t)(sign | 0x7c00 | (payload ? payload : 1));
    }
    if (a >= 0x477ff000u) return sign | 0x7c00; /* >= 65520 rounds past 65504 */
    uint32_t m, shift, base;
    if (a >= 0x38800000u) { /* normal half: rebias the exponent, drop 13 bits */
        m = a;
        shift = 13;
        base = 0x38000000u >> 13; /* (127 - 15) << 10 */
    } else {                       /* subnormal half: units of 2^-24 */
        if (a < 0x33000000u) return sign; /* <= 2^-25 rounds to zero */
        m = (a & 0x7fffffu) | 0x800000u;
        shift = 126 - (a >> 23); /* 14 .. 24 */
        base = 0;
    }
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++; /* a carry moves into the exponent */
    return (uint16_t)(sign | (q - base));
}

/* float -> bfloat16 as the gguf package's BF16 quantizer (and ggml's
 * ggml_compute_fp32_to_bf16): a NaN is quieted (bit 22 set, low 16 bits
 * dropped), everything else rounds to nearest even. */
static inline uint16_t ec_f32_to_bf16(float f) {
    uint32_t u = ec_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) u = (u & 0xffff0000u) | 0x00400000u;
    return (uint16_t)(((uint64_t)u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#endif
