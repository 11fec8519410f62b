/*
 * Runtime CPU detection and the dispatch table.
 *
 * x86: CPUID says what the core implements, XGETBV/XCR0 says whether the OS
 * saves the wider registers on context switch; both must agree before a tier
 * is used. aarch64: getauxval(AT_HWCAP) (NEON is architecturally mandatory,
 * but the kernel still reports it).
 */
#include "internal.h"
#include "qkernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#define TABLE(isa)                                                             \
    {ec_linear_f32_##isa, ec_ema_f32_##isa, ec_topk_f32_##isa,                 \
     ec_cvt_bf16_f32_##isa, ec_cvt_f16_f32_##isa,                              \
     EC_PERTOKEN_TABLE(isa)}

static const ec_kernel_table table_scalar = TABLE(scalar);
#ifdef EC_BUILD_AVX2
static const ec_kernel_table table_avx2 = TABLE(avx2);
#endif
#ifdef EC_BUILD_AVX512
static const ec_kernel_table table_avx512 = TABLE(avx512);
#endif
#ifdef EC_BUILD_NEON
static const ec_kernel_table table_neon = TABLE(neon);
#endif

const ec_kernel_table *ec_active = &table_scalar;
static int active_tier = EC_TIER_SCALAR;

static const ec_kernel_table *table_for(int tier) {
    switch (tier) {
    case EC_TIER_SCALAR: return &table_scalar;
#ifdef EC_BUILD_AVX2
    case EC_TIER_AVX2: return &table_avx2;
#endif
#ifdef EC_BUILD_AVX512
    case EC_TIER_AVX512: return &table_avx512;
#endif
#ifdef EC_BUILD_NEON
    case EC_TIER_NEON: return &table_neon;
#endif
    default: return NULL;
    }
}

const char *ec_tier_name(int tier) {
    static const char *names[EC_TIER_COUNT] = {"scalar", "avx2", "avx512", "neon"};
    return (tier >= 0 && tier < EC_TIER_COUNT) ? names[tier] : "unknown";
}

int ec_tier_compiled(int tier) { return table_for(tier) != NULL; }

#if defined(__x86_64__) || defined(__i386__)
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

int ec_cpu_supports(int tier) {
    unsigned a, b, c, d;
    if (tier == EC_TIER_SCALAR) return 1;
    if (tier != EC_TIER_AVX2 && tier != EC_TIER_AVX512) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    const int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!(osxsave && avx && fma && f16c)) return 0;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0; /* SSE + AVX state enabled by the OS */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const int avx2 = (b >> 5) & 1;
    if (tier == EC_TIER_AVX2) return avx2;
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1;
    const int bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    /* opmask, upper halves of zmm0-15, zmm16-31 */
    const int os_zmm = (xcr0 & 0xE0) == 0xE0;
    return avx2 && f && dq && bw && vl && os_zmm;
}

/* Sub-features (ec_feature bits) of the tiers this CPU supports. */
static unsigned cpu_features(void) {
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned max_subleaf = a;
    if (ec_cpu_supports(EC_TIER_AVX512) && ((c >> 11) & 1)) f |= EC_FEAT_AVX512_VNNI;
    if (max_subleaf >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) {
        if (ec_cpu_supports(EC_TIER_AVX2) && ((a >> 4) & 1)) f |= EC_FEAT_AVX_VNNI;
        if (ec_cpu_supports(EC_TIER_AVX512) && ((a >> 5) & 1)) f |= EC_FEAT_AVX512_BF16;
    }
    return f;
}
#elif defined(__aarch64__)
int ec_cpu_supports(int tier) {
    if (tier == EC_TIER_SCALAR) return 1;
    if (tier != EC_TIER_NEON) return 0;
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP);
    return (hw & (1UL << 1)) != 0; /* HWCAP_ASIMD */
#else
    return 1; /* AArch64 without Linux auxv: Advanced SIMD is mandatory */
#endif
}

static unsigned cpu_features(void) {
#if defined(__linux__)
    if (!ec_cpu_supports(EC_TIER_NEON)) return 0;
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(26 /* AT_HWCAP2 */);
    unsigned f = 0;
    if (hw & (1UL << 20)) f |= EC_FEAT_DOTPROD; /* HWCAP_ASIMDDP */
    if (hw2 & (1UL << 13)) f |= EC_FEAT_I8MM;   /* HWCAP2_I8MM */
    return f;
#else
    return 0; /* optional extensions: no portable way to ask */
#endif
}
#else
int ec_cpu_supports(int tier) { return tier == EC_TIER_SCALAR; }
static unsigned cpu_features(void) { return 0; }
#endif

int ec_tier_available(int tier) {
    return ec_tier_compiled(tier) && ec_cpu_supports(tier);
}

int ec_active_tier(void) { return active_tier; }

/* ---- sub-features ------------------------------------------------------- */

/* In ec_feature bit order. */
static const struct {
    const char *name;
    int tier;
} features[EC_FEATURE_COUNT] = {
    {"avx_vnni", EC_TIER_AVX2},   {"avx512_vnni", EC_TIER_AVX512}, {"avx512_bf16", EC_TIER_AVX512},
    {"dotprod", EC_TIER_NEON},    {"i8mm", EC_TIER_NEON},
};

/* setup.py sets the bit of every feature whose sources it could build (and
 * EC_BUILD_<NAME> for the kernel tables' #ifdef sections). */
#ifndef EC_FEATURES_COMPILED
#define EC_FEATURES_COMPILED 0u
#endif

static unsigned active_features = 0;

const char *ec_feature_name(int bit) {
    return bit >= 0 && bit < EC_FEATURE_COUNT ? features[bit].name : "unknown";
}

int ec_feature_tier(int bit) { return bit >= 0 && bit < EC_FEATURE_COUNT ? features[bit].tier : -1; }

unsigned ec_features_compiled(void) {
    unsigned f = 0;
    for (int i = 0; i < EC_FEATURE_COUNT; i++)
        if (((EC_FEATURES_COMPILED >> i) & 1u) && ec_tier_compiled(features[i].tier)) f |= 1u << i;
    return f;
}

unsigned ec_features_available(void) { return ec_features_compiled() & cpu_features(); }

unsigned ec_active_features(void) { return active_features; }

unsigned ec_features_detected(void) { return cpu_features(); }

int ec_tier_runs(int active, int tier) {
    return tier == active || tier == EC_TIER_SCALAR || (active == EC_TIER_AVX512 && tier == EC_TIER_AVX2);
}

/* The available features of the tiers `tier` runs. */
static unsigned features_usable_by(int tier) {
    unsigned f = 0;
    for (int i = 0; i < EC_FEATURE_COUNT; i++)
        if (ec_tier_runs(tier, features[i].tier)) f |= 1u << i;
    return f & ec_features_available();
}

int ec_set_active_features(unsigned mask) {
    if (mask & ~features_usable_by(active_tier)) return -1;
    active_features = mask;
    ec_qdispatch_update(active_tier, mask);
    return 0;
}

/* AMD: weights prefetched non-temporally (prefetch_avx512.h). */
static int cpu_is_amd(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u; /* "Auth" "enti" "cAMD" */
#else
    return 0;
#endif
}

int ec_weight_prefetch_nta = 0;

const char *ec_weight_prefetch_name(void) {
#if defined(__x86_64__) || defined(__i386__)
    return ec_weight_prefetch_nta ? "non-temporal" : "l2";
#else
    return "none"; /* no avx512 tier */
#endif
}

int ec_set_active_tier(int tier) {
    if (!ec_tier_available(tier)) return -1;
    ec_weight_prefetch_nta = cpu_is_amd();
    ec_active = table_for(tier);
    active_tier = tier;
    active_features = features_usable_by(tier);
    ec_qdispatch_update(tier, active_features);
    return 0;
}
