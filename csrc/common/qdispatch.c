/*
 * Dispatch of the weight-type kernels: for the active tier and features,
 * pick each type's gemm micro-kernel, row dequantizer and activation
 * quantizer, and the epilogues, from the tiers' tables (qkernels.h).
 *
 * Per slot, the tiers the active one runs are searched best first (avx512,
 * avx2, scalar; neon, scalar), and within a tier the first line whose
 * required features are all enabled wins. The scalar tier fills every
 * slot, so every type always resolves. Resolution happens when the tier or
 * the features change, never per call.
 */
#include <pthread.h>

#include "qkernels.h"

#define MAX_TYPES 32

static ec_qresolved resolved[MAX_TYPES];
static ec_actquant_fn actquant[EC_AF_COUNT];
static ec_bias_act_fn bias_act;
static ec_glu_fn glu;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static const ec_tier_qkernels *tier_kernels(int tier) {
    switch (tier) {
    case EC_TIER_SCALAR: return &ec_qkernels_scalar;
#ifdef EC_BUILD_AVX2
    case EC_TIER_AVX2: return &ec_qkernels_avx2;
#endif
#ifdef EC_BUILD_AVX512
    case EC_TIER_AVX512: return &ec_qkernels_avx512;
#endif
#ifdef EC_BUILD_NEON
    case EC_TIER_NEON: return &ec_qkernels_neon;
#endif
    default: return NULL;
    }
}

/* The tiers `active` runs, best first; returns how many. */
static int tier_chain(int active, int chain[EC_TIER_COUNT]) {
    static const int best_first[EC_TIER_COUNT] = {EC_TIER_AVX512, EC_TIER_AVX2, EC_TIER_NEON, EC_TIER_SCALAR};
    int n = 0;
    for (int i = 0; i < EC_TIER_COUNT; i++)
        if (ec_tier_runs(active, best_first[i]) && tier_kernels(best_first[i])) chain[n++] = best_first[i];
    return n;
}

enum { SLOT_GEMM, SLOT_DEQUANT };

/* The first usable line for (type, slot) along the chain, and its tier. */
static const ec_qvariant *find_weight(const int *chain, int n_chain, unsigned features, int wtype,
                                      int slot, int *tier) {
    for (int c = 0; c < n_chain; c++) {
        for (const ec_qvariant *v = tier_kernels(chain[c])->weights; v->wtype >= 0; v++) {
            if (v->wtype != wtype || (v->features & ~features)) continue;
            if (slot == SLOT_GEMM ? v->gemm != NULL : v->dequant != NULL) {
                *tier = chain[c];
                return v;
            }
        }
    }
    return NULL;
}

static const ec_actq_variant *find_actq(const int *chain, int n_chain, unsigned features, int format,
                                        int *tier) {
    for (int c = 0; c < n_chain; c++)
        for (const ec_actq_variant *v = tier_kernels(chain[c])->activations; v->format >= 0; v++)
            if (v->format == format && !(v->features & ~features) && v->quantize) {
                *tier = chain[c];
                return v;
            }
    return NULL;
}

static void resolve(int active, unsigned features) {
    int chain[EC_TIER_COUNT];
    const int n_chain = tier_chain(active, chain);
    int tier = EC_TIER_SCALAR;

    unsigned actq_features[EC_AF_COUNT] = {0};
    int actq_tier[EC_AF_COUNT] = {-1, -1, -1};
    for (int f = EC_AF_Q8_32; f < EC_AF_COUNT; f++) {
        const ec_actq_variant *v = find_actq(chain, n_chain, features, f, &tier);
        actquant[f] = v ? v->quantize : NULL;
        actq_tier[f] = v ? tier : -1;
        actq_features[f] = v ? v->features : 0;
    }
    bias_act = NULL;
    glu = NULL;
    for (int c = 0; c < n_chain; c++) {
        const ec_tier_qkernels *t = tier_kernels(chain[c]);
        if (!bias_act) bias_act = t->bias_act;
        if (!glu) glu = t->glu;
    }

    for (int i = 0; i < ec_wtype_count() && i < MAX_TYPES; i++) {
        ec_qresolved *r = &resolved[i];
        r->info = ec_wtype_at(i);
        const int id = r->info->id;
        const ec_qvariant *g = find_weight(chain, n_chain, features, id, SLOT_GEMM, &tier);
        r->gemm = g ? g->gemm : NULL;
        /* a table line outside the driver's limits gets the nearest legal tile */
        r->mr = g ? (g->mr < 1 ? 1 : g->mr > EC_MR_MAX ? EC_MR_MAX : g->mr) : 0;
        r->nr = g ? (g->nr < 1 ? 1 : g->nr > EC_NR_MAX ? EC_NR_MAX : g->nr) : 0;
        const ec_qpacker *pk = g ? g->packer : NULL;
        const int packs = pk && pk->pack && pk->gemm_packed && pk->packed_block_bytes;
        r->pack = packs ? pk->pack : NULL;
        r->gemm_packed = packs ? pk->gemm_packed : NULL;
        r->packed_block_bytes = packs ? pk->packed_block_bytes : 0;
        /* f32 has no micro-kernel: the driver calls the tier's linear_f32 */
        r->chosen.gemm_tier = g ? tier : active;
        r->chosen.gemm_features = g ? g->features : 0;
        const ec_qvariant *d = find_weight(chain, n_chain, features, id, SLOT_DEQUANT, &tier);
        r->dequant = d ? d->dequant : NULL;
        r->chosen.dequant_tier = d ? tier : -1;
        r->chosen.dequant_features = d ? d->features : 0;
        const int fmt = r->info->act_format;
        r->actquant = actquant[fmt];
        r->chosen.actq_tier = actq_tier[fmt];
        r->chosen.actq_features = actq_features[fmt];
    }
}

static void resolve_default(void) { resolve(EC_TIER_SCALAR, 0); }

void ec_qdispatch_update(int tier, unsigned features) {
    pthread_once(&once, resolve_default);
    resolve(tier, features);
}

const ec_qresolved *ec_qresolved_at(int index) {
    pthread_once(&once, resolve_default);
    return index >= 0 && index < ec_wtype_count() ? &resolved[index] : NULL;
}

ec_bias_act_fn ec_qepilogue_bias_act(void) {
    pthread_once(&once, resolve_default);
    return bias_act;
}

ec_glu_fn ec_qepilogue_glu(void) {
    pthread_once(&once, resolve_default);
    return glu;
}

ec_actquant_fn ec_qactquant(int format) {
    pthread_once(&once, resolve_default);
    return format > EC_AF_F32 && format < EC_AF_COUNT ? actquant[format] : NULL;
}

int ec_wtype_dispatch_get(int id, ec_wtype_dispatch *out) {
    const ec_qresolved *r = ec_qresolved_at(ec_wtype_index(id));
    if (!r) return EC_ERR_WTYPE;
    *out = r->chosen;
    return EC_OK;
}

/* ---- the registered variants (for ops.weight_types and the tests) ------- */

static int variant_at(int id, int want, ec_wvariant_info *out) {
    static const int tiers[EC_TIER_COUNT] = {EC_TIER_SCALAR, EC_TIER_AVX2, EC_TIER_AVX512, EC_TIER_NEON};
    int seen = 0;
    for (int t = 0; t < EC_TIER_COUNT; t++) {
        const ec_tier_qkernels *k = tier_kernels(tiers[t]);
        if (!k) continue;
        for (const ec_qvariant *v = k->weights; v->wtype >= 0; v++) {
            if (v->wtype != id) continue;
            if (seen++ == want && out) {
                *out = (ec_wvariant_info){tiers[t], v->features, v->gemm != NULL, v->dequant != NULL,
                                          v->mr, v->nr, v->gemm && v->packer};
                return 0;
            }
        }
    }
    return out ? -1 : seen;
}

int ec_wtype_variant_count(int id) { return ec_wtype_find(id) ? variant_at(id, -1, NULL) : -1; }

int ec_wtype_variant(int id, int i, ec_wvariant_info *out) {
    if (!ec_wtype_find(id) || i < 0 || !out) return -1;
    return variant_at(id, i, out);
}
