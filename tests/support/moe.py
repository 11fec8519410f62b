"""A plain NumPy/Python reference of the memory-aware router, written from
the specification in docs/moe.md (not from router.c): slow, obvious, and
float32 where the spec says float32 (the affinity EMA, the bonus addition),
float64 for the gate-mass ratio."""

from __future__ import annotations

import math

import numpy as np

from support.kernels import topk_ref

F32 = np.float32


class RouterRef:
    def __init__(self, num_experts, top_k, *, cache_bonus=0.0, affinity_decay=0.99, affinity_boost=1.0,
                 affinity_max=1.0, memory_aware=True, capacity=None, expert_bytes=0, policy="affinity",
                 prefetch_depth=1, prefetch_window=16):
        self.E, self.k = num_experts, top_k
        self.bonus = F32(cache_bonus)
        self.decay, self.boost, self.max = F32(affinity_decay), F32(affinity_boost), F32(affinity_max)
        self.memory_aware = memory_aware
        self.capacity = capacity
        self.expert_bytes = expert_bytes
        self.policy = policy
        self.depth = min(prefetch_depth, num_experts)
        self.window = prefetch_window
        self.affinity = np.zeros(num_experts, F32)
        self.counts = [0] * num_experts
        self.last_used = [0] * num_experts
        self.prefetched_at = [0] * num_experts
        self.resident = [capacity is None] * num_experts
        self.m = dict(routes=0, tokens=0, hits=0, misses=0, bytes=0, evictions=0, prefetches=0, used=0,
                      rerouted=0, mass=0.0)

    def set_resident(self, mask):
        self.resident = [bool(x) for x in mask]

    def key(self, e):
        """Eviction order: smallest key goes first."""
        tail = (self.last_used[e], e)
        if self.policy == "lfu":
            return (self.counts[e],) + tail
        if self.policy == "affinity":
            return (float(self.affinity[e]),) + tail
        return tail

    def route(self, logits):
        logits = np.atleast_2d(np.asarray(logits, F32))
        t, e = logits.shape
        assert e == self.E
        n_res = sum(self.resident)
        use_bonus = self.memory_aware and self.bonus > 0 and 0 < n_res < self.E
        bonus = np.array([self.bonus if r else F32(0) for r in self.resident], F32) if use_bonus else None
        ids, weights, bad = topk_ref(logits, self.k, bonus)
        if bad:
            raise ValueError(f"row {bad[0]}")
        now = self.m["routes"] + 1

        for row, chosen in zip(logits, ids, strict=True):
            true_ids = topk_ref(row[None], self.k)[0][0]
            if set(chosen.tolist()) == set(true_ids.tolist()):
                self.m["mass"] += 1.0
                continue
            self.m["rerouted"] += 1
            top = float(row[true_ids[0]])
            kept = sum(math.exp(float(row[c]) - top) for c in chosen)
            best = sum(math.exp(float(row[c]) - top) for c in true_ids)
            self.m["mass"] += kept / best

        active, page_in = [], []
        for x in ids.reshape(-1).tolist():
            if x not in active:
                active.append(x)
                if not self.resident[x]:
                    page_in.append(x)
        # affinity in float32, step by step as the spec says
        s = self.affinity * self.decay
        for x in active:
            s[x] = s[x] + self.boost
        s = np.where(np.isnan(s), F32(0), s)
        self.affinity = np.minimum(np.maximum(s, F32(0)), self.max).astype(F32)
        for x in active:
            self.counts[x] += 1
            self.last_used[x] = now
            if self.prefetched_at[x]:
                self.m["used"] += now - self.prefetched_at[x] <= self.window
                self.prefetched_at[x] = 0

        evict, dropped = [], set()

        def drop(x):
            self.resident[x] = False
            self.prefetched_at[x] = 0
            evict.append(x)
            dropped.add(x)

        for x in page_in:
            self.resident[x] = True
        if self.capacity is not None:
            groups = [
                [x for x in range(self.E) if x not in active],  # idle first
                [x for x in active if x in page_in],  # then this call's page-ins
                [x for x in active if x not in page_in],  # then this call's hits
            ]
            for group in groups:
                while sum(self.resident) > self.capacity:
                    cands = [x for x in group if self.resident[x]]
                    if not cands:
                        break
                    drop(min(cands, key=self.key))

        prefetch = []
        while len(prefetch) < self.depth:
            cands = [x for x in range(self.E) if not self.resident[x] and x not in dropped and self.affinity[x] > 0]
            if not cands:
                break
            best = min(cands, key=lambda x: (-float(self.affinity[x]), x))
            if self.capacity is not None and sum(self.resident) >= self.capacity:
                idle = [x for x in range(self.E) if self.resident[x] and x not in active and x not in prefetch]
                if not idle:
                    break
                victim = min(idle, key=self.key)
                if not self.affinity[best] > self.affinity[victim]:
                    break
                drop(victim)
            self.resident[best] = True
            self.prefetched_at[best] = now
            prefetch.append(best)

        m = self.m
        m["routes"] = now
        m["tokens"] += t
        m["misses"] += len(page_in)
        m["hits"] += len(active) - len(page_in)
        m["bytes"] += len(page_in) * self.expert_bytes
        m["evictions"] += len(evict)
        m["prefetches"] += len(prefetch)
        return dict(ids=ids, weights=weights, page_in=page_in, evict=evict, prefetch=prefetch)
