/*
 * Weight quantizers (float32 rows -> GGML blocks), bit for bit the gguf
 * package's reference quantizer, gguf.quants.quantize (NumPy code that
 * mirrors ggml's quantize_row_*_ref). A one-time conversion, so scalar only,
 * threaded over rows. Every step below is the same float32 operation, in
 * the same order, as the NumPy code:
 *
 *   q8_0: d = amax / 127, id = d ? 1/d : 0, q = round-half-away(x id)
 *   q4_0: d = max / -8  (max: the element of largest |x|, first one on
 *         ties), q = trunc(x id + 8.5) clipped to [0, 15]
 *   q5_0: d = max / -16, q = trunc(x id + 16.5) clipped to [0, 31]
 *   q4_1: d = (max - min) / 15, q = trunc((x - min) id + 0.5) in [0, 15]
 *   q5_1: d = (max - min) / 31, q = trunc((x - min) id + 0.5) in [0, 31]
 *   scales (d, min) -> IEEE half as NumPy's astype(float16) (half.h);
 *   f16 likewise; bf16 as gguf's BF16 quantizer.
 *
 * NaN propagates through max/min as in NumPy (a block with a NaN gets a
 * NaN scale). The float -> integer casts follow NumPy on x86-64, where the
 * cast of NaN, +-inf or anything outside int32 gives 0 (cvttss2si's
 * 0x80000000, low byte 0) and other values wrap to their low 8 bits; those
 * only arise for NaN/inf blocks and blocks so small that 1/d overflows.
 */
#include <math.h>

#include "half.h"
#include "internal.h"
#include "qkernels.h"

/* NumPy's float32 -> uint8 / int8 cast on x86-64 (see above). */
static uint8_t numpy_cast_u8(float v) {
    if (!(v >= -2147483648.0f && v < 2147483648.0f)) return 0;
    return (uint8_t)(uint32_t)(int32_t)v;
}

static void put_f16(uint8_t *p, float v) {
    const uint16_t h = ec_f32_to_f16(v);
    memcpy(p, &h, sizeof h);
}

/* NumPy's max / min reductions: the first NaN wins, else the first of equal
 * extremes (which decides the sign of a zero). */
static float block_max(const float *x, size_t n) {
    float m = x[0];
    for (size_t i = 0; i < n && !isnan(m); i++)
        if (isnan(x[i]) || x[i] > m) m = x[i];
    return m;
}

static float block_min(const float *x, size_t n) {
    float m = x[0];
    for (size_t i = 0; i < n && !isnan(m); i++)
        if (isnan(x[i]) || x[i] < m) m = x[i];
    return m;
}

/* The element of largest magnitude (NumPy's abs(x).argmax(): first NaN,
 * else first of equal magnitudes), with its sign. */
static float block_absmax_signed(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) return x[i];
        if (fabsf(x[i]) > fabsf(x[best])) best = i;
    }
    return x[best];
}

void ec_quantize_row_q8_0(const float *x, uint8_t *out, size_t k) {
    for (size_t b = 0; b < k / 32; b++, x += 32, out += 34) {
        float amax = fabsf(x[0]);
        for (int i = 0; i < 32 && !isnan(amax); i++)
            if (isnan(x[i]) || fabsf(x[i]) > amax) amax = fabsf(x[i]);
        const float d = amax / 127.0f, id = d == 0.0f ? 0.0f : 1.0f / d;
        put_f16(out, d);
        for (int i = 0; i < 32; i++) out[2 + i] = numpy_cast_u8(roundf(x[i] * id));
    }
}

/* q4_0 / q5_0: offset = 8.5 / 16.5, top = 15 / 31. Returns q in [0, top]. */
static void sym_codes(const float *x, float divisor, float offset, uint8_t top, uint8_t *q, float *d_out) {
    const float max = block_absmax_signed(x, 32);
    const float d = max / divisor, id = d == 0.0f ? 0.0f : 1.0f / d;
    for (int i = 0; i < 32; i++) {
        const uint8_t v = numpy_cast_u8(truncf(x[i] * id + offset));
        q[i] = v > top ? top : v;
    }
    *d_out = d;
}

/* q4_1 / q5_1: codes of (x - min) / d. */
static void offset_codes(const float *x, float steps, uint8_t top, uint8_t *q, float *d_out, float *min_out) {
    const float max = block_max(x, 32), min = block_min(x, 32);
    const float d = (max - min) / steps, id = d == 0.0f ? 0.0f : 1.0f / d;
    for (int i = 0; i < 32; i++) {
        const uint8_t v = numpy_cast_u8(truncf((x[i] - min) * id + 0.5f));
        q[i] = v > top ? top : v;
    }
    *d_out = d;
    *min_out = min;
}

static void pack_nibbles(const uint8_t *q, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 0x0F) | (q[j + 16] << 4));
}

static void pack_high_bits(const uint8_t *q, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)(q[j] >> 4) << j;
    memcpy(qh, &h, sizeof h);
}

static void q4_0_row(const float *x, uint8_t *out, size_t k) {
    for (size_t b = 0; b < k / 32; b++, x += 32, out += 18) {
        uint8_t q[32];
        float d;
        sym_codes(x, -8.0f, 8.5f, 15, q, &d);
        put_f16(out, d);
        pack_nibbles(q, out + 2);
    }
}

static void q5_0_row(const float *x, uint8_t *out, size_t k) {
    for (size_t b = 0; b < k / 32; b++, x += 32, out += 22) {
        uint8_t q[32];
        float d;
        sym_codes(x, -16.0f, 16.5f, 31, q, &d);
        put_f16(out, d);
        pack_high_bits(q, out + 2);
        pack_nibbles(q, out + 6);
    }
}

static void q4_1_row(const float *x, uint8_t *out, size_t k) {
    for (size_t b = 0; b < k / 32; b++, x += 32, out += 20) {
        uint8_t q[32];
        float d, min;
        offset_codes(x, 15.0f, 15, q, &d, &min);
        put_f16(out, d);
        put_f16(out + 2, min);
        pack_nibbles(q, out + 4);
    }
}

static void q5_1_row(const float *x, uint8_t *out, size_t k) {
    for (size_t b = 0; b < k / 32; b++, x += 32, out += 24) {
        uint8_t q[32];
        float d, min;
        offset_codes(x, 31.0f, 31, q, &d, &min);
        put_f16(out, d);
        put_f16(out + 2, min);
        pack_high_bits(q, out + 4);
        pack_nibbles(q, out + 8);
    }
}

static void f16_row(const float *x, uint8_t *out, size_t k) {
    for (size_t i = 0; i < k; i++) put_f16(out + 2 * i, x[i]);
}

static void bf16_row(const float *x, uint8_t *out, size_t k) {
    for (size_t i = 0; i < k; i++) {
        const uint16_t h = ec_f32_to_bf16(x[i]);
        memcpy(out + 2 * i, &h, sizeof h);
    }
}

typedef void (*quantize_row_fn)(const float *x, uint8_t *out, size_t k);

static quantize_row_fn quantizer(int wtype) {
    switch (wtype) {
    case EC_WT_Q8_0: return ec_quantize_row_q8_0;
    case EC_WT_Q4_0: return q4_0_row;
    case EC_WT_Q4_1: return q4_1_row;
    case EC_WT_Q5_0: return q5_0_row;
    case EC_WT_Q5_1: return q5_1_row;
    case EC_WT_F16: return f16_row;
    case EC_WT_BF16: return bf16_row;
    default: return NULL;
    }
}

typedef struct {
    quantize_row_fn fn;
    const float *x;
    uint8_t *out;
    size_t rows, k, row_bytes;
} quantize_job;

static void quantize_task(void *ctx, size_t task, size_t n_tasks) {
    const quantize_job *j = ctx;
    for (size_t r = j->rows * task / n_tasks; r < j->rows * (task + 1) / n_tasks; r++)
        j->fn(j->x + r * j->k, j->out + r * j->row_bytes, j->k);
}

int ec_quantize(int wtype, const float *x, size_t rows, size_t k, void *out) {
    const ec_wtype_info *t = ec_wtype_find(wtype);
    if (!t) return EC_ERR_WTYPE;
    const quantize_row_fn fn = quantizer(wtype);
    if (!fn || !t->can_quantize) return EC_ERR_UNSUPPORTED;
    if (k % t->block_elems) return EC_ERR_K;
    quantize_job job = {fn, x, out, rows, k, ec_wtype_row_bytes(t, k)};
    /* ~ a dozen operations per element: count each as a few multiply-adds */
    size_t tasks = (size_t)ec_threads_for_work(4.0 * (double)rows * (double)k);
    if (tasks > rows) tasks = rows;
    if (tasks <= 1) quantize_task(&job, 0, 1);
    else ec_parallel_run(quantize_task, &job, tasks);
    return EC_OK;
}
