"""Expert-cache study: hit rate vs gate mass for the memory-aware router, and
route() latency from Python.

1. Cache study. Routing traces (gate logits ``[tokens, layers, E]``) are
   replayed through one MemoryAwareRouter per layer, token by token, for each
   cache capacity (25/50/75% of the experts), residency bonus and eviction
   policy. The router plans page-ins, evictions and prefetches exactly as it
   does for ExpertCache; the replay assumes each plan is carried out before
   the next token (prefetches land in time: an upper bound on their value).
   Reported per run, after a warm-up of ``--warmup`` tokens: hit rate
   (distinct chosen experts already resident / all distinct chosen), gate mass
   kept (chosen softmax mass / true top-k mass, averaged over tokens), tokens
   rerouted by the bonus, page-ins and evictions per token, prefetch accuracy.
   Trace sources: synthetic (a) independent N(0,1) logits, (b) AR(1) logits
   with rho = 0.9 per expert (consecutive tokens prefer similar experts). A
   model's traces plug in as another source: see ``Trace`` and ``SOURCES``.
2. route() latency: median time per call from Python for one token
   (T=1; E=8, k=2 and E=64, k=8), plain top-k and memory-aware with a
   capacity, next to ``ops.route_topk`` and a cache's ``apply`` hit path.

Prints tables and writes bench/results/expert_cache_study.json and
bench/results/expert_cache_study.png.

    python bench/study_expert_cache.py            # full run (about a minute)
    python bench/study_expert_cache.py --quick    # smaller, for a smoke test
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, compare, table, write_json  # noqa: E402

from edgecore import ops  # noqa: E402
from edgecore.moe import ExpertCache, MemoryAwareRouter  # noqa: E402

NAME = "expert_cache_study"
CAPACITY_FRACTIONS = (0.25, 0.5, 0.75)
BONUSES = (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)
# (name, router settings): "affinity" uses the router's default affinity (a
# recency score); "affinity-ema" a slow, frequency-like one
POLICIES = {
    "lru": dict(policy="lru"),
    "lfu": dict(policy="lfu"),
    "affinity": dict(policy="affinity"),
    "affinity-ema": dict(policy="affinity", affinity_boost=0.05),
}
TARGET_HIT_RATE, TARGET_GATE_MASS = 0.70, 0.95


@dataclass(frozen=True)
class Trace:
    """Gate logits of a routing trace: float32 [tokens, layers, E], replayed
    with ``top_k`` experts per token. ``name`` labels the source."""

    name: str
    logits: np.ndarray
    top_k: int


def iid_trace(tokens: int, layers: int, experts: int, top_k: int, seed: int) -> Trace:
    """Independent N(0, 1) logits: no temporal structure, a cache's worst case."""
    rng = np.random.default_rng(seed)
    return Trace("iid", rng.standard_normal((tokens, layers, experts)).astype(np.float32), top_k)


def ar1_trace(tokens: int, layers: int, experts: int, top_k: int, seed: int, rho: float = 0.9) -> Trace:
    """AR(1) logits per expert, x_t = rho x_(t-1) + sqrt(1 - rho^2) e_t,
    e_t ~ N(0, 1): stationary N(0, 1) marginals with correlated neighbours."""
    rng = np.random.default_rng(seed)
    x = np.empty((tokens, layers, experts))
    x[0] = rng.standard_normal((layers, experts))
    noise = rng.standard_normal((tokens, layers, experts)) * np.sqrt(1 - rho * rho)
    for t in range(1, tokens):
        x[t] = rho * x[t - 1] + noise[t]
    return Trace(f"ar1-rho{rho:g}", x.astype(np.float32), top_k)


# source name -> (tokens, layers, experts, top_k, seed) -> Trace. A model's
# traces join here, e.g. SOURCES["demo-moe"] = lambda *a: Trace("demo-moe", logits, 2)
# (then only its own E and k apply; see synthetic_traces).
SOURCES: dict[str, Callable[..., Trace]] = {"iid": iid_trace, "ar1": ar1_trace}
SHAPES = ((8, 2), (64, 8))


def synthetic_traces(tokens: int, layers: int) -> list[Trace]:
    traces = []
    for experts, top_k in SHAPES:
        for seed, source in enumerate(SOURCES.values()):
            traces.append(source(tokens, layers, experts, top_k, 1000 * experts + seed))
    return traces


def replay(trace: Trace, capacity: int, bonus: float, policy: str, warmup: int) -> dict:
    """Route every token of every layer through that layer's router; the
    metrics of all layers are summed (after ``warmup`` tokens)."""
    tokens, layers, experts = trace.logits.shape
    routers = [MemoryAwareRouter(experts, trace.top_k, cache_bonus=bonus, capacity=capacity, **POLICIES[policy])
               for _ in range(layers)]
    for layer, router in enumerate(routers):
        route = router.route
        rows = trace.logits[:, layer, :]
        for t in range(tokens):
            if t == warmup:
                router.reset_metrics()
            route(rows[t])
    ms = [r.metrics() for r in routers]
    total = {key: sum(getattr(m, key) for m in ms) for key in (
        "tokens", "hits", "misses", "evictions", "prefetches", "prefetches_used", "rerouted_tokens")}
    mass = sum(m.gate_mass_kept * m.tokens for m in ms) / total["tokens"]
    return {
        "source": trace.name, "E": experts, "k": trace.top_k, "capacity": capacity,
        "capacity_pct": round(100 * capacity / experts), "bonus": bonus, "policy": policy,
        "hit_rate": total["hits"] / (total["hits"] + total["misses"]),
        "gate_mass_kept": mass,
        "rerouted_frac": total["rerouted_tokens"] / total["tokens"],
        "page_ins_per_token": total["misses"] / total["tokens"],
        "evictions_per_token": total["evictions"] / total["tokens"],
        "prefetch_accuracy": total["prefetches_used"] / total["prefetches"] if total["prefetches"] else None,
        "tokens": total["tokens"],
    }


def study(traces: list[Trace], warmup: int) -> list[dict]:
    rows = []
    for trace in traces:
        experts = trace.logits.shape[2]
        for fraction in CAPACITY_FRACTIONS:
            capacity = max(trace.top_k, round(fraction * experts))
            for policy in POLICIES:
                for bonus in BONUSES:
                    rows.append(replay(trace, capacity, bonus, policy, warmup))
                print(f"  {trace.name:10s} E={experts:3d} k={trace.top_k} capacity={capacity:3d} {policy:12s} "
                      + " ".join(f"b={r['bonus']:g}:{r['hit_rate']:.3f}/{r['gate_mass_kept']:.3f}"
                                 for r in rows[-len(BONUSES):]), flush=True)
    return rows


def frontier(rows: list[dict]) -> list[dict]:
    """Per (source, shape, capacity, policy): the baseline hit rate (bonus 0),
    the smallest bonus meeting both targets (hit rate >= 0.70 and gate mass
    >= 0.95), and the best hit rate among bonuses that keep gate mass >= 0.95."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["E"], r["k"], r["capacity_pct"], r["policy"]), []).append(r)
    out = []
    for (source, e, k, pct, policy), runs in groups.items():
        runs.sort(key=lambda r: r["bonus"])
        meets = [r for r in runs if r["hit_rate"] >= TARGET_HIT_RATE and r["gate_mass_kept"] >= TARGET_GATE_MASS]
        kept = [r for r in runs if r["gate_mass_kept"] >= TARGET_GATE_MASS]
        best = max(kept, key=lambda r: r["hit_rate"]) if kept else None
        out.append({
            "source": source, "E": e, "k": k, "capacity_pct": pct, "policy": policy,
            "hit_rate_bonus0": runs[0]["hit_rate"],
            "target_bonus": meets[0]["bonus"] if meets else None,
            "best_bonus": best["bonus"] if best else None,
            "best_hit_rate": best["hit_rate"] if best else None,
            "best_gate_mass": best["gate_mass_kept"] if best else None,
        })
    return out


def latency(rounds: int) -> list[dict]:
    """Median seconds per route() call, one token per call, cycling through
    256 AR(1) rows so the router's state evolves as in decoding."""
    rows = []
    for experts, top_k in SHAPES:
        trace = ar1_trace(256, 1, experts, top_k, seed=7)
        tokens = [np.ascontiguousarray(trace.logits[t, 0][None]) for t in range(256)]
        iid = [np.ascontiguousarray(row[None]) for row in iid_trace(256, 1, experts, top_k, 8).logits[:, 0]]
        half = experts // 2
        plain = MemoryAwareRouter(experts, top_k)
        aware = MemoryAwareRouter(experts, top_k, cache_bonus=0.5, capacity=half)
        aware_iid = MemoryAwareRouter(experts, top_k, cache_bonus=0.5, capacity=half)
        cached = MemoryAwareRouter(experts, top_k, cache_bonus=0.5)
        cache = ExpertCache(experts, expert_bytes=0, capacity_experts=half, load=lambda e: e, router=cached,
                            prefetch=False)

        def loop(route, rows=tokens):
            def run():
                for x in rows:
                    route(x)
            return run

        def topk_loop():
            for x in tokens:
                ops.route_topk(x, top_k)

        def route_apply():
            for x in tokens:
                routing = cached.route(x)
                cache.apply(routing)

        def route_apply_ids():
            for x in tokens:
                routing = cached.route(x)
                cache.apply(routing)
                routing.ids  # noqa: B018 -- the engine reads the chosen experts

        def empty_loop():
            for _x in tokens:
                pass

        cands = {
            "route (bonus 0, no capacity)": loop(plain.route),
            "route (bonus 0.5, capacity E/2, AR(1))": loop(aware.route),
            "route (bonus 0.5, capacity E/2, iid)": loop(aware_iid.route, iid),
            "ops.route_topk": topk_loop,
            "route + cache.apply": route_apply,
            "route + cache.apply + .ids": route_apply_ids,
            "empty loop": empty_loop,
        }
        times = compare(cands, rounds=rounds, min_time=0.02)
        # the paging each memory-aware case did while it was timed
        paging = {"route (bonus 0.5, capacity E/2, AR(1))": aware.metrics(),
                  "route (bonus 0.5, capacity E/2, iid)": aware_iid.metrics()}
        for name, t in times.items():
            m = paging.get(name)
            rows.append({"E": experts, "k": top_k, "case": name, "median_ns": t / len(tokens) * 1e9,
                         "hit_rate": m.hit_rate if m else None,
                         "page_ins_per_token": m.misses / m.tokens if m else None})
        cache.close()
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["E"], r["k"], r["source"]) for r in rows})
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 7.5), sharex=True, squeeze=False)
    colors = {25: "tab:red", 50: "tab:blue", 75: "tab:green"}
    styles = {"lru": "-", "lfu": "--", "affinity": ":", "affinity-ema": "-."}
    for col, (e, k, source) in enumerate(panels):
        for pct, color in colors.items():
            for policy, style in styles.items():
                runs = sorted((r for r in rows if (r["E"], r["k"], r["source"], r["capacity_pct"], r["policy"])
                               == (e, k, source, pct, policy)), key=lambda r: r["bonus"])
                if not runs:
                    continue
                bonus = [r["bonus"] for r in runs]
                label = f"{pct}% {policy}" if col == 0 else None
                axes[0, col].plot(bonus, [r["hit_rate"] for r in runs], style, color=color, label=label)
                axes[1, col].plot(bonus, [r["gate_mass_kept"] for r in runs], style, color=color)
        axes[0, col].axhline(TARGET_HIT_RATE, color="grey", lw=0.8)
        axes[1, col].axhline(TARGET_GATE_MASS, color="grey", lw=0.8)
        axes[0, col].set_title(f"{source}, E={e}, k={k}")
        axes[1, col].set_xlabel("cache bonus (logits)")
    axes[0, 0].set_ylabel("hit rate")
    axes[1, 0].set_ylabel("gate mass kept")
    fig.legend(loc="lower center", ncol=6, fontsize=8)
    fig.suptitle("Memory-aware routing: hit rate and gate mass vs bonus (capacity % of experts; line style = policy)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=2000, help="tokens per trace (default 2000)")
    parser.add_argument("--layers", type=int, default=4, help="independent layers per trace (default 4)")
    parser.add_argument("--warmup", type=int, default=100, help="tokens routed before counting (default 100)")
    parser.add_argument("--rounds", type=int, default=15, help="latency rounds (default 15)")
    parser.add_argument("--quick", action="store_true", help="a small run for a smoke test")
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.layers, args.warmup, args.rounds = 300, 1, 20, 3

    payload: dict = {"config": {"tokens": args.tokens, "layers": args.layers, "warmup": args.warmup,
                                "capacity_fractions": CAPACITY_FRACTIONS, "bonuses": BONUSES,
                                "policies": POLICIES, "targets": {"hit_rate": TARGET_HIT_RATE,
                                                                  "gate_mass_kept": TARGET_GATE_MASS}}}
    if not args.skip_latency:
        print("route() latency per call from Python (T=1), medians:")
        lat = latency(args.rounds)
        print(table(lat, [("E", "E"), ("k", "k"), ("case", "case"), ("median_ns", "median ns"),
                          ("hit_rate", "hit rate"), ("page_ins_per_token", "page-ins/token")]))
        payload["latency"] = lat
    if not args.skip_study:
        print(f"cache study: {args.tokens} tokens x {args.layers} layers per trace "
              "(hit rate / gate mass kept per bonus)")
        rows = study(synthetic_traces(args.tokens, args.layers), args.warmup)
        front = frontier(rows)
        print(table([r for r in rows if r["capacity_pct"] == 50], [
            ("source", "source"), ("E", "E"), ("k", "k"), ("policy", "policy"), ("bonus", "bonus"),
            ("hit_rate", "hit rate"), ("gate_mass_kept", "gate mass"), ("rerouted_frac", "rerouted"),
            ("page_ins_per_token", "page-ins/tok"), ("prefetch_accuracy", "prefetch acc")]))
        print("\nfrontier (targets: hit rate >= 0.70 with gate mass >= 0.95):")
        print(table(front, [
            ("source", "source"), ("E", "E"), ("k", "k"), ("capacity_pct", "cap %"), ("policy", "policy"),
            ("hit_rate_bonus0", "hit @b=0"), ("target_bonus", "bonus meeting targets"),
            ("best_bonus", "best bonus (mass>=.95)"), ("best_hit_rate", "its hit rate"),
            ("best_gate_mass", "its gate mass")]))
        payload["study"] = rows
        payload["frontier"] = front
        png = RESULTS / f"{NAME}.png"
        RESULTS.mkdir(exist_ok=True)
        plot(rows, png)
        print(f"wrote {png}")
    print(f"wrote {write_json(NAME, payload)}")


if __name__ == "__main__":
    main()
