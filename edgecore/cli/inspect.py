"""`edgecore inspect`: a model's layers with their memory costs, the minimum
and ideal budgets, and the plan each strategy makes at a few budgets."""

from __future__ import annotations

import json

from edgecore.cli import CliError
from edgecore.cli.table import render


def register(sub) -> None:
    p = sub.add_parser("inspect", help="layer table, minimum/ideal budgets and plans for a model")
    p.add_argument("--model", help="model directory or built-in name (default: demo)")
    p.add_argument("--context", type=int, default=None, help="KV cache tokens to plan for")
    p.add_argument("--step-tokens", type=int, default=None, help="tokens per forward step to plan for")
    p.add_argument("--kv-dtype", default="f16", help="KV cache element type to plan for: f16 (default) or f32")
    p.add_argument("--kv-pages", type=int, default=None,
                   help="KV cache pages of 16 tokens to plan for (default: one sequence of the whole context)")
    p.add_argument("--budgets", help="comma-separated budgets to plan at (default: spread between "
                                     "the minimum and the ideal)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.engine.engine import DEFAULT_CONTEXT, DEFAULT_STEP_TOKENS
    from edgecore.engine.kv import DEFAULT_PAGE_TOKENS, KV_DTYPES, kv_cache_bytes
    from edgecore.memory import format_size, parse_size
    from edgecore.models import Model, ModelError
    from edgecore.planner import BudgetTooSmall, CostModel, device_rates, make_plan, minimum_budget
    from edgecore.weights import SafetensorsError

    if args.kv_dtype not in KV_DTYPES:
        raise CliError(f"--kv-dtype must be one of {', '.join(KV_DTYPES)}; got {args.kv_dtype!r}")
    if args.kv_pages is not None and args.kv_pages < 1:
        raise CliError(f"--kv-pages must be a positive integer, got {args.kv_pages}")
    try:
        model = Model(args.model)
    except (ModelError, SafetensorsError, OSError) as exc:
        raise CliError(str(exc), status=1) from None
    with model.weights:
        spec, graph = model.spec, model.graph
        context = args.context or min(spec.max_positions, DEFAULT_CONTEXT)
        step = min(args.step_tokens or DEFAULT_STEP_TOKENS, context)
        kv_pages = args.kv_pages or -(-context // DEFAULT_PAGE_TOKENS)
        blocks = sum(1 for layer in graph.layers if layer.kind == "block")
        kv_bytes = kv_cache_bytes(blocks, spec.num_kv_heads, spec.head_dim, kv_pages, DEFAULT_PAGE_TOKENS,
                                  args.kv_dtype)
        kv_item = KV_DTYPES[args.kv_dtype](0).itemsize
        layers = [{"layer": c.name, "resident": c.resident_bytes(step), "file": c.file_bytes,
                   "kv_per_token": c.kv_bytes_per_token // 4 * kv_item, "macs_per_token": c.macs_per_token,
                   "activations": graph.activation_bytes(c, step, context)} for c in graph.layers]
        minimum = {s: minimum_budget(graph, context_tokens=context, step_tokens=step, strategy=s, all_logits=False,
                                     kv_bytes=kv_bytes)
                   for s in ("sequential", "speculative")}
        probe = make_plan(graph, None, context_tokens=context, step_tokens=step, strategy="greedy",
                          all_logits=False, kv_bytes=kv_bytes)
        ideal = probe.peak_bytes
        try:
            budgets = [parse_size(b) for b in args.budgets.split(",")] if args.budgets else sorted({
                minimum["sequential"][0], minimum["speculative"][0],
                *(int(minimum["sequential"][0] + f * (ideal - minimum["sequential"][0])) for f in (0.25, 0.5)),
                ideal})
        except ValueError as exc:
            raise CliError(f"--budgets: {exc}") from None
        cost = CostModel(device_rates())
        plans = []
        for budget in budgets:
            for strategy in ("sequential", "greedy", "speculative", "auto"):
                row = {"budget": format_size(budget), "strategy": strategy}
                try:
                    plan = make_plan(graph, budget, context_tokens=context, step_tokens=step, strategy=strategy,
                                     all_logits=False, cost_model=cost, kv_bytes=kv_bytes)
                except BudgetTooSmall as exc:
                    row.update(groups=None, note=f"too small (min {format_size(exc.minimum_bytes)})")
                else:
                    row.update(chosen=plan.strategy if strategy == "auto" else None, groups=len(plan.groups),
                               pinned=sum(g.pinned for g in plan.groups), streamed=plan.streamed_bytes_per_step,
                               peak=plan.peak_bytes, step_ms=plan.predicted_step_s * 1e3)
                plans.append(row)
        summary = {
            "model": str(model.dir), "architecture": spec.architecture, "layers": spec.num_layers,
            "hidden": spec.hidden_size, "heads": f"{spec.num_heads}/{spec.num_kv_heads} kv",
            "vocab": spec.vocab_size, "experts": f"{spec.experts_per_token} of {spec.num_experts}" if spec.is_moe
            else None, "file_bytes": graph.file_bytes, "resident_weight_bytes": graph.total_weight_bytes(step),
            "kv_bytes_per_token": graph.kv_bytes_per_token // 4 * kv_item, "kv_dtype": args.kv_dtype,
            "kv_pages": kv_pages, "kv_cache_bytes": kv_bytes, "context": context, "step_tokens": step,
            "minimum_budget": {s: {"bytes": b, "set_by": layer} for s, (b, layer) in minimum.items()},
            "ideal_budget": ideal, "tokenizer": type(model.tokenizer).__name__ if model.tokenizer else None,
        }
    if args.json:
        print(json.dumps({"summary": summary, "layers": layers, "plans": plans}, indent=2))
        return 0
    for key, value in summary.items():
        if key == "minimum_budget":
            for s, v in value.items():
                print(f"{'minimum budget (' + s + ')':>28}: {format_size(v['bytes'])} (set by {v['set_by']})")
        elif value is not None:
            shown = format_size(value) if key.endswith("bytes") or key == "ideal_budget" else value
            print(f"{key.replace('_', ' '):>28}: {shown}")
    print("\nlayers (bytes; activations for one step of", step, "tokens over", context, "positions)")
    print(render(layers, [("layer", "layer"), ("resident", "resident"), ("file", "file"),
                          ("kv_per_token", "KV/token"), ("activations", "activations"),
                          ("macs_per_token", "MACs/token")]))
    print("\nplans (predicted decode step from this device's calibration)")
    print(render(plans, [("budget", "budget"), ("strategy", "strategy"), ("chosen", "auto chose"),
                         ("groups", "groups"), ("pinned", "pinned"), ("streamed", "streamed B/step"),
                         ("peak", "peak B"), ("step_ms", "step ms"), ("note", "note")]))
    return 0
