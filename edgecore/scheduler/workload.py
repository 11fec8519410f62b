"""Workload files: a scheduler configuration and the requests to replay."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._jsoninput import Fields, InputError, join, read_document
from .request import ADMISSION_MODES, Request, SchedulerConfig

_DEFAULT_AGING = SchedulerConfig.__dataclass_fields__["aging_ticks"].default
_DEFAULT_ADMISSION = SchedulerConfig.__dataclass_fields__["admission"].default


@dataclass(frozen=True)
class Workload:
    """A replayable workload. ``output_tokens`` (request id -> tokens generated
    before end of sequence) drives the simulated executor; requests absent
    from it generate ``max_new_tokens``."""

    config: SchedulerConfig
    requests: tuple[Request, ...]
    output_tokens: dict[str, int] = field(default_factory=dict)
    name: str = ""
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        """The workload in its file format."""
        items = []
        for r in self.requests:
            item: dict[str, Any] = {
                "id": r.id, "prompt_tokens": r.prompt_tokens, "max_new_tokens": r.max_new_tokens,
                "priority": r.priority, "arrival_tick": r.arrival_tick,
            }
            if r.id in self.output_tokens:
                item["output_tokens"] = self.output_tokens[r.id]
            items.append(item)
        doc: dict[str, Any] = {}
        if self.name:
            doc["name"] = self.name
        if self.description:
            doc["description"] = self.description
        doc["config"] = self.config.to_json()
        doc["requests"] = items
        return doc


def parse_workload(doc: Any) -> Workload:
    """Validate a parsed workload document; errors name the JSON path."""
    top = Fields(doc, "", "a workload object with \"config\" and \"requests\"")
    name = top.str("name", "")
    description = top.str("description", "")
    cfg = top.obj("config")
    config = SchedulerConfig(
        kv_pages=cfg.int("kv_pages", minimum=1),
        page_tokens=cfg.int("page_tokens", minimum=1),
        max_active=cfg.int("max_active", minimum=1),
        prefill_budget=cfg.int("prefill_budget", minimum=1),
        decode_width=cfg.int("decode_width", minimum=1),
        admission=cfg.str("admission", _DEFAULT_ADMISSION, choices=ADMISSION_MODES),
        aging_ticks=cfg.int("aging_ticks", _DEFAULT_AGING, minimum=1),
    )
    cfg.done()
    requests = []
    outputs: dict[str, int] = {}
    first_use: dict[str, int] = {}
    for i, item in enumerate(top.list("requests")):
        path = join("requests", i)
        f = Fields(item, path)
        rid = f.str("id")
        if rid in first_use:
            raise InputError(join(path, "id"), "a unique request id", rid,
                             note=f"already used by requests[{first_use[rid]}]")
        try:
            rid.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(join(path, "id"), "valid Unicode text", rid, note="lone surrogate") from None
        first_use[rid] = i
        max_new = f.int("max_new_tokens", minimum=1)
        request = Request(
            id=rid,
            prompt_tokens=f.int("prompt_tokens", minimum=1),
            max_new_tokens=max_new,
            priority=f.int("priority", 0),
            arrival_tick=f.int("arrival_tick", 0, minimum=0),
        )
        if f.has("output_tokens"):
            out = f.int("output_tokens", minimum=1)
            if out > max_new:
                raise InputError(join(path, "output_tokens"), f"at most max_new_tokens ({max_new})", out)
            outputs[rid] = out
        f.done()
        requests.append(request)
    top.done()
    return Workload(config, tuple(requests), outputs, name, description)


def load_workload(file: str | Path) -> Workload:
    """Read and validate a workload JSON file (``InputError`` on any mistake)."""
    return parse_workload(read_document(file))
