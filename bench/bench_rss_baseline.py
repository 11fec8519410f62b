"""What a run's resident memory is made of: the interpreter and the
libraries `edgecore run` imports (outside the budget), then what the
budget counts (the engine's pool: weights, KV cache, activations, scratch).

Each row is a fresh process (RSS from /proc/self/status after the step):
    python                   a bare interpreter
    + numpy                  NumPy
    + edgecore.cli           the command line (what `edgecore --help` loads)
    + engine imports         kernels, planner, engine, tokenizers, jinja2: all a run imports
    + demo engine            Engine("demo", budget): weights, KV cache, activations
    + generate 32            after generating 32 tokens (peak RSS, and the pool's peak)

The baseline README "Memory budget" quotes is the "+ engine imports" row.
Prints a table and writes bench/results/rss_baseline.json.

    python bench/bench_rss_baseline.py
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import machine_info, write_json

from edgecore._child import python_command

STEPS = [
    ("python", ""),
    ("+ numpy", "import numpy"),
    ("+ edgecore.cli", "import numpy, edgecore.cli"),
    ("+ engine imports", "import numpy, edgecore.cli, edgecore.engine, edgecore.planner, edgecore.cli.run, "
                         "tokenizers, jinja2"),
    ("+ demo engine", "import numpy, edgecore.cli, edgecore.engine, edgecore.planner, edgecore.cli.run, tokenizers, "
                      "jinja2\nfrom edgecore import Engine\ne = Engine('demo', memory_budget='64M')"),
    ("+ generate 32", "import numpy, edgecore.cli, edgecore.engine, edgecore.planner, edgecore.cli.run, tokenizers, "
                      "jinja2\nfrom edgecore import Engine\ne = Engine('demo', memory_budget='64M')\n"
                      "e.generate('The list', max_new_tokens=32)"),
]
PROBE = ("\nimport json\nfrom edgecore.memory import sample_footprint\nf = sample_footprint()\n"
         "pool = globals().get('e') and e.pool.stats().peak\n"
         "print(json.dumps({'rss': f.rss, 'peak_rss': f.peak_rss, 'pool_peak': pool}))")


def main() -> None:
    rows = []
    for name, code in STEPS:
        samples = []
        for _ in range(3):  # the median of three fresh processes
            done = subprocess.run(python_command(code + PROBE), capture_output=True, text=True, check=True)
            samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
        samples.sort(key=lambda s: s["rss"])
        rows.append({"step": name, **samples[1]})
    print(f"{'step':<20} {'RSS MiB':>9} {'peak MiB':>9} {'pool peak MiB':>14}")
    for r in rows:
        pool = f"{r['pool_peak'] / 2**20:14.1f}" if r["pool_peak"] else f"{'-':>14}"
        print(f"{r['step']:<20} {r['rss'] / 2**20:9.1f} {r['peak_rss'] / 2**20:9.1f} {pool}")
    path = write_json("rss_baseline", {"machine": machine_info(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
