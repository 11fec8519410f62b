"""`quantize_model`: a Hugging Face directory to a GGUF file, one tensor at a time.

The source is mapped with edgecore's zero-copy safetensors reader; each
GGUF tensor is widened to float32, transformed (see `plan`), encoded and
written before the next is read, and the pages it read are given back, so
the process holds about one source tensor (in float32) plus its encoded
form, whatever the model's size. The file is written next to OUT under a
temporary name and renamed into place only when complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecore.models.layout import model_layout, validate
from edgecore.models.spec import load_spec
from edgecore.quantize.plan import HEAD, KEEP, Job, plan_model
from edgecore.quantize.tokenizer import tokenizer_metadata
from edgecore.quantize.types import FALLBACK, OUT_TYPES, OutType
from edgecore.weights import load_safetensors, to_float32

INSTALL_HINT = 'pip install "edgecore[quantize]"'


class QuantizeError(ValueError):
    """Something `edgecore quantize` cannot do, in one line a user can act on."""


@dataclass
class Summary:
    path: Path
    arch: str
    tensors: int
    source_bytes: int  # bytes of the checkpoint tensors read
    file_bytes: int  # size of the GGUF file written
    by_type: dict[str, int] = field(default_factory=dict)  # type name -> tensors written in it
    fallbacks: list[str] = field(default_factory=list)  # one line per tensor not written in its asked type
    tokenizer: bool = False


Progress = Callable[[int, int, str], None]  # (bytes written, bytes in all, tensor name)


def quantize_model(src: str | os.PathLike, out: str | os.PathLike, wtype: str, head_type: str | None = None, *,
                   force: bool = False, tokenizer: bool = True, progress: Progress | None = None) -> Summary:
    """Write the model in directory ``src`` as GGUF file ``out`` with its
    weight matrices in ``wtype`` and the embedding / output head in
    ``head_type`` (default: ``wtype``); norms, biases and MoE routers stay
    F32. ``tokenizer=False`` leaves out the tokenizer even when ``src`` has a
    tokenizer.json. Raises QuantizeError (or ModelError / SafetensorsError,
    both ValueError) with a one-line message."""
    gguf = _import_gguf()
    main, head = _out_type(wtype, "--type"), _out_type(head_type or wtype, "--head-type")
    src, out = Path(src), Path(out)
    _check_paths(src, out, force)

    spec = load_spec(src)
    weights = load_safetensors(src)
    try:
        names = set(weights)
        layers = model_layout(spec, names)
        validate(layers, {n: weights.info(n) for n in names}, str(src))

        def read(name: str, index: int | None) -> np.ndarray:
            view = weights[name] if index is None else weights[name][index]
            return to_float32(view, dtype=weights.info(name).dtype)

        plan = plan_model(spec, layers, names, read)
        token_meta = ()
        if tokenizer and (src / "tokenizer.json").exists():
            token_meta = tokenizer_metadata(src, spec)

        summary = Summary(out, plan.arch, len(plan.jobs), 0, 0, tokenizer=bool(token_meta))
        chosen = [_choose(job, main, head, summary) for job in plan.jobs]
        writer_meta = (("general.name", "str", src.resolve().name),
                       ("general.file_type", "u32", int(getattr(gguf.LlamaFileType, main.file_type))),
                       ("general.quantization_version", "u32", gguf.GGML_QUANT_VERSION),
                       *plan.metadata, *token_meta)
        summary.source_bytes = sum(weights.info(s).nbytes for s in {s for j in plan.jobs for p in j.parts
                                                                     for s in p.sources})
        _write(gguf, out, plan.arch, writer_meta, plan.jobs, chosen, weights, progress)
    finally:
        weights.close()
    summary.file_bytes = out.stat().st_size
    return summary


def _import_gguf():
    try:
        import gguf
    except ImportError:
        raise QuantizeError(f"writing GGUF files needs the gguf package: {INSTALL_HINT}") from None
    return gguf


def _out_type(name: str, flag: str) -> OutType:
    t = OUT_TYPES.get(name)
    if t is None:
        raise QuantizeError(f"{flag} {name!r} is not a type edgecore quantize writes; choose one of "
                            f"{', '.join(OUT_TYPES)}")
    return t


def _check_paths(src: Path, out: Path, force: bool) -> None:
    if not src.is_dir():
        raise QuantizeError(f"{src}: not a model directory (expected a Hugging Face directory with config.json "
                            f"and safetensors weights)")
    if out.is_dir():
        raise QuantizeError(f"{out}: is a directory; give the path of the .gguf file to write")
    if out.exists() and not force:
        raise QuantizeError(f"{out} already exists; pass --force to overwrite it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise QuantizeError(f"{parent}: the output's directory does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise QuantizeError(f"{parent}: the output's directory is not writable")


def _choose(job: Job, main: OutType, head: OutType, summary: Summary) -> OutType:
    if job.role == KEEP:
        t = OUT_TYPES["f32"]
    else:
        t = head if job.role == HEAD else main
        k = job.shape[-1]
        if not t.fits(k):
            summary.fallbacks.append(f"{job.name}: rows of {k} do not divide into {t.name} blocks of {t.block}; "
                                     f"written as {FALLBACK}")
            t = OUT_TYPES[FALLBACK]
    summary.by_type[t.name] = summary.by_type.get(t.name, 0) + 1
    return t


def _tensor_info(job: Job, t: OutType):
    """(shape, dtype, nbytes) as GGUFWriter.add_tensor_info takes them."""
    k = job.shape[-1]
    nbytes = job.rows * t.row_bytes(k)
    if t.block > 1:  # quantized: the byte shape, which the writer turns back into elements
        return (*job.shape[:-1], t.row_bytes(k)), np.uint8, nbytes
    return job.shape, {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}[t.name], nbytes


def _encode(job: Job, t: OutType, weights) -> np.ndarray:
    """The job's bytes in type ``t``, reading one part at a time and giving
    back the source pages after each."""
    if len(job.parts) == 1:
        part = job.parts[0]
        x = part.load()
        data = t.encode(x.reshape(1, -1) if x.ndim == 1 else x.reshape(-1, job.shape[-1]))
        for name in part.sources:
            weights.drop(name)
        return data
    shape, dtype, _ = _tensor_info(job, t)
    data = np.empty((job.rows, shape[-1]), dtype)
    row = 0
    for part in job.parts:
        x = part.load()
        rows = x.shape[0]
        data[row:row + rows] = t.encode(x)
        row += rows
        for name in part.sources:
            weights.drop(name)
    if row != job.rows:  # the plan's shapes come from a validated layout
        raise AssertionError(f"{job.name}: parts gave {row} rows, expected {job.rows}")
    return data


def _write(gguf, out: Path, arch: str, metadata, jobs, chosen, weights, progress: Progress | None) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent if str(out.parent) else ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        for key, kind, value in metadata:
            _add(gguf, writer, key, kind, value)
        infos = [_tensor_info(job, t) for job, t in zip(jobs, chosen, strict=True)]
        for job, t, (shape, dtype, nbytes) in zip(jobs, chosen, infos, strict=True):
            writer.add_tensor_info(job.name, shape, np.dtype(dtype), nbytes,
                                   raw_dtype=getattr(gguf.GGMLQuantizationType, t.ggml))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total, done = sum(i[2] for i in infos), 0
        for job, t, (_, _, nbytes) in zip(jobs, chosen, infos, strict=True):
            if progress:
                progress(done, total, job.name)
            data = _encode(job, t, weights)
            writer.write_tensor_data(data)
            done += nbytes
            del data
        writer.close()
        if progress:
            progress(total, total, "")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _add(gguf, writer, key: str, kind: str, value) -> None:
    vt = gguf.GGUFValueType
    if kind == "str":
        writer.add_string(key, value)
    elif kind == "u32":
        writer.add_uint32(key, int(value))
    elif kind == "f32":
        writer.add_float32(key, float(value))
    elif kind == "bool":
        writer.add_bool(key, bool(value))
    elif kind == "strs":
        writer.add_key_value(key, list(value), vt.ARRAY, sub_type=vt.STRING)
    elif kind == "i32s":
        writer.add_key_value(key, list(value), vt.ARRAY, sub_type=vt.INT32)
    else:
        raise AssertionError(f"metadata kind {kind!r}")

