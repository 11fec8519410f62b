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
