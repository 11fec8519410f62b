/*
 * gemm micro-kernels, scalar reference: one per weight type, the contract in
 * csrc/common/qkernels.h. Each output is accumulated in float32 over the
 * blocks of K in order, from the block's exact integer dot product:
 *
 *   symmetric 32-blocks (q8_0, q4_0, q5_0): acc += (dw dx) isum
 *   offset 32-blocks (q4_1, q5_1):  acc += (dw dx) isum + (mw dx) xsum
 *   q4_k, q5_k: acc += (dx d) sum_j sc_j isum_j - (dx dmin) sum_j m_j xsum_j
 *   q6_k:       acc += (dx d) sum_g sc_g isum_g
 *   f16, bf16:  acc += w x, element by element
 *
 * (isum: sum of weight q times activation q over the block or sub-block;
 * xsum: sum of the activation q, from the activation block). A weight block
 * is decoded once for all mr activation rows; the operations for one
 * output never depend on mr or nr, so results are batch invariant.
 */
#include "../common/qblocks.h"
#include "../common/qkernels.h"

#define EC_INLINE static inline __attribute__((always_inline))

typedef void (*unpack32_fn)(const uint8_t *, ec_wblock32 *);

EC_INLINE void gemm_blocks32(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                             size_t ws, float *y, size_t ldy, size_t block_bytes, unpack32_fn unpack,
                             int offset) {
    for (size_t j = 0; j < nr; j++) {
        const uint8_t *wr = (const uint8_t *)w + j * ws;
        float acc[EC_MR_MAX] = {0};
        for (size_t b = 0; b < k / 32; b++) {
            ec_wblock32 u;
            unpack(wr + b * block_bytes, &u);
            for (size_t i = 0; i < mr; i++) {
                const ec_act_q8_32 *xb = (const ec_act_q8_32 *)((const char *)x + i * xs) + b;
                int32_t isum = 0;
                for (int l = 0; l < 32; l++) isum += u.q[l] * xb->q[l];
                float t = (u.d * xb->d) * (float)isum;
                if (offset) t += (u.m * xb->d) * (float)xb->sum;
                acc[i] += t;
            }
        }
        for (size_t i = 0; i < mr; i++) y[i * ldy + j] = acc[i];
    }
}

#define GEMM32(type, bytes, offset)                                                              \
    void ec_qgemm_##type##_scalar(size_t k, size_t mr, size_t nr, const void *x, size_t xs,      \
                                  const void *w, size_t ws, float *y, size_t ldy) {              \
        gemm_blocks32(k, mr, nr, x, xs, w, ws, y, ldy, bytes, ec_unpack_##type, offset);         \
    }

GEMM32(q8_0, 34, 0)
GEMM32(q4_0, 18, 0)
GEMM32(q5_0, 22, 0)
GEMM32(q4_1, 20, 1)
GEMM32(q5_1, 24, 1)

typedef void (*unpack_k_fn)(const uint8_t *, ec_wblock_k *);

EC_INLINE void gemm_k45(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                        size_t ws, float *y, size_t ldy, size_t block_bytes, unpack_k_fn unpack) {
    for (size_t j = 0; j < nr; j++) {
        const uint8_t *wr = (const uint8_t *)w + j * ws;
        float acc[EC_MR_MAX] = {0};
        for (size_t b = 0; b < k / 256; b++) {
            ec_wblock_k u;
            unpack(wr + b * block_bytes, &u);
            for (size_t i = 0; i < mr; i++) {
                const ec_act_q8_256 *xb = (const ec_act_q8_256 *)((const char *)x + i * xs) + b;
                int32_t isc = 0, imin = 0;
                for (int s = 0; s < 8; s++) {
                    int32_t isum = 0;
                    for (int l = 0; l < 32; l++) isum += u.q[32 * s + l] * xb->q[32 * s + l];
                    isc += u.sc[s] * isum;
                    imin += u.mn[s] * (xb->bsums[2 * s] + xb->bsums[2 * s + 1]);
                }
                acc[i] += (xb->d * u.d) * (float)isc - (xb->d * u.dmin) * (float)imin;
            }
        }
        for (size_t i = 0; i < mr; i++) y[i * ldy + j] = acc[i];
    }
}

void ec_qgemm_q4_k_scalar(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                          size_t ws, float *y, size_t ldy) {
    gemm_k45(k, mr, nr, x, xs, w, ws, y, ldy, 144, ec_unpack_q4_k);
}

void ec_qgemm_q5_k_scalar(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                          size_t ws, float *y, size_t ldy) {
    gemm_k45(k, mr, nr, x, xs, w, ws, y, ldy, 176, ec_unpack_q5_k);
}

void ec_qgemm_q6_k_scalar(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                          size_t ws, float *y, size_t ldy) {
    for (size_t j = 0; j < nr; j++) {
        const uint8_t *wr = (const uint8_t *)w + j * ws;
        float acc[EC_MR_MAX] = {0};
        for (size_t b = 0; b < k / 256; b++) {
            ec_wblock_q6k u;
            ec_unpack_q6_k(wr + b * 210, &u);
            for (size_t i = 0; i < mr; i++) {
                const ec_act_q8_256 *xb = (const ec_act_q8_256 *)((const char *)x + i * xs) + b;
                int32_t isc = 0;
                for (int g = 0; g < 16; g++) {
                    int32_t isum = 0;
                    for (int l = 0; l < 16; l++) isum += u.q[16 * g + l] * xb->q[16 * g + l];
                    isc += u.sc[g] * isum;
                }
                acc[i] += (xb->d * u.d) * (float)isc;
            }
        }
        for (size_t i = 0; i < mr; i++) y[i * ldy + j] = acc[i];
    }
}

typedef float (*widen_fn)(uint16_t);

EC_INLINE void gemm_half(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                         size_t ws, float *y, size_t ldy, widen_fn widen) {
    for (size_t j = 0; j < nr; j++) {
        const uint16_t *wr = (const uint16_t *)((const char *)w + j * ws);
        for (size_t i = 0; i < mr; i++) {
            const float *xr = (const float *)((const char *)x + i * xs);
            float acc = 0.0f;
            for (size_t l = 0; l < k; l++) acc += widen(wr[l]) * xr[l];
            y[i * ldy + j] = acc;
        }
    }
}

void ec_qgemm_f16_scalar(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                         size_t ws, float *y, size_t ldy) {
    gemm_half(k, mr, nr, x, xs, w, ws, y, ldy, ec_f16_to_f32);
}

void ec_qgemm_bf16_scalar(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                          size_t ws, float *y, size_t ldy) {
    gemm_half(k, mr, nr, x, xs, w, ws, y, ldy, ec_bf16_to_f32);
}
