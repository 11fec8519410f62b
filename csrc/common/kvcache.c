/*
 * The paged KV cache: argument checks shared with attention, and the store
 * of new K/V rows into their pages (converted to f16 for an f16 cache,
 * quantized to Q8_0 blocks for a q8_0 one: with the scalar reference
 * quantizer, which costs about as much per element as the f16 conversion
 * and is a few thousand elements per decode step).
 *
 * Page ids are checked here, in C, because a long context has thousands of
 * table entries per sequence and per layer; everything touched is checked
 * before anything is written, so a bad call changes nothing.
 */
#include <string.h>

#include "internal.h"

static int fail(ec_kv_fault *f, int code, int64_t seq, int64_t index) {
    if (f) {
        f->seq = seq;
        f->index = index;
    }
    return code;
}

int ec_kv_check(const ec_kv_pages *c, const ec_kv_batch *b, size_t m, int reads, size_t window,
                ec_kv_fault *fault) {
    if (!c || !b || !c->k || !c->v || c->kv_heads == 0 || c->page_tokens == 0 || c->head_dim == 0 ||
        (c->dtype != EC_KV_F32 && c->dtype != EC_KV_F16 && c->dtype != EC_KV_Q8_0) ||
        (c->dtype == EC_KV_Q8_0 && c->head_dim % 32))
        return fail(fault, EC_ERR_ARG, -1, -1);
    if (b->n_seqs == 0) return m == 0 ? EC_OK : fail(fault, EC_ERR_ARG, -1, -1);
    if (!b->starts || !b->pos0 || !b->page_table || b->starts[0] != 0) return fail(fault, EC_ERR_ARG, 0, -1);
    const size_t tokens = c->page_tokens;
    for (size_t s = 0; s < b->n_seqs; s++) {
        const int64_t len = (int64_t)b->starts[s + 1] - b->starts[s], p0 = b->pos0[s];
        if (len < 0 || p0 < 0) return fail(fault, EC_ERR_ARG, (int64_t)s, -1);
        if (len == 0) continue;
        const uint64_t last = (uint64_t)(p0 + len - 1);
        if (last / tokens >= b->max_pages) return fail(fault, EC_ERR_POSITION, (int64_t)s, -1);
        uint64_t first = (uint64_t)p0;
        if (reads) first = (window == 0 || (uint64_t)p0 < window) ? 0 : (uint64_t)p0 - window + 1;
        const int32_t *row = b->page_table + s * b->max_pages;
        for (uint64_t i = first / tokens; i <= last / tokens; i++)
            if (row[i] < 0 || (uint64_t)row[i] >= c->n_pages) return fail(fault, EC_ERR_PAGE, (int64_t)s, (int64_t)i);
    }
    if ((size_t)b->starts[b->n_seqs] != m) return fail(fault, EC_ERR_ARG, (int64_t)b->n_seqs, -1);
    return EC_OK;
}

size_t ec_kv_seq_of(const ec_kv_batch *b, size_t r) {
    /* the last s with starts[s] <= r; then starts[s + 1] > r */
    size_t lo = 0, hi = b->n_seqs; /* invariant: starts[lo] <= r < starts[hi] */
    while (hi - lo > 1) {
        const size_t mid = lo + (hi - lo) / 2;
        if ((size_t)b->starts[mid] <= r) lo = mid;
        else hi = mid;
    }
    return lo;
}

typedef struct {
    const ec_kv_pages *c;
    const ec_kv_batch *b;
    const float *k, *v;
    size_t row_stride;
} store_job;

static void store_rows(void *ctx, size_t r0, size_t r1) {
    const store_job *j = ctx;
    const ec_kv_pages *c = j->c;
    const size_t hd = c->head_dim, row_bytes = ec_kv_row_bytes(c->dtype, hd);
    const size_t head_bytes = c->page_tokens * row_bytes, page_bytes = c->kv_heads * head_bytes;
    size_t s = ec_kv_seq_of(j->b, r0);
    for (size_t r = r0; r < r1; r++) {
        while ((size_t)j->b->starts[s + 1] <= r) s++;
        const size_t p = (size_t)j->b->pos0[s] + (r - (size_t)j->b->starts[s]);
        const size_t page = (size_t)j->b->page_table[s * j->b->max_pages + p / c->page_tokens];
        const size_t at = page * page_bytes + (p % c->page_tokens) * row_bytes;
        for (size_t h = 0; h < c->kv_heads; h++) {
            const float *ks = j->k + r * j->row_stride + h * hd, *vs = j->v + r * j->row_stride + h * hd;
            char *kd = (char *)c->k + at + h * head_bytes, *vd = (char *)c->v + at + h * head_bytes;
            if (c->dtype == EC_KV_Q8_0) {
                ec_quantize_row_q8_0(ks, (uint8_t *)kd, hd);
                ec_quantize_row_q8_0(vs, (uint8_t *)vd, hd);
            } else if (c->dtype == EC_KV_F16) {
                ec_active->cvt_f32_f16(ks, (uint16_t *)kd, hd);
                ec_active->cvt_f32_f16(vs, (uint16_t *)vd, hd);
            } else {
                memcpy(kd, ks, hd * sizeof(float));
                memcpy(vd, vs, hd * sizeof(float));
            }
        }
    }
}

int ec_kv_store(const ec_kv_pages *cache, const ec_kv_batch *batch, const float *k,
                const float *v, size_t m, size_t row_stride, ec_kv_fault *fault) {
    const int rc = ec_kv_check(cache, batch, m, 0, 0, fault);
    if (rc != EC_OK) return rc;
    if (m == 0) return EC_OK;
    if (!k || !v || row_stride < cache->kv_heads * cache->head_dim) return fail(fault, EC_ERR_ARG, -1, -1);
    const store_job job = {cache, batch, k, v, row_stride};
    ec_parallel_rows(store_rows, (void *)&job, m, 2.0 * (double)m * (double)(cache->kv_heads * cache->head_dim));
    return EC_OK;
}
