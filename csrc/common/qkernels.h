/*
 * The weight-type kernel architecture (internal): what a tier contributes to
 * the linear driver, and what the driver asks of it.
 *
 * The driver (linear.c) owns activation quantization, blocking over M and N,
 * tails, the thread split and the bias + activation epilogue. A tier
 * contributes, per weight type, a gemm micro-kernel and a row dequantizer,
 * plus activation quantizers and epilogues; every slot may be left empty
 * (NULL), and the dispatcher (qdispatch.c) then takes the best lower tier's.
 *
 * Adding a (type, tier) micro-kernel: write the function in the tier's
 * folder and add one line to that tier's table (qkernels_<tier>.c). A
 * variant that needs a sub-feature (VNNI, dotprod, ...) goes in the
 * feature's source folder (built with its extra flags, see setup.py) and
 * its table line sits under `#ifdef EC_BUILD_<FEATURE>`.
 */
#ifndef EDGECORE_QKERNELS_H
#define EDGECORE_QKERNELS_H

#include "edgecore/kernels.h"

/* The largest tile the driver asks for: micro-kernels declare mr <= MR_MAX,
 * nr <= NR_MAX and must accept any smaller mr, nr (tails). */
#define EC_MR_MAX 8
#define EC_NR_MAX 16

/*
 * gemm micro-kernel: y[i * ldy + j] = sum_k W(j, k) * X(i, k) for i < mr,
 * j < nr (raw sums: no bias, no activation).
 *   W(j, .) is the weight row at w + j * w_stride bytes (the type's blocks);
 *   X(i, .) is the activation row at x + i * x_stride bytes, in the type's
 *   activation format (float32, or ec_act_q8_32 / ec_act_q8_256 blocks).
 * k is in elements, a multiple of the type's block.
 *
 * The contract that makes results batch invariant: the value written for
 * (i, j) depends only on row i of X, row j of W and k, never on mr, nr or
 * on the other rows in the tile (same operations in the same order).
 */
typedef void (*ec_qgemm_fn)(size_t k, size_t mr, size_t nr, const void *x, size_t x_stride,
                            const void *w, size_t w_stride, float *y, size_t ldy);

/*
 * Packed strips (optional, paired with the gemm of the same table line):
 * pack decodes weight rows 0..nr-1 (W(j, .) at w + j * w_stride, the
 * gemm's layout) into buf in whatever form the micro-kernel reads fastest,
 * k / block_elems * packed_block_bytes bytes, buf 64-byte aligned (rows
 * past nr may be filled with any row's data: they are never stored).
 * gemm_packed is the gemm with w = buf (w_stride is ignored) and must write
 * the same bits as gemm for every (i, j): the driver packs a strip once
 * when several M tiles pass over it (prefill, batched decode) and calls
 * gemm otherwise, and batch invariance depends on both agreeing.
 */
typedef void (*ec_qpack_fn)(size_t k, size_t nr, const void *w, size_t w_stride, void *buf);

typedef struct {
    ec_qpack_fn pack;
    ec_qgemm_fn gemm_packed;
    unsigned packed_block_bytes;
} ec_qpacker;

/* One weight row of k elements -> float32, bit for bit what the gguf
 * package's dequantize gives (the operations it does are exact or a single
 * rounding, so every tier can match it). */
typedef void (*ec_dequant_fn)(const void *w, float *out, size_t k);

/* One activation row of k elements -> its format's blocks, bit for bit the
 * same in every tier (docs/quantization.md). */
typedef void (*ec_actquant_fn)(const float *x, void *out, size_t k);

/* y[0..n) = act(y + bias) (bias may be NULL). */
typedef void (*ec_bias_act_fn)(float *y, const float *bias, size_t n, int act);

/* g[0..n) = act(g + gate_bias) * (u + up_bias); u[0..n) = u + up_bias.
 * Biases may be NULL. */
typedef void (*ec_glu_fn)(float *g, const float *gate_bias, float *u, const float *up_bias,
                          size_t n, int act);

/* One line of a tier's weight table. */
typedef struct {
    int wtype;          /* ec_wtype; -1 ends the table */
    unsigned features;  /* ec_feature bits the code needs; 0 = the plain tier */
    ec_qgemm_fn gemm;   /* may be NULL */
    unsigned char mr, nr;
    ec_dequant_fn dequant; /* may be NULL */
    const ec_qpacker *packer; /* may be NULL: the gemm is never packed */
} ec_qvariant;

/* One line of a tier's activation-quantizer table. */
typedef struct {
    int format;         /* ec_act_format; -1 ends the table */
    unsigned features;
    ec_actquant_fn quantize;
} ec_actq_variant;

#define EC_QVARIANT_END {-1, 0, 0, 0, 0, 0, 0}
#define EC_ACTQ_END {-1, 0, 0}

/* Everything one tier contributes. Lines are searched in order: list a
 * feature variant before the plain one of the same type. */
typedef struct {
    const ec_qvariant *weights;
    const ec_actq_variant *activations;
    ec_bias_act_fn bias_act; /* NULL: the lower tier's */
    ec_glu_fn glu;           /* NULL: the lower tier's */
} ec_tier_qkernels;

extern const ec_tier_qkernels ec_qkernels_scalar;
#ifdef EC_BUILD_AVX2
extern const ec_tier_qkernels ec_qkernels_avx2;
#endif
#ifdef EC_BUILD_AVX512
extern const ec_tier_qkernels ec_qkernels_avx512;
#endif
#ifdef EC_BUILD_NEON
extern const ec_tier_qkernels ec_qkernels_neon;
#endif

/* What the driver calls for one type, resolved for the active tier and
 * features whenever either changes (qdispatch.c). */
typedef struct {
    const ec_wtype_info *info;
    ec_qgemm_fn gemm;
    size_t mr, nr;
    ec_qpack_fn pack; /* from gemm's line; NULL: never packed */
    ec_qgemm_fn gemm_packed;
    size_t packed_block_bytes;
    ec_dequant_fn dequant;
    ec_actquant_fn actquant; /* NULL for float32 activations */
    ec_wtype_dispatch chosen;
} ec_qresolved;

/* Resolution for the type at registry index `index`. */
const ec_qresolved *ec_qresolved_at(int index);
/* Index of type id in the registry, -1 if unknown. */
int ec_wtype_index(int id);
/* The epilogues of the active tier. */
ec_bias_act_fn ec_qepilogue_bias_act(void);
ec_glu_fn ec_qepilogue_glu(void);
/* The activation quantizer for `format` on the active tier (NULL for f32). */
ec_actquant_fn ec_qactquant(int format);
/* 1 if a call on tier `active` may run kernels of `tier`: itself, the
 * lower tiers of its architecture, scalar. */
int ec_tier_runs(int active, int tier);
/* Re-resolve after a tier or feature change (called by dispatch.c). */
void ec_qdispatch_update(int tier, unsigned features);

/* 1: the avx512 gemm kernels prefetch weights non-temporally, 0: into L2
 * (prefetch_avx512.h). Set once, from the CPU vendor, by the dispatch. */
extern int ec_weight_prefetch_nta;

/* Scalar pieces every tier may use (SIMD tails, f32 rows). */
void ec_bias_act_scalar(float *y, const float *bias, size_t n, int act);

#endif /* EDGECORE_QKERNELS_H */
