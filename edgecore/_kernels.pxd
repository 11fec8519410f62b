# Declarations of the C kernel API (csrc/include/edgecore/kernels.h).
# Every kernel is nogil: the Cython wrappers check their arguments, then
# release the GIL around the call.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t


cdef extern from "edgecore/kernels.h" nogil:
    enum:
        EC_TIER_SCALAR
        EC_TIER_AVX2
        EC_TIER_AVX512
        EC_TIER_NEON
        EC_TIER_COUNT
        EC_MAX_THREADS
        EC_EMA_STACK_EXPERTS

    ctypedef struct ec_thread_calibration:
        double dispatch_ns
        double linear_macs_per_ns
        double min_parallel_macs
        int calibrated

    const char *ec_tier_name(int tier)
    int ec_tier_compiled(int tier)
    int ec_tier_available(int tier)
    int ec_active_tier()
    int ec_set_active_tier(int tier)

    int ec_get_num_threads()
    int ec_set_num_threads(int n)
    ec_thread_calibration ec_thread_calibration_get()

    void ec_linear_f32(const float *x, const float *w, const float *bias, float *y,
                       size_t m, size_t n, size_t k, int transposed, int act)
    int64_t ec_ema_update_f32(float *scores, size_t n_experts, const int32_t *ids,
                              size_t n_ids, float decay, float boost, float max_score,
                              uint64_t *counts, uint64_t *scratch)
    int64_t ec_route_topk_f32(const float *logits, const float *bonus, size_t t,
                              size_t e, size_t k, int32_t *ids, float *weights)
    void ec_cvt_bf16_f32(const uint16_t *src, float *dst, size_t n)
    void ec_cvt_f16_f32(const uint16_t *src, float *dst, size_t n)

    # memory-aware MoE router (csrc/common/router.c)
    enum:
        EC_EVICT_LRU
        EC_EVICT_LFU
        EC_EVICT_AFFINITY

    ctypedef struct ec_router_metrics:
        uint64_t routes
        uint64_t tokens
        uint64_t hits
        uint64_t misses
        uint64_t bytes_paged_in
        uint64_t evictions
        uint64_t prefetches
        uint64_t prefetch_used
        uint64_t rerouted
        double gate_mass_sum

    ctypedef struct ec_router:
        size_t n_experts
        size_t top_k
        float cache_bonus
        int memory_aware
        float decay
        float boost
        float max_score
        int64_t capacity
        int policy
        size_t prefetch_depth
        uint64_t prefetch_window
        uint64_t expert_bytes
        float *affinity
        float *bonus
        uint64_t *counts
        uint64_t *last_used
        uint64_t *prefetched_at
        uint8_t *resident
        size_t n_resident
        ec_router_metrics metrics
        uint64_t *active_bits
        uint64_t *paged_bits
        uint64_t *dropped_bits
        int32_t *true_ids
        float *true_weights

    ctypedef struct ec_route_plan:
        int32_t *page_in
        int32_t *evict
        int32_t *prefetch
        size_t n_page_in
        size_t n_evict
        size_t n_prefetch

    int64_t ec_router_route_f32(ec_router *r, const float *logits, size_t t, int32_t *ids,
                                float *weights, ec_route_plan *plan)
    void ec_router_set_resident(ec_router *r, const uint8_t *mask)
