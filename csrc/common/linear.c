/*
 * The linear driver, for every weight type: y = act(x W^T + b), one or
 * several outputs sharing x (q/k/v, gate/up), optionally combined as a GLU.
 *
 * The driver owns everything but the inner products (qkernels.h):
 *   - x is quantized once per call, per activation format the outputs
 *     consume, into the caller's scratch (f32/f16/bf16 read x as it is);
 *   - with refine, the 8-bit formats also quantize each row's residual
 *     r = x - d q (what the blocks leave out) as a second row, and every
 *     tile folds its pair of rows: W x8 + W r8, two passes over one read of
 *     the weights (docs/quantization.md);
 *   - the columns of all outputs are cut into work units that the threads
 *     take from an atomic counter, so a preempted worker delays only the
 *     unit it holds, not a fixed share of the call;
 *   - inside a unit, columns are blocked so that a panel of weight rows
 *     (PANEL_BYTES) stays in cache while every M tile of x passes over it;
 *     where the micro-kernel has a packer and several M tiles pass, each
 *     strip of weight rows is decoded once, into a stack buffer, for all
 *     of them (qkernels.h: same bits either way);
 *     tails call the micro-kernel with a smaller mr / nr;
 *   - bias + activation (or the GLU combine) run on each tile's rows while
 *     they are in L1.
 * f32 weights go to the tier's tuned column-range kernel (linear_f32), with
 * its [K, N] layout too.
 *
 * No value depends on the split: a micro-kernel's result for one output is
 * independent of its tile (the contract in qkernels.h), K is never split,
 * and f32 units start at multiples of F32_ALIGN columns (the tuned kernels'
 * results do not depend on the column range then). So results are bitwise
 * identical for any thread count and unit size, and, for the quantized and
 * half types, for any M.
 */
#include <stdatomic.h>
#include <string.h>

#include "internal.h"
#include "qkernels.h"

#define SCRATCH_ALIGN 64
#define CHUNKS_PER_THREAD 4  /* work units per thread: late workers can catch up */
#define F32_ALIGN 32         /* f32 unit boundaries (whole tiles in every tier) */
#define PANEL_BYTES 65536    /* weight bytes per column block, reused by all M tiles */
#define PACK_MAX_BYTES 131072 /* largest packed strip (on a worker's stack, like attention's split buffer) */

typedef struct {
    const ec_linear_out *o;
    const ec_qresolved *r;
    ec_linear_args f32;     /* f32 weights: the tuned kernel's arguments */
    const char *x;          /* activations in this type's format */
    size_t x_stride;        /* bytes per activation row */
    int refine;             /* rows come in (x, residual) pairs */
    size_t row_bytes;       /* bytes per weight row */
    size_t panel;           /* columns per cache block */
    size_t pack_bytes;      /* a packed strip's bytes; 0: tiles read the weights */
    size_t chunk;           /* columns per work unit */
    size_t first_unit, units;
} out_plan;

typedef struct {
    size_t m, k;
    int act, glu;
    size_t n_outs, units;
    size_t glu_panel;
    ec_bias_act_fn bias_act;
    ec_glu_fn glu_fn;
    out_plan p[EC_LINEAR_MAX_OUTS];
    atomic_size_t next;
} linear_job;

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

/* Rows y[m0, m0 + mt) x columns [j, j + nr): `gemm` over weights `w`
 * (stride ws), the strip's first row or its packed copy. Refined: the
 * micro-kernel runs over the 2 mt activation rows (x and residual of each
 * row, interleaved) into a tile on the stack, and each pair is summed. The
 * sum depends on its two rows only, so batch invariance holds. */
static void output_tile(const linear_job *job, const out_plan *p, ec_qgemm_fn gemm, const void *w, size_t ws,
                        size_t m0, size_t mt, size_t j, size_t nr) {
    const size_t N = p->o->n, mr = p->r->mr;
    float *y = p->o->y + m0 * N + j;
    if (!p->refine) {
        gemm(job->k, mt, nr, p->x + m0 * p->x_stride, p->x_stride, w, ws, y, N);
        return;
    }
    float tile[2 * EC_MR_MAX][EC_NR_MAX];
    for (size_t v = 0; v < 2 * mt; v += mr)
        gemm(job->k, min_size(mr, 2 * mt - v), nr, p->x + (2 * m0 + v) * p->x_stride, p->x_stride, w, ws, tile[v],
             EC_NR_MAX);
    for (size_t i = 0; i < mt; i++)
        for (size_t c = 0; c < nr; c++) y[i * N + c] = tile[2 * i][c] + tile[2 * i + 1][c];
}

/* y[:, n0:n1) of one output, raw sums; with `epilogue`, bias + activation
 * applied to the rows of each column panel once they are computed. With a
 * packer (p->pack_bytes), each strip of nr weight rows is decoded once into
 * a buffer on this thread's stack and every M tile runs over it; otherwise
 * a panel of weight rows stays in cache while the M tiles pass. */
static void quantized_cols(const linear_job *job, const out_plan *p, size_t n0, size_t n1, int epilogue) {
    const ec_qresolved *r = p->r;
    const size_t M = job->m, N = p->o->n;
    const char *w = p->o->w;
    float *y = p->o->y;
    const float *bias = p->o->bias;
    const int post = epilogue && (bias || job->act != EC_ACT_NONE); /* else it is the identity */
    /* refined: a tile of output rows is half a tile of activation rows */
    const size_t step = p->refine ? (r->mr >= 2 ? r->mr / 2 : 1) : r->mr;
    unsigned char stack[p->pack_bytes ? p->pack_bytes + SCRATCH_ALIGN - 1 : 1];
    void *packed = (void *)round_up((size_t)stack, SCRATCH_ALIGN);
    for (size_t nb = n0; nb < n1; nb += p->panel) {
        const size_t ne = min_size(n1, nb + p->panel);
        if (p->pack_bytes) {
            for (size_t j = nb; j < ne; j += r->nr) {
                const size_t nr = min_size(r->nr, ne - j);
                r->pack(job->k, nr, w + j * p->row_bytes, p->row_bytes, packed);
                for (size_t m0 = 0; m0 < M; m0 += step)
                    output_tile(job, p, r->gemm_packed, packed, 0, m0, min_size(step, M - m0), j, nr);
            }
            if (post)
                for (size_t i = 0; i < M; i++) job->bias_act(y + i * N + nb, bias ? bias + nb : NULL, ne - nb, job->act);
            continue;
        }
        for (size_t m0 = 0; m0 < M; m0 += step) {
            const size_t mt = min_size(step, M - m0);
            for (size_t j = nb; j < ne; j += r->nr)
                output_tile(job, p, r->gemm, w + j * p->row_bytes, p->row_bytes, m0, mt, j, min_size(r->nr, ne - j));
            if (post)
                for (size_t i = m0; i < m0 + mt; i++)
                    job->bias_act(y + i * N + nb, bias ? bias + nb : NULL, ne - nb, job->act);
        }
    }
}

/* y[:, n0:n1) = act(x W^T + b) (`raw`: x W^T only). */
static void output_cols(const linear_job *job, const out_plan *p, size_t n0, size_t n1, int raw) {
    if (p->r->info->id == EC_WT_F32) {
        ec_linear_args a = p->f32;
        if (raw) {
            a.bias = NULL;
            a.act = EC_ACT_NONE;
        }
        ec_active->linear_f32(&a, n0, n1);
    } else {
        quantized_cols(job, p, n0, n1, !raw);
    }
}

static void run_unit(const linear_job *job, size_t u) {
    size_t o = 0;
    while (u >= job->p[o].first_unit + job->p[o].units) o++;
    const out_plan *p = &job->p[o];
    const size_t n0 = (u - p->first_unit) * p->chunk, n1 = min_size(n0 + p->chunk, p->o->n);
    if (!job->glu) {
        output_cols(job, p, n0, n1, 0);
        return;
    }
    const out_plan *q = &job->p[1];
    const size_t N = p->o->n;
    for (size_t nb = n0; nb < n1; nb += job->glu_panel) {
        const size_t ne = min_size(n1, nb + job->glu_panel);
        output_cols(job, p, nb, ne, 1);
        output_cols(job, q, nb, ne, 1);
        for (size_t i = 0; i < job->m; i++)
            job->glu_fn(p->o->y + i * N + nb, p->o->bias ? p->o->bias + nb : NULL, q->o->y + i * N + nb,
                        q->o->bias ? q->o->bias + nb : NULL, ne - nb, job->act);
    }
}

static void linear_task(void *ctx, size_t task, size_t n_tasks) {
    (void)task, (void)n_tasks;
    linear_job *job = ctx;
    for (;;) {
        const size_t u = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (u >= job->units) return;
        run_unit(job, u);
    }
}

/* ---- argument checks and scratch ----------------------------------------- */

static int check_outputs(const ec_linear_out *outs, size_t n_outs, size_t k, int glu) {
    if (n_outs < 1 || n_outs > EC_LINEAR_MAX_OUTS) return EC_ERR_ARG;
    if (glu && (n_outs != 2 || outs[0].n != outs[1].n)) return EC_ERR_ARG;
    for (size_t o = 0; o < n_outs; o++) {
        const ec_wtype_info *t = ec_wtype_find(outs[o].wtype);
        if (!t) return EC_ERR_WTYPE;
        if (k % t->block_elems) return EC_ERR_K;
        if (outs[o].transposed && t->id != EC_WT_F32) return EC_ERR_ARG;
    }
    return EC_OK;
}

/* Which activation formats the outputs need, as a bit mask. */
static unsigned formats_needed(const int *wtypes, size_t n_outs) {
    unsigned f = 0;
    for (size_t o = 0; o < n_outs; o++) {
        const ec_wtype_info *t = ec_wtype_find(wtypes[o]);
        if (t && t->act_format != EC_AF_F32) f |= 1u << t->act_format;
    }
    return f;
}

static size_t scratch_for(unsigned formats, size_t m, size_t k, int refine) {
    size_t bytes = 0;
    for (int f = EC_AF_Q8_32; f < EC_AF_COUNT; f++)
        if (formats & (1u << f)) bytes += SCRATCH_ALIGN - 1 + (refine ? 2 : 1) * m * ec_act_row_bytes(f, k);
    return bytes;
}

/* d and q of activation block b of a row in format f. */
static void act_block(int f, const char *row, size_t b, float *d, const int8_t **q) {
    if (f == EC_AF_Q8_32) {
        const ec_act_q8_32 *blk = (const ec_act_q8_32 *)row + b;
        *d = blk->d, *q = blk->q;
    } else {
        const ec_act_q8_256 *blk = (const ec_act_q8_256 *)row + b;
        *d = blk->d, *q = blk->q;
    }
}

/* Row x (k elements) into out_x and, with refine, its residual r = x - d q
 * (float32: d q rounded, then subtracted) into out_r, quantized by the same
 * rule block by block (the quantizers are block-local). */
static void quantize_row(int f, ec_actquant_fn quantize, const float *x, size_t k, char *out_x, char *out_r) {
    quantize(x, out_x, k);
    if (!out_r) return;
    const size_t be = f == EC_AF_Q8_32 ? 32 : 256, bb = ec_act_row_bytes(f, be);
    float r[256];
    for (size_t b = 0; b < k / be; b++) {
        float d;
        const int8_t *q;
        act_block(f, out_x, b, &d, &q);
        for (size_t e = 0; e < be; e++) r[e] = x[b * be + e] - d * (float)q[e];
        quantize(r, out_r + b * bb, be);
    }
}

int ec_linear_scratch_bytes(const int *wtypes, size_t n_outs, size_t m, size_t k, int refine, size_t *bytes) {
    if (n_outs < 1 || n_outs > EC_LINEAR_MAX_OUTS) return EC_ERR_ARG;
    for (size_t o = 0; o < n_outs; o++) {
        const ec_wtype_info *t = ec_wtype_find(wtypes[o]);
        if (!t) return EC_ERR_WTYPE;
        if (k % t->block_elems) return EC_ERR_K;
    }
    *bytes = scratch_for(formats_needed(wtypes, n_outs), m, k, refine);
    return EC_OK;
}

/* ---- entry points ------------------------------------------------------- */

int ec_linear_multi(const float *x, size_t m, size_t k, const ec_linear_out *outs, size_t n_outs,
                    int act, int glu, int refine, void *scratch, size_t scratch_bytes) {
    const int rc = check_outputs(outs, n_outs, k, glu);
    if (rc != EC_OK) return rc;
    int wtypes[EC_LINEAR_MAX_OUTS];
    for (size_t o = 0; o < n_outs; o++) wtypes[o] = outs[o].wtype;
    const unsigned formats = formats_needed(wtypes, n_outs);
    refine = refine && formats; /* float activations are exact already */
    if (formats && (!scratch || scratch_bytes < scratch_for(formats, m, k, refine))) return EC_ERR_SCRATCH;
    if (m == 0) return EC_OK;

    /* x once per format, 64-byte aligned, the caller's thread; refined:
     * row 2i holds x_i, row 2i + 1 its residual */
    const char *xq[EC_AF_COUNT] = {(const char *)x, NULL, NULL};
    char *s = scratch;
    for (int f = EC_AF_Q8_32; f < EC_AF_COUNT; f++) {
        if (!(formats & (1u << f))) continue;
        char *buf = (char *)round_up((size_t)s, SCRATCH_ALIGN);
        const size_t row = ec_act_row_bytes(f, k);
        const ec_actquant_fn quantize = ec_qactquant(f);
        const size_t rows = refine ? 2 : 1;
        for (size_t i = 0; i < m; i++)
            quantize_row(f, quantize, x + i * k, k, buf + rows * i * row, refine ? buf + (2 * i + 1) * row : NULL);
        xq[f] = buf;
        s = buf + rows * m * row;
    }

    size_t total_n = 0;
    for (size_t o = 0; o < (glu ? 1 : n_outs); o++) total_n += outs[o].n;
    size_t tasks = (size_t)ec_threads_for_work((double)m * k * (double)total_n * (glu ? 2 : 1));
    if (tasks > (total_n + EC_NR_MAX - 1) / EC_NR_MAX) tasks = (total_n + EC_NR_MAX - 1) / EC_NR_MAX;
    if (tasks < 1) tasks = 1;

    linear_job job;
    job.m = m;
    job.k = k;
    job.act = act;
    job.glu = glu;
    job.n_outs = n_outs;
    job.bias_act = ec_qepilogue_bias_act();
    job.glu_fn = ec_qepilogue_glu();
    job.glu_panel = 0;
    job.units = 0;
    atomic_init(&job.next, 0);
    /* one unit per output on one thread; else about CHUNKS_PER_THREAD per thread */
    const size_t target = tasks == 1 ? 0 : (total_n + tasks * CHUNKS_PER_THREAD - 1) / (tasks * CHUNKS_PER_THREAD);
    int any_f32 = 0;
    for (size_t o = 0; o < n_outs; o++) any_f32 |= outs[o].wtype == EC_WT_F32;
    for (size_t o = 0; o < n_outs; o++) {
        out_plan *p = &job.p[o];
        const ec_wtype_info *t = ec_wtype_find(outs[o].wtype);
        p->o = &outs[o];
        p->r = ec_qresolved_at(ec_wtype_index(t->id));
        p->row_bytes = ec_wtype_row_bytes(t, k);
        p->x = xq[t->act_format];
        p->x_stride = t->act_format == EC_AF_F32 ? k * sizeof(float) : ec_act_row_bytes(t->act_format, k);
        p->refine = refine && t->act_format != EC_AF_F32;
        p->f32 = (ec_linear_args){x, outs[o].w, outs[o].bias, outs[o].y, m, outs[o].n, k, outs[o].transposed, act};
        p->pack_bytes = 0;
        if (t->id == EC_WT_F32) {
            p->panel = outs[o].n;
        } else {
            /* pack when more than one M tile passes over each strip */
            const size_t act_rows = p->refine ? 2 * m : m, packed = k / t->block_elems * p->r->packed_block_bytes;
            if (p->r->pack && act_rows > p->r->mr && packed <= PACK_MAX_BYTES) p->pack_bytes = packed;
            const size_t nr = p->r->nr;
            const size_t fit = p->row_bytes ? PANEL_BYTES / p->row_bytes / nr * nr : outs[o].n;
            p->panel = fit > nr ? fit : nr;
        }
        /* with glu, output 1 is computed inside output 0's units */
        const size_t align = (t->id == EC_WT_F32 || (glu && any_f32)) ? F32_ALIGN : EC_NR_MAX;
        p->chunk = target ? round_up(target, align) : outs[o].n;
        if (p->chunk == 0) p->chunk = 1;
        p->first_unit = job.units;
        p->units = (glu && o == 1) ? 0 : (outs[o].n + p->chunk - 1) / p->chunk;
        job.units += p->units;
    }
    if (glu) {
        /* both outputs of a column block stay in cache for the combine */
        const size_t panel = min_size(job.p[0].panel, job.p[1].panel);
        job.glu_panel = any_f32 ? round_up(min_size(panel, 64), F32_ALIGN) : panel;
        if (job.glu_panel == 0) job.glu_panel = 1;
    }
    if (tasks > job.units) tasks = job.units;
    if (tasks <= 1) linear_task(&job, 0, 1);
    else ec_parallel_run(linear_task, &job, tasks);
    return EC_OK;
}

int ec_linear(int wtype, const float *x, const void *w, const float *bias, float *y, size_t m,
              size_t n, size_t k, int transposed, int act, void *scratch, size_t scratch_bytes) {
    const ec_linear_out o = {wtype, w, bias, y, n, transposed};
    return ec_linear_multi(x, m, k, &o, 1, act, 0, 0, scratch, scratch_bytes);
}

void ec_linear_f32(const float *x, const float *w, const float *bias, float *y, size_t m, size_t n,
                   size_t k, int transposed, int act) {
    if (m == 0 || n == 0) return;
    if (ec_threads_for_work((double)m * n * k) <= 1) {
        /* one thread: straight to the kernel (decode calls are ~100 ns) */
        const ec_linear_args a = {x, w, bias, y, m, n, k, transposed, act};
        ec_active->linear_f32(&a, 0, n);
        return;
    }
    const ec_linear_out o = {EC_WT_F32, w, bias, y, n, transposed};
    (void)ec_linear_multi(x, m, k, &o, 1, act, 0, 0, NULL, 0); /* f32 cannot fail */
}

void ec_linear_f32_serial(const ec_linear_args *a) { ec_active->linear_f32(a, 0, a->n); }
