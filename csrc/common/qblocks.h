/*
 * GGML weight block layouts, decoded to small integers plus float scales.
 * Shared by the scalar micro-kernels and row dequantizers (and usable by
 * SIMD tails). Byte layouts are ggml's (checked against the gguf package's
 * dequantize in tests/kernels/test_quant_dequantize.py):
 *
 *   q8_0  34 B: d f16 | qs[32] int8                    w = d q
 *   q4_0  18 B: d | qs[16] (elem j low nibble of qs[j], j+16 high)  w = d (q - 8)
 *   q4_1  20 B: d | m f16 | qs[16]                     w = d q + m
 *   q5_0  22 B: d | qh u32 (bit j = bit 4 of elem j) | qs[16]  w = d (q - 16)
 *   q5_1  24 B: d | m | qh | qs[16]                    w = d q + m
 *   q4_k 144 B: d | dmin | scales[12] (6-bit sc, m per 32) | qs[128]
 *               w = d sc_j q - dmin m_j; bytes 32c.. hold sub-blocks 2c (low
 *               nibbles) and 2c+1 (high nibbles)
 *   q5_k 176 B: as q4_k with qh[32] before qs: bit j of qh[l] is bit 4 of
 *               element l of sub-block j
 *   q6_k 210 B: ql[128] | qh[64] | scales[16] int8 | d    w = d sc_g (q - 32),
 *               g = element / 16 (layout in ec_unpack_q6_k)
 *
 * Multi-byte fields are little-endian and unaligned (blocks of 18 or 22
 * bytes), so they are read with memcpy.
 */
#ifndef EDGECORE_QBLOCKS_H
#define EDGECORE_QBLOCKS_H

#include <stdint.h>
#include <string.h>

#include "half.h"

static inline float ec_read_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return ec_f16_to_f32(h);
}

static inline uint32_t ec_read_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A 32-element block: w = d * q (+ m for the offset types q4_1, q5_1). */
typedef struct {
    float d, m;
    int8_t q[32];
} ec_wblock32;

static inline void ec_unpack_q8_0(const uint8_t *b, ec_wblock32 *u) {
    u->d = ec_read_f16(b);
    u->m = 0.0f;
    memcpy(u->q, b + 2, 32);
}

static inline void ec_unpack_q4_0(const uint8_t *b, ec_wblock32 *u) {
    u->d = ec_read_f16(b);
    u->m = 0.0f;
    for (int j = 0; j < 16; j++) {
        u->q[j] = (int8_t)((b[2 + j] & 0x0F) - 8);
        u->q[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
    }
}

static inline void ec_unpack_q4_1(const uint8_t *b, ec_wblock32 *u) {
    u->d = ec_read_f16(b);
    u->m = ec_read_f16(b + 2);
    for (int j = 0; j < 16; j++) {
        u->q[j] = (int8_t)(b[4 + j] & 0x0F);
        u->q[j + 16] = (int8_t)(b[4 + j] >> 4);
    }
}

/* 5-bit values: low nibbles as q4, bit 4 of element j is bit j of qh. */
static inline void ec_unpack_5bit(const uint8_t *qs, uint32_t qh, int offset, int8_t *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 0x0F) | (((qh >> j) & 1u) << 4)) - offset);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - offset);
    }
}

static inline void ec_unpack_q5_0(const uint8_t *b, ec_wblock32 *u) {
    u->d = ec_read_f16(b);
    u->m = 0.0f;
    ec_unpack_5bit(b + 6, ec_read_u32(b + 2), 16, u->q);
}

static inline void ec_unpack_q5_1(const uint8_t *b, ec_wblock32 *u) {
    u->d = ec_read_f16(b);
    u->m = ec_read_f16(b + 2);
    ec_unpack_5bit(b + 8, ec_read_u32(b + 4), 0, u->q);
}

/* A q4_k / q5_k super-block: w = d * sc[j] * q - dmin * mn[j], j = e / 32. */
typedef struct {
    float d, dmin;
    uint8_t sc[8], mn[8];
    int8_t q[256];
} ec_wblock_k;

/* The 12 scale bytes: 6-bit scale and min of 8 sub-blocks. Sub-blocks 0-3
 * use the low 6 bits of bytes j (scale) and j + 4 (min); sub-blocks 4-7
 * take their low 4 bits from byte j + 4 and their top 2 bits from the top
 * bits of bytes j - 4 (scale) and j (min). */
static inline void ec_unpack_k_scales(const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
        mn[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static inline void ec_unpack_q4_k(const uint8_t *b, ec_wblock_k *u) {
    u->d = ec_read_f16(b);
    u->dmin = ec_read_f16(b + 2);
    ec_unpack_k_scales(b + 4, u->sc, u->mn);
    const uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            u->q[64 * c + l] = (int8_t)(qs[32 * c + l] & 0x0F);
            u->q[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
        }
}

static inline void ec_unpack_q5_k(const uint8_t *b, ec_wblock_k *u) {
    u->d = ec_read_f16(b);
    u->dmin = ec_read_f16(b + 2);
    ec_unpack_k_scales(b + 4, u->sc, u->mn);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            const int lo = 2 * c, hi = 2 * c + 1; /* sub-blocks */
            u->q[32 * lo + l] = (int8_t)((qs[32 * c + l] & 0x0F) | (((qh[l] >> lo) & 1) << 4));
            u->q[32 * hi + l] = (int8_t)((qs[32 * c + l] >> 4) | (((qh[l] >> hi) & 1) << 4));
        }
}

/* A q6_k super-block: w = d * sc[e / 16] * q[e]. */
typedef struct {
    float d;
    int8_t sc[16];
    int8_t q[256];
} ec_wblock_q6k;

/* Two halves of 128 elements; in half h, element 32 s + l (s < 4, l < 32)
 * takes its low 4 bits from ql[64 h + 32 (s & 1) + l] (low nibble for
 * s < 2, high nibble for s >= 2) and its top 2 bits from bits 2 s, 2 s + 1
 * of qh[32 h + l]. */
static inline void ec_unpack_q6_k(const uint8_t *b, ec_wblock_q6k *u) {
    const uint8_t *ql = b, *qh = b + 128;
    memcpy(u->sc, b + 192, 16);
    u->d = ec_read_f16(b + 208);
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++) {
                const uint8_t lo = ql[64 * h + 32 * (s & 1) + l];
                const int low4 = s < 2 ? (lo & 0x0F) : (lo >> 4);
                const int high2 = (qh[32 * h + l] >> (2 * s)) & 3;
                u->q[128 * h + 32 * s + l] = (int8_t)((low4 | (high2 << 4)) - 32);
            }
}

#endif /* EDGECORE_QBLOCKS_H */
