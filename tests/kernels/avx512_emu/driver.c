/*
 * Test-only driver for the emulated AVX-512 check (test_avx512_emulated.py):
 * calls one tier's kernels directly, bypassing dispatch and the CPU check,
 * so the avx512 kernels (compiled against SIMDe) run on a CPU without
 * AVX-512, next to the scalar reference.
 *
 * Every array a kernel sees is copied into its own mapping and placed flush
 * against an inaccessible guard page, and a fault during the call is caught
 * and reported (EMU_FAULT) instead of killing the test process: a kernel
 * that reads or writes one element past the end of any buffer fails.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EC_BUILD_AVX512 1
#include "common/internal.h"
#include "common/qkernels.h"

#define EMU_OK 0
#define EMU_FAULT 1    /* the kernel touched memory outside its buffers */
#define EMU_NO_TIER 2  /* tier is not scalar or avx512 */
#define EMU_NO_MEMORY 3

typedef struct {
    unsigned char *map;
    size_t map_len;
    void *data; /* the last byte of the array is the last accessible byte */
} guarded;

static int guard_alloc(guarded *g, const void *src, size_t bytes) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t body = (bytes + page - 1) / page * page;
    g->map_len = body + page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) {
        g->map = NULL;
        return -1;
    }
    if (mprotect(g->map + body, page, PROT_NONE) != 0) {
        munmap(g->map, g->map_len);
        g->map = NULL;
        return -1;
    }
    g->data = g->map + body - bytes;
    if (src && bytes) memcpy(g->data, src, bytes);
    return 0;
}

static void guard_free(guarded *g) {
    if (g->map) munmap(g->map, g->map_len);
    g->map = NULL;
}

static sigjmp_buf fault_jump;

static void on_fault(int sig) {
    (void)sig;
    siglongjmp(fault_jump, 1);
}

/* Run fn(ctx); 1 if it faulted (SIGSEGV/SIGBUS), else 0. */
static int run_guarded(void (*fn)(void *), void *ctx) {
    struct sigaction sa, old_segv, old_bus;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    int faulted = 0;
    if (sigsetjmp(fault_jump, 1) == 0) fn(ctx);
    else faulted = 1;
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    return faulted;
}

/* ---- fused linear -------------------------------------------------------- */

typedef struct {
    ec_linear_fn fn;
    ec_linear_args args;
    const size_t *cuts;
    size_t n_cuts;
} linear_call;

static void linear_body(void *ctx) {
    const linear_call *c = ctx;
    for (size_t i = 0; i + 1 < c->n_cuts; i++) c->fn(&c->args, c->cuts[i], c->cuts[i + 1]);
}

/*
 * y[:, cuts[i]:cuts[i+1]] for each consecutive pair of cuts, one kernel call
 * each, in order (the column split a thread pool would make). y is read
 * (the kernel may keep partial sums in it) and written back.
 */
int emu_linear(int tier, const float *x, const float *w, const float *bias, float *y, size_t m, size_t n,
               size_t k, int transposed, int act, const size_t *cuts, size_t n_cuts) {
    linear_call c = {NULL, {NULL, NULL, NULL, NULL, m, n, k, transposed, act}, cuts, n_cuts};
    if (tier == EC_TIER_SCALAR) c.fn = ec_linear_f32_scalar;
    else if (tier == EC_TIER_AVX512) c.fn = ec_linear_f32_avx512;
    else return EMU_NO_TIER;
    guarded gx, gw, gb = {0}, gy;
    int rc = EMU_NO_MEMORY;
    if (guard_alloc(&gx, x, m * k * sizeof(float))) return rc;
    if (guard_alloc(&gw, w, n * k * sizeof(float))) goto free_x;
    if (bias && guard_alloc(&gb, bias, n * sizeof(float))) goto free_w;
    if (guard_alloc(&gy, y, m * n * sizeof(float))) goto free_b;
    c.args.x = gx.data;
    c.args.w = gw.data;
    c.args.bias = bias ? gb.data : NULL;
    c.args.y = gy.data;
    rc = run_guarded(linear_body, &c) ? EMU_FAULT : EMU_OK;
    memcpy(y, gy.data, m * n * sizeof(float));
    guard_free(&gy);
free_b:
    guard_free(&gb);
free_w:
    guard_free(&gw);
free_x:
    guard_free(&gx);
    return rc;
}

/* ---- top-k routing --------------------------------------------------------- */

typedef struct {
    ec_topk_fn fn;
    const float *logits, *bonus;
    size_t t, e, k;
    int32_t *ids;
    float *weights;
    int64_t bad;
} topk_call;

static void topk_body(void *ctx) {
    topk_call *c = ctx;
    c->bad = c->fn(c->logits, c->bonus, c->e, c->k, 0, c->t, c->ids, c->weights);
}

/* Rows [0, t); *bad = the kernel's return value (-1 or the first bad row). */
int emu_topk(int tier, const float *logits, const float *bonus, size_t t, size_t e, size_t k, int32_t *ids,
             float *weights, int64_t *bad) {
    topk_call c = {NULL, NULL, NULL, t, e, k, NULL, NULL, -1};
    if (tier == EC_TIER_SCALAR) c.fn = ec_topk_f32_scalar;
    else if (tier == EC_TIER_AVX512) c.fn = ec_topk_f32_avx512;
    else return EMU_NO_TIER;
    guarded gl, gb = {0}, gi, gw;
    int rc = EMU_NO_MEMORY;
    if (guard_alloc(&gl, logits, t * e * sizeof(float))) return rc;
    if (bonus && guard_alloc(&gb, bonus, e * sizeof(float))) goto free_l;
    if (guard_alloc(&gi, ids, t * k * sizeof(int32_t))) goto free_b;
    if (guard_alloc(&gw, weights, t * k * sizeof(float))) goto free_i;
    c.logits = gl.data;
    c.bonus = bonus ? gb.data : NULL;
    c.ids = gi.data;
    c.weights = gw.data;
    rc = run_guarded(topk_body, &c) ? EMU_FAULT : EMU_OK;
    memcpy(ids, gi.data, t * k * sizeof(int32_t));
    memcpy(weights, gw.data, t * k * sizeof(float));
    *bad = c.bad;
    guard_free(&gw);
free_i:
    guard_free(&gi);
free_b:
    guard_free(&gb);
free_l:
    guard_free(&gl);
    return rc;
}

/* ---- EMA affinity pass ----------------------------------------------------- */

typedef struct {
    ec_ema_fn fn;
    float *scores;
    size_t n;
    const uint64_t *bits;
    float decay, boost, max_score;
} ema_call;

static void ema_body(void *ctx) {
    const ema_call *c = ctx;
    c->fn(c->scores, c->n, c->bits, c->decay, c->boost, c->max_score);
}

/* The ISA pass after deduplication: `bits` holds (n + 63) / 64 words. */
int emu_ema(int tier, float *scores, size_t n, const uint64_t *bits, float decay, float boost, float max_score) {
    ema_call c = {NULL, NULL, n, NULL, decay, boost, max_score};
    if (tier == EC_TIER_SCALAR) c.fn = ec_ema_f32_scalar;
    else if (tier == EC_TIER_AVX512) c.fn = ec_ema_f32_avx512;
    else return EMU_NO_TIER;
    guarded gs, gbits;
    if (guard_alloc(&gs, scores, n * sizeof(float))) return EMU_NO_MEMORY;
    if (guard_alloc(&gbits, bits, (n + 63) / 64 * sizeof(uint64_t))) {
        guard_free(&gs);
        return EMU_NO_MEMORY;
    }
    c.scores = gs.data;
    c.bits = gbits.data;
    const int rc = run_guarded(ema_body, &c) ? EMU_FAULT : EMU_OK;
    memcpy(scores, gs.data, n * sizeof(float));
    guard_free(&gbits);
    guard_free(&gs);
    return rc;
}

/* ---- bf16 / f16 widening --------------------------------------------------- */

typedef struct {
    ec_cvt_fn fn;
    const uint16_t *src;
    float *dst;
    size_t n;
} cvt_call;

static void cvt_body(void *ctx) {
    const cvt_call *c = ctx;
    c->fn(c->src, c->dst, c->n);
}

/* half == 0: bf16, else f16. */
int emu_cvt(int tier, int half, const uint16_t *src, float *dst, size_t n) {
    cvt_call c = {NULL, NULL, NULL, n};
    if (tier == EC_TIER_SCALAR) c.fn = half ? ec_cvt_f16_f32_scalar : ec_cvt_bf16_f32_scalar;
    else if (tier == EC_TIER_AVX512) c.fn = half ? ec_cvt_f16_f32_avx512 : ec_cvt_bf16_f32_avx512;
    else return EMU_NO_TIER;
    guarded gs, gd;
    if (guard_alloc(&gs, src, n * sizeof(uint16_t))) return EMU_NO_MEMORY;
    if (guard_alloc(&gd, dst, n * sizeof(float))) {
        guard_free(&gs);
        return EMU_NO_MEMORY;
    }
    c.src = gs.data;
    c.dst = gd.data;
    const int rc = run_guarded(cvt_body, &c) ? EMU_FAULT : EMU_OK;
    memcpy(dst, gd.data, n * sizeof(float));
    guard_free(&gd);
    guard_free(&gs);
    return rc;
}

/* ---- per-token kernels, through their C drivers ------------------------------
 *
 * norms.c, rope.c, kvcache.c and attention.c are linked in as they are; the
 * dispatch table they read (ec_active) holds only the per-token entries of
 * the tier under test, and the thread pool is replaced by a serial loop (the
 * native suite covers threading). Every buffer sits against a guard page.
 */

static ec_kernel_table emu_table;
const ec_kernel_table *ec_active = &emu_table;

/* the gemm kernels' weight prefetch hint (dispatch.c sets it from the CPU
 * vendor): a hint only, no value depends on it */
int ec_weight_prefetch_nta = 0;

int ec_threads_for_work(double macs) {
    (void)macs;
    return 1;
}

void ec_parallel_run(ec_task_fn fn, void *ctx, size_t n_tasks) {
    for (size_t i = 0; i < n_tasks; i++) fn(ctx, i, n_tasks);
}

#define EMU_PERTOKEN(isa)                                      \
    do {                                                       \
        emu_table.rms_norm_rows = ec_rms_norm_rows_##isa;      \
        emu_table.layer_norm_rows = ec_layer_norm_rows_##isa;  \
        emu_table.rope_row = ec_rope_row_##isa;                \
        emu_table.cvt_f32_f16 = ec_cvt_f32_f16_##isa;          \
        emu_table.attn_scores_f32 = ec_attn_scores_f32_##isa;  \
        emu_table.attn_scores_f16 = ec_attn_scores_f16_##isa;  \
        emu_table.attn_pv_f32 = ec_attn_pv_f32_##isa;          \
        emu_table.attn_pv_f16 = ec_attn_pv_f16_##isa;          \
        emu_table.attn_scores_q8_0 = ec_attn_scores_q8_0_##isa; \
        emu_table.attn_pv_q8_0 = ec_attn_pv_q8_0_##isa;        \
        emu_table.attn_max = ec_attn_max_##isa;                \
        emu_table.attn_expsum = ec_attn_expsum_##isa;          \
    } while (0)

static int use_tier(int tier) {
    memset(&emu_table, 0, sizeof emu_table);
    if (tier == EC_TIER_SCALAR) EMU_PERTOKEN(scalar);
    else if (tier == EC_TIER_AVX512) EMU_PERTOKEN(avx512);
    else return -1;
    return 0;
}

/* Up to EMU_MAX_BUFS caller arrays, each copied into a guarded mapping
 * (NULL stays NULL) and copied back after the call. */
#define EMU_MAX_BUFS 8
typedef struct {
    void *user[EMU_MAX_BUFS];
    size_t bytes[EMU_MAX_BUFS];
    guarded g[EMU_MAX_BUFS];
    void *p[EMU_MAX_BUFS]; /* what the kernel sees */
    size_t n;
} guard_set;

static int guard_all(guard_set *s) {
    for (size_t i = 0; i < s->n; i++) {
        s->g[i].map = NULL;
        s->p[i] = NULL;
        if (!s->user[i]) continue;
        if (guard_alloc(&s->g[i], s->user[i], s->bytes[i])) return -1;
        s->p[i] = s->g[i].data;
    }
    return 0;
}

static void unguard_all(guard_set *s) {
    for (size_t i = 0; i < s->n; i++) {
        if (s->user[i] && s->g[i].map) memcpy(s->user[i], s->g[i].data, s->bytes[i]);
        guard_free(&s->g[i]);
    }
}

typedef struct {
    guard_set s;
    int layer, flags, rc;
    size_t m, d;
    float eps;
} norm_call;

static void norm_body(void *ctx) {
    norm_call *c = ctx;
    float *x = c->s.p[0];
    const float *delta = c->s.p[1], *w = c->s.p[2], *b = c->s.p[3];
    float *out = c->s.p[4];
    float *sum = delta ? x : NULL; /* the fused residual add updates x */
    if (c->layer) c->rc = ec_layer_norm_f32(x, delta, sum, w, b, out, c->m, c->d, c->eps, c->flags);
    else c->rc = ec_rms_norm_f32(x, delta, sum, w, out, c->m, c->d, c->eps, c->flags);
}

/* out = norm(x (+ delta, stored to x)); delta and b may be NULL. *rc: the
 * entry point's return code. */
int emu_norm(int tier, int layer, float *x, const float *delta, const float *w, const float *b, float *out,
             size_t m, size_t d, float eps, int flags, int *rc) {
    if (use_tier(tier)) return EMU_NO_TIER;
    norm_call c = {{{x, (void *)delta, (void *)w, (void *)b, out},
                    {m * d * 4, m * d * 4, d * 4, d * 4, m * d * 4}, {{0}}, {0}, 5},
                   layer, flags, -99, m, d, eps};
    int ret = EMU_NO_MEMORY;
    if (guard_all(&c.s) == 0) ret = run_guarded(norm_body, &c) ? EMU_FAULT : EMU_OK;
    unguard_all(&c.s);
    *rc = c.rc;
    return ret;
}

typedef struct {
    guard_set s;
    size_t m, heads, hd, rot, max_pos;
    int interleaved, rc;
} rope_call;

static void rope_body(void *ctx) {
    rope_call *c = ctx;
    size_t bad = 0;
    c->rc = ec_rope_f32(c->s.p[0], c->m, c->heads * c->hd, c->heads, c->hd, c->rot, c->s.p[1], 4, c->s.p[2],
                        c->s.p[3], c->max_pos, c->interleaved, &bad);
}

/* x [m, heads, hd] in place; int32 positions; cos/sin [max_pos, rot / 2]. */
int emu_rope(int tier, float *x, size_t m, size_t heads, size_t hd, size_t rot, const int32_t *positions,
             const float *cos, const float *sin, size_t max_pos, int interleaved, int *rc) {
    if (use_tier(tier)) return EMU_NO_TIER;
    const size_t table = max_pos * (rot / 2) * 4;
    rope_call c = {{{x, (void *)positions, (void *)cos, (void *)sin}, {m * heads * hd * 4, m * 4, table, table},
                    {{0}}, {0}, 4},
                   m, heads, hd, rot, max_pos, interleaved, -99};
    int ret = EMU_NO_MEMORY;
    if (guard_all(&c.s) == 0) ret = run_guarded(rope_body, &c) ? EMU_FAULT : EMU_OK;
    unguard_all(&c.s);
    *rc = c.rc;
    return ret;
}

/* A paged call: cache shape, batch, and what to run. */
typedef struct {
    guard_set s; /* 0 k_cache, 1 v_cache, 2 table, 3 starts, 4 pos0, 5 q or k rows, 6 v rows or out */
    ec_kv_pages pages;
    ec_kv_batch batch;
    size_t m, n_heads, window;
    float scale, softcap;
    int attend, rc;
} paged_call;

static void paged_body(void *ctx) {
    paged_call *c = ctx;
    c->pages.k = c->s.p[0];
    c->pages.v = c->s.p[1];
    c->batch.page_table = c->s.p[2];
    c->batch.starts = c->s.p[3];
    c->batch.pos0 = c->s.p[4];
    ec_kv_fault fault;
    if (c->attend)
        c->rc = ec_attention_f32(&c->pages, &c->batch, c->s.p[5], c->m, c->n_heads * c->pages.head_dim, c->n_heads,
                                 c->scale, c->window, c->softcap, c->s.p[6], &fault);
    else
        c->rc = ec_kv_store(&c->pages, &c->batch, c->s.p[5], c->s.p[6], c->m, c->pages.kv_heads * c->pages.head_dim,
                            &fault);
}

static int run_paged(int tier, paged_call *c, void *k_cache, void *v_cache, const int32_t *table,
                     const int32_t *starts, const int32_t *pos0, void *a, size_t a_bytes, void *b, size_t b_bytes,
                     int *rc) {
    if (use_tier(tier)) return EMU_NO_TIER;
    const ec_kv_pages *p = &c->pages;
    const size_t cache = p->n_pages * p->kv_heads * p->page_tokens * ec_kv_row_bytes(p->dtype, p->head_dim);
    void *user[7] = {k_cache, v_cache, (void *)table, (void *)starts, (void *)pos0, a, b};
    size_t bytes[7] = {cache, cache, c->batch.n_seqs * c->batch.max_pages * 4, (c->batch.n_seqs + 1) * 4,
                       c->batch.n_seqs * 4, a_bytes, b_bytes};
    for (size_t i = 0; i < 7; i++) {
        c->s.user[i] = user[i];
        c->s.bytes[i] = bytes[i];
    }
    c->s.n = 7;
    c->rc = -99;
    int ret = EMU_NO_MEMORY;
    if (guard_all(&c->s) == 0) ret = run_guarded(paged_body, c) ? EMU_FAULT : EMU_OK;
    unguard_all(&c->s);
    *rc = c->rc;
    return ret;
}

/* k, v [m, kv_heads, head_dim] float32 into the caches (dtype ec_kv_dtype). */
int emu_kv_store(int tier, const float *k, const float *v, size_t m, void *k_cache, void *v_cache, int dtype,
                 size_t n_pages, size_t kv_heads, size_t page_tokens, size_t head_dim, const int32_t *table,
                 size_t n_seqs, size_t max_pages, const int32_t *starts, const int32_t *pos0, int *rc) {
    paged_call c;
    memset(&c, 0, sizeof c);
    c.pages = (ec_kv_pages){NULL, NULL, dtype, n_pages, kv_heads, page_tokens, head_dim};
    c.batch = (ec_kv_batch){n_seqs, NULL, NULL, NULL, max_pages};
    c.m = m;
    const size_t rows = m * kv_heads * head_dim * 4;
    return run_paged(tier, &c, k_cache, v_cache, table, starts, pos0, (void *)k, rows, (void *)v, rows, rc);
}

/* out [m, n_heads * head_dim] = attention of q [m, n_heads, head_dim]. */
int emu_attention(int tier, const float *q, size_t m, size_t n_heads, void *k_cache, void *v_cache, int dtype,
                  size_t n_pages, size_t kv_heads, size_t page_tokens, size_t head_dim, const int32_t *table,
                  size_t n_seqs, size_t max_pages, const int32_t *starts, const int32_t *pos0, float scale,
                  size_t window, float softcap, float *out, int *rc) {
    paged_call c;
    memset(&c, 0, sizeof c);
    c.pages = (ec_kv_pages){NULL, NULL, dtype, n_pages, kv_heads, page_tokens, head_dim};
    c.batch = (ec_kv_batch){n_seqs, NULL, NULL, NULL, max_pages};
    c.m = m;
    c.n_heads = n_heads;
    c.window = window;
    c.scale = scale;
    c.softcap = softcap;
    c.attend = 1;
    const size_t rows = m * n_heads * head_dim * 4;
    return run_paged(tier, &c, k_cache, v_cache, table, starts, pos0, (void *)q, rows, out, rows, rc);
}

/* ---- weight-type micro-kernels (csrc/common/qkernels.h) ---------------------
 *
 * The tiers' tables are read as they are, so every line added to
 * qkernels_avx512.c (the VNNI and BF16 ones included: the harness compiles
 * their folders too) is reachable by index without touching this file.
 */

static const ec_tier_qkernels *qtier(int tier) {
    if (tier == EC_TIER_SCALAR) return &ec_qkernels_scalar;
    if (tier == EC_TIER_AVX512) return &ec_qkernels_avx512;
    return NULL;
}

/* Line `i` of the tier's weight table: info = {wtype, features, has gemm,
 * mr, nr, has dequant, packed block bytes (0: no packer)}. Returns -1 past
 * the end. */
int emu_qline(int tier, int i, int *info) {
    const ec_tier_qkernels *t = qtier(tier);
    if (!t || i < 0) return -1;
    for (int j = 0; j <= i; j++)
        if (t->weights[j].wtype < 0) return -1;
    const ec_qvariant *v = &t->weights[i];
    info[0] = v->wtype;
    info[1] = (int)v->features;
    info[2] = v->gemm != NULL;
    info[3] = v->mr;
    info[4] = v->nr;
    info[5] = v->dequant != NULL;
    info[6] = v->packer ? (int)v->packer->packed_block_bytes : 0;
    return 0;
}

/* Line `i` of the tier's activation table: info = {format, features}. */
int emu_qactline(int tier, int i, int *info) {
    const ec_tier_qkernels *t = qtier(tier);
    if (!t || i < 0) return -1;
    for (int j = 0; j <= i; j++)
        if (t->activations[j].format < 0) return -1;
    info[0] = t->activations[i].format;
    info[1] = (int)t->activations[i].features;
    return 0;
}

typedef struct {
    ec_qgemm_fn fn;
    const ec_qpacker *packer; /* non-NULL: pack each strip, then run its gemm_packed */
    size_t k, m, n, xs, ws, mr, nr;
    const char *x, *w;
    float *y;
    void *packed; /* a 64-byte aligned strip buffer */
} qgemm_call;

/* The whole [m, n] output in mr x nr tiles, column blocks outermost, with
 * the short tiles at the ends, as the linear driver calls them. */
static void qgemm_body(void *ctx) {
    const qgemm_call *c = ctx;
    for (size_t j = 0; j < c->n; j += c->nr) {
        const size_t nt = c->n - j < c->nr ? c->n - j : c->nr;
        if (c->packer) c->packer->pack(c->k, nt, c->w + j * c->ws, c->ws, c->packed);
        for (size_t i = 0; i < c->m; i += c->mr) {
            const size_t mt = c->m - i < c->mr ? c->m - i : c->mr;
            if (c->packer)
                c->packer->gemm_packed(c->k, mt, nt, c->x + i * c->xs, c->xs, c->packed, 0, c->y + i * c->n + j, c->n);
            else
                c->fn(c->k, mt, nt, c->x + i * c->xs, c->xs, c->w + j * c->ws, c->ws, c->y + i * c->n + j, c->n);
        }
    }
}

/* y [m, n] = x (m rows of xs bytes, the type's activation format) times the
 * n weight rows (ws bytes each), by line `line`'s gemm in tiles of at most
 * mr x nr (a smaller tile than the line's exercises the tails); with
 * `packed`, through the line's packer and packed kernel instead. */
int emu_qgemm(int tier, int line, size_t k, size_t m, size_t n, const void *x, size_t xs, const void *w, size_t ws,
              float *y, size_t mr, size_t nr, int packed) {
    int info[7];
    if (emu_qline(tier, line, info) || !info[2] || (packed && !info[6])) return EMU_NO_TIER;
    if (mr < 1 || mr > (size_t)info[3] || nr < 1 || nr > (size_t)info[4]) return EMU_NO_TIER;
    const ec_qvariant *v = &qtier(tier)->weights[line];
    static unsigned char strip[1 << 20] __attribute__((aligned(64)));
    if (packed && k / 32 * (size_t)info[6] > sizeof strip) return EMU_NO_MEMORY;
    qgemm_call c = {v->gemm, packed ? v->packer : NULL, k, m, n, xs, ws, mr, nr, NULL, NULL, NULL, strip};
    guard_set s = {{(void *)x, (void *)w, y}, {m * xs, n * ws, m * n * sizeof(float)}, {{0}}, {0}, 3};
    int ret = EMU_NO_MEMORY;
    if (guard_all(&s) == 0) {
        c.x = s.p[0];
        c.w = s.p[1];
        c.y = s.p[2];
        ret = run_guarded(qgemm_body, &c) ? EMU_FAULT : EMU_OK;
    }
    unguard_all(&s);
    return ret;
}

typedef struct {
    ec_dequant_fn fn;
    const void *w;
    float *out;
    size_t k;
} qdequant_call;

static void qdequant_body(void *ctx) {
    const qdequant_call *c = ctx;
    c->fn(c->w, c->out, c->k);
}

/* One weight row of k elements (row_bytes) -> out, by line `line`'s dequantizer. */
int emu_qdequant(int tier, int line, const void *w, size_t row_bytes, float *out, size_t k) {
    int info[6];
    if (emu_qline(tier, line, info) || !info[5]) return EMU_NO_TIER;
    qdequant_call c = {qtier(tier)->weights[line].dequant, NULL, NULL, k};
    guard_set s = {{(void *)w, out}, {row_bytes, k * sizeof(float)}, {{0}}, {0}, 2};
    int ret = EMU_NO_MEMORY;
    if (guard_all(&s) == 0) {
        c.w = s.p[0];
        c.out = s.p[1];
        ret = run_guarded(qdequant_body, &c) ? EMU_FAULT : EMU_OK;
    }
    unguard_all(&s);
    return ret;
}

typedef struct {
    ec_actquant_fn fn;
    const float *x;
    char *out;
    size_t m, k, row_bytes;
} qact_call;

static void qact_body(void *ctx) {
    const qact_call *c = ctx;
    for (size_t i = 0; i < c->m; i++) c->fn(c->x + i * c->k, c->out + i * c->row_bytes, c->k);
}

/* m rows of k floats -> their activation blocks (row_bytes each), by line
 * `line` of the tier's activation table. */
int emu_qactquant(int tier, int line, const float *x, size_t m, size_t k, void *out, size_t row_bytes) {
    int info[2];
    if (emu_qactline(tier, line, info)) return EMU_NO_TIER;
    qact_call c = {qtier(tier)->activations[line].quantize, NULL, NULL, m, k, row_bytes};
    guard_set s = {{(void *)x, out}, {m * k * sizeof(float), m * row_bytes}, {{0}}, {0}, 2};
    int ret = EMU_NO_MEMORY;
    if (guard_all(&s) == 0) {
        c.x = s.p[0];
        c.out = s.p[1];
        ret = run_guarded(qact_body, &c) ? EMU_FAULT : EMU_OK;
    }
    unguard_all(&s);
    return ret;
}
