/*
 * Internal kernel plumbing: the dispatch table, per-ISA prototypes and the
 * thread pool. Not part of the public API.
 */
#ifndef EDGECORE_INTERNAL_H
#define EDGECORE_INTERNAL_H

#include "edgecore/kernels.h"
#include "pertoken.h"

/* A linear call, described once and shared by every worker. */
typedef struct {
    const float *x;
    const float *w;
    const float *bias;
    float *y;
    size_t m, n, k;
    int transposed;
    int act;
} ec_linear_args;

/* Compute output columns [n0, n1) for every row. */
typedef void (*ec_linear_fn)(const ec_linear_args *a, size_t n0, size_t n1);

/* One fused pass over all scores: s = clamp(s * decay + (bit(i) ? boost : 0))
 * where bit(i) is bit i of `activated` (little-endian 64-bit words). */
typedef void (*ec_ema_fn)(float *scores, size_t n, const uint64_t *activated,
                          float decay, float boost, float max_score);

/* Top-k over rows [t0, t1); returns -1 or the first bad row. */
typedef int64_t (*ec_topk_fn)(const float *logits, const float *bonus,
                              size_t e, size_t k, size_t t0, size_t t1,
                              int32_t *ids, float *weights);

typedef void (*ec_cvt_fn)(const uint16_t *src, float *dst, size_t n);

typedef struct {
    ec_linear_fn linear_f32;
    ec_ema_fn ema_f32;
    ec_topk_fn topk_f32;
    ec_cvt_fn cvt_bf16_f32;
    ec_cvt_fn cvt_f16_f32;
    /* per-token micro-kernels (pertoken.h) */
    ec_norm_rows_fn rms_norm_rows;
    ec_norm_rows_fn layer_norm_rows;
    ec_rope_row_fn rope_row;
    ec_cvt_f32_f16_fn cvt_f32_f16;
    ec_attn_scores_fn attn_scores_f32, attn_scores_f16;
    ec_attn_pv_fn attn_pv_f32, attn_pv_f16;
    ec_attn_scores_fn attn_scores_q8_0;
    ec_attn_pv_fn attn_pv_q8_0;
    ec_attn_max_fn attn_max;
    ec_attn_expsum_fn attn_expsum;
} ec_kernel_table;

/* k floats (k a multiple of 32) -> k / 32 GGML Q8_0 blocks, bit for bit
 * gguf.quants.quantize (quantize.c; also the q8_0 KV cache's store). */
void ec_quantize_row_q8_0(const float *x, uint8_t *out, size_t k);

/* The active table (filled at load, switched only by ec_set_active_tier). */
extern const ec_kernel_table *ec_active;

#define EC_DECLARE_TIER(isa)                                                   \
    void ec_linear_f32_##isa(const ec_linear_args *a, size_t n0, size_t n1);  \
    void ec_ema_f32_##isa(float *scores, size_t n, const uint64_t *activated, \
                          float decay, float boost, float max_score);          \
    int64_t ec_topk_f32_##isa(const float *logits, const float *bonus,        \
                              size_t e, size_t k, size_t t0, size_t t1,       \
                              int32_t *ids, float *weights);                   \
    void ec_cvt_bf16_f32_##isa(const uint16_t *src, float *dst, size_t n);    \
    void ec_cvt_f16_f32_##isa(const uint16_t *src, float *dst, size_t n);    \
    EC_DECLARE_PERTOKEN(isa)

EC_DECLARE_TIER(scalar)
#ifdef EC_BUILD_AVX2
EC_DECLARE_TIER(avx2)
#endif
#ifdef EC_BUILD_AVX512
EC_DECLARE_TIER(avx512)
#endif
#ifdef EC_BUILD_NEON
EC_DECLARE_TIER(neon)
#endif

/* CPU feature detection: 1 if the CPU and OS support the tier. */
int ec_cpu_supports(int tier);

/* ---- thread pool -------------------------------------------------------- */

/* Task i of n_tasks; every task runs exactly once. */
typedef void (*ec_task_fn)(void *ctx, size_t task, size_t n_tasks);

/* Run n_tasks tasks on up to n_tasks threads (the caller runs task 0).
 * If another thread is already using the pool, everything runs on the
 * caller: results must not depend on which thread runs which task. */
void ec_parallel_run(ec_task_fn fn, void *ctx, size_t n_tasks);

/* Threads worth using for `macs` multiply-adds (1 for small work). */
int ec_threads_for_work(double macs);

/* Calibration hook: runs the active linear kernel on one thread. */
void ec_linear_f32_serial(const ec_linear_args *a);

#endif /* EDGECORE_INTERNAL_H */
