"""Build the edgecore C kernels and their Cython wrapper.

Each ISA tier's sources are compiled with that tier's flags only, so the
rest of the library stays runnable on any CPU of the architecture; the
dispatcher picks a tier at run time. A tier is kept only if the compiler can
build a small probe for it (the probe, not the host machine, decides: a
cross compiler targeting aarch64 builds NEON and drops the x86 tiers).
Project metadata lives in pyproject.toml.
"""

import glob
import os
import sys
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

# -ffp-contract=off: a multiply and an add stay two roundings unless the
# source asks for an FMA, so the scalar reference means the same thing on
# every architecture and compiler.
# EDGECORE_EXTRA_CFLAGS: appended after these (the last -O wins), for
# instrumented builds: tools/check-sanitizers.sh adds the sanitizers at -O1,
# which GCC compiles in minutes where -O3 takes over ten for one AVX-512 file.
COMMON_FLAGS = ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-ffp-contract=off", "-fno-math-errno",
                *os.environ.get("EDGECORE_EXTRA_CFLAGS", "").split()]

TIERS = {
    "avx2": {
        "flags": ["-mavx2", "-mfma", "-mf16c"],
        "sources": "csrc/x86/avx2/*.c",
        "probe": """
            #include <immintrin.h>
            int probe(float *p) {
                __m256 a = _mm256_fmadd_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p), _mm256_setzero_ps());
                __m128i h = _mm256_cvtps_ph(a, 0);
                return _mm256_movemask_ps(a) + _mm_cvtsi128_si32(h);
            }""",
    },
    "avx512": {
        "flags": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma", "-mf16c"],
        "sources": "csrc/x86/avx512/*.c",
        "probe": """
            #include <immintrin.h>
            int probe(float *p) {
                __m512 a = _mm512_fmadd_ps(_mm512_loadu_ps(p), _mm512_loadu_ps(p), _mm512_setzero_ps());
                __mmask16 m = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ);
                __m256i w = _mm512_cvtepi32_epi16(_mm512_castps_si512(a));
                return (int)m + _mm256_movemask_epi8(w) + (int)_mm512_reduce_add_ps(a);
            }""",
    },
    "neon": {
        "flags": [],  # NEON is baseline on AArch64 (and -mfpu is not an aarch64 flag)
        "sources": "csrc/arm/neon/*.c",
        "probe": """
            #ifndef __aarch64__
            #error "NEON tier targets AArch64 only"
            #endif
            #include <arm_neon.h>
            float probe(const float *p) {
                float32x4_t a = vfmaq_f32(vld1q_f32(p), vld1q_f32(p), vld1q_f32(p));
                return vaddvq_f32(a) + vcvt_f32_f16(vld1_f16((const __fp16 *)p))[0];
            }""",
    },
}

# Sub-features of a tier: sources that need extra instructions (VNNI, BF16,
# dotprod, i8mm) live in their own folder, are compiled with the tier's flags
# plus their own, and are kept only if the compiler builds the probe (and the
# tier itself was kept). The bit is the feature's ec_feature bit in
# csrc/include/edgecore/kernels.h; the kernels check the CPU at run time.
FEATURES = {
    "avx_vnni": {
        "tier": "avx2",
        "bit": 0,
        "flags": ["-mavxvnni"],
        "sources": "csrc/x86/avx2/avx_vnni/*.c",
        "probe": """
            #include <immintrin.h>
            __m256i probe(__m256i a, __m256i b, __m256i c) { return _mm256_dpbusd_avx_epi32(a, b, c); }""",
    },
    "avx512_vnni": {
        "tier": "avx512",
        "bit": 1,
        "flags": ["-mavx512vnni"],
        "sources": "csrc/x86/avx512/vnni/*.c",
        "probe": """
            #include <immintrin.h>
            __m512i probe(__m512i a, __m512i b, __m512i c) { return _mm512_dpbusd_epi32(a, b, c); }""",
    },
    "avx512_bf16": {
        "tier": "avx512",
        "bit": 2,
        "flags": ["-mavx512bf16"],
        "sources": "csrc/x86/avx512/bf16/*.c",
        "probe": """
            #include <immintrin.h>
            __m512 probe(__m512 a, __m512bh b, __m512bh c) { return _mm512_dpbf16_ps(a, b, c); }""",
    },
    "dotprod": {
        "tier": "neon",
        "bit": 3,
        "flags": ["-march=armv8.2-a+dotprod"],
        "sources": "csrc/arm/neon/dotprod/*.c",
        "probe": """
            #include <arm_neon.h>
            int32x4_t probe(int32x4_t a, int8x16_t b, int8x16_t c) { return vdotq_s32(a, b, c); }""",
    },
    "i8mm": {
        "tier": "neon",
        "bit": 4,
        "flags": ["-march=armv8.2-a+dotprod+i8mm"],
        "sources": "csrc/arm/neon/i8mm/*.c",
        "probe": """
            #include <arm_neon.h>
            int32x4_t probe(int32x4_t a, int8x16_t b, int8x16_t c) { return vmmlaq_s32(a, b, c); }""",
    },
}

COMMON_SOURCES = sorted(glob.glob("csrc/common/*.c")) + sorted(glob.glob("csrc/scalar/*.c"))
INCLUDE_DIRS = ["csrc/include", "csrc", numpy.get_include()]
# every kernel source and header: a change to any of them relinks the module
ALL_CSRC = sorted(glob.glob("csrc/**/*.[ch]", recursive=True))
# the Cython boundary is one module split into included files by op family
PXI = sorted(glob.glob("edgecore/*.pxi")) + ["edgecore/_kernels.pxd"]


class BuildKernels(build_ext):
    """Probe each ISA tier, compile its sources with its own flags, link them in."""

    def probe(self, name, tier, tmp):
        path = os.path.join(tmp, f"probe_{name}.c")
        with open(path, "w") as f:
            f.write(tier["probe"])
        try:
            self.compiler.compile([path], output_dir=tmp, extra_postargs=COMMON_FLAGS + tier["flags"])
        except CompileError:
            return False
        return True

    def build_extensions(self):
        tiers, features = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for name, tier in TIERS.items():
                if self.probe(name, tier, tmp):
                    tiers.append(name)
                else:
                    print(f"edgecore: compiler cannot build the {name} tier; it is left out", file=sys.stderr)
            for name, feature in FEATURES.items():
                if feature["tier"] not in tiers:
                    continue
                flags = TIERS[feature["tier"]]["flags"] + feature["flags"]
                if self.probe(name, {"probe": feature["probe"], "flags": flags}, tmp):
                    features.append(name)
                else:
                    print(f"edgecore: compiler cannot build the {name} feature; it is left out", file=sys.stderr)
        print(f"edgecore: building kernel tiers scalar, {', '.join(tiers)}; features: {', '.join(features) or 'none'}",
              file=sys.stderr)
        # every object sees which tiers and features are in the build (the
        # kernel tables list feature variants under #ifdef EC_BUILD_<NAME>)
        macros = [(f"EC_BUILD_{name.upper()}", "1") for name in tiers + features]
        macros.append(("EC_FEATURES_COMPILED", f"{sum(1 << FEATURES[f]['bit'] for f in features)}u"))
        groups = [(TIERS[t]["sources"], TIERS[t]["flags"]) for t in tiers]
        for f in features:
            groups.append((FEATURES[f]["sources"], TIERS[FEATURES[f]["tier"]]["flags"] + FEATURES[f]["flags"]))
        for ext in self.extensions:
            objects = []
            for pattern, flags in groups:
                sources = sorted(glob.glob(pattern))
                if not sources:
                    continue
                objects += self.compiler.compile(
                    sources,
                    output_dir=self.build_temp,
                    macros=macros,
                    include_dirs=INCLUDE_DIRS,
                    extra_postargs=COMMON_FLAGS + flags,
                    depends=ALL_CSRC,
                )
            ext.define_macros.extend(macros)
            ext.extra_objects = objects + list(ext.extra_objects or [])
        super().build_extensions()


kernels = Extension(
    "edgecore._kernels",
    sources=["edgecore/_kernels.pyx"] + COMMON_SOURCES,
    include_dirs=INCLUDE_DIRS,
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=COMMON_FLAGS,
    extra_link_args=["-pthread"],
    libraries=["m"],
    depends=ALL_CSRC + PXI,
)

setup(
    ext_modules=cythonize(
        [kernels],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
        },
    ),
    cmdclass={"build_ext": BuildKernels},
)
