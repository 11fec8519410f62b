/*
 * Causal attention over a paged KV cache, for a batch of sequences: the
 * driver. It owns the paged-cache walk, the blocking, the online softmax and
 * the threads; the active tier supplies the vector loops (pertoken.h).
 *
 * Work unit: (row block, KV head, query-head chunk). The query heads that
 * share a KV head (GQA) and the rows of one sequence inside the row block
 * are processed together, up to QMAX query vectors, so every K row is loaded
 * once for all of them and every V row once per row's head group. Units are
 * taken from a shared counter (late or preempted workers pick up what is
 * left); each is computed by one thread from start to end.
 *
 * Online softmax: keys are visited in blocks of KB positions aligned to
 * absolute positions (block i is [i KB, (i + 1) KB), clipped to the row's
 * window [lo, p]). Per query the running max m, sum l and output o are
 * rescaled when m grows. A row's blocks, their clipping and every reduction
 * inside them depend only on its own position and window, never on which
 * other rows share the unit, so the result of a row is bitwise the same in
 * a prefill chunk, decoded alone, or in any batch, for any thread count.
 *
 * Scratch is fixed and on the stack (about 40 KiB per thread): no heap, no
 * [T, S] score matrix, whatever the context length.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

#define QMAX 16 /* query vectors per unit */
#define KB 64   /* keys per block */
#define HDMAX EC_ATTN_MAX_HEAD_DIM
/* An attention multiply-add costs about 3 of the fused linear's (whose rate
 * calibrates ec_threads_for_work): measured on AVX2 and AVX-512, decode and
 * prefill, it runs at a third of the calibrated linear rate or less (the
 * softmax, the paged walk and K/V streaming come on top of the FMAs). */
#define ATTN_MAC_COST 3.0

typedef struct {
    const ec_kv_pages *c;
    const ec_kv_batch *b;
    const float *q;
    size_t q_stride, n_heads, group, gchunk, n_gchunks, rows_per_unit, m;
    float scale, softcap;
    size_t window;
    float *out;
    ec_attn_scores_fn scores;
    ec_attn_pv_fn pv;
    size_t units;
    atomic_size_t next;
} attn_job;

typedef struct {
    float q[QMAX * HDMAX] __attribute__((aligned(64)));
    float o[QMAX * HDMAX] __attribute__((aligned(64)));
    float s[QMAX * KB] __attribute__((aligned(64)));
    float m[QMAX], l[QMAX], corr[QMAX];
    unsigned char poisoned[QMAX];
    const void *k[KB], *v[KB];
} attn_scratch;

static size_t window_start(size_t p, size_t window) {
    return (window == 0 || p < window) ? 0 : p - window + 1;
}

/* Row pointers of positions [ja, jb) of sequence s, KV head h. */
static void block_rows(const attn_job *j, attn_scratch *w, size_t s, size_t h, size_t ja, size_t jb) {
    const ec_kv_pages *c = j->c;
    const size_t row_bytes = ec_kv_row_bytes(c->dtype, c->head_dim);
    const size_t head_bytes = c->page_tokens * row_bytes, page_bytes = c->kv_heads * head_bytes;
    const int32_t *table = j->b->page_table + s * j->b->max_pages;
    size_t page = ja / c->page_tokens, slot = ja % c->page_tokens;
    size_t at = (size_t)table[page] * page_bytes + h * head_bytes;
    for (size_t i = 0; i < jb - ja; i++) {
        w->k[i] = (const char *)c->k + at + slot * row_bytes;
        w->v[i] = (const char *)c->v + at + slot * row_bytes;
        if (++slot == c->page_tokens && i + 1 < jb - ja) {
            slot = 0;
            at = (size_t)table[++page] * page_bytes + h * head_bytes;
        }
    }
}

/* Prefetch the K and V rows of positions [ja, jb) of sequence s, KV head h
 * (the next block of keys, while this one is computed). A head's rows are
 * contiguous only within a page (page_tokens rows, e.g. 16 x 128 bytes),
 * and the pages of a sequence are anywhere in the cache: ranges too short
 * for the hardware prefetcher to learn before they end, so decode at long
 * contexts waited on every page (at 1024 tokens attention read its f16
 * K/V at 2-3 GB/s, against 13-15 GB/s streaming). A hint only: it changes
 * no value. */
static void prefetch_rows(const attn_job *j, size_t s, size_t h, size_t ja, size_t jb) {
    const ec_kv_pages *c = j->c;
    const size_t row_bytes = ec_kv_row_bytes(c->dtype, c->head_dim);
    const size_t head_bytes = c->page_tokens * row_bytes, page_bytes = c->kv_heads * head_bytes;
    const int32_t *table = j->b->page_table + s * j->b->max_pages;
    for (size_t p = ja; p < jb;) {
        const size_t page = p / c->page_tokens, slot = p % c->page_tokens;
        const size_t n = c->page_tokens - slot < jb - p ? c->page_tokens - slot : jb - p;
        const size_t at = (size_t)table[page] * page_bytes + h * head_bytes + slot * row_bytes;
        for (size_t b = 0; b < n * row_bytes; b += 64) {
            __builtin_prefetch((const char *)c->k + at + b);
            __builtin_prefetch((const char *)c->v + at + b);
        }
        /* rows of 68 bytes (q8_0) start anywhere in a line: the range's last line too */
        __builtin_prefetch((const char *)c->k + at + n * row_bytes - 1);
        __builtin_prefetch((const char *)c->v + at + n * row_bytes - 1);
        p += n;
    }
}

/* One query's softmax update over its keys s[0 .. n) of a block: sets
 * corr (the factor its o and l are rescaled by) and turns s into weights. */
static void softmax_block(attn_scratch *w, size_t qi, float *s, size_t n, float softcap) {
    if (!w->poisoned[qi]) {
        const float block_max = ec_active->attn_max(s, n, softcap);
        const float m_new = fmaxf(w->m[qi], block_max);
        if (isnan(block_max) || m_new == INFINITY) {
            w->poisoned[qi] = 1; /* the result is NaN, as softmax over a NaN or +inf score */
        } else if (m_new != -INFINITY) {
            const float corr = m_new == w->m[qi] ? 1.0f : expf(w->m[qi] - m_new);
            const float sum = ec_active->attn_expsum(s, n, m_new);
            w->l[qi] = w->l[qi] * corr + sum;
            w->m[qi] = m_new;
            w->corr[qi] = corr;
            return;
        }
    }
    /* no weight from this block: poisoned, or every score so far is -inf */
    memset(s, 0, n * sizeof *s);
    w->corr[qi] = 1.0f;
}

/* Rows [r0, r1) of sequence s, KV head h, query heads g0 .. g0 + gn - 1 of
 * its group. */
static void attend_rows(const attn_job *j, attn_scratch *w, size_t s, size_t r0, size_t r1, size_t h,
                        size_t g0, size_t gn) {
    const size_t hd = j->c->head_dim, nr = r1 - r0, nq = nr * gn;
    const size_t p_first = (size_t)j->b->pos0[s] + (r0 - (size_t)j->b->starts[s]);
    const size_t lo_min = window_start(p_first, j->window), hi_max = p_first + nr;
    const size_t head0 = h * j->group + g0;

    for (size_t r = 0; r < nr; r++) {
        const float *qrow = j->q + (r0 + r) * j->q_stride + head0 * hd;
        float *dst = w->q + r * gn * hd;
        for (size_t i = 0; i < gn * hd; i++) dst[i] = qrow[i] * j->scale;
    }
    for (size_t i = 0; i < nq; i++) {
        w->m[i] = -INFINITY;
        w->l[i] = 0.0f;
        w->poisoned[i] = 0;
    }
    memset(w->o, 0, nq * hd * sizeof(float));

    for (size_t blk = lo_min / KB; blk * KB < hi_max; blk++) {
        const size_t ja = blk * KB > lo_min ? blk * KB : lo_min;
        const size_t jb = blk * KB + KB < hi_max ? blk * KB + KB : hi_max;
        block_rows(j, w, s, h, ja, jb);
        if (jb < hi_max) prefetch_rows(j, s, h, jb, jb + KB < hi_max ? jb + KB : hi_max);
        j->scores(w->q, nq, w->k, jb - ja, hd, w->s, KB);
        for (size_t r = 0; r < nr; r++) {
            const size_t p = p_first + r, lo = window_start(p, j->window);
            const size_t a = lo > ja ? lo : ja, e = p + 1 < jb ? p + 1 : jb;
            if (a >= e) continue; /* none of this row's keys are in the block */
            const size_t q0 = r * gn, off = a - ja;
            for (size_t g = 0; g < gn; g++) softmax_block(w, q0 + g, w->s + (q0 + g) * KB + off, e - a, j->softcap);
            j->pv(w->s + q0 * KB + off, KB, gn, w->corr + q0, w->v + off, e - a, hd, w->o + q0 * hd);
        }
    }

    for (size_t r = 0; r < nr; r++) {
        float *orow = j->out + (r0 + r) * j->n_heads * hd + head0 * hd;
        for (size_t g = 0; g < gn; g++) {
            const size_t qi = r * gn + g;
            float *dst = orow + g * hd;
            const float *src = w->o + qi * hd;
            if (w->poisoned[qi] || !(w->l[qi] > 0.0f)) {
                for (size_t i = 0; i < hd; i++) dst[i] = NAN;
            } else {
                const float inv = 1.0f / w->l[qi];
                for (size_t i = 0; i < hd; i++) dst[i] = src[i] * inv;
            }
        }
    }
}

static void attend_unit(const attn_job *j, attn_scratch *w, size_t u) {
    const size_t gc = u % j->n_gchunks, h = u / j->n_gchunks % j->c->kv_heads;
    const size_t blk = u / (j->n_gchunks * j->c->kv_heads);
    const size_t g0 = gc * j->gchunk, gn = j->group - g0 < j->gchunk ? j->group - g0 : j->gchunk;
    size_t r = blk * j->rows_per_unit;
    const size_t r_end = r + j->rows_per_unit < j->m ? r + j->rows_per_unit : j->m;
    size_t s = ec_kv_seq_of(j->b, r);
    while (r < r_end) { /* a row block may span several sequences */
        while ((size_t)j->b->starts[s + 1] <= r) s++;
        const size_t seg_end = (size_t)j->b->starts[s + 1] < r_end ? (size_t)j->b->starts[s + 1] : r_end;
        attend_rows(j, w, s, r, seg_end, h, g0, gn);
        r = seg_end;
    }
}

static void attn_task(void *ctx, size_t task, size_t n_tasks) {
    (void)task, (void)n_tasks;
    attn_job *j = ctx;
    attn_scratch w;
    for (;;) {
        const size_t u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (u >= j->units) return;
        attend_unit(j, &w, u);
    }
}

int ec_attention_f32(const ec_kv_pages *cache, const ec_kv_batch *batch, const float *q,
                     size_t m, size_t q_row_stride, size_t n_heads, float scale, size_t window,
                     float softcap, float *out, ec_kv_fault *fault) {
    const int rc = ec_kv_check(cache, batch, m, 1, window, fault);
    if (rc != EC_OK) return rc;
    if (fault) fault->seq = fault->index = -1;
    if (cache->head_dim > HDMAX || n_heads == 0 || n_heads % cache->kv_heads ||
        q_row_stride < n_heads * cache->head_dim || !(softcap >= 0.0f))
        return EC_ERR_ARG;
    if (m == 0) return EC_OK;
    if (!q || !out) return EC_ERR_ARG;

    attn_job j = {0};
    j.c = cache;
    j.b = batch;
    j.q = q;
    j.q_stride = q_row_stride;
    j.n_heads = n_heads;
    j.group = n_heads / cache->kv_heads;
    j.n_gchunks = (j.group + QMAX - 1) / QMAX;
    j.gchunk = (j.group + j.n_gchunks - 1) / j.n_gchunks;
    j.m = m;
    j.scale = scale;
    j.softcap = softcap;
    j.window = window;
    j.out = out;
    switch (cache->dtype) {
    case EC_KV_F16: j.scores = ec_active->attn_scores_f16, j.pv = ec_active->attn_pv_f16; break;
    case EC_KV_Q8_0: j.scores = ec_active->attn_scores_q8_0, j.pv = ec_active->attn_pv_q8_0; break;
    default: j.scores = ec_active->attn_scores_f32, j.pv = ec_active->attn_pv_f32; break;
    }

    /* rows per unit: as many as fit beside the head chunk, but no more than
     * the longest sequence has (decode rows of different sequences share
     * nothing); the cost estimate decides whether threads are worth it */
    size_t longest = 0;
    double keys = 0.0;
    for (size_t s = 0; s < batch->n_seqs; s++) {
        const size_t len = (size_t)(batch->starts[s + 1] - batch->starts[s]);
        if (len > longest) longest = len;
        for (size_t i = 0; i < len; i++) {
            const size_t p = (size_t)batch->pos0[s] + i;
            keys += (double)(p + 1 - window_start(p, window));
        }
    }
    j.rows_per_unit = QMAX / j.gchunk < longest ? QMAX / j.gchunk : longest;
    j.units = (m + j.rows_per_unit - 1) / j.rows_per_unit * cache->kv_heads * j.n_gchunks;
    atomic_init(&j.next, 0);

    const double macs = 2.0 * keys * (double)n_heads * (double)cache->head_dim;
    size_t threads = (size_t)ec_threads_for_work(ATTN_MAC_COST * macs);
    if (threads > j.units) threads = j.units;
    if (threads <= 1) attn_task(&j, 0, 1);
    else ec_parallel_run(attn_task, &j, threads);
    return EC_OK;
}
