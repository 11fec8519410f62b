/*
 * Public entry points of the routing and conversion kernels: split work
 * across threads, validate what only C can validate cheaply, and call the
 * active tier through the dispatch table. (The linear driver is linear.c.)
 */
#include "internal.h"

#include <math.h>
#include <string.h>

/* ---- EMA affinity ------------------------------------------------------- */

/* decay, boost and clamp through the ISA kernel, then count: shared by the
 * int32 and int64 entry points once the ids are checked and in `bits` */
static void ema_apply(float *scores, size_t n_experts, const uint64_t *bits, float decay,
                      float boost, float max_score, uint64_t *counts) {
    ec_active->ema_f32(scores, n_experts, bits, decay, boost, max_score);
    if (counts) {
        const size_t words = (n_experts + 63) / 64;
        for (size_t w = 0; w < words; w++) {
            uint64_t b = bits[w];
            while (b) {
                counts[w * 64 + (size_t)__builtin_ctzll(b)] += 1;
                b &= b - 1;
            }
        }
    }
}

/* A bitmap dedupes ids (an id listed twice counts once) and lets the ISA
 * kernel apply decay, boost and clamp in one vector pass. Every id is
 * checked before anything is written. */
int64_t ec_ema_update_f32(float *scores, size_t n_experts, const int32_t *ids,
                          size_t n_ids, float decay, float boost,
                          float max_score, uint64_t *counts, uint64_t *scratch) {
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= n_experts) return (int64_t)i;
    if (!scratch && n_experts > EC_EMA_STACK_EXPERTS) return -2;
    uint64_t stack_bits[EC_EMA_STACK_EXPERTS / 64];
    uint64_t *bits = scratch ? scratch : stack_bits;
    memset(bits, 0, (n_experts + 63) / 64 * sizeof bits[0]);
    for (size_t i = 0; i < n_ids; i++) bits[ids[i] >> 6] |= 1ULL << (ids[i] & 63);
    ema_apply(scores, n_experts, bits, decay, boost, max_score, counts);
    return -1;
}

/* The same for int64 ids (NumPy's default integer), read in place: no
 * narrowed copy, so an id list from Python costs what an int32 one does. */
int64_t ec_ema_update_f32_i64(float *scores, size_t n_experts, const int64_t *ids,
                              size_t n_ids, float decay, float boost,
                              float max_score, uint64_t *counts, uint64_t *scratch) {
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || (uint64_t)ids[i] >= (uint64_t)n_experts) return (int64_t)i;
    if (!scratch && n_experts > EC_EMA_STACK_EXPERTS) return -2;
    uint64_t stack_bits[EC_EMA_STACK_EXPERTS / 64];
    uint64_t *bits = scratch ? scratch : stack_bits;
    memset(bits, 0, (n_experts + 63) / 64 * sizeof bits[0]);
    for (size_t i = 0; i < n_ids; i++) bits[ids[i] >> 6] |= 1ULL << (ids[i] & 63);
    ema_apply(scores, n_experts, bits, decay, boost, max_score, counts);
    return -1;
}

/* ---- top-k routing ------------------------------------------------------ */

typedef struct {
    const float *logits, *bonus;
    size_t t, e, k;
    int32_t *ids;
    float *weights;
    int64_t bad[EC_MAX_THREADS];
} topk_job;

static void topk_task(void *ctx, size_t task, size_t n_tasks) {
    topk_job *job = ctx;
    const size_t t0 = job->t * task / n_tasks, t1 = job->t * (task + 1) / n_tasks;
    job->bad[task] = t0 < t1 ? ec_active->topk_f32(job->logits, job->bonus, job->e, job->k,
                                                   t0, t1, job->ids, job->weights)
                             : -1;
}

int64_t ec_route_topk_f32(const float *logits, const float *bonus, size_t t,
                          size_t e, size_t k, int32_t *ids, float *weights) {
    /* selection costs about one compare per logit; reuse the linear rate */
    size_t tasks = (size_t)ec_threads_for_work((double)t * e);
    if (tasks > t) tasks = t;
    if (tasks <= 1) return ec_active->topk_f32(logits, bonus, e, k, 0, t, ids, weights);
    topk_job job = {logits, bonus, t, e, k, ids, weights, {0}};
    ec_parallel_run(topk_task, &job, tasks);
    for (size_t i = 0; i < tasks; i++)
        if (job.bad[i] >= 0) return job.bad[i]; /* tasks cover rows in order */
    return -1;
}

/* ---- conversions -------------------------------------------------------- */

void ec_cvt_bf16_f32(const uint16_t *src, float *dst, size_t n) {
    ec_active->cvt_bf16_f32(src, dst, n);
}

void ec_cvt_f16_f32(const uint16_t *src, float *dst, size_t n) {
    ec_active->cvt_f16_f32(src, dst, n);
}
