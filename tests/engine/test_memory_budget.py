"""The budget is real: generation on a model 3x larger than the budget, in a
fresh process, keeps the peak RSS growth over the interpreter's baseline
within budget + 10% + a fixed allowance.

The allowance (6 MiB) covers what no plan can own: the Python objects and
NumPy temporaries of a forward step beyond the planned float32 buffers
(views, index arrays, small reductions), the background prefetch thread's
stack pages, pool bookkeeping, and the page-table pages for the mapped
checkpoint. It is measured, not guessed: the test prints the observed
growth, and the no-budget run shows the same model needs ~3x more.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from support.models import build  # noqa: E402

ALLOWANCE = 6 << 20

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import edgecore.engine, edgecore.planner  # import everything before the baseline
    from edgecore import Engine
    from edgecore.memory import reset_peak_rss, sample_footprint

    path, budget, strategy = sys.argv[1], sys.argv[2], sys.argv[3]
    budget = None if budget == "none" else int(budget)
    prompt = [int(t) for t in np.random.default_rng(0).integers(1, 1000, 48)]
    base = sample_footprint().rss
    if not reset_peak_rss():
        print(json.dumps({"skip": "cannot reset the peak RSS on this kernel"}))
        sys.exit(0)
    with Engine(path, memory_budget=budget, strategy=strategy, context=128, step_tokens=64) as engine:
        result = engine.generate(prompt, max_new_tokens=24)
        plan_peak = engine.plan.peak_bytes
        model_bytes = engine.model.graph.total_weight_bytes(64)
    peak = sample_footprint().peak_rss
    print(json.dumps({"base": base, "peak": peak, "growth": peak - base, "plan_peak": plan_peak,
                      "model_bytes": model_bytes, "tokens": len(result.tokens)}))
""")


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("rss-model")
    # ~60 MB of float32 weights in 16 blocks of ~3.6 MB
    build("llama", path, vocab_size=1000, hidden_size=384, intermediate_size=1024, num_hidden_layers=16,
          num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=160)
    return path


def run(path, budget, strategy):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path), str(budget), strategy],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["greedy", "speculative", "sequential"])
def test_peak_rss_stays_within_budget(big_model, strategy):
    unlimited = run(big_model, "none", "greedy")
    budget = unlimited["model_bytes"] // 3
    limited = run(big_model, budget, strategy)
    print(f"\n{strategy}: model {unlimited['model_bytes'] / 2**20:.1f} MiB, budget {budget / 2**20:.1f} MiB, "
          f"growth {limited['growth'] / 2**20:.1f} MiB (unlimited run: {unlimited['growth'] / 2**20:.1f} MiB)")
    assert limited["tokens"] == 24
    assert limited["plan_peak"] <= budget
    assert limited["growth"] <= budget * 1.10 + ALLOWANCE
    # the unlimited run really needs the whole model: the budget made a difference
    assert unlimited["growth"] > 2 * budget
