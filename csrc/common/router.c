/*
 * The memory-aware MoE router in one call: residency bonus, top-k, gate-mass
 * accounting, affinity update and the paging plan (page-in, evict, prefetch).
 *
 * ISA-independent orchestration: the arithmetic-heavy steps (top-k selection,
 * the EMA pass) go through the dispatch table. Everything else touches a few
 * bytes per expert; one call routes a decode token in well under a
 * microsecond, so the Python layer can afford a route per token per layer.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

static inline int bit_get(const uint64_t *b, size_t i) { return (int)((b[i >> 6] >> (i & 63)) & 1); }
static inline void bit_set(uint64_t *b, size_t i) { b[i >> 6] |= 1ULL << (i & 63); }

/* 1 if expert a goes before expert b under the eviction policy. Ties fall
 * through to least recently used, then to the lower id, so the order is total
 * and the plan deterministic. `policy` is a constant at every call site, so
 * each eviction scan is compiled for one policy. */
static inline int evict_before(const ec_router *r, int policy, size_t a, size_t b) {
    if (policy == EC_EVICT_LFU && r->counts[a] != r->counts[b]) return r->counts[a] < r->counts[b];
    if (policy == EC_EVICT_AFFINITY && r->affinity[a] != r->affinity[b]) return r->affinity[a] < r->affinity[b];
    if (r->last_used[a] != r->last_used[b]) return r->last_used[a] < r->last_used[b];
    return a < b;
}

/* Groups an eviction victim is drawn from, in order of preference. */
enum { IDLE, PAGED_NOW, HIT_NOW };

static inline int in_group(const ec_router *r, size_t e, int group) {
    if (!r->resident[e]) return 0;
    if (!bit_get(r->active_bits, e)) return group == IDLE;
    return group == (bit_get(r->paged_bits, e) ? PAGED_NOW : HIT_NOW);
}

static inline int64_t pick_in(const ec_router *r, int policy, int group) {
    int64_t best = -1;
    for (size_t e = 0; e < r->n_experts; e++)
        if (in_group(r, e, group) && (best < 0 || evict_before(r, policy, e, (size_t)best))) best = (int64_t)e;
    return best;
}

/* The first victim of a group by the policy, or -1 if the group is empty. */
static int64_t pick_victim(const ec_router *r, int group) {
    switch (r->policy) {
    case EC_EVICT_LFU: return pick_in(r, EC_EVICT_LFU, group);
    case EC_EVICT_AFFINITY: return pick_in(r, EC_EVICT_AFFINITY, group);
    default: return pick_in(r, EC_EVICT_LRU, group);
    }
}

static void drop(ec_router *r, size_t e, ec_route_plan *plan) {
    r->resident[e] = 0;
    r->bonus[e] = 0.0f;
    r->n_resident--;
    r->prefetched_at[e] = 0; /* a pending prefetch evicted unused counts as wasted */
    bit_set(r->dropped_bits, e);
    plan->evict[plan->n_evict++] = (int32_t)e;
}

static void admit(ec_router *r, size_t e) {
    r->resident[e] = 1;
    r->bonus[e] = r->cache_bonus;
    r->n_resident++;
}

/* 1 if `chosen` is exactly the top-k of the original logits: every chosen
 * expert ranks above every other one (higher logit, or equal and lower id;
 * NaN ranks lowest). One pass over the row; `mark` is a zeroed scratch
 * bitmap, left zeroed. */
static int is_true_topk(const float *row, size_t e, const int32_t *chosen, size_t k, uint64_t *mark) {
    float lo = INFINITY;
    size_t lo_id = 0;
    for (size_t i = 0; i < k; i++) {
        const size_t c = (size_t)chosen[i];
        bit_set(mark, c);
        if (row[c] < lo || (row[c] == lo && c > lo_id)) {
            lo = row[c];
            lo_id = c;
        }
    }
    int ok = 1;
    for (size_t j = 0; j < e && ok; j++)
        if (!bit_get(mark, j) && (row[j] > lo || (row[j] == lo && j < lo_id))) ok = 0;
    for (size_t i = 0; i < k; i++) mark[(size_t)chosen[i] >> 6] = 0;
    return ok;
}

/* Ratio of the softmax mass of the chosen experts to that of the true top-k
 * (the experts the logits alone would pick): 1 when the sets are equal. */
static double gate_mass_kept(ec_router *r, const float *row, const int32_t *chosen, int *rerouted) {
    const size_t k = r->top_k;
    *rerouted = 0;
    if (is_true_topk(row, r->n_experts, chosen, k, r->dropped_bits)) return 1.0;
    /* cannot fail when the bonus-adjusted selection succeeded (same finite
     * logits); checked anyway so a bad row never reads out of bounds */
    if (ec_active->topk_f32(row, NULL, r->n_experts, k, 0, 1, r->true_ids, r->true_weights) >= 0) return 1.0;
    *rerouted = 1;
    /* relative to the largest logit, so nothing overflows; float exps are
     * plenty for a metric (the weights themselves come from the kernel) */
    const float top = row[r->true_ids[0]];
    double kept = 0.0, best = 0.0;
    for (size_t i = 0; i < k; i++) {
        kept += expf(row[chosen[i]] - top);
        best += expf(row[r->true_ids[i]] - top);
    }
    return kept / best;
}

int64_t ec_router_route_f32(ec_router *r, const float *logits, size_t t, int32_t *ids,
                            float *weights, ec_route_plan *plan) {
    const size_t E = r->n_experts, k = r->top_k, words = (E + 63) / 64;
    /* A uniform bonus (nothing or everything resident) cannot change the
     * ranking; skipping it keeps the result bit-identical to plain top-k. */
    const int use_bonus = r->memory_aware && r->cache_bonus > 0.0f && r->n_resident > 0 && r->n_resident < E;
    const int64_t bad = ec_route_topk_f32(logits, use_bonus ? r->bonus : NULL, t, E, k, ids, weights);
    if (bad >= 0) return bad; /* state untouched */

    ec_router_metrics *m = &r->metrics;
    const uint64_t now = m->routes + 1;
    plan->n_page_in = plan->n_evict = plan->n_prefetch = 0;

    /* gate mass: only a bonus can move the choice away from the true top-k */
    memset(r->dropped_bits, 0, words * sizeof(uint64_t));
    if (use_bonus) {
        for (size_t i = 0; i < t; i++) {
            int rerouted;
            m->gate_mass_sum += gate_mass_kept(r, logits + i * E, ids + i * k, &rerouted);
            m->rerouted += (uint64_t)rerouted;
        }
    } else {
        m->gate_mass_sum += (double)t;
    }

    /* the distinct chosen experts; the non-resident ones are paged in, in
     * order of first use */
    memset(r->active_bits, 0, words * sizeof(uint64_t));
    memset(r->paged_bits, 0, words * sizeof(uint64_t));
    size_t n_active = 0;
    for (size_t i = 0; i < t * k; i++) {
        const size_t e = (size_t)ids[i];
        if (bit_get(r->active_bits, e)) continue;
        bit_set(r->active_bits, e);
        n_active++;
        if (!r->resident[e]) {
            bit_set(r->paged_bits, e);
            plan->page_in[plan->n_page_in++] = (int32_t)e;
        }
    }

    /* affinity: decay all, boost the distinct chosen (the ema_update kernel);
     * counts, recency and prefetch accuracy for the same experts */
    ec_active->ema_f32(r->affinity, E, r->active_bits, r->decay, r->boost, r->max_score);
    for (size_t w = 0; w < words; w++) {
        for (uint64_t b = r->active_bits[w]; b; b &= b - 1) {
            const size_t e = w * 64 + (size_t)__builtin_ctzll(b);
            r->counts[e]++;
            r->last_used[e] = now;
            if (r->prefetched_at[e]) {
                m->prefetch_used += (uint64_t)(now - r->prefetched_at[e] <= r->prefetch_window);
                r->prefetched_at[e] = 0;
            }
        }
    }

    /* make room: idle residents first, then (only when one call activates
     * more experts than fit) this call's page-ins, then its hits */
    for (size_t i = 0; i < plan->n_page_in; i++) admit(r, (size_t)plan->page_in[i]);
    if (r->capacity >= 0) {
        for (int g = IDLE; g <= HIT_NOW && r->n_resident > (size_t)r->capacity; g++) {
            int64_t v;
            while (r->n_resident > (size_t)r->capacity && (v = pick_victim(r, g)) >= 0)
                drop(r, (size_t)v, plan);
        }
    }

    /* prefetch: the non-resident experts with the highest affinity, into a
     * free slot, or in place of the next idle victim if that one has lower
     * affinity. An expert evicted by this call is not brought straight back;
     * paged_bits now also marks this call's prefetches (never victims). One
     * pass per suggestion finds both the candidate and the victim. */
    while (plan->n_prefetch < r->prefetch_depth) {
        const int full = r->capacity >= 0 && r->n_resident >= (size_t)r->capacity;
        int64_t best = -1, victim = -1;
        for (size_t e = 0; e < E; e++) {
            if (r->resident[e]) {
                if (full && !bit_get(r->active_bits, e) && !bit_get(r->paged_bits, e) &&
                    (victim < 0 || evict_before(r, r->policy, e, (size_t)victim)))
                    victim = (int64_t)e;
            } else if (!bit_get(r->dropped_bits, e) && r->affinity[e] > 0.0f &&
                       (best < 0 || r->affinity[e] > r->affinity[best])) {
                best = (int64_t)e;
            }
        }
        if (best < 0) break;
        if (full) {
            if (victim < 0 || !(r->affinity[best] > r->affinity[victim])) break;
            drop(r, (size_t)victim, plan);
        }
        admit(r, (size_t)best);
        bit_set(r->paged_bits, (size_t)best);
        r->prefetched_at[best] = now;
        plan->prefetch[plan->n_prefetch++] = (int32_t)best;
    }

    m->routes = now;
    m->tokens += t;
    m->misses += plan->n_page_in;
    m->hits += n_active - plan->n_page_in;
    m->bytes_paged_in += plan->n_page_in * r->expert_bytes;
    m->evictions += plan->n_evict;
    m->prefetches += plan->n_prefetch;
    return -1;
}

void ec_router_set_resident(ec_router *r, const uint8_t *mask) {
    r->n_resident = 0;
    for (size_t e = 0; e < r->n_experts; e++) {
        r->resident[e] = mask[e] != 0;
        r->bonus[e] = r->resident[e] ? r->cache_bonus : 0.0f;
        r->n_resident += r->resident[e];
    }
}
