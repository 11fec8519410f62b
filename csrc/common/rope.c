/*
 * RoPE driver: every position is checked against the table before anything
 * is written, then rows are rotated in parallel, each with the cos/sin row
 * of its own position (rows of a batch belong to different sequences).
 */
#include "internal.h"

typedef struct {
    float *x;
    size_t row_stride, heads, head_dim, rot;
    const void *positions;
    int wide;
    const float *cos, *sin;
    int interleaved;
} rope_job;

static int64_t position(const void *positions, int wide, size_t r) {
    return wide ? ((const int64_t *)positions)[r] : (int64_t)((const int32_t *)positions)[r];
}

static void rope_task(void *ctx, size_t r0, size_t r1) {
    const rope_job *j = ctx;
    const size_t half = j->rot / 2;
    for (size_t r = r0; r < r1; r++) {
        const size_t p = (size_t)position(j->positions, j->wide, r);
        ec_active->rope_row(j->x + r * j->row_stride, j->heads, j->head_dim, j->rot, j->cos + p * half,
                            j->sin + p * half, j->interleaved);
    }
}

int ec_rope_f32(float *x, size_t m, size_t row_stride, size_t heads, size_t head_dim,
                size_t rotary_dim, const void *positions, int pos_bytes, const float *cos,
                const float *sin, size_t max_pos, int interleaved, size_t *bad_row) {
    if (rotary_dim == 0 || rotary_dim % 2 || rotary_dim > head_dim || heads == 0 ||
        row_stride < heads * head_dim || (pos_bytes != 4 && pos_bytes != 8))
        return EC_ERR_ARG;
    if (m == 0) return EC_OK;
    if (!x || !positions || !cos || !sin) return EC_ERR_ARG;
    const int wide = pos_bytes == 8;
    for (size_t r = 0; r < m; r++) {
        const int64_t p = position(positions, wide, r);
        if (p < 0 || (uint64_t)p >= max_pos) {
            if (bad_row) *bad_row = r;
            return EC_ERR_POSITION;
        }
    }
    const rope_job job = {x, row_stride, heads, head_dim, rotary_dim, positions, wide, cos, sin, interleaved};
    ec_parallel_rows(rope_task, (void *)&job, m, (double)m * (double)heads * (double)rotary_dim);
    return EC_OK;
}
