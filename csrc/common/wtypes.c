/*
 * The weight-type registry: one line per type. Everything else (dispatch,
 * the driver, the Python listing `ops.weight_types()`, the parametrized
 * tests) reads this table; nothing lists the types a second time.
 */
#include "qkernels.h"

static const ec_wtype_info types[] = {
    /* id        name    block elems, bytes  activations   quantize */
    {EC_WT_F32, "f32", 1, 4, EC_AF_F32, 0},
    {EC_WT_F16, "f16", 1, 2, EC_AF_F32, 1},
    {EC_WT_BF16, "bf16", 1, 2, EC_AF_F32, 1},
    {EC_WT_Q8_0, "q8_0", 32, 34, EC_AF_Q8_32, 1},
    {EC_WT_Q4_0, "q4_0", 32, 18, EC_AF_Q8_32, 1},
    {EC_WT_Q4_1, "q4_1", 32, 20, EC_AF_Q8_32, 1},
    {EC_WT_Q5_0, "q5_0", 32, 22, EC_AF_Q8_32, 1},
    {EC_WT_Q5_1, "q5_1", 32, 24, EC_AF_Q8_32, 1},
    {EC_WT_Q4_K, "q4_k", 256, 144, EC_AF_Q8_256, 0},
    {EC_WT_Q5_K, "q5_k", 256, 176, EC_AF_Q8_256, 0},
    {EC_WT_Q6_K, "q6_k", 256, 210, EC_AF_Q8_256, 0},
};

#define N_TYPES ((int)(sizeof types / sizeof types[0]))

int ec_wtype_count(void) { return N_TYPES; }

const ec_wtype_info *ec_wtype_at(int index) {
    return index >= 0 && index < N_TYPES ? &types[index] : NULL;
}

int ec_wtype_index(int id) {
    for (int i = 0; i < N_TYPES; i++)
        if (types[i].id == id) return i;
    return -1;
}

const ec_wtype_info *ec_wtype_find(int id) { return ec_wtype_at(ec_wtype_index(id)); }

size_t ec_wtype_row_bytes(const ec_wtype_info *t, size_t k) {
    if (!t || k % t->block_elems) return 0;
    return k / t->block_elems * t->block_bytes;
}

size_t ec_act_row_bytes(int format, size_t k) {
    switch (format) {
    case EC_AF_Q8_32: return k % 32 ? 0 : k / 32 * sizeof(ec_act_q8_32);
    case EC_AF_Q8_256: return k % 256 ? 0 : k / 256 * sizeof(ec_act_q8_256);
    default: return 0;
    }
}
