"""Instructions per route() call, counted by callgrind: a timing-free
measure that is stable on a busy machine (wall-clock medians are in
study_expert_cache.py).

Each case runs twice under ``valgrind --tool=callgrind`` (N decode steps, and
none, after the same set-up and warm-up); the difference divided by N is the
cost of one step from Python: the loop iteration, the call, the checks, the
Routing object and the compiled router. A third run calls ``len`` instead of
route() to give the loop-and-call floor.

    python bench/route_callgrind.py           # a few minutes
    python bench/route_callgrind.py --calls 5000

Writes bench/results/route_callgrind.json. Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import table, write_json  # noqa: E402

# what one child process runs: set up a router, warm up, then route `calls` tokens
CHILD = """
import sys
import numpy as np
sys.path.insert(0, {bench!r})
from study_expert_cache import ar1_trace, iid_trace
from edgecore.moe import MemoryAwareRouter

experts, top_k, calls, mode = {experts}, {top_k}, {calls}, {mode!r}
make = iid_trace if mode.endswith("iid") else ar1_trace
rows = [np.ascontiguousarray(r[None]) for r in make(256, 1, experts, top_k, 7).logits[:, 0]]
if mode == "plain":
    step = MemoryAwareRouter(experts, top_k).route
elif mode == "loop":
    step = len
else:
    step = MemoryAwareRouter(experts, top_k, cache_bonus=0.5, capacity=experts // 2).route


def run(n, step=step, rows=rows):  # locals, as in an engine's layer loop
    for i in range(n):
        step(rows[i & 255])


run(1024)
run(calls)
"""

CASES = [
    ("plain: bonus 0, no capacity", "plain"),
    ("memory-aware: bonus 0.5, capacity E/2, AR(1) logits", "aware"),
    ("memory-aware: bonus 0.5, capacity E/2, iid logits", "aware-iid"),
    ("loop + call floor (len instead of route)", "loop"),
]


def instructions(experts: int, top_k: int, calls: int, mode: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "child.py"
        script.write_text(CHILD.format(bench=str(HERE), experts=experts, top_k=top_k, calls=calls, mode=mode))
        # one thread everywhere: idle BLAS or kernel workers would add instructions
        # that depend on how long the run takes, not on what it does
        env = {**os.environ, "PYTHONHASHSEED": "0", "EDGECORE_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1"}
        out = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", sys.executable,
                              str(script)], capture_output=True, text=True, env=env, check=True)
        match = re.search(r"Collected\s*:\s*([\d,]+)", out.stderr)
        if match is None:
            raise RuntimeError(f"callgrind printed no instruction count:\n{out.stderr[-2000:]}")
        return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10000, help="routes counted per case (default 10000)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("route_callgrind: valgrind is not installed")
    rows = []
    for experts, top_k in ((8, 2), (64, 8)):
        for label, mode in CASES:
            base = instructions(experts, top_k, 0, mode)
            full = instructions(experts, top_k, args.calls, mode)
            rows.append({"E": experts, "k": top_k, "case": label, "instructions_per_call": (full - base) / args.calls})
            print(f"  E={experts} k={top_k} {label}: {rows[-1]['instructions_per_call']:.0f}", flush=True)
    print(table(rows, [("E", "E"), ("k", "k"), ("case", "case"), ("instructions_per_call", "instructions/call")]))
    print(f"wrote {write_json('route_callgrind', {'calls': args.calls, 'rows': rows})}")


if __name__ == "__main__":
    main()
