/*
 * Forced-include shim (gcc -include) for compiling the csrc/x86/avx512
 * sources on a CPU without AVX-512, for the emulated check in
 * test_avx512_emulated.py. Test-only: never part of the package build.
 *
 * The kernels are compiled with -mavx2 -mfma -mf16c (no -mavx512*), so every
 * AVX2/FMA/F16C intrinsic is the real instruction, and SIMDe
 * (SIMDE_ENABLE_NATIVE_ALIASES) turns each _mm512_* / __m512 / __mmask16 name
 * into its portable implementation, built on those native 256-bit halves.
 * <immintrin.h> comes first so that its declarations are not rewritten by
 * SIMDe's alias macros; an intrinsic that neither SIMDe nor this file
 * provides then still resolves to GCC's AVX-512 builtin and fails to compile
 * ("target specific option mismatch"): nothing is silently skipped.
 *
 * Below: the intrinsics the kernels use that Debian's SIMDe (0.7.x) lacks,
 * written from the Intel SDM definitions, lane by lane or on native halves.
 * They replace SIMDe's versions unconditionally (a newer SIMDe has some), so
 * the emulation is the same whichever SIMDe is installed. Masked loads and
 * stores in particular must touch only the active lanes, as the hardware
 * does: a whole-vector load plus blend would hide (or fake) an access past
 * the end of a buffer, and the harness puts every buffer against a guard page
 * (SIMDe 0.8.2's _mm512_mask_storeu_ps even writes zeros to the inactive
 * lanes). The other definitions here were checked against SIMDe 0.8.2's on
 * random inputs and agree bit for bit.
 */
#ifndef EDGECORE_TEST_SIMDE_AVX512_H
#define EDGECORE_TEST_SIMDE_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#define EMU_INLINE static inline __attribute__((always_inline, unused))

/* ---- masked memory operations: active lanes only ----------------------- */

EMU_INLINE simde__m512 emu_mm512_maskz_loadu_ps(simde__mmask16 k, const void *p) {
    simde__m512_private r;
    for (int i = 0; i < 16; i++) r.f32[i] = ((k >> i) & 1) ? ((const float *)p)[i] : 0.0f;
    return simde__m512_from_private(r);
}

EMU_INLINE simde__m512 emu_mm512_mask_loadu_ps(simde__m512 src, simde__mmask16 k, const void *p) {
    simde__m512_private r = simde__m512_to_private(src);
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) r.f32[i] = ((const float *)p)[i];
    return simde__m512_from_private(r);
}

EMU_INLINE void emu_mm512_mask_storeu_ps(void *p, simde__mmask16 k, simde__m512 v) {
    const simde__m512_private a = simde__m512_to_private(v);
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) ((float *)p)[i] = a.f32[i];
}

EMU_INLINE __m256i emu_mm256_maskz_loadu_epi16(simde__mmask16 k, const void *p) {
    uint16_t lanes[16];
    for (int i = 0; i < 16; i++) lanes[i] = ((k >> i) & 1) ? ((const uint16_t *)p)[i] : 0;
    return _mm256_loadu_si256((const __m256i *)lanes);
}

EMU_INLINE void emu_mm_mask_storeu_ps(void *p, __mmask8 k, __m128 v) {
    float lanes[4];
    _mm_storeu_ps(lanes, v);
    for (int i = 0; i < 4; i++)
        if ((k >> i) & 1) ((float *)p)[i] = lanes[i];
}

EMU_INLINE void emu_mm256_mask_storeu_epi16(void *p, simde__mmask16 k, __m256i v) {
    uint16_t lanes[16];
    _mm256_storeu_si256((__m256i *)lanes, v);
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) ((uint16_t *)p)[i] = lanes[i];
}

/* ---- conversions and lane moves ----------------------------------------- */

/* VCVTPS2PH on 16 lanes is the F16C conversion of each half (imm: rounding) */
#define emu_mm512_cvtps_ph(v, imm)                                                                  \
    _mm256_set_m128i(_mm256_cvtps_ph(simde__m512_to_private(v).m256[1], (imm)),                     \
                     _mm256_cvtps_ph(simde__m512_to_private(v).m256[0], (imm)))

/* rounding per MXCSR (nearest-even by default); 0x80000000 when out of range */
EMU_INLINE simde__m512i emu_mm512_cvtps_epi32(simde__m512 v) {
    const simde__m512_private a = simde__m512_to_private(v);
    simde__m512i_private r;
    for (int i = 0; i < 16; i++) r.i32[i] = _mm_cvtss_si32(_mm_set_ss(a.f32[i]));
    return simde__m512i_from_private(r);
}

/* VCVTPH2PS is the F16C conversion on 16 lanes */
EMU_INLINE simde__m512 emu_mm512_cvtph_ps(__m256i h) {
    simde__m512_private r;
    r.m256[0] = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    r.m256[1] = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
    return simde__m512_from_private(r);
}

EMU_INLINE simde__m512i emu_mm512_cvtepu16_epi32(__m256i h) {
    simde__m512i_private r;
    r.m256i[0] = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(h));
    r.m256i[1] = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1));
    return simde__m512i_from_private(r);
}

EMU_INLINE __m256 emu_mm512_extractf32x8_ps(simde__m512 v, int imm) {
    return simde__m512_to_private(v).m256[imm & 1];
}

EMU_INLINE simde__m512 emu_mm512_zextps256_ps512(__m256 v) {
    simde__m512_private r;
    r.m256[0] = v;
    r.m256[1] = _mm256_setzero_ps();
    return simde__m512_from_private(r);
}

EMU_INLINE float emu_mm512_cvtss_f32(simde__m512 v) { return simde__m512_to_private(v).f32[0]; }

/* 128-bit lanes: a[imm[1:0]], a[imm[3:2]], b[imm[5:4]], b[imm[7:6]] */
EMU_INLINE simde__m512 emu_mm512_shuffle_f32x4(simde__m512 a, simde__m512 b, int imm) {
    const simde__m512_private pa = simde__m512_to_private(a), pb = simde__m512_to_private(b);
    simde__m512_private r;
    r.m128[0] = pa.m128[imm & 3];
    r.m128[1] = pa.m128[(imm >> 2) & 3];
    r.m128[2] = pb.m128[(imm >> 4) & 3];
    r.m128[3] = pb.m128[(imm >> 6) & 3];
    return simde__m512_from_private(r);
}

/* within each 128-bit lane: element i = element imm[2i+1:2i] */
EMU_INLINE simde__m512 emu_mm512_permute_ps(simde__m512 a, int imm) {
    const simde__m512_private pa = simde__m512_to_private(a);
    simde__m512_private r;
    for (int i = 0; i < 16; i++) r.f32[i] = pa.f32[(i & ~3) + ((imm >> (2 * (i & 3))) & 3)];
    return simde__m512_from_private(r);
}

/* ---- integer arithmetic (the weight-type micro-kernels) ----------------- */

/* SIMDe 0.7.4's alias for _mm512_madd_epi16 takes the masked form's four
 * arguments; VPMADDWD is the AVX2 instruction on each half */
EMU_INLINE simde__m512i emu_mm512_madd_epi16(simde__m512i a, simde__m512i b) {
    const simde__m512i_private pa = simde__m512i_to_private(a), pb = simde__m512i_to_private(b);
    simde__m512i_private r;
    r.m256i[0] = _mm256_madd_epi16(pa.m256i[0], pb.m256i[0]);
    r.m256i[1] = _mm256_madd_epi16(pa.m256i[1], pb.m256i[1]);
    return simde__m512i_from_private(r);
}

/* VPMOVDW: the low 16 bits of each of 16 dwords */
EMU_INLINE __m256i emu_mm512_cvtepi32_epi16(simde__m512i v) {
    const simde__m512i_private a = simde__m512i_to_private(v);
    uint16_t lanes[16];
    for (int i = 0; i < 16; i++) lanes[i] = (uint16_t)a.i32[i];
    return _mm256_loadu_si256((const __m256i *)lanes);
}

/* VCVTDQ2PS: each half is the AVX conversion (rounding per MXCSR) */
EMU_INLINE simde__m512 emu_mm512_cvtepi32_ps(simde__m512i v) {
    const simde__m512i_private a = simde__m512i_to_private(v);
    simde__m512_private r;
    r.m256[0] = _mm256_cvtepi32_ps(a.m256i[0]);
    r.m256[1] = _mm256_cvtepi32_ps(a.m256i[1]);
    return simde__m512_from_private(r);
}

/* the sum tree of GCC's _mm512_reduce_add_ps: halves, then quarters, then
 * lanes (2,3)+(0,1), then 0+1 (SIMDe 0.7.4 has none) */
EMU_INLINE float emu_mm512_reduce_add_ps(simde__m512 v) {
    const simde__m512_private a = simde__m512_to_private(v);
    const __m256 h = _mm256_add_ps(a.m256[1], a.m256[0]);
    const __m128 q = _mm_add_ps(_mm256_extractf128_ps(h, 1), _mm256_castps256_ps128(h));
    const __m128 p = _mm_add_ps(q, _mm_shuffle_ps(q, q, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(p) + _mm_cvtss_f32(_mm_shuffle_ps(p, p, 1));
}

/* VPMOVSXBD: 16 int8 -> int32, the AVX2 conversion of each 8 */
EMU_INLINE simde__m512i emu_mm512_cvtepi8_epi32(__m128i q) {
    simde__m512i_private r;
    r.m256i[0] = _mm256_cvtepi8_epi32(q);
    r.m256i[1] = _mm256_cvtepi8_epi32(_mm_srli_si128(q, 8));
    return simde__m512i_from_private(r);
}

/* VPMOVDB: the low byte of each of 16 dwords */
EMU_INLINE __m128i emu_mm512_cvtepi32_epi8(simde__m512i v) {
    const simde__m512i_private a = simde__m512i_to_private(v);
    uint8_t lanes[16];
    for (int i = 0; i < 16; i++) lanes[i] = (uint8_t)a.i32[i];
    return _mm_loadu_si128((const __m128i *)lanes);
}

/* the largest of 16 lanes (VMAXPS semantics: the second operand when
 * either is NaN; the kernels only call it on NaN-free vectors) */
EMU_INLINE float emu_mm512_reduce_max_ps(simde__m512 v) {
    const simde__m512_private a = simde__m512_to_private(v);
    float m = a.f32[0];
    for (int i = 1; i < 16; i++) m = m > a.f32[i] ? m : a.f32[i];
    return m;
}

EMU_INLINE int emu_mm512_reduce_add_epi32(simde__m512i v) {
    const simde__m512i_private a = simde__m512i_to_private(v);
    uint32_t s = 0; /* wraps like the hardware */
    for (int i = 0; i < 16; i++) s += (uint32_t)a.i32[i];
    return (int)s;
}

#undef _mm512_reduce_add_epi32
#define _mm512_reduce_add_epi32(v) emu_mm512_reduce_add_epi32(v)
#undef _mm512_cvtepi32_epi8
#undef _mm512_reduce_max_ps
#define _mm512_cvtepi32_epi8(v) emu_mm512_cvtepi32_epi8(v)
#define _mm512_reduce_max_ps(v) emu_mm512_reduce_max_ps(v)
#undef _mm512_cvtepi8_epi32
#define _mm512_cvtepi8_epi32(q) emu_mm512_cvtepi8_epi32(q)
#undef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps(v) emu_mm512_reduce_add_ps(v)
#undef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps(v) emu_mm512_cvtepi32_ps(v)
#undef _mm512_madd_epi16
#undef _mm512_cvtepi32_epi16
#define _mm512_madd_epi16(a, b) emu_mm512_madd_epi16((a), (b))
#define _mm512_cvtepi32_epi16(v) emu_mm512_cvtepi32_epi16(v)

#undef _mm512_maskz_loadu_ps
#undef _mm512_mask_loadu_ps
#undef _mm512_mask_storeu_ps
#undef _mm256_maskz_loadu_epi16
#undef _mm512_cvtps_epi32
#undef _mm512_cvtph_ps
#undef _mm512_cvtepu16_epi32
#undef _mm512_extractf32x8_ps
#undef _mm512_zextps256_ps512
#undef _mm512_mask_cmp_ps_mask
#undef _mm512_shuffle_f32x4
#undef _mm512_permute_ps
#undef _mm512_cvtss_f32
#undef _mm_mask_storeu_ps
#undef _mm256_mask_storeu_epi16
#undef _mm512_cvtps_ph
#define _mm512_maskz_loadu_ps(k, p) emu_mm512_maskz_loadu_ps((k), (p))
#define _mm512_mask_loadu_ps(s, k, p) emu_mm512_mask_loadu_ps((s), (k), (p))
#define _mm512_mask_storeu_ps(p, k, v) emu_mm512_mask_storeu_ps((p), (k), (v))
#define _mm256_maskz_loadu_epi16(k, p) emu_mm256_maskz_loadu_epi16((k), (p))
#define _mm512_cvtps_epi32(v) emu_mm512_cvtps_epi32(v)
#define _mm512_cvtph_ps(h) emu_mm512_cvtph_ps(h)
#define _mm512_cvtepu16_epi32(h) emu_mm512_cvtepu16_epi32(h)
#define _mm512_extractf32x8_ps(v, imm) emu_mm512_extractf32x8_ps((v), (imm))
#define _mm512_zextps256_ps512(v) emu_mm512_zextps256_ps512(v)
#define _mm512_mask_cmp_ps_mask(k, a, b, imm) ((simde__mmask16)((k) & _mm512_cmp_ps_mask((a), (b), (imm))))
#define _mm512_shuffle_f32x4(a, b, imm) emu_mm512_shuffle_f32x4((a), (b), (imm))
#define _mm512_permute_ps(a, imm) emu_mm512_permute_ps((a), (imm))
#define _mm512_cvtss_f32(v) emu_mm512_cvtss_f32(v)
#define _mm_mask_storeu_ps(p, k, v) emu_mm_mask_storeu_ps((p), (k), (v))
#define _mm256_mask_storeu_epi16(p, k, v) emu_mm256_mask_storeu_epi16((p), (k), (v))
#define _mm512_cvtps_ph(v, imm) emu_mm512_cvtps_ph((v), (imm))

#endif
