"""Rewrite a Mixtral checkpoint between the two safetensors layouts of the expert weights.

``per-expert`` (what ``save_pretrained`` writes by default, also in transformers 5.x,
and what the original Mixtral releases use)::

    model.layers.{i}.block_sparse_moe.gate.weight            [E, d]
    model.layers.{i}.block_sparse_moe.experts.{j}.w1.weight  [I, d]   gate projection
    model.layers.{i}.block_sparse_moe.experts.{j}.w3.weight  [I, d]   up projection
    model.layers.{i}.block_sparse_moe.experts.{j}.w2.weight  [d, I]   down projection

``fused`` (transformers >= 5 in memory; written by ``save_pretrained(..., save_original_format=False)``)::

    model.layers.{i}.mlp.gate.weight                         [E, d]
    model.layers.{i}.mlp.experts.gate_up_proj                [E, 2I, d]  rows [0, I) = w1, [I, 2I) = w3
    model.layers.{i}.mlp.experts.down_proj                   [E, d, I]   = w2 stacked

The rewrite only moves bytes (stack / concatenate / split), so it works for
every dtype (F32, F16, BF16, ...) without NumPy knowing the dtype, and a round
trip is bit-exact.  All other tensors and files are copied unchanged.  It exists
so the engine can be tested on both layouts from one trained checkpoint.

    python tools/mixtral_layout.py SRC_DIR DST_DIR --to fused
    python tools/mixtral_layout.py SRC_DIR DST_DIR --to per-expert
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np

# Bytes per element of each safetensors dtype; tensors are handled as raw bytes.
_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
_PER_EXPERT = re.compile(r"^(.*\.layers\.\d+)\.block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$")
_PER_EXPERT_GATE = re.compile(r"^(.*\.layers\.\d+)\.block_sparse_moe\.gate\.weight$")
_FUSED = re.compile(r"^(.*\.layers\.\d+)\.mlp\.experts\.(gate_up_proj|down_proj)$")
_FUSED_GATE = re.compile(r"^(.*\.layers\.\d+)\.mlp\.gate\.weight$")


class Tensor:
    """A tensor as safetensors stores it: dtype name, shape and raw little-endian bytes."""

    def __init__(self, dtype: str, shape: list[int], data: np.ndarray) -> None:
        if dtype not in _ITEMSIZE:
            raise ValueError(f"unsupported safetensors dtype {dtype!r}; expected one of {sorted(_ITEMSIZE)}")
        # Raw bytes with the element size as a trailing axis, so stack/split work per element.
        self.dtype, self.shape = dtype, list(shape)
        self.data = np.ascontiguousarray(data, dtype=np.uint8).reshape(*shape, _ITEMSIZE[dtype])


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str] | None]:
    """Read every tensor of a safetensors file (names -> Tensor) and its ``__metadata__``."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < 8:
        raise ValueError(f"{path}: {raw.size} bytes is too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8].tobytes())
    if 8 + n > raw.size:
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({raw.size} bytes)")
    header = json.loads(raw[8 : 8 + n].tobytes())
    meta = header.pop("__metadata__", None)
    body = raw[8 + n :]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64)) * _ITEMSIZE.get(info["dtype"], 0)
        if not 0 <= start <= end <= body.size or end - start != count:
            raise ValueError(
                f"{path}: tensor {name!r} has data_offsets {info['data_offsets']} that do not fit "
                f"dtype {info['dtype']} shape {info['shape']} inside {body.size} data bytes"
            )
        tensors[name] = Tensor(info["dtype"], info["shape"], body[start:end])
    return tensors, meta


def write_safetensors(path: Path, tensors: dict[str, Tensor], meta: dict[str, str] | None) -> None:
    """Write tensors (sorted by name, 8-byte aligned header) in the safetensors format."""
    header: dict[str, object] = {"__metadata__": meta} if meta else {}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.data.size]}
        offset += t.data.size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in sorted(tensors):
            f.write(tensors[name].data.tobytes())


def detect_layout(names: list[str]) -> str:
    """``"per-expert"``, ``"fused"`` or raise if the checkpoint has neither (or both) expert layouts."""
    per = any(_PER_EXPERT.match(n) for n in names)
    fused = any(_FUSED.match(n) for n in names)
    if per == fused:
        raise ValueError(
            "checkpoint has "
            + ("both per-expert and fused" if per else "no Mixtral")
            + " expert tensors; expected exactly one layout"
        )
    return "per-expert" if per else "fused"


def _same_dtype(parts: list[Tensor], what: str) -> str:
    dtypes = {p.dtype for p in parts}
    if len(dtypes) != 1:
        raise ValueError(f"{what}: experts mix dtypes {sorted(dtypes)}")
    return parts[0].dtype


def to_fused(tensors: dict[str, Tensor], num_experts: int) -> dict[str, Tensor]:
    """Per-expert tensors -> fused ``gate_up_proj`` / ``down_proj`` (other tensors unchanged)."""
    out: dict[str, Tensor] = {}
    experts: dict[str, dict[tuple[str, int], Tensor]] = {}
    for name, t in tensors.items():
        if m := _PER_EXPERT.match(name):
            experts.setdefault(m.group(1), {})[(m.group(3), int(m.group(2)))] = t
        elif m := _PER_EXPERT_GATE.match(name):
            out[f"{m.group(1)}.mlp.gate.weight"] = t
        else:
            out[name] = t
    for layer, parts in experts.items():
        missing = [
            f"experts.{j}.{w}" for w in ("w1", "w2", "w3") for j in range(num_experts) if (w, j) not in parts
        ]
        if missing or len(parts) != 3 * num_experts:
            raise ValueError(
                f"{layer}: expected w1/w2/w3 for experts 0..{num_experts - 1}; missing {missing}"
            )
        w1 = [parts[("w1", j)] for j in range(num_experts)]
        w2 = [parts[("w2", j)] for j in range(num_experts)]
        w3 = [parts[("w3", j)] for j in range(num_experts)]
        dtype = _same_dtype(w1 + w2 + w3, layer)
        gate_up = np.stack([np.concatenate([a.data, b.data], axis=0) for a, b in zip(w1, w3, strict=True)])
        down = np.stack([w.data for w in w2])
        out[f"{layer}.mlp.experts.gate_up_proj"] = Tensor(dtype, list(gate_up.shape[:-1]), gate_up)
        out[f"{layer}.mlp.experts.down_proj"] = Tensor(dtype, list(down.shape[:-1]), down)
    return out


def to_per_expert(tensors: dict[str, Tensor], num_experts: int) -> dict[str, Tensor]:
    """Fused ``gate_up_proj`` / ``down_proj`` -> per-expert ``w1`` / ``w3`` / ``w2`` (others unchanged)."""
    out: dict[str, Tensor] = {}
    for name, t in tensors.items():
        if m := _FUSED.match(name):
            layer, kind = m.groups()
            if t.shape[0] != num_experts:
                raise ValueError(f"{name}: leading dimension {t.shape[0]} != num_local_experts {num_experts}")
            prefix = f"{layer}.block_sparse_moe.experts"
            for j in range(num_experts):
                if kind == "down_proj":
                    out[f"{prefix}.{j}.w2.weight"] = Tensor(t.dtype, t.shape[1:], t.data[j])
                    continue
                if t.shape[1] % 2:
                    raise ValueError(
                        f"{name}: gate_up_proj dimension 1 is {t.shape[1]}, expected an even 2*I"
                    )
                half = t.shape[1] // 2
                out[f"{prefix}.{j}.w1.weight"] = Tensor(t.dtype, [half, t.shape[2]], t.data[j, :half])
                out[f"{prefix}.{j}.w3.weight"] = Tensor(t.dtype, [half, t.shape[2]], t.data[j, half:])
        elif m := _FUSED_GATE.match(name):
            out[f"{m.group(1)}.block_sparse_moe.gate.weight"] = t
        else:
            out[name] = t
    return out


def convert(src: Path, dst: Path, layout: str) -> str:
    """Copy checkpoint directory ``src`` to ``dst`` with experts in ``layout``; return the source layout."""
    src, dst = Path(src), Path(dst)
    if layout not in ("fused", "per-expert"):
        raise ValueError(f"layout {layout!r}: expected 'fused' or 'per-expert'")
    if (src / "model.safetensors.index.json").exists():
        raise ValueError(
            f"{src}: sharded checkpoints are not supported by this helper (one model.safetensors)"
        )
    weights = src / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found")
    config = json.loads((src / "config.json").read_text())
    if config.get("model_type") != "mixtral":
        raise ValueError(f"{src}/config.json: model_type {config.get('model_type')!r}, expected 'mixtral'")
    if src.resolve() == dst.resolve():
        raise ValueError("SRC and DST must differ")
    tensors, meta = read_safetensors(weights)
    have = detect_layout(list(tensors))
    n = int(config["num_local_experts"])
    out = tensors if have == layout else (to_fused if layout == "fused" else to_per_expert)(tensors, n)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy2(f, dst / f.name)
    write_safetensors(dst / "model.safetensors", out, meta)
    return have


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="Mixtral checkpoint directory (config.json + model.safetensors)")
    p.add_argument("dst", type=Path, help="output directory")
    p.add_argument("--to", choices=["fused", "per-expert"], required=True, help="layout to write")
    args = p.parse_args(argv)
    try:
        have = convert(args.src, args.dst, args.to)
    except (ValueError, FileNotFoundError) as e:
        p.exit(2, f"mixtral_layout: error: {e}\n")
    print(f"{args.src} ({have}) -> {args.dst} ({args.to})")


if __name__ == "__main__":
    main()
