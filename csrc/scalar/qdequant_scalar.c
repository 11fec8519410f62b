/*
 * Row dequantizers, scalar reference: one weight row of k elements to
 * float32, bit for bit the gguf package's dequantize (its operations are
 * exact products of a half scale and a small integer, plus at most one
 * rounded add or subtract, done here in the same order).
 */
#include "../common/qblocks.h"
#include "../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))

void ec_dequant_f32_scalar(const void *w, float *out, size_t k) { memcpy(out, w, k * sizeof(float)); }

void ec_dequant_f16_scalar(const void *w, float *out, size_t k) {
    const uint16_t *h = w;
    for (size_t i = 0; i < k; i++) out[i] = ec_f16_to_f32(h[i]);
}

void ec_dequant_bf16_scalar(const void *w, float *out, size_t k) {
    const uint16_t *h = w;
    for (size_t i = 0; i < k; i++) out[i] = ec_bf16_to_f32(h[i]);
}

typedef void (*unpack32_fn)(const uint8_t *, ec_wblock32 *);

EC_INLINE void dequant_blocks32(const uint8_t *w, float *out, size_t k, size_t block_bytes,
                                unpack32_fn unpack, int offset) {
    for (size_t b = 0; b < k / 32; b++, out += 32) {
        ec_wblock32 u;
        unpack(w + b * block_bytes, &u);
        for (int l = 0; l < 32; l++) out[l] = offset ? u.d * (float)u.q[l] + u.m : u.d * (float)u.q[l];
    }
}

#define DEQUANT32(type, bytes, offset)                                     \
    void ec_dequant_##type##_scalar(const void *w, float *out, size_t k) { \
        dequant_blocks32(w, out, k, bytes, ec_unpack_##type, offset);      \
    }

DEQUANT32(q8_0, 34, 0)
DEQUANT32(q4_0, 18, 0)
DEQUANT32(q5_0, 22, 0)
DEQUANT32(q4_1, 20, 1)
DEQUANT32(q5_1, 24, 1)

typedef void (*unpack_k_fn)(const uint8_t *, ec_wblock_k *);

EC_INLINE void dequant_k45(const uint8_t *w, float *out, size_t k, size_t block_bytes, unpack_k_fn unpack) {
    for (size_t b = 0; b < k / 256; b++, out += 256) {
        ec_wblock_k u;
        unpack(w + b * block_bytes, &u);
        for (int s = 0; s < 8; s++) {
            const float scale = u.d * (float)u.sc[s], min = u.dmin * (float)u.mn[s];
            for (int l = 0; l < 32; l++) out[32 * s + l] = scale * (float)u.q[32 * s + l] - min;
        }
    }
}

void ec_dequant_q4_k_scalar(const void *w, float *out, size_t k) { dequant_k45(w, out, k, 144, ec_unpack_q4_k); }

void ec_dequant_q5_k_scalar(const void *w, float *out, size_t k) { dequant_k45(w, out, k, 176, ec_unpack_q5_k); }

void ec_dequant_q6_k_scalar(const void *w, float *out, size_t k) {
    const uint8_t *wb = w;
    for (size_t b = 0; b < k / 256; b++, out += 256) {
        ec_wblock_q6k u;
        ec_unpack_q6_k(wb + b * 210, &u);
        for (int e = 0; e < 256; e++) out[e] = (u.d * (float)u.sc[e / 16]) * (float)u.q[e];
    }
}
