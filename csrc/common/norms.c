/*
 * RMSNorm and LayerNorm drivers: check the arguments, split the rows across
 * threads, run the active tier's row kernel. Rows are independent, so a
 * row's result does not depend on the split, the thread count or M.
 */
#include "internal.h"

typedef struct {
    const ec_norm_args *args;
    ec_norm_rows_fn fn;
} norm_job;

static void norm_task(void *ctx, size_t r0, size_t r1) {
    const norm_job *job = ctx;
    job->fn(job->args, r0, r1);
}

static int run_norm(ec_norm_rows_fn fn, const ec_norm_args *a, size_t m, int flags, double passes) {
    if (!a->x || !a->w || !a->out || a->d == 0 || (a->delta && !a->sum) || (flags & ~EC_NORM_UNIT_OFFSET))
        return EC_ERR_ARG;
    const norm_job job = {a, fn};
    ec_parallel_rows(norm_task, (void *)&job, m, (double)m * (double)a->d * passes);
    return EC_OK;
}

int ec_rms_norm_f32(const float *x, const float *delta, float *sum, const float *w, float *out,
                    size_t m, size_t d, float eps, int flags) {
    const ec_norm_args a = {x, delta, sum, w, NULL, out, d, eps, (flags & EC_NORM_UNIT_OFFSET) != 0};
    return run_norm(ec_active->rms_norm_rows, &a, m, flags, 2.0);
}

int ec_layer_norm_f32(const float *x, const float *delta, float *sum, const float *w,
                      const float *b, float *out, size_t m, size_t d, float eps, int flags) {
    const ec_norm_args a = {x, delta, sum, w, b, out, d, eps, (flags & EC_NORM_UNIT_OFFSET) != 0};
    return run_norm(ec_active->layer_norm_rows, &a, m, flags, 3.0);
}
