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
/* The same with int64 ids. */
int64_t ec_ema_update_f32_i64(float *scores, size_t n_experts, const int64_t *ids,
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

/* ---- weight types, quantized linear ------------------------------------ */

/* Weight types, numbered as GGML numbers them (the GGUF tensor type ids). */
typedef enum {
    EC_WT_F32 = 0,
    EC_WT_F16 = 1,
    EC_WT_Q4_0 = 2,
    EC_WT_Q4_1 = 3,
    EC_WT_Q5_0 = 6,
    EC_WT_Q5_1 = 7,
    EC_WT_Q8_0 = 8,
    EC_WT_Q4_K = 12,
    EC_WT_Q5_K = 13,
    EC_WT_Q6_K = 14,
    EC_WT_BF16 = 30
} ec_wtype;

/* What a weight type's dot product consumes (docs/quantization.md):
 * float32 activations as they are, or activations quantized once per call
 * to 8-bit blocks of 32 (ec_act_q8_32) or of 256 (ec_act_q8_256). */
typedef enum {
    EC_AF_F32 = 0,
    EC_AF_Q8_32 = 1,
    EC_AF_Q8_256 = 2,
    EC_AF_COUNT = 3
} ec_act_format;

/* One 32-element activation block: x[i] ~= d * q[i]; sum = sum of q. */
typedef struct {
    float d;
    int32_t sum;
    int8_t q[32];
} ec_act_q8_32;

/* One 256-element activation block: x[i] ~= d * q[i]; bsums[g] = sum of
 * q[16 g .. 16 g + 15]. */
typedef struct {
    float d;
    int8_t q[256];
    int16_t bsums[16];
} ec_act_q8_256;

typedef struct {
    int id;              /* ec_wtype */
    const char *name;    /* lower case: "q4_k" */
    size_t block_elems;  /* elements per block along K (1 for f32/f16/bf16) */
    size_t block_bytes;  /* bytes per block */
    int act_format;      /* ec_act_format its dot product consumes */
    int can_quantize;    /* ec_quantize supports it */
} ec_wtype_info;

/* Error codes of the weight-type entry points (0 = success). */
#define EC_OK 0
#define EC_ERR_WTYPE (-1)      /* not a registered weight type id */
#define EC_ERR_K (-2)          /* K is not a multiple of the type's block */
#define EC_ERR_SCRATCH (-3)    /* scratch missing or smaller than the size query says */
#define EC_ERR_ARG (-4)        /* transposed non-f32, bad output count, bad glu pair */
#define EC_ERR_UNSUPPORTED (-5) /* ec_quantize has no quantizer for the type */
#define EC_ERR_ROW (-6)        /* a row index outside [0, rows) */

/* The registry, in a fixed order: index 0 .. ec_wtype_count() - 1. */
int ec_wtype_count(void);
const ec_wtype_info *ec_wtype_at(int index);
/* NULL if `id` is not a registered type. */
const ec_wtype_info *ec_wtype_find(int id);
/* Bytes of one row of k elements (0 if k is not a multiple of the block). */
size_t ec_wtype_row_bytes(const ec_wtype_info *t, size_t k);

/* Sub-features of a tier, detected at run time like the tiers. A variant of
 * a tier's micro-kernel may require some of them. */
typedef enum {
    EC_FEAT_AVX_VNNI = 1u << 0,    /* VEX vpdpbusd (avx2 tier) */
    EC_FEAT_AVX512_VNNI = 1u << 1, /* EVEX vpdpbusd (avx512 tier) */
    EC_FEAT_AVX512_BF16 = 1u << 2, /* vdpbf16ps (avx512 tier) */
    EC_FEAT_DOTPROD = 1u << 3,     /* sdot/udot (neon tier) */
    EC_FEAT_I8MM = 1u << 4         /* smmla (neon tier) */
} ec_feature;
#define EC_FEATURE_COUNT 5

/* Name ("avx512_vnni") and owning tier of feature bit `bit` (0-based). */
const char *ec_feature_name(int bit);
int ec_feature_tier(int bit);
/* Masks of ec_feature bits: compiled into this build / supported by this
 * CPU and OS / both / currently enabled for dispatch. */
unsigned ec_features_compiled(void);
unsigned ec_features_detected(void); /* CPU + OS, compiled or not */
/* The avx512 gemm kernels' weight prefetch on this CPU: "non-temporal" (AMD)
 * or "l2" (every other vendor); "none" off x86. See
 * csrc/x86/avx512/prefetch_avx512.h. */
const char *ec_weight_prefetch_name(void);
unsigned ec_features_available(void);
unsigned ec_active_features(void);
/* Enable exactly `mask` (a subset of the available features). Returns 0,
 * or -1 if the mask holds an unavailable feature. Like ec_set_active_tier,
 * not synchronised with running kernels. ec_set_active_tier resets the
 * mask to every available feature. */
int ec_set_active_features(unsigned mask);

/* A registered micro-kernel variant of a weight type. */
typedef struct {
    int tier;           /* ec_tier */
    unsigned features;  /* ec_feature bits it needs (0: the plain tier) */
    int has_gemm, has_dequant;
    int mr, nr;         /* its preferred tile (gemm only) */
    int packs;          /* packs weight strips for multi-tile calls (qkernels.h) */
} ec_wvariant_info;

/* Variants of type `id` compiled into this build; -1 if id is unknown. */
int ec_wtype_variant_count(int id);
/* Variant i of type id; returns 0, or -1 if either is out of range. */
int ec_wtype_variant(int id, int i, ec_wvariant_info *out);

/* What the dispatcher uses for a type now: the tier and features of the
 * chosen gemm micro-kernel, row dequantizer and activation quantizer. For
 * f32 the gemm is the tier's tuned linear kernel (gemm_tier = active tier). */
typedef struct {
    int gemm_tier;
    unsigned gemm_features;
    int dequant_tier;
    unsigned dequant_features;
    int actq_tier; /* -1 for float32 activations */
    unsigned actq_features;
} ec_wtype_dispatch;
int ec_wtype_dispatch_get(int id, ec_wtype_dispatch *out);

/* One output of a (multi-)linear call. */
typedef struct {
    int wtype;          /* ec_wtype */
    const void *w;      /* [N, row bytes]; f32 [K, N] when transposed */
    const float *bias;  /* [N] or NULL */
    float *y;           /* [M, N] */
    size_t n;           /* N */
    int transposed;     /* f32 only */
} ec_linear_out;

#define EC_LINEAR_MAX_OUTS 16

/* Scratch bytes a call needs: the activations quantized once per format the
 * outputs' types consume (0 when every type takes float32 activations);
 * twice as many rows with refine. */
int ec_linear_scratch_bytes(const int *wtypes, size_t n_outs, size_t m, size_t k, int refine, size_t *bytes);

/*
 * For every output o: y_o[m, n] = act(sum_k x[m, k] * W_o(n, k) + bias_o[n]),
 * all outputs computed in one parallel run over their columns, x quantized
 * once per activation format. With glu (exactly two outputs of equal N):
 * y_0 = act(x W_0^T + b_0) * (x W_1^T + b_1), and y_1 holds x W_1^T + b_1.
 * x is [M, K] float32. Outputs must not overlap each other or the inputs,
 * scratch must not overlap anything. For a given tier and feature set every
 * output value is bitwise independent of M, of the thread count and of the
 * other outputs. With refine, the 8-bit types also quantize each row's
 * quantization residual and add its product (two passes, one weight read:
 * docs/quantization.md); other types ignore it.
 * Returns EC_OK or an EC_ERR_* code (nothing written then).
 */
int ec_linear_multi(const float *x, size_t m, size_t k, const ec_linear_out *outs, size_t n_outs,
                    int act, int glu, int refine, void *scratch, size_t scratch_bytes);

/* ec_linear_multi with one output. */
int ec_linear(int wtype, const float *x, const void *w, const float *bias, float *y, size_t m,
              size_t n, size_t k, int transposed, int act, void *scratch, size_t scratch_bytes);

/* Bytes of one row of k activations in `format` (0 if k is not a multiple
 * of its block, or the format is f32). */
size_t ec_act_row_bytes(int format, size_t k);
/* Quantize x [m, k] into `format` blocks (what the linear driver does
 * internally); out holds m * ec_act_row_bytes(format, k) bytes. */
int ec_quantize_activations(int format, const float *x, size_t m, size_t k, void *out);

/*
 * out[i, :] = W(rows[i], :) as float32, for i < n_sel (rows == NULL: every
 * row, n_sel = n_rows). w is [n_rows, row bytes]. Only the selected rows are
 * read. EC_ERR_ROW if a row index is outside [0, n_rows): *bad (if not
 * NULL) is its position in rows, and nothing is written.
 */
int ec_dequantize_rows(int wtype, const void *w, size_t n_rows, size_t k, const int64_t *rows,
                       size_t n_sel, float *out, size_t *bad);

/* Quantize float32 x [rows, k] to `wtype` blocks (rows * row bytes), bit
 * for bit as the gguf package's gguf.quants.quantize does (q8_0, q4_0, q4_1,
 * q5_0, q5_1, f16, bf16; EC_ERR_UNSUPPORTED for the others). */
int ec_quantize(int wtype, const float *x, size_t rows, size_t k, void *out);

/* Widening conversions for reduced-precision checkpoints. */
void ec_cvt_bf16_f32(const uint16_t *src, float *dst, size_t n);
void ec_cvt_f16_f32(const uint16_t *src, float *dst, size_t n);

/* ---- per-token kernels: norms, RoPE, paged KV cache, attention --------- */

/* Error codes of the per-token entry points (with EC_OK and EC_ERR_ARG). */
#define EC_ERR_POSITION (-7) /* a position outside a table's capacity */
#define EC_ERR_PAGE (-8)     /* a page id outside [0, n_pages) */

/* Norm flags. */
#define EC_NORM_UNIT_OFFSET 1 /* scale by (1 + w): Gemma stores w - 1 */

/*
 * Per row r of [m, d]: s = x[r], or with delta != NULL s = x[r] + delta[r]
 * (float32 add) written to sum[r] (sum may be x: the fused residual add);
 *   RMSNorm:   out[r] = s / sqrt(mean(s^2) + eps) * w
 *   LayerNorm: out[r] = (s - mean(s)) / sqrt(var(s) + eps) * w + b  (b may be NULL)
 * with w replaced by 1 + w under EC_NORM_UNIT_OFFSET. out may be x when
 * delta is NULL; otherwise out must not overlap x, delta or sum. Rows are
 * independent: a row's result depends on nothing but its own values.
 * Returns EC_OK, or EC_ERR_ARG (d == 0, a NULL array, delta without sum,
 * unknown flags) with nothing written.
 */
int ec_rms_norm_f32(const float *x, const float *delta, float *sum, const float *w, float *out,
                    size_t m, size_t d, float eps, int flags);
int ec_layer_norm_f32(const float *x, const float *delta, float *sum, const float *w,
                      const float *b, float *out, size_t m, size_t d, float eps, int flags);

/*
 * Rotary position embedding, in place on x [m, heads, head_dim] (row r at
 * x + r * row_stride floats; heads contiguous within a row). Row r is at
 * position positions[r] (int32 if pos_bytes == 4, int64 if 8); cos and sin
 * are [max_pos, rotary_dim / 2]. Frequency i rotates the pair
 *   rotate-half (interleaved == 0): (i, i + rotary_dim / 2)
 *   interleaved (interleaved != 0): (2i, 2i + 1)
 * of each head: (a, b) -> (a cos - b sin, b cos + a sin); elements from
 * rotary_dim to head_dim are untouched. Returns EC_OK; EC_ERR_ARG (rotary
 * dim odd, 0 or > head_dim, row_stride < heads * head_dim, pos_bytes not 4
 * or 8); EC_ERR_POSITION with *bad_row (if not NULL) the first row whose
 * position is outside [0, max_pos). Nothing is written on error.
 */
int ec_rope_f32(float *x, size_t m, size_t row_stride, size_t heads, size_t head_dim,
                size_t rotary_dim, const void *positions, int pos_bytes, const float *cos,
                const float *sin, size_t max_pos, int interleaved, size_t *bad_row);

typedef enum { EC_KV_F32 = 0, EC_KV_F16 = 1, EC_KV_Q8_0 = 2 } ec_kv_dtype;

/* One layer's paged KV cache: K and V each [n_pages, kv_heads, page_tokens,
 * row] where a row holds head_dim elements of `dtype`: float32, IEEE half
 * bits, or (q8_0, head_dim a multiple of 32) head_dim / 32 GGML Q8_0 blocks
 * of 34 bytes (an f16 scale d, then 32 int8 q; the value is d * q). */
typedef struct {
    void *k, *v;
    int dtype; /* ec_kv_dtype */
    size_t n_pages, kv_heads, page_tokens, head_dim;
} ec_kv_pages;

/*
 * A batch of sequences over the rows of one activation: sequence s owns rows
 * starts[s] .. starts[s + 1] - 1 (starts[0] == 0, non-decreasing, starts[n]
 * == m; a sequence may have no rows), row starts[s] + i is at position
 * pos0[s] + i, and position p lives in page page_table[s * max_pages +
 * p / page_tokens], slot p % page_tokens.
 */
typedef struct {
    size_t n_seqs;
    const int32_t *starts;     /* [n_seqs + 1] */
    const int32_t *pos0;       /* [n_seqs], >= 0 */
    const int32_t *page_table; /* [n_seqs, max_pages] */
    size_t max_pages;
} ec_kv_batch;

/* Where an entry point found an inconsistent argument. */
typedef struct {
    int64_t seq;   /* the sequence (EC_ERR_PAGE, EC_ERR_POSITION, EC_ERR_ARG on starts/pos0) */
    int64_t index; /* EC_ERR_PAGE: the page table column */
} ec_kv_fault;

/*
 * Write k, v [m, kv_heads, head_dim] float32 (row r at + r * row_stride
 * floats) into their positions' slots, converting to f16 with round to
 * nearest even for an f16 cache, and quantizing each row to Q8_0 blocks for
 * a q8_0 cache bit for bit as ggml's reference quantizer (quantize.c). Two rows of one call must not map to the
 * same slot (which one lands is then unspecified). Returns EC_OK, or
 * EC_ERR_ARG / EC_ERR_POSITION / EC_ERR_PAGE (see ec_kv_fault) with nothing
 * written.
 */
int ec_kv_store(const ec_kv_pages *cache, const ec_kv_batch *batch, const float *k,
                const float *v, size_t m, size_t row_stride, ec_kv_fault *fault);

/* Head dims the attention kernel supports: 1 .. EC_ATTN_MAX_HEAD_DIM. */
#define EC_ATTN_MAX_HEAD_DIM 256

/*
 * Causal attention over the paged cache for a batch of sequences. q is
 * [m, n_heads, head_dim] float32 (row r at q + r * q_row_stride floats); the
 * row at position p attends to its own sequence's keys at positions
 * [max(0, p - window + 1), p] (window 0: [0, p]); query head j reads KV head
 * j / (n_heads / kv_heads). Scores are scale * q.k, soft-capped as
 * softcap * tanh(score / softcap) when softcap > 0. out is [m, n_heads *
 * head_dim]. A row whose scores include a NaN or +inf, or are all -inf, gets
 * NaN. Every output row is bitwise a function of its own q row, its own
 * keys/values and the parameters: independent of the other rows and
 * sequences of the call and of the thread count. Returns EC_OK, or
 * EC_ERR_ARG / EC_ERR_POSITION / EC_ERR_PAGE (see ec_kv_fault) with nothing
 * written. Only the pages holding attended positions are read or checked.
 */
int ec_attention_f32(const ec_kv_pages *cache, const ec_kv_batch *batch, const float *q,
                     size_t m, size_t q_row_stride, size_t n_heads, float scale, size_t window,
                     float softcap, float *out, ec_kv_fault *fault);

/* ---- one decoder block per call ------------------------------------------- */

/*
 * A pre-norm llama-family decoder block, described once: RMSNorm (the
 * residual add fused), q/k/v in one linear call, RoPE on q and k, the paged
 * KV store, attention, the output projection and, when down.w != NULL, the
 * post-attention RMSNorm and the gated MLP (gate and up in one gated call
 * with mlp_act, SiLU or tanh GELU, then down). Gemma 3's extra norms, each
 * used when not NULL and run in place: q_norm and k_norm [head_dim] on every
 * query and key head before RoPE, post_attn_norm [d] on o before its
 * residual add, post_ffn_norm [d] on down's output; norm_flags applies to
 * every norm of the block (EC_NORM_UNIT_OFFSET: Hugging Face Gemma's 1 + w). Every y of the linear outputs is a workspace of `rows` rows
 * (q [rows, n_heads * head_dim], k and v [rows, kv_dim], o and down
 * [rows, d], gate and up [rows, ffn]); h [rows, d] and a [rows, n_heads *
 * head_dim] are two more; scratch holds what ec_linear_scratch_bytes asks
 * for the largest of the block's linear calls at `rows` rows. The block
 * calls the entry points above in the order the engine's Python layers do,
 * so results are bitwise theirs.
 */
typedef struct {
    size_t d, n_heads, head_dim, rows;
    float norm_eps, attn_scale;
    size_t window;              /* attention window (0: unlimited) */
    int refine;                 /* the 8-bit types' two-pass input */
    const float *attn_norm, *ffn_norm;
    const float *q_norm, *k_norm, *post_attn_norm, *post_ffn_norm; /* Gemma 3; NULL: none */
    int norm_flags;             /* ec_rms_norm_f32 flags for every norm */
    int mlp_act;                /* EC_ACT_SILU (SwiGLU) or EC_ACT_GELU_TANH (GeGLU) */
    ec_linear_out qkv[3];       /* q, k, v: one linear call */
    ec_linear_out o;
    ec_linear_out gate_up[2];   /* one gated call */
    ec_linear_out down;
    const float *rope_cos, *rope_sin; /* [rope_max_pos, rotary_dim / 2] */
    size_t rope_max_pos, rotary_dim;
    int rope_interleaved;
    ec_kv_pages cache;          /* this layer's pages; kv_heads from here */
    float *h, *a;
    void *scratch;
    size_t scratch_bytes;
} ec_decoder_block;

/* Which part of a block reported an error. */
enum {
    EC_BLOCK_ARGS = 0,
    EC_BLOCK_NORM,
    EC_BLOCK_QKV,
    EC_BLOCK_ROPE,
    EC_BLOCK_KV_STORE,
    EC_BLOCK_ATTENTION,
    EC_BLOCK_O,
    EC_BLOCK_MLP
};

/*
 * Run the block on x [m, d] (updated in place: x += delta, then with the MLP
 * x += o), m <= rows, for a batch of sequences (ec_kv_batch; row r at
 * positions[r], int64). delta: the previous block's output [m, d] or NULL.
 * The block's output (the next delta) is in down.y, or in o.y without the
 * MLP. Returns EC_OK or the failing entry point's code, with *failed the
 * EC_BLOCK_* stage and *fault as that entry point fills it (for RoPE:
 * fault->index is the row with the bad position).
 */
int ec_decoder_block_f32(const ec_decoder_block *b, float *x, const float *delta, size_t m,
                         const ec_kv_batch *batch, const int64_t *positions, ec_kv_fault *fault, int *failed);

/*
 * Consecutive blocks (each with its MLP) in one call: block i runs with
 * block i-1's output as its delta, the first with `delta`. The blocks share
 * the batch: their caches must have one page geometry (checked by the
 * caller). Output: the last block's down.y. On an error, *failed_block is
 * the block that failed (the others as for ec_decoder_block_f32).
 */
int ec_decoder_stack_f32(const ec_decoder_block *const *blocks, size_t n_blocks, float *x, const float *delta,
                         size_t m, const ec_kv_batch *batch, const int64_t *positions, ec_kv_fault *fault,
                         int *failed, size_t *failed_block);

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
