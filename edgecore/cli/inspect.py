"""`edgecore inspect`: a model's layers with their memory costs, the minimum
and ideal budgets, and the plan each strategy makes at a few budgets.

--context and --step-tokens are checked as `edgecore run` checks them (the
same limits, the same messages). The minimum budget is the smallest any
plan needs, with the smallest prefill step (planner MIN_STEP_TOKENS); each
plan row says which step that budget gets. Minimums are rounded up, so a
value typed back as --memory-budget is enough."""

from __future__ import annotations

import json

from edgecore.cli import CliError
from edgecore.cli.options import NO_BUDGET, add_run_options, resolve_options
from edgecore.cli.table import render

OPTIONS = ("model", "context", "step_tokens", "kv_dtype", "kv_pages")


def register(sub) -> None:
    p = sub.add_parser("inspect", help="layer table, minimum/ideal budgets and plans for a model")
    add_run_options(p, OPTIONS, preset=False)
    p.add_argument("--budgets", help="comma-separated budgets to plan at, 'none' for no limit (default: spread "
                                     "between the minimum and the ideal)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.cli.prompting import open_model
    from edgecore.engine.engine import DEFAULT_STEP_TOKENS
    from edgecore.engine.kv import DEFAULT_PAGE_TOKENS, kv_cache_bytes, kv_row_bytes
    from edgecore.memory import format_size, parse_size
    from edgecore.planner import MIN_STEP_TOKENS, BudgetTooSmall, CostModel, device_rates, make_plan, minimum_budget

    opts = resolve_options(args, OPTIONS)
    budgets = None
    if args.budgets is not None:
        try:
            budgets = [None if b.strip().lower() == NO_BUDGET else parse_size(b) for b in args.budgets.split(",")]
        except ValueError as exc:
            raise CliError(f"--budgets: {exc}; or '{NO_BUDGET}' for no limit") from None
    model = open_model(opts)
    with model.weights:
        spec, graph = model.spec, model.graph
        context = opts["context"]
        step = min(opts.get("step_tokens", DEFAULT_STEP_TOKENS), context)
        kv_dtype = opts.get("kv_dtype", "f16")
        kv_pages = opts.get("kv_pages") or -(-context // DEFAULT_PAGE_TOKENS)
        blocks = sum(1 for layer in graph.layers if layer.kind == "block")
        kv_bytes = kv_cache_bytes(blocks, spec.num_kv_heads, spec.head_dim, kv_pages, DEFAULT_PAGE_TOKENS, kv_dtype)
        def kv_bytes_of(f32_bytes: int) -> int:  # the graph counts float32 K/V rows of head_dim
            return f32_bytes // (4 * spec.head_dim) * kv_row_bytes(spec.head_dim, kv_dtype)

        layers = [{"layer": c.name, "resident": c.resident_bytes(step), "file": c.file_bytes,
                   "kv_per_token": kv_bytes_of(c.kv_bytes_per_token), "macs_per_token": c.macs_per_token,
                   "activations": graph.activation_bytes(c, step, context)} for c in graph.layers]
        minimum = {s: minimum_budget(graph, context_tokens=context, step_tokens=MIN_STEP_TOKENS, strategy=s,
                                     all_logits=False, kv_bytes=kv_bytes) for s in ("sequential", "speculative")}
        at_step = {s: minimum_budget(graph, context_tokens=context, step_tokens=step, strategy=s,
                                     all_logits=False, kv_bytes=kv_bytes)[0] for s in ("sequential", "speculative")}
        probe = make_plan(graph, None, context_tokens=context, step_tokens=step, strategy="greedy",
                          all_logits=False, kv_bytes=kv_bytes)
        ideal = probe.peak_bytes
        if budgets is None:
            low = minimum["sequential"][0]
            # each rounded up to the digits shown, so a row's budget is exactly what typing it plans
            budgets = sorted({parse_size(format_size(b, round_up=True)) for b in (
                low, minimum["speculative"][0], at_step["sequential"],
                *(int(low + f * (ideal - low)) for f in (0.25, 0.5)), ideal)})
        cost = CostModel(device_rates())
        plans = []
        for budget in budgets:
            for strategy in ("sequential", "greedy", "speculative", "auto"):
                row = {"budget": format_size(budget) if budget is not None else NO_BUDGET, "strategy": strategy}
                try:
                    plan = make_plan(graph, budget, context_tokens=context, step_tokens=step, strategy=strategy,
                                     all_logits=False, cost_model=cost, kv_bytes=kv_bytes)
                except BudgetTooSmall as exc:
                    row.update(groups=None, note=f"too small (min {format_size(exc.minimum_bytes, round_up=True)})")
                else:
                    row.update(chosen=plan.strategy if strategy == "auto" else None, groups=len(plan.groups),
                               pinned=sum(g.pinned for g in plan.groups), step=plan.step_tokens,
                               streamed=plan.streamed_bytes_per_step, peak=plan.peak_bytes,
                               step_ms=plan.predicted_step_s * 1e3)
                plans.append(row)
        summary = {
            "model": str(model.dir), "architecture": spec.architecture, "layers": spec.num_layers,
            "hidden": spec.hidden_size, "heads": f"{spec.num_heads}/{spec.num_kv_heads} kv",
            "vocab": spec.vocab_size, "experts": f"{spec.experts_per_token} of {spec.num_experts}" if spec.is_moe
            else None, "file_bytes": graph.file_bytes, "resident_weight_bytes": graph.total_weight_bytes(step),
            "kv_bytes_per_token": kv_bytes_of(graph.kv_bytes_per_token), "kv_dtype": kv_dtype,
            "kv_pages": kv_pages, "kv_cache_bytes": kv_bytes, "context": context, "step_tokens": step,
            "minimum_budget": {s: {"bytes": b, "set_by": layer, "step_tokens": MIN_STEP_TOKENS,
                                   "bytes_at_step_tokens": at_step[s]} for s, (b, layer) in minimum.items()},
            "ideal_budget": ideal, "tokenizer": type(model.tokenizer).__name__ if model.tokenizer else None,
        }
    if args.json:
        print(json.dumps({"summary": summary, "layers": layers, "plans": plans}, indent=2))
        return 0
    for key, value in summary.items():
        if key == "minimum_budget":
            for s, v in value.items():
                print(f"{'minimum budget (' + s + ')':>28}: {format_size(v['bytes'], round_up=True)} (set by "
                      f"{v['set_by']}, prefill {v['step_tokens']} token per step; "
                      f"{format_size(v['bytes_at_step_tokens'], round_up=True)} for {step}-token steps)")
        elif value is not None:
            shown = format_size(value) if key.endswith("bytes") or key == "ideal_budget" else value
            print(f"{key.replace('_', ' '):>28}: {shown}")
    print("\nlayers (bytes; activations for one step of", step, "tokens over", context, "positions)")
    print(render(layers, [("layer", "layer"), ("resident", "resident"), ("file", "file"),
                          ("kv_per_token", "KV/token"), ("activations", "activations"),
                          ("macs_per_token", "MACs/token")]))
    print("\nplans (predicted decode step from this device's calibration; step = prefill tokens per step)")
    print(render(plans, [("budget", "budget"), ("strategy", "strategy"), ("chosen", "auto chose"),
                         ("groups", "groups"), ("pinned", "pinned"), ("step", "step"),
                         ("streamed", "streamed B/step"), ("peak", "peak B"), ("step_ms", "step ms"),
                         ("note", "note")]))
    return 0
