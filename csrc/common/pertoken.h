/*
 * Micro-kernels of the per-token path (norms, RoPE, f16 KV conversion,
 * attention), one set per ISA tier, called through the dispatch table by the
 * drivers in norms.c, rope.c, kvcache.c and attention.c. The drivers own
 * argument checks, blocking, the paged-cache walk, the online softmax and
 * threading; a tier owns only the vector loops below.
 *
 * Invariance rule for every tier: an element-wise function (exp, tanh, the
 * f16 conversion, a rotation) gives the same bits for the same input in every
 * lane and in the tail, so a value never depends on where it sits in a block;
 * reductions depend only on the length and start of what they reduce.
 */
#ifndef EDGECORE_PERTOKEN_H
#define EDGECORE_PERTOKEN_H

#include <stddef.h>
#include <stdint.h>

/* A norm call. Row r: s = x[r] (+ delta[r], stored to sum[r]); out[r] =
 * norm(s) * w (+ b). w is used as 1 + w when unit_offset is set. */
typedef struct {
    const float *x, *delta;
    float *sum;
    const float *w, *b; /* b: LayerNorm only, may be NULL */
    float *out;
    size_t d;
    float eps;
    int unit_offset;
} ec_norm_args;

/* Rows [r0, r1). */
typedef void (*ec_norm_rows_fn)(const ec_norm_args *a, size_t r0, size_t r1);

/* Rotate one row of `heads` heads (head_dim floats apart) in place with
 * the cos/sin row of its position (rot / 2 values each). */
typedef void (*ec_rope_row_fn)(float *x, size_t heads, size_t head_dim, size_t rot,
                               const float *cos, const float *sin, int interleaved);

/* float -> IEEE half bits, round to nearest even (overflow to inf). */
typedef void (*ec_cvt_f32_f16_fn)(const float *src, uint16_t *dst, size_t n);

/* s[i * ld + j] = dot(q[i * hd ..], K_j) for i < nq, j < nk, where K_j is the
 * hd-element row at rows[j] (float, half bits for the f16 variant, Q8_0
 * blocks for the q8_0 one: hd a multiple of 32, each element d * q, which
 * is exact in float32, so the q8_0 variant computes what the f32 one
 * computes on the dequantized row). */
typedef void (*ec_attn_scores_fn)(const float *q, size_t nq, const void *const *rows, size_t nk,
                                  size_t hd, float *s, size_t ld);

/* o[g * hd + d] = o[g * hd + d] * corr[g] + sum_j p[g * ld + j] * V_j[d] for
 * g < ng, j in order 0 .. nk - 1 (V_j at rows[j], as for the scores). */
typedef void (*ec_attn_pv_fn)(const float *p, size_t ld, size_t ng, const float *corr,
                              const void *const *rows, size_t nk, size_t hd, float *o);

/* With softcap > 0 first s[j] = softcap * tanh(s[j] / softcap) in place.
 * Returns max s[j] over j < n (n >= 1), or NaN if any s[j] is NaN. */
typedef float (*ec_attn_max_fn)(float *s, size_t n, float softcap);

/* s[j] = exp(s[j] - m) in place for j < n (m >= every s[j], finite;
 * exp(x) is 0 for x < -87). Returns the sum of the new s[j]. */
typedef float (*ec_attn_expsum_fn)(float *s, size_t n, float m);

/* Every tier defines these (named op_isa). */
#define EC_DECLARE_PERTOKEN(isa)                                                              \
    void ec_rms_norm_rows_##isa(const ec_norm_args *a, size_t r0, size_t r1);                 \
    void ec_layer_norm_rows_##isa(const ec_norm_args *a, size_t r0, size_t r1);               \
    void ec_rope_row_##isa(float *x, size_t heads, size_t head_dim, size_t rot,               \
                           const float *cos, const float *sin, int interleaved);              \
    void ec_cvt_f32_f16_##isa(const float *src, uint16_t *dst, size_t n);                     \
    void ec_attn_scores_f32_##isa(const float *q, size_t nq, const void *const *rows,         \
                                  size_t nk, size_t hd, float *s, size_t ld);                 \
    void ec_attn_scores_f16_##isa(const float *q, size_t nq, const void *const *rows,         \
                                  size_t nk, size_t hd, float *s, size_t ld);                 \
    void ec_attn_pv_f32_##isa(const float *p, size_t ld, size_t ng, const float *corr,        \
                              const void *const *rows, size_t nk, size_t hd, float *o);       \
    void ec_attn_pv_f16_##isa(const float *p, size_t ld, size_t ng, const float *corr,        \
                              const void *const *rows, size_t nk, size_t hd, float *o);       \
    void ec_attn_scores_q8_0_##isa(const float *q, size_t nq, const void *const *rows,        \
                                   size_t nk, size_t hd, float *s, size_t ld);                \
    void ec_attn_pv_q8_0_##isa(const float *p, size_t ld, size_t ng, const float *corr,       \
                               const void *const *rows, size_t nk, size_t hd, float *o);      \
    float ec_attn_max_##isa(float *s, size_t n, float softcap);                               \
    float ec_attn_expsum_##isa(float *s, size_t n, float m);

/* The table entries, in ec_kernel_table order. */
#define EC_PERTOKEN_TABLE(isa)                                                                \
    ec_rms_norm_rows_##isa, ec_layer_norm_rows_##isa, ec_rope_row_##isa, ec_cvt_f32_f16_##isa, \
        ec_attn_scores_f32_##isa, ec_attn_scores_f16_##isa, ec_attn_pv_f32_##isa,             \
        ec_attn_pv_f16_##isa, ec_attn_scores_q8_0_##isa, ec_attn_pv_q8_0_##isa,               \
        ec_attn_max_##isa, ec_attn_expsum_##isa

/* Work split for the row-parallel per-token drivers (norms, RoPE, KV store):
 * rows go out in units taken from a shared counter, several per thread, so a
 * preempted worker delays one unit, not a fixed share. Each row's result is
 * independent of the split. `work` is the call's cost in multiply-adds (for
 * ec_threads_for_work). */
typedef void (*ec_rows_fn)(void *ctx, size_t r0, size_t r1);
void ec_parallel_rows(ec_rows_fn fn, void *ctx, size_t m, double work);

/* Shared by the paged-cache drivers (kvcache.c). Checks the cache and batch
 * for m rows: shapes, starts, pos0, capacity, and every page id the call
 * touches: positions [pos0, last] of each sequence, or with `reads` the
 * attended range [max(0, pos0 - window + 1), last] (window 0: from 0). */
int ec_kv_check(const ec_kv_pages *c, const ec_kv_batch *b, size_t m, int reads, size_t window,
                ec_kv_fault *fault);
/* The sequence that owns row r (r < starts[n_seqs]). */
size_t ec_kv_seq_of(const ec_kv_batch *b, size_t r);
/* Bytes of one cache row of hd elements (a Q8_0 block is 34 bytes for 32). */
static inline size_t ec_kv_row_bytes(int dtype, size_t hd) {
    return dtype == EC_KV_Q8_0 ? hd / 32 * 34 : dtype == EC_KV_F16 ? hd * 2 : hd * 4;
}

#endif /* EDGECORE_PERTOKEN_H */
