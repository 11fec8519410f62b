/*
 * Decode-time weight prefetch for the avx512 gemm micro-kernels (the
 * 32-block types in qgemm_avx512.h, the k-quants, f16/bf16 in
 * qhalf_avx512.c). A tile reads its weight rows in step, block by block:
 * 16 (4 for f16/bf16) row-long streams that the hardware prefetcher does
 * not pick up, while the rows further on are one contiguous range. So per
 * block each kernel prefetches the same slice of the rows EC_PREFETCH_ROWS
 * ahead into L2, whatever mr: with M at most one M tile (batched decode,
 * M = 3..8) the single pass over each panel is the one that reads the
 * weights from memory, and when later M tiles find the panel in cache the
 * prefetches cost little. Limiting them to mr <= 2, as first done, left
 * batched decode latency-bound: on an AMD Zen 4 (2 threads, cold weights)
 * prefetching at every mr made M = 4 and 8 1.5-2.3x faster for the
 * 32-block types, the k-quants and f16, and prefill at M = 128 unchanged
 * (1.0-1.06x). A prefetch past the end of the matrix does not fault.
 *
 * Timed on an Intel Xeon (Sapphire Rapids class, 1 thread, cold weights,
 * bench_qlinear): the avx2 tier's choice (the next tile, into L1) leaves
 * q4_1 576x49152 at 2.0 ms and q8_0 at 3.3 ms, about half the read
 * bandwidth, as L1's few fill buffers bound the misses in flight; 32 rows
 * (two 16-row tiles) ahead into L2 (prefetcht1) gives 1.7 and 2.6 ms; one
 * tile into L2, or farther (3, 4, 8 tiles), or L2 plus L1 for the next
 * tile, no better.
 *
 * On AMD the same prefetches are non-temporal (prefetchnta; chosen from the
 * CPU vendor at load, ec_weight_prefetch_nta): a decode step streams every
 * weight once, and a non-temporal line does not push the activations,
 * the KV cache and the next tiles' rows out of L2 and L3. Zen 4 (2 threads,
 * SmolLM2 Q4_1, in-process A/B of the two builds, 4 interleaved rounds):
 * decode 1.04x on 1 thread and 1.10x on 2, prefill of 128 tokens
 * unchanged. Not timed on an Intel core, so Intel keeps the hint measured
 * there.
 */
#ifndef EDGECORE_PREFETCH_AVX512_H
#define EDGECORE_PREFETCH_AVX512_H

#include <immintrin.h>
#include <stddef.h>

#include "../../common/qkernels.h"

#define EC_PREFETCH_ROWS 32

/* bytes [off, off + bytes) of the weights EC_PREFETCH_ROWS rows of ws bytes
 * ahead of w: into L2, or non-temporally on AMD (a branch the predictor
 * never misses) */
static inline __attribute__((always_inline)) void ec_prefetch_rows_ahead(const void *w, size_t ws, size_t off,
                                                                         size_t bytes) {
    const char *ahead = (const char *)w + EC_PREFETCH_ROWS * ws + off;
    if (ec_weight_prefetch_nta) {
        for (size_t l = 0; l < bytes; l += 64) _mm_prefetch(ahead + l, _MM_HINT_NTA);
    } else {
        for (size_t l = 0; l < bytes; l += 64) _mm_prefetch(ahead + l, _MM_HINT_T1);
    }
}

#endif /* EDGECORE_PREFETCH_AVX512_H */
