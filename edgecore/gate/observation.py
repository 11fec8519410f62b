"""One served request as the gate sees it, and strict parsing of observation lists."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._jsoninput import Fields, InputError, check_int, check_number, join

PROVENANCE_FIELDS = ("route", "scheduler")


@dataclass(frozen=True)
class Observation:
    """What one run (baseline or candidate) recorded for one request.

    ``output_values`` is flattened (row-major) with its ``output_shape``;
    ``route`` and ``scheduler`` are free-form provenance (e.g. the expert
    routing policy, the scheduler's trace fingerprint and admission mode).
    """

    request_id: str
    model: str
    model_version: str
    backend: str
    accelerator: str
    ok: bool
    error: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    decode_ms: tuple[float, ...] | None = None
    output_tokens: tuple[int, ...] | None = None
    output_fingerprint: str | None = None
    output_values: tuple[float, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    kv_pages: int | None = None
    kv_pages_total: int | None = None
    queue_depth: int | None = None
    route: Any = None
    scheduler: Any = None

    @property
    def kv_pressure(self) -> float | None:
        """KV pages used / KV pages available, when both were recorded."""
        if self.kv_pages is None or self.kv_pages_total is None:
            return None
        return self.kv_pages / self.kv_pages_total

    @property
    def segment(self) -> tuple[str, str, str]:
        """(backend, accelerator, model_version): the unit of per-segment summaries."""
        return (self.backend, self.accelerator, self.model_version)

    def to_json(self) -> dict[str, Any]:
        """The observation in the gate's input format (``None`` fields left out)."""
        doc: dict[str, Any] = {
            "request_id": self.request_id, "model": self.model, "model_version": self.model_version,
            "backend": self.backend, "accelerator": self.accelerator, "ok": self.ok,
        }
        optional = {
            "error": self.error, "latency_ms": self.latency_ms, "ttft_ms": self.ttft_ms,
            "decode_ms": list(self.decode_ms) if self.decode_ms is not None else None,
            "output_tokens": list(self.output_tokens) if self.output_tokens is not None else None,
            "output_fingerprint": self.output_fingerprint,
            "output_values": _unflatten(self.output_values, self.output_shape),
            "kv_pages": self.kv_pages, "kv_pages_total": self.kv_pages_total,
            "queue_depth": self.queue_depth, "route": self.route, "scheduler": self.scheduler,
        }
        doc.update((k, v) for k, v in optional.items() if v is not None)
        return doc


def _unflatten(values: tuple[float, ...] | None, shape: tuple[int, ...] | None) -> Any:
    if values is None:
        return None
    if shape is None or len(shape) == 1:
        return list(values)
    width = shape[1]
    return [list(values[i:i + width]) for i in range(0, len(values), width)]


def _number_list(value: Any, path: str, minimum: float | None) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise InputError(path, "a list of numbers", value)
    return tuple(check_number(v, join(path, i), minimum) for i, v in enumerate(value))


def _output_values(value: Any, path: str) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """A vector or a matrix (list of equal-length rows) of numbers; NaN and
    infinities are allowed (a model output may contain them)."""

    def num(v: Any, p: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(p, "a number", v)
        return float(v)

    if not isinstance(value, list) or not value:
        raise InputError(path, "a non-empty list of numbers or of equal-length lists of numbers", value)
    if all(not isinstance(v, list) for v in value):
        return tuple(num(v, join(path, i)) for i, v in enumerate(value)), (len(value),)
    width = len(value[0]) if isinstance(value[0], list) else -1
    flat: list[float] = []
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != width or width == 0:
            raise InputError(join(path, i), f"a list of {max(width, 1)} number(s) like row 0", row)
        flat.extend(num(v, join(join(path, i), j)) for j, v in enumerate(row))
    return tuple(flat), (len(value), width)


def parse_observation(value: Any, path: str) -> Observation:
    """Validate one observation object; errors name the JSON path."""
    f = Fields(value, path)
    identity = {name: f.str(name) for name in ("request_id", "model", "model_version", "backend",
                                                "accelerator")}
    ok = f.bool("ok")
    error = f.str("error", None)
    if ok and error is not None:
        raise InputError(join(path, "error"), "no error message on an observation with \"ok\": true", error)
    latency = f.number("latency_ms", None, minimum=0)
    if ok and latency is None:
        raise InputError(join(path, "latency_ms"), "the latency of a successful request (ms)",
                         value.get("latency_ms"))
    values = shape = None
    if f.has("output_values"):
        values, shape = _output_values(f.raw("output_values"), join(path, "output_values"))
    tokens = None
    if f.has("output_tokens"):
        raw = f.list("output_tokens")
        tokens = tuple(check_int(t, join(join(path, "output_tokens"), i), 0) for i, t in enumerate(raw))
    decode = None
    if f.has("decode_ms"):
        decode = _number_list(f.list("decode_ms"), join(path, "decode_ms"), 0)
    kv_pages = f.int("kv_pages", None, minimum=0)
    kv_total = f.int("kv_pages_total", None, minimum=1)
    if kv_pages is not None and kv_total is not None and kv_pages > kv_total:
        raise InputError(join(path, "kv_pages"), f"at most kv_pages_total ({kv_total})", kv_pages)
    obs = Observation(
        **identity,
        ok=ok,
        error=error,
        latency_ms=latency,
        ttft_ms=f.number("ttft_ms", None, minimum=0),
        decode_ms=decode,
        output_tokens=tokens,
        output_fingerprint=f.str("output_fingerprint", None),
        output_values=values,
        output_shape=shape,
        kv_pages=kv_pages,
        kv_pages_total=kv_total,
        queue_depth=f.int("queue_depth", None, minimum=0),
        route=f.raw("route", None),
        scheduler=f.raw("scheduler", None),
    )
    f.done()
    return obs


def parse_observations(value: Any, path: str) -> list[Observation]:
    """A list of observations with unique request ids."""
    if not isinstance(value, list):
        raise InputError(path, "a list of observations", value)
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(value):
        obs = parse_observation(item, join(path, i))
        if obs.request_id in seen:
            raise InputError(join(join(path, i), "request_id"), "a request id unique within " + path,
                             obs.request_id, note=f"already used by {path}[{seen[obs.request_id]}]")
        seen[obs.request_id] = i
        out.append(obs)
    return out


def values_close(baseline: float, candidate: float, abs_tol: float, rel_tol: float) -> bool:
    """|c - b| <= abs_tol + rel_tol * |b|; NaN matches only NaN, infinities only themselves."""
    if math.isnan(baseline) or math.isnan(candidate):
        return math.isnan(baseline) and math.isnan(candidate)
    if math.isinf(baseline) or math.isinf(candidate):
        return baseline == candidate
    return abs(candidate - baseline) <= abs_tol + rel_tol * abs(baseline)
