"""Instructions per gemm micro-kernel call on aarch64, counted under QEMU
user-mode emulation: a timing-free proxy for the neon kernels on a machine
without an arm CPU (timing under QEMU means nothing).

bench/neon_icount.c is cross-compiled with the scalar and neon kernel
sources and their tables; for every table line of the chosen types it runs
the line's micro-kernel over a 64 x 1536 weight as the linear driver tiles
it, once and three times, under ``qemu-aarch64 -d in_asm,exec,nochain``
(QEMU_CPU max without SVE, so dotprod and i8mm run); half the difference is
one call. Counts are of executed guest instructions, not cycles: sdot and a
scalar add both count 1.

    python bench/neon_icount.py                      # SmolLM2's and Gemma 3's types, M = 1 and 8
    python bench/neon_icount.py --types q4_1 --m 1 4 8

Needs aarch64-linux-gnu-gcc and qemu-aarch64-static (apt), and the arm64
rootfs of tools/check-aarch64.sh as the sysroot ($EDGECORE_AARCH64_CACHE/rootfs).
Writes bench/results/neon_icount.json.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from common import table, write_json  # noqa: E402

FLAGS = ["-O3", "-std=gnu11", "-ffp-contract=off", "-fno-math-errno", "-Icsrc/include", "-Icsrc"]
FEATURE_FLAGS = {"dotprod": "-march=armv8.2-a+dotprod", "i8mm": "-march=armv8.2-a+dotprod+i8mm"}
FEATURE_BITS = {8: "dotprod", 16: "i8mm"}  # ec_feature bits of the neon tier
SKIP = {"kernels_scalar.c", "attention_scalar.c", "pertoken_scalar.c"}  # f32/per-token kernels: not counted
DEFINES = ["-DEC_BUILD_NEON=1", "-DEC_BUILD_DOTPROD=1", "-DEC_BUILD_I8MM=1"]


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        sys.exit(f"neon_icount: {tool} not found; apt-get install gcc-aarch64-linux-gnu qemu-user-static")
    return path


def build(out: Path) -> Path:
    cc = need("aarch64-linux-gnu-gcc")
    root = Path(os.environ.get("EDGECORE_AARCH64_CACHE", "/var/cache/edgecore-aarch64")) / "rootfs"
    if not (root / "usr/include/stdio.h").exists():
        sys.exit(
            f"neon_icount: no arm64 sysroot at {root}; run tools/check-aarch64.sh once "
            "(with EDGECORE_AARCH64_CACHE pointing where it should live)"
        )
    base = [cc, f"--sysroot={root}", *FLAGS, *DEFINES]
    groups = [
        (["csrc/common/wtypes.c", *sorted(glob.glob("csrc/scalar/*_scalar.c"))], []),
        (sorted(glob.glob("csrc/arm/neon/q*.c") + glob.glob("csrc/arm/neon/actquant*.c")), []),
    ]
    groups += [(sorted(glob.glob(f"csrc/arm/neon/{f}/*.c")), [flag]) for f, flag in FEATURE_FLAGS.items()]
    objects = []
    for sources, extra in groups:
        for src in sources:
            if os.path.basename(src) in SKIP:
                continue
            obj = out / (src.replace("/", "_") + ".o")
            subprocess.run([*base, *extra, "-c", src, "-o", str(obj)], check=True, cwd=REPO)
            objects.append(str(obj))
    exe = out / "neon_icount"
    subprocess.run([*base, "-static", "bench/neon_icount.c", *objects, "-lm", "-o", str(exe)], check=True, cwd=REPO)
    return exe


def qemu(exe: Path, args: list) -> str:
    env = dict(os.environ, QEMU_CPU="max,sve=off")
    cmd = [need("qemu-aarch64-static"), str(exe), *map(str, args)]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def executed(exe: Path, args: list, log: Path) -> int:
    """Guest instructions executed by one run (translation blocks' sizes
    times their executions, chaining off so every execution is logged)."""
    env = dict(os.environ, QEMU_CPU="max,sve=off")
    subprocess.run(
        [need("qemu-aarch64-static"), "-d", "in_asm,exec,nochain", "-D", str(log), str(exe), *map(str, args)],
        check=True,
        capture_output=True,
        env=env,
    )
    sizes: dict[int, int] = {}
    total, block = 0, None
    insn = re.compile(r"0x([0-9a-f]+):\s")
    trace = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
    with open(log) as f:
        for line in f:
            if line.startswith("IN:"):
                block = None
            elif m := insn.match(line):
                if block is None:
                    block = int(m.group(1), 16)
                    sizes[block] = 0
                sizes[block] += 1
            elif m := trace.match(line):
                total += sizes.get(int(m.group(1), 16), 0)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", nargs="+", default=["q4_1", "q8_0", "q4_0", "q4_k", "q6_k", "f16"])
    ap.add_argument("--m", nargs="+", type=int, default=[1, 8])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        lines = [ln.split() for ln in qemu(exe, ["list"]).splitlines() if ln]
        rows = []
        for name in args.types:
            variants = [ln for ln in lines if ln[2] == name and ln[6] == "1"]
            if not variants:
                sys.exit(f"neon_icount: no gemm kernel for type '{name}' in the tables")
            for m in args.m:
                scalar = None
                for tier, line, _, features, mr, nr, _ in variants:
                    feats = [n for bit, n in FEATURE_BITS.items() if int(features) & bit]
                    label = "+".join([["scalar", "neon"][int(tier)], *feats])
                    log = Path(tmp) / "qemu.log"
                    one = executed(exe, ["run", tier, line, m, 1], log)
                    three = executed(exe, ["run", tier, line, m, 3], log)
                    per_call = (three - one) / 2
                    weight_bytes = int(qemu(exe, ["run", tier, line, m, 0]).split()[0])
                    scalar = scalar or per_call
                    rows.append(
                        {
                            "type": name,
                            "m": m,
                            "variant": label,
                            "tile": f"{mr}x{nr}",
                            "instructions": int(per_call),
                            "per_weight_byte": per_call / weight_bytes,
                            "per_byte_per_row": per_call / weight_bytes / m,
                            "vs_scalar": scalar / per_call,
                        }
                    )
                    print(f"{name} M={m} {label}: {int(per_call)}", file=sys.stderr)
    print(
        table(
            rows,
            [
                ("type", "type"),
                ("m", "M"),
                ("variant", "variant"),
                ("tile", "mr x nr"),
                ("instructions", "instr/call"),
                ("per_weight_byte", "instr/weight B"),
                ("per_byte_per_row", "instr/B/row"),
                ("vs_scalar", "vs scalar"),
            ],
        )
    )
    path = write_json("neon_icount", {"shape": {"n": 64, "k": 1536}, "qemu_cpu": "max,sve=off", "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
