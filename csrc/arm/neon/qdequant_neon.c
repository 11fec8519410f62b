/*
 * Row dequantizers for the neon tier (embedding rows), bit for bit the
 * scalar ones and so gguf's dequantize: the same one or two IEEE steps per
 * element (d * q, then + m or - min; -ffp-contract=off keeps them two),
 * on the block decoders of qgemm_neon.h. f16 stays scalar: FCVTL quiets a
 * signalling NaN, the reference keeps its bits.
 */
#include "qgemm_neon.h"

/* 16 int8 -> 4 x float32x4 (exact) */
EC_INLINE void widen16(int8x16_t q, float32x4_t f[4]) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    f[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    f[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

/* out[0..16) = scale * q (- min when sub) */
EC_INLINE void scale16(int8x16_t q, float scale, float min, int sub, float *out) {
    float32x4_t f[4];
    widen16(q, f);
    for (int v = 0; v < 4; v++) {
        float32x4_t r = vmulq_n_f32(f[v], scale);
        if (sub) r = vsubq_f32(r, vdupq_n_f32(min));
        vst1q_f32(out + 4 * v, r);
    }
}

/* 32-blocks: d * q, or d * q + m for the offset types */
EC_INLINE void dequant32(const uint8_t *w, float *out, size_t k, size_t bb, ec_decode32_fn decode, int offset) {
    for (size_t b = 0; b < k / 32; b++, out += 32, w += bb) {
        const ec_q32x q = decode(w);
        const float d = ec_read_f16(w), m = offset ? ec_read_f16(w + 2) : 0.0f;
        const int8x16_t halves[2] = {q.lo, q.hi};
        for (int h = 0; h < 2; h++) {
            float32x4_t f[4];
            widen16(halves[h], f);
            for (int v = 0; v < 4; v++) {
                float32x4_t r = vmulq_n_f32(f[v], d);
                if (offset) r = vaddq_f32(r, vdupq_n_f32(m));
                vst1q_f32(out + 16 * h + 4 * v, r);
            }
        }
    }
}

#define DEQUANT32(type, bytes, offset)                                   \
    void ec_dequant_##type##_neon(const void *w, float *out, size_t k) { \
        dequant32(w, out, k, bytes, ec_decode_##type, offset);           \
    }

DEQUANT32(q8_0, 34, 0)
DEQUANT32(q4_0, 18, 0)
DEQUANT32(q4_1, 20, 1)
DEQUANT32(q5_0, 22, 0)
DEQUANT32(q5_1, 24, 1)

/* q4_k, q5_k: (d * sc) * q - dmin * mn per sub-block of 32 */
EC_INLINE void dequant_k45(const uint8_t *w, float *out, size_t k, size_t bb, ec_decode_k_fn decode) {
    for (size_t b = 0; b < k / 256; b++, out += 256, w += bb) {
        ec_qkx u;
        decode(w, &u);
        for (int s = 0; s < 8; s++) {
            const float scale = u.d * (float)u.sc[s], min = u.dmin * (float)u.mn[s];
            scale16(u.q[2 * s], scale, min, 1, out + 32 * s);
            scale16(u.q[2 * s + 1], scale, min, 1, out + 32 * s + 16);
        }
    }
}

void ec_dequant_q4_k_neon(const void *w, float *out, size_t k) { dequant_k45(w, out, k, 144, ec_decode_q4_k); }
void ec_dequant_q5_k_neon(const void *w, float *out, size_t k) { dequant_k45(w, out, k, 176, ec_decode_q5_k); }

void ec_dequant_q6_k_neon(const void *w, float *out, size_t k) {
    const uint8_t *wb = w;
    for (size_t b = 0; b < k / 256; b++, out += 256, wb += 210) {
        ec_qkx u;
        ec_decode_q6_k(wb, &u);
        for (int g = 0; g < 16; g++) scale16(u.q[g], u.d * (float)u.sc6[g], 0.0f, 0, out + 16 * g);
    }
}

void ec_dequant_bf16_neon(const void *w, float *out, size_t k) {
    const uint16_t *h = w;
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const uint16x8_t v = vld1q_u16(h + i);
        vst1q_f32(out + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)));
        vst1q_f32(out + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(v, 16)));
    }
    for (; i < k; i++) out[i] = ec_bf16_to_f32(h[i]);
}
