"""How long opening a GGUF file takes (the whole header parsed and
validated, metadata built) with edgecore's reader, next to the `gguf`
package's GGUFReader on the same file. Prints a table and writes
bench/results/gguf_header.json.

    python bench/bench_gguf_header.py [FILE.gguf ...] [--repeats 5] [--no-reference]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import real_model, table, write_json  # noqa: E402

from edgecore.memory import format_size  # noqa: E402
from edgecore.weights import load_gguf  # noqa: E402

DEFAULT_FILES = [str(path) for path in (real_model("smollm2"), real_model("gemma3")) if path]


def seconds(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-reference", action="store_true", help="skip the gguf package's GGUFReader")
    args = parser.parse_args()
    if not args.files:
        parser.error("no GGUF files given and none of the default model files exist")

    rows = []
    for name in args.files:
        path = Path(name)
        with load_gguf(path) as f:
            row = {"file": path.name, "header": format_size(f.data_start), "keys": len(f.metadata),
                   "tensors": len(f), "header_bytes": f.data_start}
        row["edgecore_s"] = seconds(lambda: load_gguf(path).close(), args.repeats)
        row["reference_s"] = None
        if not args.no_reference:
            import gguf

            row["reference_s"] = seconds(lambda: gguf.GGUFReader(path), 1)
        rows.append(row)

    shown = [{**r, "edgecore": f"{r['edgecore_s'] * 1e3:.0f} ms",
              "reference": "not measured" if r["reference_s"] is None else f"{r['reference_s'] * 1e3:.0f} ms"}
             for r in rows]
    print(table(shown, [("file", "file"), ("header", "header"), ("keys", "keys"), ("tensors", "tensors"),
                        ("edgecore", f"load_gguf (median of {args.repeats})"), ("reference", "gguf.GGUFReader")]))
    print(f"wrote {write_json('gguf_header', {'repeats': args.repeats, 'rows': rows})}")


if __name__ == "__main__":
    main()
