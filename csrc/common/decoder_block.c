/*
 * One pre-norm decoder block of the llama family (Llama, Mistral, SmolLM2,
 * TinyLlama; the attention half of Mixtral) in one call:
 *
 *   x += delta;  h = rmsnorm(x)                      (the fused residual add)
 *   q, k, v = h Wq, h Wk, h Wv                       (one linear_multi)
 *   rope(q), rope(k); store k, v in the paged cache; a = attention(q)
 *   o = a Wo
 * and with the MLP (down != NULL):
 *   x += o;  h = rmsnorm(x);  g = act(h Wg) * (h Wu);  out = g Wd
 * Gemma 3 adds, where its norms are set: rmsnorm of every q and k head
 * before RoPE, o = rmsnorm(o) before its residual add, out = rmsnorm(out).
 *
 * Why: a decode step of a small model is ~10 kernel calls per layer, and
 * from Python each call costs microseconds of argument checks and object
 * handling (10-13% of a SmolLM2 decode step, bench/profile_decode.py). The
 * block is described once (the weights, norms, rope tables, cache and
 * workspace do not change between steps) and checked once, by the Cython
 * class that builds it; a step passes only x and the batch.
 *
 * The block calls the same entry points, in the same order and with the
 * same arguments as the Python layers (edgecore/engine/layers.py), so its
 * results are bitwise theirs. The per-step arguments (positions, pages)
 * are checked by those entry points; on an error the stage that failed is
 * reported and the block stops (x may then hold the residual add).
 *
 * ec_decoder_stack_f32 runs consecutive blocks in one call: a model whose
 * layers all stay loaded crosses the boundary once per step for all of them.
 */
#include "internal.h"

static int fail(int rc, int stage, int *failed) {
    if (failed) *failed = stage;
    return rc;
}

/* RMSNorm of `rows` rows of width n of y, written back into y (Gemma 3's
 * q/k and post norms; no residual). */
static int in_place_norm(const ec_decoder_block *b, float *y, const float *w, size_t rows, size_t n) {
    return ec_rms_norm_f32(y, NULL, NULL, w, y, rows, n, b->norm_eps, b->norm_flags);
}

int ec_decoder_block_f32(const ec_decoder_block *b, float *x, const float *delta, size_t m,
                         const ec_kv_batch *batch, const int64_t *positions, ec_kv_fault *fault, int *failed) {
    if (!b || !x || !batch || !positions || m > b->rows) return fail(EC_ERR_ARG, EC_BLOCK_ARGS, failed);
    if (m == 0) return EC_OK;
    const size_t d = b->d, hd = b->head_dim, kvh = b->cache.kv_heads;
    const size_t q_dim = b->n_heads * hd, kv_dim = kvh * hd;
    int rc;

    rc = ec_rms_norm_f32(x, delta, delta ? x : NULL, b->attn_norm, b->h, m, d, b->norm_eps, b->norm_flags);
    if (rc != EC_OK) return fail(rc, EC_BLOCK_NORM, failed);
    rc = ec_linear_multi(b->h, m, d, b->qkv, 3, EC_ACT_NONE, 0, b->refine, b->scratch, b->scratch_bytes);
    if (rc != EC_OK) return fail(rc, EC_BLOCK_QKV, failed);
    if (b->q_norm) { /* each head a row of head_dim, normed in place */
        rc = in_place_norm(b, b->qkv[0].y, b->q_norm, m * b->n_heads, hd);
        if (rc == EC_OK) rc = in_place_norm(b, b->qkv[1].y, b->k_norm, m * kvh, hd);
        if (rc != EC_OK) return fail(rc, EC_BLOCK_NORM, failed);
    }

    size_t bad = 0;
    rc = ec_rope_f32(b->qkv[0].y, m, q_dim, b->n_heads, hd, b->rotary_dim, positions, 8, b->rope_cos, b->rope_sin,
                     b->rope_max_pos, b->rope_interleaved, &bad);
    if (rc == EC_OK)
        rc = ec_rope_f32(b->qkv[1].y, m, kv_dim, kvh, hd, b->rotary_dim, positions, 8, b->rope_cos, b->rope_sin,
                         b->rope_max_pos, b->rope_interleaved, &bad);
    if (rc != EC_OK) {
        if (fault) fault->seq = -1, fault->index = (int64_t)bad;
        return fail(rc, EC_BLOCK_ROPE, failed);
    }
    rc = ec_kv_store(&b->cache, batch, b->qkv[1].y, b->qkv[2].y, m, kv_dim, fault);
    if (rc != EC_OK) return fail(rc, EC_BLOCK_KV_STORE, failed);
    rc = ec_attention_f32(&b->cache, batch, b->qkv[0].y, m, q_dim, b->n_heads, b->attn_scale, b->window, 0.0f, b->a,
                          fault);
    if (rc != EC_OK) return fail(rc, EC_BLOCK_ATTENTION, failed);
    rc = ec_linear_multi(b->a, m, q_dim, &b->o, 1, EC_ACT_NONE, 0, b->refine, b->scratch, b->scratch_bytes);
    if (rc != EC_OK) return fail(rc, EC_BLOCK_O, failed);
    if (b->post_attn_norm && (rc = in_place_norm(b, b->o.y, b->post_attn_norm, m, d)) != EC_OK)
        return fail(rc, EC_BLOCK_NORM, failed);
    if (!b->down.w) return EC_OK; /* attention only: the caller runs the MLP (MoE) */

    rc = ec_rms_norm_f32(x, b->o.y, x, b->ffn_norm, b->h, m, d, b->norm_eps, b->norm_flags);
    if (rc != EC_OK) return fail(rc, EC_BLOCK_NORM, failed);
    rc = ec_linear_multi(b->h, m, d, b->gate_up, 2, b->mlp_act, 1, b->refine, b->scratch, b->scratch_bytes);
    if (rc != EC_OK) return fail(rc, EC_BLOCK_MLP, failed);
    rc = ec_linear_multi(b->gate_up[0].y, m, b->gate_up[0].n, &b->down, 1, EC_ACT_NONE, 0, b->refine, b->scratch,
                         b->scratch_bytes);
    if (rc != EC_OK) return fail(rc, EC_BLOCK_MLP, failed);
    if (b->post_ffn_norm && (rc = in_place_norm(b, b->down.y, b->post_ffn_norm, m, d)) != EC_OK)
        return fail(rc, EC_BLOCK_NORM, failed);
    return EC_OK;
}

int ec_decoder_stack_f32(const ec_decoder_block *const *blocks, size_t n_blocks, float *x, const float *delta,
                         size_t m, const ec_kv_batch *batch, const int64_t *positions, ec_kv_fault *fault,
                         int *failed, size_t *failed_block) {
    if (!blocks) return fail(EC_ERR_ARG, EC_BLOCK_ARGS, failed);
    for (size_t i = 0; i < n_blocks; i++) {
        const ec_decoder_block *b = blocks[i];
        if (failed_block) *failed_block = i;
        if (!b || !b->down.w) return fail(EC_ERR_ARG, EC_BLOCK_ARGS, failed);
        int rc = ec_decoder_block_f32(b, x, delta, m, batch, positions, fault, failed);
        if (rc != EC_OK) return rc;
        delta = b->down.y; /* the next block's residual input */
    }
    return EC_OK;
}
