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
 * rescaled when m grows. Blocks are grouped in segments of SEG positions,
 * also aligned to absolute positions: each segment's (m, l, o) starts from
 * nothing, and a row's segments are folded left to right into its result.
 * A row's blocks, segments, their clipping and every reduction inside them
 * depend only on its own position and window, never on which other rows
 * share the unit, so the result of a row is bitwise the same in a prefill
 * chunk, decoded alone, or in any batch, for any thread count.
 *
 * Segments are what lets one long row use every thread: a decode call has
 * one row block per sequence, so a single sequence with 3 KV heads is only
 * 3 units, and 2 threads finished it in 2/3 of the 1-thread time, not 1/2.
 * When a call has fewer units than a few per thread, each segment becomes
 * a unit of its own, its (m, l, o) goes to a buffer on the caller's stack,
 * and the caller folds them in order after the threads finish: the same
 * fold, in the same order, as a unit that visits all its segments itself,
 * so splitting changes no bit.
 *
 * Scratch is fixed and on the stack (about 45 KiB per thread, plus the
 * caller's split buffer): no heap, no [T, S] score matrix, whatever the
 * context length.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

#define QMAX 16 /* query vectors per unit */
#define KB 64   /* keys per block */
#define SEG 256 /* keys per segment (a multiple of KB) */
/* The split buffer's floats, on the caller's stack: a decode row of 9 query
 * heads of 64 up to 14k positions (55 segments); a call that needs more runs
 * unsplit (the same bits, fewer units). */
#define SPLIT_FLOATS 32768
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
    /* split: units are (unit, segment) pairs, n_split segments per unit;
     * segment g of row r's query head qh is at part + ((r * n_heads + qh) *
     * max_segs + g - first segment of r) * part_stride. n_split 0: unsplit */
    size_t n_split, max_segs, part_stride;
    float *part;
    atomic_size_t next;
} attn_job;

typedef struct {
    float q[QMAX * HDMAX] __attribute__((aligned(64)));
    float o[QMAX * HDMAX] __attribute__((aligned(64)));
    float s[QMAX * KB] __attribute__((aligned(64)));
    float m[QMAX], l[QMAX], corr[QMAX];
    unsigned char poisoned[QMAX];
    const void *k[KB], *v[KB];
    /* the fold of the segments done so far (unsplit units) */
    float fo[QMAX * HDMAX] __attribute__((aligned(64)));
    float fm[QMAX], fl[QMAX];
    unsigned char fpoisoned[QMAX], fany[QMAX];
} attn_scratch;

/* One segment's state of one query (a partial): a NaN m marks it poisoned,
 * l = 0 with m = -inf that no key of it had weight. */
typedef struct {
    float m, l;
    int poisoned;
    const float *o;
} attn_part;

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
 * K/V at 2-3 GB/s, against 13-15 GB/s streaming). The K rows go out
 * before this block's scores and the V rows after them, not all at once:
 * a burst of a whole block's lines fills the line-fill buffers and stalls
 * the block's own compute behind it. A hint only: it changes no value. */
static void prefetch_rows(const attn_job *j, const void *base, size_t s, size_t h, size_t ja, size_t jb) {
    const ec_kv_pages *c = j->c;
    const size_t row_bytes = ec_kv_row_bytes(c->dtype, c->head_dim);
    const size_t head_bytes = c->page_tokens * row_bytes, page_bytes = c->kv_heads * head_bytes;
    const int32_t *table = j->b->page_table + s * j->b->max_pages;
    for (size_t p = ja; p < jb;) {
        const size_t page = p / c->page_tokens, slot = p % c->page_tokens;
        const size_t n = c->page_tokens - slot < jb - p ? c->page_tokens - slot : jb - p;
        const char *at = (const char *)base + (size_t)table[page] * page_bytes + h * head_bytes + slot * row_bytes;
        for (size_t b = 0; b < n * row_bytes; b += 64) __builtin_prefetch(at + b);
        /* rows of 68 bytes (q8_0) start anywhere in a line: the range's last line too */
        __builtin_prefetch(at + n * row_bytes - 1);
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

/* Fold one segment's state of a query into the query's result (fm, fl, fo
 * and the flags at index qi): left to right, a poisoned segment poisons the
 * result, one without weight changes nothing. One out-of-line copy for the
 * unsplit units and the caller's fold after a split, so both round alike
 * (no chance of one inlined copy contracting to FMAs and not the other). */
__attribute__((noinline)) static void fold_part(float *fm, float *fl, float *fo, unsigned char *fpoisoned,
                                                unsigned char *fany, attn_part p, size_t hd) {
    if (p.poisoned) *fpoisoned = 1;
    if (*fpoisoned || p.m == -INFINITY) return;
    if (!*fany) {
        *fany = 1, *fm = p.m, *fl = p.l;
        memcpy(fo, p.o, hd * sizeof *fo);
        return;
    }
    const float m_new = fmaxf(*fm, p.m);
    const float a = *fm == m_new ? 1.0f : expf(*fm - m_new), b = p.m == m_new ? 1.0f : expf(p.m - m_new);
    *fl = *fl * a + p.l * b;
    *fm = m_new;
    for (size_t i = 0; i < hd; i++) fo[i] = fo[i] * a + p.o[i] * b;
}

/* A query's output from its folded result: o / l, or NaN (poisoned, or no
 * key with weight: softmax over nothing but -inf). */
static void finish_query(float *dst, float fl, const float *fo, int poisoned, int any, size_t hd) {
    if (poisoned || !any || !(fl > 0.0f)) {
        for (size_t i = 0; i < hd; i++) dst[i] = NAN;
    } else {
        const float inv = 1.0f / fl;
        for (size_t i = 0; i < hd; i++) dst[i] = fo[i] * inv;
    }
}

static float *part_at(const attn_job *j, size_t row, size_t qhead, size_t seg_index) {
    return j->part + ((row * j->n_heads + qhead) * j->max_segs + seg_index) * j->part_stride;
}

/* Rows [r0, r1) of sequence s, KV head h, query heads g0 .. g0 + gn - 1 of
 * its group: every segment of their keys (split_seg < 0), or only segment
 * seg_first + split_seg, whose states go to the split buffer. */
static void attend_rows(const attn_job *j, attn_scratch *w, size_t s, size_t r0, size_t r1, size_t h,
                        size_t g0, size_t gn, long split_seg) {
    const size_t hd = j->c->head_dim, nr = r1 - r0, nq = nr * gn;
    const size_t p_first = (size_t)j->b->pos0[s] + (r0 - (size_t)j->b->starts[s]);
    const size_t lo_min = window_start(p_first, j->window), hi_max = p_first + nr;
    const size_t head0 = h * j->group + g0;
    size_t seg = lo_min / SEG, seg_end = (hi_max - 1) / SEG + 1;
    if (split_seg >= 0) {
        seg += (size_t)split_seg;
        if (seg >= seg_end) return; /* a unit past these rows' keys */
        seg_end = seg + 1;
    }

    for (size_t r = 0; r < nr; r++) {
        const float *qrow = j->q + (r0 + r) * j->q_stride + head0 * hd;
        float *dst = w->q + r * gn * hd;
        for (size_t i = 0; i < gn * hd; i++) dst[i] = qrow[i] * j->scale;
    }
    memset(w->fpoisoned, 0, nq);
    memset(w->fany, 0, nq);

    for (; seg < seg_end; seg++) {
        const size_t sa = seg * SEG > lo_min ? seg * SEG : lo_min;
        const size_t sb = seg * SEG + SEG < hi_max ? seg * SEG + SEG : hi_max;
        /* prefetch runs on into the next segment only when this unit reads it */
        const size_t pf_end = split_seg >= 0 ? sb : hi_max;
        for (size_t i = 0; i < nq; i++) {
            w->m[i] = -INFINITY;
            w->l[i] = 0.0f;
            w->poisoned[i] = 0;
        }
        memset(w->o, 0, nq * hd * sizeof(float));

        for (size_t blk = sa / KB; blk * KB < sb; blk++) {
            const size_t ja = blk * KB > sa ? blk * KB : sa;
            const size_t jb = blk * KB + KB < sb ? blk * KB + KB : sb;
            block_rows(j, w, s, h, ja, jb);
            const size_t pa = jb, pb = jb + KB < pf_end ? jb + KB : pf_end;
            if (pa < pb) prefetch_rows(j, j->c->k, s, h, pa, pb);
            j->scores(w->q, nq, w->k, jb - ja, hd, w->s, KB);
            if (pa < pb) prefetch_rows(j, j->c->v, s, h, pa, pb);
            for (size_t r = 0; r < nr; r++) {
                const size_t p = p_first + r, lo = window_start(p, j->window);
                const size_t a = lo > ja ? lo : ja, e = p + 1 < jb ? p + 1 : jb;
                if (a >= e) continue; /* none of this row's keys are in the block */
                const size_t q0 = r * gn, off = a - ja;
                for (size_t g = 0; g < gn; g++)
                    softmax_block(w, q0 + g, w->s + (q0 + g) * KB + off, e - a, j->softcap);
                j->pv(w->s + q0 * KB + off, KB, gn, w->corr + q0, w->v + off, e - a, hd, w->o + q0 * hd);
            }
        }

        for (size_t r = 0; r < nr; r++) {
            const size_t p = p_first + r, row_seg0 = window_start(p, j->window) / SEG;
            if (seg < row_seg0 || seg > p / SEG) continue; /* not one of this row's segments */
            for (size_t g = 0; g < gn; g++) {
                const size_t qi = r * gn + g;
                const attn_part part = {w->m[qi], w->l[qi], w->poisoned[qi], w->o + qi * hd};
                if (split_seg < 0) {
                    fold_part(w->fm + qi, w->fl + qi, w->fo + qi * hd, w->fpoisoned + qi, w->fany + qi, part, hd);
                } else {
                    float *dst = part_at(j, r0 + r, head0 + g, seg - row_seg0);
                    dst[0] = part.poisoned ? NAN : part.m;
                    dst[1] = part.l;
                    memcpy(dst + 2, part.o, hd * sizeof(float));
                }
            }
        }
    }
    if (split_seg >= 0) return;

    for (size_t r = 0; r < nr; r++) {
        float *orow = j->out + (r0 + r) * j->n_heads * hd + head0 * hd;
        for (size_t g = 0; g < gn; g++) {
            const size_t qi = r * gn + g;
            finish_query(orow + g * hd, w->fl[qi], w->fo + qi * hd, w->fpoisoned[qi], w->fany[qi], hd);
        }
    }
}

/* After a split: every row's query heads fold their segments in order. */
static void fold_split(const attn_job *j) {
    const size_t hd = j->c->head_dim;
    float fo[HDMAX];
    for (size_t s = 0; s < j->b->n_seqs; s++) {
        for (size_t r = (size_t)j->b->starts[s]; r < (size_t)j->b->starts[s + 1]; r++) {
            const size_t p = (size_t)j->b->pos0[s] + (r - (size_t)j->b->starts[s]);
            const size_t n_segs = p / SEG - window_start(p, j->window) / SEG + 1;
            for (size_t qh = 0; qh < j->n_heads; qh++) {
                float fm = 0.0f, fl = 0.0f;
                unsigned char poisoned = 0, any = 0;
                for (size_t g = 0; g < n_segs; g++) {
                    const float *src = part_at(j, r, qh, g);
                    const attn_part part = {isnan(src[0]) ? -INFINITY : src[0], src[1], isnan(src[0]), src + 2};
                    fold_part(&fm, &fl, fo, &poisoned, &any, part, hd);
                }
                finish_query(j->out + r * j->n_heads * hd + qh * hd, fl, fo, poisoned, any, hd);
            }
        }
    }
}

static void attend_unit(const attn_job *j, attn_scratch *w, size_t u) {
    const long split_seg = j->n_split ? (long)(u % j->n_split) : -1;
    if (j->n_split) u /= j->n_split;
    const size_t gc = u % j->n_gchunks, h = u / j->n_gchunks % j->c->kv_heads;
    const size_t blk = u / (j->n_gchunks * j->c->kv_heads);
    const size_t g0 = gc * j->gchunk, gn = j->group - g0 < j->gchunk ? j->group - g0 : j->gchunk;
    size_t r = blk * j->rows_per_unit;
    const size_t r_end = r + j->rows_per_unit < j->m ? r + j->rows_per_unit : j->m;
    size_t s = ec_kv_seq_of(j->b, r);
    while (r < r_end) { /* a row block may span several sequences */
        while ((size_t)j->b->starts[s + 1] <= r) s++;
        const size_t seg_end = (size_t)j->b->starts[s + 1] < r_end ? (size_t)j->b->starts[s + 1] : r_end;
        attend_rows(j, w, s, r, seg_end, h, g0, gn, split_seg);
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
    size_t longest = 0, max_segs = 0, seq_segs = 0;
    double keys = 0.0;
    for (size_t s = 0; s < batch->n_seqs; s++) {
        const size_t len = (size_t)(batch->starts[s + 1] - batch->starts[s]);
        if (len > longest) longest = len;
        for (size_t i = 0; i < len; i++) {
            const size_t p = (size_t)batch->pos0[s] + i, lo = window_start(p, window);
            keys += (double)(p + 1 - lo);
            if (p / SEG - lo / SEG + 1 > max_segs) max_segs = p / SEG - lo / SEG + 1;
        }
        if (len) { /* the segments any row range of this sequence spans */
            const size_t p0 = (size_t)batch->pos0[s], last = p0 + len - 1;
            const size_t n = last / SEG - window_start(p0, window) / SEG + 1;
            if (n > seq_segs) seq_segs = n;
        }
    }
    j.rows_per_unit = QMAX / j.gchunk < longest ? QMAX / j.gchunk : longest;
    j.units = (m + j.rows_per_unit - 1) / j.rows_per_unit * cache->kv_heads * j.n_gchunks;
    atomic_init(&j.next, 0);

    const double macs = 2.0 * keys * (double)n_heads * (double)cache->head_dim;
    size_t threads = (size_t)ec_threads_for_work(ATTN_MAC_COST * macs);

    /* too few units to keep every thread busy to the end: one per segment,
     * if their states fit the buffer */
    const int few_units = threads > 1 && j.units < 4 * threads && seq_segs > 1;
    float part[few_units ? SPLIT_FLOATS : 1];
    const size_t part_stride = cache->head_dim + 2;
    if (few_units &&
        (double)m * (double)n_heads * (double)max_segs * (double)part_stride <= SPLIT_FLOATS) {
        j.n_split = seq_segs;
        j.max_segs = max_segs;
        j.part_stride = part_stride;
        j.part = part;
        j.units *= seq_segs;
    }
    if (threads > j.units) threads = j.units;
    if (threads <= 1) attn_task(&j, 0, 1);
    else ec_parallel_run(attn_task, &j, threads);
    if (j.n_split) fold_split(&j);
    return EC_OK;
}
