/*
 * f16 / bf16 weights, AVX-512: the gemm micro-kernel (x stays float32) and
 * the row dequantizers of the types the embedding rows come in (f16, bf16,
 * q8_0, q4_0, q4_1).
 *
 * gemm: 4 x rows by 4 weight rows, one 16-lane accumulator per output;
 * per 16 elements of K, w widened exactly to float32 and one FMA; the tail
 * of K through masked loads (the masks depend on k only); at the end each
 * accumulator is summed in a fixed tree. Every output's operations depend
 * only on its x row, weight row and k, so results are M-, tile- and
 * thread-invariant, but the order is not the scalar kernel's element by
 * element sum (docs/quantization.md: the float types are within the
 * float32 summation bound of the reference, not bitwise the scalar kernel).
 *
 * The dequantizers do the gguf package's (and the scalar kernels') exact
 * product and single rounding per element, so they are bitwise equal.
 */
#include <immintrin.h>

#include "../../common/qblocks.h"
#include "../../common/qkernels.h"
#include "prefetch_avx512.h"

#define EC_INLINE static inline __attribute__((always_inline))
#define HMR 4
#define HNR 4

void ec_cvt_f16_f32_avx512(const uint16_t *src, float *dst, size_t n);
void ec_cvt_bf16_f32_avx512(const uint16_t *src, float *dst, size_t n);

EC_INLINE __m512 widen(int bf16, __m256i h) {
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}

/* The 128 bytes this step's 16 elements of the tile's 4 rows cover, 32
 * rows on, at every mr (prefetch_avx512.h). */
EC_INLINE void prefetch_ahead(const void *w, size_t ws, size_t l) {
    ec_prefetch_rows_ahead(w, ws, l * 2 * HNR, 2 * HNR * 16);
}

EC_INLINE void half_tile(int bf16, size_t mr, size_t k, size_t nr, const void *x, size_t xs, const void *w,
                         size_t ws, float *y, size_t ldy) {
    const uint16_t *wr[HNR];
    const float *xr[HMR];
    for (size_t j = 0; j < HNR; j++) wr[j] = (const uint16_t *)((const char *)w + (j < nr ? j : 0) * ws);
    for (size_t i = 0; i < mr; i++) xr[i] = (const float *)((const char *)x + i * xs);
    __m512 acc[HMR][HNR];
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < HNR; j++) acc[i][j] = _mm512_setzero_ps();
    size_t l = 0;
    for (; l + 16 <= k; l += 16) {
        prefetch_ahead(w, ws, l);
        __m512 wv[HNR];
        for (size_t j = 0; j < HNR; j++) wv[j] = widen(bf16, _mm256_loadu_si256((const __m256i *)(wr[j] + l)));
        for (size_t i = 0; i < mr; i++) {
            const __m512 xv = _mm512_loadu_ps(xr[i] + l);
            for (size_t j = 0; j < HNR; j++) acc[i][j] = _mm512_fmadd_ps(wv[j], xv, acc[i][j]);
        }
    }
    if (l < k) {
        const __mmask16 tail = (__mmask16)((1u << (k - l)) - 1);
        __m512 wv[HNR];
        for (size_t j = 0; j < HNR; j++) wv[j] = widen(bf16, _mm256_maskz_loadu_epi16(tail, wr[j] + l));
        for (size_t i = 0; i < mr; i++) {
            const __m512 xv = _mm512_maskz_loadu_ps(tail, xr[i] + l);
            for (size_t j = 0; j < HNR; j++) acc[i][j] = _mm512_fmadd_ps(wv[j], xv, acc[i][j]);
        }
    }
    for (size_t i = 0; i < mr; i++)
        for (size_t j = 0; j < nr; j++) y[i * ldy + j] = _mm512_reduce_add_ps(acc[i][j]);
}

EC_INLINE void half_gemm(int bf16, size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w,
                         size_t ws, float *y, size_t ldy) {
    switch (mr) {
    case 1: half_tile(bf16, 1, k, nr, x, xs, w, ws, y, ldy); break;
    case 2: half_tile(bf16, 2, k, nr, x, xs, w, ws, y, ldy); break;
    case 3: half_tile(bf16, 3, k, nr, x, xs, w, ws, y, ldy); break;
    default: half_tile(bf16, 4, k, nr, x, xs, w, ws, y, ldy); break;
    }
}

void ec_qgemm_f16_avx512(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                         float *y, size_t ldy) {
    half_gemm(0, k, mr, nr, x, xs, w, ws, y, ldy);
}

void ec_qgemm_bf16_avx512(size_t k, size_t mr, size_t nr, const void *x, size_t xs, const void *w, size_t ws,
                          float *y, size_t ldy) {
    half_gemm(1, k, mr, nr, x, xs, w, ws, y, ldy);
}

/* ---- row dequantizers ---------------------------------------------------------- */

void ec_dequant_f16_avx512(const void *w, float *out, size_t k) { ec_cvt_f16_f32_avx512(w, out, k); }

void ec_dequant_bf16_avx512(const void *w, float *out, size_t k) { ec_cvt_bf16_f32_avx512(w, out, k); }

/* 16 int8 codes -> d * q (one rounding), + m when `offset` (a second) */
EC_INLINE void store16(float *out, __m128i q, __m512 d, __m512 m, int offset) {
    __m512 v = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
    if (offset) v = _mm512_add_ps(v, m);
    _mm512_storeu_ps(out, v);
}

void ec_dequant_q8_0_avx512(const void *w, float *out, size_t k) {
    const uint8_t *b = w;
    for (size_t i = 0; i < k / 32; i++, b += 34, out += 32) {
        const __m512 d = _mm512_set1_ps(ec_read_f16(b)), zero = _mm512_setzero_ps();
        store16(out, _mm_loadu_si128((const __m128i *)(b + 2)), d, zero, 0);
        store16(out + 16, _mm_loadu_si128((const __m128i *)(b + 18)), d, zero, 0);
    }
}

/* q4_0 (codes - 8) and q4_1 (codes, + m): element j low nibble of byte j, j + 16 high */
EC_INLINE void dequant_q4(const uint8_t *b, float *out, size_t k, int offset) {
    const size_t bb = offset ? 20 : 18, qs = offset ? 4 : 2;
    const __m128i nib = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(offset ? 0 : 8);
    for (size_t i = 0; i < k / 32; i++, b += bb, out += 32) {
        const __m512 d = _mm512_set1_ps(ec_read_f16(b));
        const __m512 m = offset ? _mm512_set1_ps(ec_read_f16(b + 2)) : _mm512_setzero_ps();
        const __m128i v = _mm_loadu_si128((const __m128i *)(b + qs));
        store16(out, _mm_sub_epi8(_mm_and_si128(v, nib), eight), d, m, offset);
        store16(out + 16, _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), nib), eight), d, m, offset);
    }
}

void ec_dequant_q4_0_avx512(const void *w, float *out, size_t k) { dequant_q4(w, out, k, 0); }

void ec_dequant_q4_1_avx512(const void *w, float *out, size_t k) { dequant_q4(w, out, k, 1); }
