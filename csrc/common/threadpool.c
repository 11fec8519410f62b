/*
 * A small persistent thread pool.
 *
 * Why not OpenMP: a wheel would have to bundle libgomp, and a second OpenMP
 * runtime in the same process as PyTorch's (tests and benchmarks import
 * both) oversubscribes cores and has deadlocked after fork. This pool is
 * ~200 lines, fork-safe (pthread_atfork), and its dispatch cost is measured
 * at run time so small calls stay on the calling thread.
 *
 * Protocol: one job at a time (`busy`). The caller writes the job, bumps
 * `generation`, runs task 0 itself and waits for `pending` to drop to zero.
 * Every worker takes part in every generation (it runs task w if w < n_tasks)
 * so no worker can skip a generation or see a half-written job. Workers spin
 * briefly (decode loops issue calls microseconds apart), then sleep on a
 * condition variable. A second Python thread that finds the pool busy runs
 * its whole call on itself: results never depend on the split.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ITERS 20000 /* ~50-100 us of polling before sleeping */

static struct {
    pthread_mutex_t busy;  /* held by the caller for a whole parallel run */
    pthread_mutex_t sleep; /* guards the condition variable */
    pthread_cond_t wake;
    pthread_t threads[EC_MAX_THREADS];
    /* generation current when worker i was created: it must not treat a job
     * posted right after its creation as already seen */
    uint_fast64_t start_gen[EC_MAX_THREADS];
    int n_workers; /* started workers: threads - 1 */
    atomic_uint_fast64_t generation;
    atomic_int sleepers;
    atomic_size_t pending;
    /* the current job, written before `generation` is bumped */
    ec_task_fn fn;
    void *ctx;
    size_t n_tasks;
    int quit_from; /* workers with index >= quit_from exit after this job */
} pool = {
    .busy = PTHREAD_MUTEX_INITIALIZER,
    .sleep = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .quit_from = EC_MAX_THREADS,
};

static atomic_int requested_threads = 1;

static void *worker_main(void *arg) {
    const size_t index = (size_t)(uintptr_t)arg; /* 1 .. n_workers */
    uint_fast64_t seen = pool.start_gen[index - 1];
    for (;;) {
        uint_fast64_t gen;
        int spins = 0;
        while ((gen = atomic_load(&pool.generation)) == seen) {
            if (++spins < SPIN_ITERS) {
                /* let a thread sharing this CPU (the caller, a peer) run */
                if (spins % 256 == 0) sched_yield();
                else cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool.sleep);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((gen = atomic_load(&pool.generation)) == seen)
                pthread_cond_wait(&pool.wake, &pool.sleep);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.sleep);
            break;
        }
        seen = gen;
        const int quit = (int)index >= pool.quit_from;
        if (!quit && index < pool.n_tasks) pool.fn(pool.ctx, index, pool.n_tasks);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
        if (quit) return NULL;
    }
}

/* Publish the job in `pool` and wait for every worker. Caller holds busy. */
static void run_generation(size_t n_tasks) {
    pool.n_tasks = n_tasks;
    atomic_store(&pool.pending, (size_t)pool.n_workers);
    atomic_fetch_add(&pool.generation, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep);
    }
    if (n_tasks > 0 && pool.fn) pool.fn(pool.ctx, 0, n_tasks);
    /* Yield early: a worker woken by the broadcast above is often placed on
     * this very CPU (wake-affine), and a caller that keeps spinning holds it
     * off until the scheduler preempts us, a whole time slice (~2-3 ms per
     * call, measured). sched_yield costs ~0.3 us when nothing else waits. */
    unsigned spins = 0;
    while (atomic_load_explicit(&pool.pending, memory_order_acquire) != 0) {
        if (++spins < 64) cpu_relax();
        else sched_yield();
    }
}

/* Match the worker count to the requested thread count. Caller holds busy. */
static void resize_pool(int threads) {
    const int want = threads - 1;
    if (want < pool.n_workers) {
        const int old = pool.n_workers;
        pool.fn = NULL;
        pool.quit_from = want + 1;
        run_generation(0);
        for (int i = want; i < old; i++) pthread_join(pool.threads[i], NULL);
        pool.n_workers = want;
        pool.quit_from = EC_MAX_THREADS;
    }
    while (pool.n_workers < want) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        const int i = pool.n_workers;
        pool.start_gen[i] = atomic_load(&pool.generation);
        const int rc = pthread_create(&pool.threads[i], &attr, worker_main,
                                      (void *)(uintptr_t)(i + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* run with what we have; never fail a kernel */
        pool.n_workers++;
    }
}

void ec_parallel_run(ec_task_fn fn, void *ctx, size_t n_tasks) {
    if (n_tasks <= 1 || pthread_mutex_trylock(&pool.busy) != 0) {
        for (size_t i = 0; i < n_tasks; i++) fn(ctx, i, n_tasks);
        return;
    }
    resize_pool(atomic_load(&requested_threads));
    if ((size_t)pool.n_workers + 1 < n_tasks) {
        /* fewer workers than tasks (thread creation failed): caller helps */
        for (size_t i = 0; i < n_tasks; i++) fn(ctx, i, n_tasks);
    } else {
        pool.fn = fn;
        pool.ctx = ctx;
        run_generation(n_tasks);
    }
    pthread_mutex_unlock(&pool.busy);
}

/* ---- fork safety -------------------------------------------------------- */

static void atfork_prepare(void) { pthread_mutex_lock(&pool.busy); }
static void atfork_parent(void) { pthread_mutex_unlock(&pool.busy); }
static void atfork_child(void) {
    /* Only the forking thread survives: forget the workers. */
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.sleep, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pool.n_workers = 0;
    atomic_store(&pool.sleepers, 0);
    atomic_store(&pool.pending, 0);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- thread count and calibration --------------------------------------- */

static pthread_mutex_t calib_lock = PTHREAD_MUTEX_INITIALIZER;
static ec_thread_calibration calib;
static int calib_tier = -1, calib_threads = -1;
/* Lock-free fast path for the per-call decision: the (tier, threads) key the
 * threshold was measured for, and the threshold itself. Routing calls are
 * ~100 ns of work; a mutex per call would be a measurable share of it. */
static atomic_int fast_key = -1;
static _Atomic double fast_min_macs;

int ec_get_num_threads(void) { return atomic_load(&requested_threads); }

int ec_set_num_threads(int n) {
    if (n < 1 || n > EC_MAX_THREADS) return -1;
    pthread_once(&atfork_once, register_atfork);
    atomic_store(&requested_threads, n);
    return 0;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void noop_task(void *ctx, size_t i, size_t n) { (void)ctx, (void)i, (void)n; }

/* Calibration problem: small enough for L2, large enough to time. */
#define CAL_M 4
#define CAL_N 64
#define CAL_K 256
static float cal_x[CAL_M * CAL_K], cal_w[CAL_N * CAL_K], cal_y[CAL_M * CAL_N];

static void calibrate_locked(int threads) {
    double samples[64];
    for (int i = 0; i < 16; i++) ec_parallel_run(noop_task, NULL, threads); /* wake */
    for (int i = 0; i < 64; i++) {
        const double t0 = now_ns();
        ec_parallel_run(noop_task, NULL, threads);
        samples[i] = now_ns() - t0;
    }
    calib.dispatch_ns = median(samples, 64);

    for (int i = 0; i < CAL_M * CAL_K; i++) cal_x[i] = (float)((i % 7) - 3) * 0.25f;
    for (int i = 0; i < CAL_N * CAL_K; i++) cal_w[i] = (float)((i % 5) - 2) * 0.125f;
    const ec_linear_args a = {cal_x, cal_w, NULL, cal_y, CAL_M, CAL_N, CAL_K, 0, EC_ACT_NONE};
    for (int i = 0; i < 32; i++) {
        const double t0 = now_ns();
        ec_linear_f32_serial(&a);
        samples[i] = now_ns() - t0;
    }
    const double macs = (double)CAL_M * CAL_N * CAL_K;
    calib.linear_macs_per_ns = macs / fmax(median(samples, 32), 1.0);
    /* Splitting across T threads wins when macs/rate * (1 - 1/T) > dispatch.
     * Require twice the break-even work so the gain is real, not noise. */
    calib.min_parallel_macs =
        2.0 * calib.dispatch_ns * calib.linear_macs_per_ns * threads / (threads - 1);
    calib.calibrated = 1;
    calib_tier = ec_active_tier();
    calib_threads = threads;
    atomic_store(&fast_min_macs, calib.min_parallel_macs);
    atomic_store(&fast_key, calib_tier * (EC_MAX_THREADS + 1) + threads);
}

static void ensure_calibrated(int threads) {
    pthread_mutex_lock(&calib_lock);
    if (calib_tier != ec_active_tier() || calib_threads != threads)
        calibrate_locked(threads);
    pthread_mutex_unlock(&calib_lock);
}

int ec_threads_for_work(double macs) {
    const int threads = ec_get_num_threads();
    if (threads <= 1) return 1;
    if (atomic_load(&fast_key) != ec_active_tier() * (EC_MAX_THREADS + 1) + threads)
        ensure_calibrated(threads);
    return macs >= atomic_load(&fast_min_macs) ? threads : 1;
}

ec_thread_calibration ec_thread_calibration_get(void) {
    const int threads = ec_get_num_threads();
    if (threads > 1) ensure_calibrated(threads);
    pthread_mutex_lock(&calib_lock);
    ec_thread_calibration c = calib;
    pthread_mutex_unlock(&calib_lock);
    if (threads <= 1) c.calibrated = 0;
    return c;
}
