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

/* ---- memory-aware MoE router --------------------------------------------- */

/* How the router picks experts to evict when the cache is at capacity. */
typedef enum {
    EC_EVICT_LRU = 0,      /* least recently activated */
    EC_EVICT_LFU = 1,      /* fewest activations, then least recent */
    EC_EVICT_AFFINITY = 2  /* lowest affinity score, then least recent */
} ec_evict_policy;

/* Counters since the router was created (or its metrics reset). */
typedef struct {
    uint64_t routes;          /* route calls that succeeded */
    uint64_t tokens;          /* rows routed */
    uint64_t hits;            /* per call: distinct chosen experts already resident */
    uint64_t misses;          /* per call: distinct chosen experts not resident (page-ins) */
    uint64_t bytes_paged_in;  /* misses * expert_bytes at the time of each call */
    uint64_t evictions;       /* ids listed in `evict` */
    uint64_t prefetches;      /* ids listed in `prefetch` */
    uint64_t prefetch_used;   /* prefetched ids activated within the window, before eviction */
    uint64_t rerouted;        /* tokens whose chosen set differs from the true top-k */
    double gate_mass_sum;     /* sum over tokens of kept/true-top-k gate mass */
} ec_router_metrics;

/*
 * A router's configuration, state and scratch. The owner allocates every
 * array (n_experts entries unless noted), zero-fills the state, sets the
 * configuration, then calls ec_router_set_resident once; the router code
 * itself never allocates. Not synchronised: the owner serialises calls.
 */
typedef struct {
    /* configuration */
    size_t n_experts, top_k;
    float cache_bonus;        /* logit-scale bonus for resident experts, >= 0 */
    int memory_aware;         /* 0: never add the bonus */
    float decay, boost, max_score; /* affinity EMA (see ec_ema_update_f32) */
    int64_t capacity;         /* resident experts at most; < 0: unlimited */
    int policy;               /* ec_evict_policy */
    size_t prefetch_depth;    /* prefetch suggestions per call at most */
    uint64_t prefetch_window; /* routes within which a prefetch counts as used */
    uint64_t expert_bytes;    /* bytes one page-in moves (metrics only) */
    /* state */
    float *affinity;
    float *bonus;             /* cache_bonus where resident, else 0 (derived) */
    uint64_t *counts;         /* routes that activated the expert */
    uint64_t *last_used;      /* number of the last route that activated it, 0 = never */
    uint64_t *prefetched_at;  /* route that suggested it, 0 = no pending prefetch */
    uint8_t *resident;
    size_t n_resident;
    ec_router_metrics metrics;
    /* scratch: (n_experts + 63) / 64 words each; top_k entries each */
    uint64_t *active_bits, *paged_bits, *dropped_bits;
    int32_t *true_ids;
    float *true_weights;
} ec_router;

/* Where route writes its paging plan: arrays of n_experts entries, and how
 * many of each were written. */
typedef struct {
    int32_t *page_in, *evict, *prefetch;
    size_t n_page_in, n_evict, n_prefetch;
} ec_route_plan;

/*
 * Route logits [t, n_experts]: top-k with the residency bonus into ids and
 * weights [t, top_k] (as ec_route_topk_f32), then update affinity, counts
 * and metrics and write the paging plan (page_in, evict, prefetch), assuming
 * the plan is carried out (resident := resident + page_in + prefetch - evict).
 * Returns -1 on success, or the first row whose weights are undefined; in
 * that case nothing but ids/weights is modified.
 */
int64_t ec_router_route_f32(ec_router *r, const float *logits, size_t t, int32_t *ids,
                            float *weights, ec_route_plan *plan);

/* Replace the resident mask (nonzero = resident) and the derived bonus. */
void ec_router_set_resident(ec_router *r, const uint8_t *mask);

#ifdef __cplusplus
}
#endif
#endif /* EDGECORE_KERNELS_H */
