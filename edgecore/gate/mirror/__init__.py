"""Mirror adapters: normalise vLLM-style and SGLang-style request logs into
gate observations, so traffic mirrored to two serving stacks can be gated.

Input: ``{"policy"?: {...}, "baseline": LOG, "candidate": LOG}`` where a LOG
is ``{"format": "vllm" | "sglang", "deployment": {...}, "records": [...]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._jsoninput import Fields, InputError, join
from ..observation import Observation
from ..policy import Policy, parse_policy
from .deployment import Deployment, parse_deployment
from .sglang import parse_sglang_record
from .vllm import parse_vllm_record

PARSERS = {"vllm": parse_vllm_record, "sglang": parse_sglang_record}


@dataclass(frozen=True)
class MirrorInput:
    """A parsed mirror document: the optional policy and both runs' observations."""

    policy: Policy | None
    baseline: list[Observation]
    candidate: list[Observation]


def parse_log(value: Any, path: str) -> list[Observation]:
    """One run's log as observations (request ids must be unique)."""
    f = Fields(value, path)
    fmt = f.str("format", choices=tuple(PARSERS))
    deployment: Deployment = parse_deployment(f.raw("deployment"), join(path, "deployment"))
    records = f.list("records")
    f.done()
    parse = PARSERS[fmt]
    out: list[Observation] = []
    seen: dict[str, int] = {}
    for i, record in enumerate(records):
        rpath = join(join(path, "records"), i)
        obs = parse(record, rpath, deployment)
        if obs.request_id in seen:
            raise InputError(rpath, "a record with a request id unique within the log", obs.request_id,
                             note=f"already used by {path}.records[{seen[obs.request_id]}]")
        seen[obs.request_id] = i
        out.append(obs)
    return out


def parse_mirror_input(doc: Any) -> MirrorInput:
    """Validate a mirror-gate document; errors name the record and field."""
    f = Fields(doc, "", 'a mirror input object with "baseline" and "candidate" logs')
    f.str("description", None)  # free text for people
    policy = parse_policy(f.raw("policy"), "policy") if f.has("policy") else None
    baseline = parse_log(f.raw("baseline"), "baseline")
    candidate = parse_log(f.raw("candidate"), "candidate")
    f.done()
    return MirrorInput(policy, baseline, candidate)


__all__ = ["Deployment", "MirrorInput", "PARSERS", "parse_log", "parse_mirror_input",
           "parse_sglang_record", "parse_vllm_record"]
