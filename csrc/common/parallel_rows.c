/*
 * Row-parallel runs for the per-token drivers (norms, RoPE, KV store): rows
 * go out in units taken from a shared counter, UNITS_PER_THREAD per thread,
 * so a worker that is preempted or starts late delays one unit, not a fixed
 * share of the call. Every row is computed the same way whoever takes it.
 */
#include <stdatomic.h>

#include "internal.h"

#define UNITS_PER_THREAD 4

typedef struct {
    ec_rows_fn fn;
    void *ctx;
    size_t m, unit;
    atomic_size_t next;
} rows_job;

static void rows_task(void *ctx, size_t task, size_t n_tasks) {
    (void)task, (void)n_tasks;
    rows_job *job = ctx;
    for (;;) {
        const size_t r0 = atomic_fetch_add_explicit(&job->next, job->unit, memory_order_relaxed);
        if (r0 >= job->m) return;
        job->fn(job->ctx, r0, job->m - r0 < job->unit ? job->m : r0 + job->unit);
    }
}

void ec_parallel_rows(ec_rows_fn fn, void *ctx, size_t m, double work) {
    if (m == 0) return;
    size_t threads = (size_t)ec_threads_for_work(work);
    if (threads > m) threads = m;
    if (threads <= 1) {
        fn(ctx, 0, m);
        return;
    }
    const size_t units = threads * UNITS_PER_THREAD;
    rows_job job = {fn, ctx, m, (m + units - 1) / units, 0};
    atomic_init(&job.next, 0);
    ec_parallel_run(rows_task, &job, threads);
}
