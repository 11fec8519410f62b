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
    int64_t ec_ema_update_f32_i64(float *scores, size_t n_experts, const int64_t *ids,
                                  size_t n_ids, float decay, float boost, float max_score,
                                  uint64_t *counts, uint64_t *scratch)
    int64_t ec_route_topk_f32(const float *logits, const float *bonus, size_t t,
                              size_t e, size_t k, int32_t *ids, float *weights)
    # weight types and the linear driver (csrc/common/linear.c, wtypes.c, qdispatch.c)
    enum:
        EC_WT_F32
        EC_AF_F32
        EC_AF_Q8_32
        EC_AF_Q8_256
        EC_AF_COUNT
        EC_OK
        EC_ERR_WTYPE
        EC_ERR_K
        EC_ERR_SCRATCH
        EC_ERR_ARG
        EC_ERR_UNSUPPORTED
        EC_ERR_ROW
        EC_FEATURE_COUNT
        EC_LINEAR_MAX_OUTS

    ctypedef struct ec_wtype_info:
        int id
        const char *name
        size_t block_elems
        size_t block_bytes
        int act_format
        int can_quantize

    int ec_wtype_count()
    const ec_wtype_info *ec_wtype_at(int index)
    const ec_wtype_info *ec_wtype_find(int id)
    size_t ec_wtype_row_bytes(const ec_wtype_info *t, size_t k)

    const char *ec_feature_name(int bit)
    int ec_feature_tier(int bit)
    unsigned ec_features_compiled()
    unsigned ec_features_detected()
    const char *ec_weight_prefetch_name()
    unsigned ec_features_available()
    unsigned ec_active_features()
    int ec_set_active_features(unsigned mask)

    ctypedef struct ec_wvariant_info:
        int tier
        unsigned features
        int has_gemm
        int has_dequant
        int mr
        int nr
        int packs

    int ec_wtype_variant_count(int id)
    int ec_wtype_variant(int id, int i, ec_wvariant_info *out)

    ctypedef struct ec_wtype_dispatch:
        int gemm_tier
        unsigned gemm_features
        int dequant_tier
        unsigned dequant_features
        int actq_tier
        unsigned actq_features

    int ec_wtype_dispatch_get(int id, ec_wtype_dispatch *out)

    ctypedef struct ec_linear_out:
        int wtype
        const void *w
        const float *bias
        float *y
        size_t n
        int transposed

    int ec_linear_scratch_bytes(const int *wtypes, size_t n_outs, size_t m, size_t k, int refine, size_t *bytes)
    int ec_linear_multi(const float *x, size_t m, size_t k, const ec_linear_out *outs, size_t n_outs,
                        int act, int glu, int refine, void *scratch, size_t scratch_bytes)
    size_t ec_act_row_bytes(int format, size_t k)
    int ec_quantize_activations(int format, const float *x, size_t m, size_t k, void *out)
    int ec_dequantize_rows(int wtype, const void *w, size_t n_rows, size_t k, const int64_t *rows,
                           size_t n_sel, float *out, size_t *bad)
    int ec_quantize(int wtype, const float *x, size_t rows, size_t k, void *out)

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

    # per-token kernels: norms, RoPE, paged KV cache, attention
    enum:
        EC_ERR_POSITION
        EC_ERR_PAGE
        EC_NORM_UNIT_OFFSET
        EC_KV_F32
        EC_KV_F16
        EC_KV_Q8_0
        EC_ATTN_MAX_HEAD_DIM

    int ec_rms_norm_f32(const float *x, const float *delta, float *sum, const float *w, float *out,
                        size_t m, size_t d, float eps, int flags)
    int ec_layer_norm_f32(const float *x, const float *delta, float *sum, const float *w,
                          const float *b, float *out, size_t m, size_t d, float eps, int flags)
    int ec_rope_f32(float *x, size_t m, size_t row_stride, size_t heads, size_t head_dim,
                    size_t rotary_dim, const void *positions, int pos_bytes, const float *cos,
                    const float *sin, size_t max_pos, int interleaved, size_t *bad_row)

    ctypedef struct ec_kv_pages:
        void *k
        void *v
        int dtype
        size_t n_pages
        size_t kv_heads
        size_t page_tokens
        size_t head_dim

    ctypedef struct ec_kv_batch:
        size_t n_seqs
        const int32_t *starts
        const int32_t *pos0
        const int32_t *page_table
        size_t max_pages

    ctypedef struct ec_kv_fault:
        int64_t seq
        int64_t index

    int ec_kv_store(const ec_kv_pages *cache, const ec_kv_batch *batch, const float *k,
                    const float *v, size_t m, size_t row_stride, ec_kv_fault *fault)
    int ec_attention_f32(const ec_kv_pages *cache, const ec_kv_batch *batch, const float *q,
                         size_t m, size_t q_row_stride, size_t n_heads, float scale, size_t window,
                         float softcap, float *out, ec_kv_fault *fault)

    # one decoder block per call (csrc/common/decoder_block.c)
    enum:
        EC_BLOCK_ARGS
        EC_BLOCK_NORM
        EC_BLOCK_QKV
        EC_BLOCK_ROPE
        EC_BLOCK_KV_STORE
        EC_BLOCK_ATTENTION
        EC_BLOCK_O
        EC_BLOCK_MLP

    ctypedef struct ec_decoder_block:
        size_t d
        size_t n_heads
        size_t head_dim
        size_t rows
        float norm_eps
        float attn_scale
        size_t window
        int refine
        const float *attn_norm
        const float *ffn_norm
        const float *q_norm
        const float *k_norm
        const float *post_attn_norm
        const float *post_ffn_norm
        int norm_flags
        int mlp_act
        ec_linear_out qkv[3]
        ec_linear_out o
        ec_linear_out gate_up[2]
        ec_linear_out down
        const float *rope_cos
        const float *rope_sin
        size_t rope_max_pos
        size_t rotary_dim
        int rope_interleaved
        ec_kv_pages cache
        float *h
        float *a
        void *scratch
        size_t scratch_bytes

    int ec_decoder_block_f32(const ec_decoder_block *b, float *x, const float *delta, size_t m,
                             const ec_kv_batch *batch, const int64_t *positions, ec_kv_fault *fault, int *failed)
    int ec_decoder_stack_f32(const ec_decoder_block *const *blocks, size_t n_blocks, float *x, const float *delta,
                             size_t m, const ec_kv_batch *batch, const int64_t *positions, ec_kv_fault *fault,
                             int *failed, size_t *failed_block)
