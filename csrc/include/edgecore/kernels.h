/*
 * edgecore kernel API.
 *
 * Every op has a scalar reference (always compiled) and SIMD variants per ISA
 * tier, chosen at run time through a dispatch table. Kernels never allocate
 * on the heap and never touch Python: callers (the Cython layer) check shapes,
 * dtypes and contiguity before calling and release the GIL around the call.
 */
#ifndef EDGECORE_KERNELS_H
#define EDGECORE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    EC_TIER_SCALAR = 0,
    EC_TIER_AVX2 = 1,   /* AVX2 + FMA + F16C */
    EC_TIER_AVX512 = 2, /* AVX-512 F/BW/DQ/VL */
    EC_TIER_NEON = 3,   /* AArch64 Advanced SIMD */
    EC_TIER_COUNT = 4
} ec_tier;

typedef enum {
    EC_ACT_NONE = 0,
    EC_ACT_RELU = 1,
    EC_ACT_GELU = 2,      /* x * Phi(x), erf form */
    EC_ACT_GELU_TANH = 3, /* tanh approximation (GPT-2) */
    EC_ACT_SILU = 4
} ec_activation;

/* ---- tiers and dispatch ------------------------------------------------ */

/* Name of a tier ("scalar", "avx2", "avx512", "neon"). */
const char *ec_tier_name(int tier);
/* 1 if the tier's kernels were compiled into this build. */
int ec_tier_compiled(int tier);
/* 1 if compiled and the CPU (and OS register state) supports it. */
int ec_tier_available(int tier);
/* The tier the dispatch table currently points at. */
int ec_active_tier(void);
/* Point the dispatch table at `tier`. Returns 0, or -1 if not available.
 * Not synchronised with running kernels: call it at start-up or in tests. */
int ec_set_active_tier(int tier);

/* ---- threads ------------------------------------------------------------ */

/* Worker count used by kernels that split work (1 = caller only). */
int ec_get_num_threads(void);
/* Returns 0, or -1 if n is outside [1, EC_MAX_THREADS]. */
int ec_set_num_threads(int n);
#define EC_MAX_THREADS 256

typedef struct {
    double dispatch_ns;      /* measured round trip of an empty parallel run */
    double linear_macs_per_ns; /* measured single-thread fused-linear rate */
    double min_parallel_macs;  /* calls below this stay on one thread */
    int calibrated;
} ec_thread_calibration;

/* Calibration used by the "is threading worth it" decision (measured lazily
 * on the first call that could be split; re-measured after a tier or thread
 * count change). */
ec_thread_calibration ec_thread_calibration_get(void);

/* ---- kernels ------------------------------------------------------------ */

/*
 * y[m, n] = act(sum_k x[m, k] * W(n, k) + bias[n])
 *   W(n, k) = w[n * k_dim + k]            (transposed == 0, [N, K], HF layout)
 *   W(n, k) = w[k * n_dim + n]            (transposed != 0, [K, N], Conv1D)
 * All arrays C-contiguous float32; bias may be NULL; y must not overlap the
 * inputs. Results are bitwise identical for any thread count.
 */
void ec_linear_f32(const float *x, const float *w, const float *bias, float *y,
                   size_t m, size_t n, size_t k, int transposed, int act);

/*
 * In place: scores *= decay; scores[i] += boost for each *distinct* id in
 * ids; then clamp every score to [0, max_score] (NaN becomes 0). If counts is
 * not NULL, counts[i] += 1 for each distinct id.
 * `scratch` holds the activated-id bitmap: NULL uses the stack (allowed up
 * to EC_EMA_STACK_EXPERTS experts), else (n_experts + 63) / 64 words.
 * Returns -1 on success, or the index of the first id outside [0, n_experts)
 * (nothing is modified in that case), or -2 if scratch was needed.
 */
#define EC_EMA_STACK_EXPERTS 65536
int64_t ec_ema_update_f32(float *scores, size_t n_experts, const int32_t *ids,
                          size_t n_ids, float decay, float boost,
                          float max_score, uint64_t *counts, uint64_t *scratch);

/*
 * Per row t of logits [T, E]: choose the k experts with the highest
 * logits[t, e] + bonus[e] (bonus may be NULL; NaN counts as -inf; ties go to
 * the lower id), write them to ids[t, :] in descending adjusted order, and
 * weights[t, :] = softmax of the chosen *original* logits.
 * Returns -1 on success or the first row whose weights are undefined (a
 * chosen logit that is not finite, i.e. fewer than k finite logits or a +inf).
 */
int64_t ec_route_topk_f32(const float *logits, const float *bonus, size_t t,
                          size_t e, size_t k, int32_t *ids, float *weights);

/* Widening conversions for reduced-precision checkpoints. */
void ec_cvt_bf16_f32(const uint16_t *src, float *dst, size_t n);
void ec_cvt_f16_f32(const uint16_t *src, float *dst, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* EDGECORE_KERNELS_H */
