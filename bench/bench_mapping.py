"""What mapping weights costs in memory: map a 1 GiB safetensors file, read
10% of it, drop it again, and compare with reading the file into memory.

For each phase it reports the process's RSS (and RssFile, the file pages
mapped in) from /proc/self/status, the bytes of the file mapped into this
process (pagemap) and the bytes in the page cache (mincore). Timings are
medians over repeated cycles. Prints a table and writes
bench/results/mapping.json.

    python bench/bench_mapping.py [--size 1G] [--touch 0.1] [--repeats 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgecore.memory import format_size, parse_size, reset_peak_rss, sample_footprint
from edgecore.weights import PAGE_SIZE, load_safetensors, save_safetensors

TENSOR_BYTES = 64 << 20  # like the weight matrices of a small model


def write_model(path: Path, size: int) -> list[str]:
    count = max(1, size // TENSOR_BYTES)
    rng = np.random.default_rng(0)
    tensors = {f"layers.{i}.weight": rng.standard_normal(TENSOR_BYTES // 4, dtype=np.float32)
               for i in range(count)}
    save_safetensors(path, tensors)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages, so the page cache can drop them
    finally:
        os.close(fd)
    return list(tensors)


def touch(weights, names: list[str], fraction: float) -> float:
    """Read the first ``fraction`` of the data, tensor by tensor, as a
    forward pass would; returns a checksum so the reads cannot be skipped."""
    budget = int(weights.nbytes * fraction)
    total = 0.0
    for name in names:
        if budget <= 0:
            break
        view = weights[name]
        take = min(view.size, budget // view.itemsize)
        total += float(np.add.reduce(view[:take], dtype=np.float64))
        budget -= take * view.itemsize
    return total


def phase(name: str, weights, baseline) -> dict:
    sample = sample_footprint([weights] if weights is not None and not weights.closed else [])
    mapped = sample.mapped[0] if sample.mapped else None
    return {
        "phase": name,
        "rss": sample.rss, "rss_delta": sample.rss - baseline.rss,
        "rss_file": sample.rss_file, "rss_file_delta": sample.rss_file - baseline.rss_file,
        "peak_rss_delta": sample.peak_rss - baseline.rss,
        "mapped_resident": None if mapped is None else mapped.resident,
        "page_cache": None if mapped is None else mapped.cached,
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="file size (default 1G)")
    parser.add_argument("--touch", type=float, default=0.10, help="fraction of data to read (default 0.1)")
    parser.add_argument("--repeats", type=int, default=5, help="cycles for the timing medians (default 5)")
    parser.add_argument("--dir", default=None, help="where to write the file (default: a temp dir)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "mapping.json"))
    args = parser.parse_args()
    size = parse_size(args.size)

    workdir = Path(tempfile.mkdtemp(prefix="edgecore-bench-", dir=args.dir))
    path = workdir / "model.safetensors"
    try:
        names = write_model(path, size)
        file_bytes = path.stat().st_size
        reset_peak_rss()
        baseline = sample_footprint()
        rows = []

        weights = load_safetensors(path)
        weights.drop(evict=True)  # start cold: nothing of the file in the page cache
        rows.append(phase("header read (load_safetensors)", weights, baseline))
        views = [weights[name] for name in names]
        rows.append(phase(f"mapped, {len(views)} tensor views made", weights, baseline))
        cold = timed(lambda: touch(weights, names, args.touch))
        rows.append(phase(f"read {args.touch:.0%} (cold page cache)", weights, baseline))
        weights.drop()
        rows.append(phase("drop() (MADV_DONTNEED)", weights, baseline))
        weights.drop(evict=True)
        rows.append(phase("drop(evict=True) (+ FADV_DONTNEED)", weights, baseline))

        # timing medians: cold reads (page cache evicted) and warm ones (cached, unmapped)
        cold_times, warm_times, prefetch_times = [cold], [], []
        first = names[: max(1, int(len(names) * args.touch))]
        for _ in range(args.repeats):
            weights.drop(evict=True)
            cold_times.append(timed(lambda: touch(weights, names, args.touch)))
            weights.drop()
            warm_times.append(timed(lambda: touch(weights, names, args.touch)))
            weights.drop()
            prefetch_times.append(timed(lambda: [weights.prefetch(n, wait=True) for n in first]))
        rows.append(phase(f"prefetch(wait=True) of {len(first)} tensor(s)", weights, baseline))
        del views
        weights.close()
        rows.append(phase("closed", None, baseline))

        reset_peak_rss()
        copies = []
        copy_time = timed(lambda: copies.append(np.fromfile(path, dtype=np.uint8)))
        rows.append(phase("contrast: whole file read into memory", None, baseline))
        copies.clear()
    finally:
        for child in workdir.iterdir():
            child.unlink()
        workdir.rmdir()

    mib = 1 << 20
    print(f"\nbench_mapping: {format_size(file_bytes)} file of "
          f"{len(names)} F32 tensors, reading {args.touch:.0%}; page size {PAGE_SIZE}; "
          f"{platform.machine()}, Linux {platform.release()}\n")
    header = f"{'phase':<42} {'RSS Δ':>10} {'RssFile Δ':>10} {'mapped':>10} {'page cache':>11} {'peak Δ':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = [r[key] for key in ("rss_delta", "rss_file_delta", "mapped_resident", "page_cache",
                                    "peak_rss_delta")]
        text = [f"{c / mib:9.1f}M" if c is not None else f"{'-':>10}" for c in cells]
        print(f"{r['phase']:<42} {text[0]:>10} {text[1]:>10} {text[2]:>10} {text[3]:>11} {text[4]:>10}")
    timings = {
        f"read {args.touch:.0%}, cold (median s)": statistics.median(cold_times),
        f"read {args.touch:.0%}, warm page cache (median s)": statistics.median(warm_times),
        f"prefetch(wait) {len(first)} tensor(s), warm (median s)": statistics.median(prefetch_times),
        "np.fromfile whole file (s)": copy_time,
    }
    print()
    for name, seconds in timings.items():
        print(f"{name:<52} {seconds:8.3f}")

    result = {
        "benchmark": "mapping",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"arch": platform.machine(), "kernel": platform.release(), "page_size": PAGE_SIZE,
                    "cpus": os.cpu_count()},
        "file_bytes": file_bytes, "tensors": len(names), "touch_fraction": args.touch,
        "repeats": args.repeats,
        "phases": rows,
        "timings_s": timings,
        "raw_times_s": {"cold": cold_times, "warm": warm_times, "prefetch": prefetch_times},
        "note": "deltas are against the RSS after writing the file and resetting the peak; 'mapped' is the "
                "file's bytes in this process's page tables (pagemap), 'page cache' the file's bytes in "
                "the kernel's page cache (mincore)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
