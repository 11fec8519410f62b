/*
 * Row dequantization (embedding lookups, checks) and the public activation
 * quantizer: thin loops over the active tier's row functions.
 */
#include "internal.h"
#include "qkernels.h"

typedef struct {
    ec_dequant_fn fn;
    const char *w;
    size_t row_bytes, k, n_sel;
    const int64_t *rows;
    float *out;
} dequant_job;

static void dequant_task(void *ctx, size_t task, size_t n_tasks) {
    const dequant_job *j = ctx;
    for (size_t i = j->n_sel * task / n_tasks; i < j->n_sel * (task + 1) / n_tasks; i++) {
        const size_t row = j->rows ? (size_t)j->rows[i] : i;
        j->fn(j->w + row * j->row_bytes, j->out + i * j->k, j->k);
    }
}

int ec_dequantize_rows(int wtype, const void *w, size_t n_rows, size_t k, const int64_t *rows,
                       size_t n_sel, float *out, size_t *bad) {
    const int index = ec_wtype_index(wtype);
    if (index < 0) return EC_ERR_WTYPE;
    const ec_qresolved *r = ec_qresolved_at(index);
    if (k % r->info->block_elems) return EC_ERR_K;
    if (rows) {
        for (size_t i = 0; i < n_sel; i++)
            if (rows[i] < 0 || (uint64_t)rows[i] >= n_rows) {
                if (bad) *bad = i;
                return EC_ERR_ROW;
            }
    } else {
        n_sel = n_rows;
    }
    dequant_job job = {r->dequant, w, ec_wtype_row_bytes(r->info, k), k, n_sel, rows, out};
    size_t tasks = (size_t)ec_threads_for_work((double)n_sel * (double)k);
    if (tasks > n_sel) tasks = n_sel;
    if (tasks <= 1) dequant_task(&job, 0, 1);
    else ec_parallel_run(dequant_task, &job, tasks);
    return EC_OK;
}

int ec_quantize_activations(int format, const float *x, size_t m, size_t k, void *out) {
    const ec_actquant_fn fn = ec_qactquant(format);
    if (!fn) return EC_ERR_ARG;
    const size_t row = ec_act_row_bytes(format, k);
    if (row == 0 && k != 0) return EC_ERR_K;
    for (size_t i = 0; i < m; i++) fn(x + i * k, (char *)out + i * row, k);
    return EC_OK;
}
