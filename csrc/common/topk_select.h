/*
 * Row-wise top-k selection shared by every ISA: the ISA files only differ in
 * how fast they skip logits that cannot enter the current top k.
 *
 * The output row doubles as the working buffer: ids[0..k) and vals[0..k)
 * (the weights row) hold the best adjusted scores so far in descending
 * order, seeded with (-inf, -1). A logit enters only if strictly greater
 * than the k-th best, and is placed after every equal score, so ties keep
 * the lower id. NaN compares false, so it never enters (it counts as -inf).
 */
#ifndef EDGECORE_TOPK_SELECT_H
#define EDGECORE_TOPK_SELECT_H

#include <math.h>
#include <stdint.h>

/* Rows up to this many experts may be copied to the stack by SIMD tiers. */
#define EC_TOPK_PASS_MAX_E 1024

static inline void ec_topk_reset(float *vals, int32_t *ids, size_t k) {
    for (size_t j = 0; j < k; j++) {
        vals[j] = -INFINITY;
        ids[j] = -1;
    }
}

/* Precondition: v > vals[k - 1]. */
static inline void ec_topk_insert(float *vals, int32_t *ids, size_t k, float v, int32_t id) {
    size_t p = k - 1;
    while (p > 0 && vals[p - 1] < v) {
        vals[p] = vals[p - 1];
        ids[p] = ids[p - 1];
        p--;
    }
    vals[p] = v;
    ids[p] = id;
}

/* Replace the adjusted scores by the softmax of the chosen original logits.
 * Returns 0, or -1 when a slot is empty or its logit is not finite. */
static inline int ec_topk_finish(const float *row, float *weights, const int32_t *ids, size_t k) {
    float mx = -INFINITY;
    for (size_t j = 0; j < k; j++) {
        if (ids[j] < 0 || !isfinite(row[ids[j]])) return -1;
        if (row[ids[j]] > mx) mx = row[ids[j]];
    }
    float sum = 0.0f;
    for (size_t j = 0; j < k; j++) {
        weights[j] = expf(row[ids[j]] - mx);
        sum += weights[j];
    }
    const float inv = 1.0f / sum;
    for (size_t j = 0; j < k; j++) weights[j] *= inv;
    return 0;
}

#endif
