/*
 * Forced-include shim (gcc -include) for compiling csrc/x86/avx2/avx_vnni
 * on a CPU without AVX-VNNI, for test_avx_vnni_emulated.py. Test-only:
 * never part of the package build.
 *
 * The sources are compiled with the avx2 tier's flags only (no -mavxvnni),
 * so every AVX2 intrinsic is the real instruction and the one VNNI
 * intrinsic they use is this lane loop, written from the Intel SDM's
 * VPDPBUSD definition: each int32 lane of src plus the four products of an
 * unsigned byte of a and the signed byte of b at the same position,
 * wrapping, not saturating. It is deliberately not built from
 * maddubs/madd (what the plain avx2 kernels do), so the check is not the
 * kernel checking itself.
 */
#ifndef EDGECORE_TEST_VNNI_SHIM_H
#define EDGECORE_TEST_VNNI_SHIM_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

static inline __m256i ec_emu_dpbusd(__m256i src, __m256i a, __m256i b) {
    uint8_t ua[32];
    int8_t sb[32];
    uint32_t acc[8];
    memcpy(ua, &a, 32);
    memcpy(sb, &b, 32);
    memcpy(acc, &src, 32);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) acc[i] += (uint32_t)((int32_t)ua[4 * i + j] * (int32_t)sb[4 * i + j]);
    __m256i r;
    memcpy(&r, acc, 32);
    return r;
}

#define _mm256_dpbusd_avx_epi32(src, a, b) ec_emu_dpbusd((src), (a), (b))

#endif /* EDGECORE_TEST_VNNI_SHIM_H */
