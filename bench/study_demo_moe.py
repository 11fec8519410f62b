"""Expert-cache study on the demo MoE model (edgecore/demo/mixtral-bytes):
real engine runs, not trace replays.

For every cache capacity (2, 4, 6 of 8 experts per layer = 25/50/75%),
eviction policy (lru, lfu, affinity) and residency bonus, the engine scores
held-out text one byte per step, exactly as decoding would route it:
each of the 16 held-out windows of 257 bytes (tests/demo/heldout_slice.bin,
the slice tools/train_demo.py scores) is a fresh sequence, every byte after
the first is predicted once. A bonus changes which experts run, so the
held-out loss is that of the rerouted model; hit rate (chosen experts
already resident) and gate mass kept come from the engine's own routers.
With bonus 0 the output equals the all-resident run (tests check it), so
only hit rate and loads vary with the policy there.

Also: decode tokens/s of the demo MoE model with half its experts resident
(expert_capacity=4) vs all resident, measured side by side (alternating
runs, medians).

Prints tables and writes bench/results/demo_moe_study.json and
bench/results/demo_moe_study.png.

    python bench/study_demo_moe.py            # full run (about 10 minutes on 2 cores)
    python bench/study_demo_moe.py --quick    # smaller, for a smoke test
    python bench/study_demo_moe.py --speed-only   # re-measure decode speed only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, table, threads, write_json  # noqa: E402

from edgecore import Engine  # noqa: E402

NAME = "demo_moe_study"
SLICE = Path(__file__).resolve().parents[1] / "tests" / "demo" / "heldout_slice.bin"
WINDOW = 257
CAPACITIES = (2, 4, 6)
POLICIES = ("lru", "lfu", "affinity")
BONUSES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 1.0, 1.5, 2.0)
TARGET_HIT_RATE, TARGET_GATE_MASS, TARGET_LOSS_INCREASE = 0.70, 0.95, 0.01


def windows(limit: int | None) -> list[np.ndarray]:
    data = np.frombuffer(SLICE.read_bytes(), np.uint8).astype(np.int64)
    wins = [data[i:i + WINDOW] for i in range(0, len(data) - WINDOW + 1, WINDOW)]
    return wins[:limit]


def heldout_loss(engine: Engine, wins: list[np.ndarray]) -> float:
    """Mean next-byte cross-entropy (nats) over the windows."""
    total, count = 0.0, 0
    for w in wins:
        logits = engine.forward(w[:-1]).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= logp[np.arange(len(w) - 1), w[1:]].sum()
        count += len(w) - 1
    return total / count


def run(wins, capacity: int | None, policy: str = "lru", bonus: float = 0.0) -> dict:
    kwargs = {} if capacity is None else dict(expert_capacity=capacity, expert_policy=policy, cache_bonus=bonus)
    with Engine("demo-moe", context=WINDOW - 1, step_tokens=1, **kwargs) as engine:
        t0 = time.perf_counter()
        before = engine.experts.snapshot() if engine.experts else None
        loss = heldout_loss(engine, wins)
        seconds = time.perf_counter() - t0
        row = {"capacity": capacity or engine.spec.num_experts, "policy": policy if capacity else "-",
               "bonus": bonus, "loss": loss, "tokens_per_s": len(wins) * (WINDOW - 1) / seconds}
        if engine.experts:
            s = engine.experts.stats_since(before)
            row.update(hit_rate=s.hit_rate, gate_mass_kept=s.gate_mass_kept,
                       loads_per_token=s.loads / (len(wins) * (WINDOW - 1)))
        else:
            row.update(hit_rate=1.0, gate_mass_kept=1.0, loads_per_token=0.0)
    return row


def decode_speed(rounds: int, new_tokens: int) -> list[dict]:
    """Decode tok/s, all experts vs half, alternating runs; medians."""
    engines = {"all 8 resident": Engine("demo-moe"), "4 of 8 resident (lru)": Engine("demo-moe", expert_capacity=4)}
    samples: dict[str, list[float]] = {k: [] for k in engines}
    hits: dict[str, list[float]] = {k: [] for k in engines}
    try:
        prompt = engines["all 8 resident"].tokenizer.encode("The list of built-in functions")
        for r in range(rounds):
            for name in (list(engines) if r % 2 == 0 else list(engines)[::-1]):
                res = engines[name].generate(prompt, max_new_tokens=new_tokens, temperature=0.7, seed=r)
                samples[name].append(res.stats.decode_tokens_per_s)
                if res.stats.experts:
                    hits[name].append(res.stats.experts.hit_rate)
    finally:
        for e in engines.values():
            e.close()
    base = statistics.median(samples["all 8 resident"])
    return [{"experts": name, "decode_tok_s": statistics.median(v), "vs_all": statistics.median(v) / base,
             "hit_rate": statistics.median(hits[name]) if hits[name] else 1.0} for name, v in samples.items()]


def plot(rows: list[dict], baseline: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    colors = {2: "tab:red", 4: "tab:blue", 6: "tab:green"}
    styles = {"lru": "-", "lfu": "--", "affinity": ":"}
    for cap, color in colors.items():
        for policy, style in styles.items():
            runs = sorted((r for r in rows if r["capacity"] == cap and r["policy"] == policy), key=lambda r: r["bonus"])
            if not runs:
                continue
            b = [r["bonus"] for r in runs]
            label = f"{cap}/8 {policy}"
            axes[0].plot(b, [r["hit_rate"] for r in runs], style, color=color, label=label)
            axes[1].plot(b, [r["gate_mass_kept"] for r in runs], style, color=color)
            axes[2].plot(b, [100 * (r["loss"] / baseline - 1) for r in runs], style, color=color)
    axes[0].axhline(TARGET_HIT_RATE, color="grey", lw=0.8)
    axes[1].axhline(TARGET_GATE_MASS, color="grey", lw=0.8)
    axes[2].axhline(100 * TARGET_LOSS_INCREASE, color="grey", lw=0.8)
    for ax, label in zip(axes, ("hit rate", "gate mass kept", "held-out loss increase (%)"), strict=True):
        ax.set_xlabel("cache bonus (logits)")
        ax.set_ylabel(label)
    fig.legend(loc="lower center", ncol=9, fontsize=8)
    fig.suptitle("demo MoE (8 experts, top-2), held-out bytes decoded one per step: capacity/policy vs bonus")
    fig.tight_layout(rect=(0, 0.08, 1, 0.94))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=16, help="held-out windows of 257 bytes (default all 16)")
    parser.add_argument("--rounds", type=int, default=5, help="decode-speed rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="a small run for a smoke test")
    parser.add_argument("--speed-only", action="store_true",
                        help="only re-measure decode speed, updating it in the existing JSON")
    args = parser.parse_args(argv)
    if args.speed_only:
        with threads(1):
            speed = decode_speed(args.rounds, 200)
        print(table(speed, [("experts", "experts"), ("decode_tok_s", "tok/s"), ("vs_all", "vs all"),
                            ("hit_rate", "hit rate")]))
        payload = json.loads((RESULTS / f"{NAME}.json").read_text())
        payload.pop("machine", None), payload.pop("unix_time", None)
        write_json(NAME, {**payload, "decode_speed": speed})
        return
    bonuses, capacities = BONUSES, CAPACITIES
    if args.quick:
        args.windows, args.rounds, bonuses, capacities = 2, 1, (0.0, 1.0), (4,)
    wins = windows(args.windows)
    with threads(1):
        base = run(wins, None)
        print(f"all experts resident: held-out loss {base['loss']:.4f} nats/byte on {len(wins)} windows")
        rows = []
        for cap in capacities:
            for policy in POLICIES:
                for bonus in bonuses:
                    row = run(wins, cap, policy, bonus)
                    row["loss_increase"] = row["loss"] / base["loss"] - 1
                    rows.append(row)
                    print(f"  cap {cap} {policy:8s} bonus {bonus:4.2f}: hit {row['hit_rate']:.3f} "
                          f"mass {row['gate_mass_kept']:.4f} loss {row['loss']:.4f} "
                          f"({100 * row['loss_increase']:+.2f}%)", flush=True)
        speed = decode_speed(args.rounds, 200)
    cols = [("capacity", "experts/layer"), ("policy", "policy"), ("bonus", "bonus"), ("hit_rate", "hit rate"),
            ("gate_mass_kept", "gate mass"), ("loss", "loss"), ("loss_increase", "loss +"),
            ("loads_per_token", "loads/token")]
    print(table(rows, cols))
    ok = [r for r in rows if r["capacity"] == 4 and r["gate_mass_kept"] >= TARGET_GATE_MASS
          and r["loss_increase"] <= TARGET_LOSS_INCREASE]
    best = max(ok, key=lambda r: r["hit_rate"]) if ok else None
    print("\nat 50% capacity, best hit rate with gate mass >= 0.95 and loss +<= 1%:",
          f"{best['policy']} bonus {best['bonus']}: hit {best['hit_rate']:.3f}, mass {best['gate_mass_kept']:.4f}, "
          f"loss {100 * best['loss_increase']:+.2f}%" if best else "none")
    print("\ndecode speed, 200 new tokens, 1 thread (medians of alternating runs):")
    print(table(speed, [("experts", "experts"), ("decode_tok_s", "tok/s"), ("vs_all", "vs all"),
                        ("hit_rate", "hit rate")]))
    payload = {"config": {"windows": len(wins), "window_bytes": WINDOW, "capacities": capacities,
                          "policies": POLICIES, "bonuses": bonuses, "threads": 1,
                          "targets": {"hit_rate": TARGET_HIT_RATE, "gate_mass_kept": TARGET_GATE_MASS,
                                      "loss_increase": TARGET_LOSS_INCREASE}},
               "baseline": base, "rows": rows, "best_at_50pct": best, "decode_speed": speed}
    write_json(NAME, payload)
    plot(rows, base["loss"], RESULTS / f"{NAME}.png")
    print(f"wrote {RESULTS / (NAME + '.json')} and {NAME}.png")


if __name__ == "__main__":
    main()
