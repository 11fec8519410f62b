"""What a mirrored log does not say about itself: which model version ran on
which backend and accelerator (and, optionally, route/scheduler provenance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._jsoninput import Fields


@dataclass(frozen=True)
class Deployment:
    """The run a log came from; copied onto every observation made from it."""

    model: str
    model_version: str
    backend: str
    accelerator: str
    route: Any = None
    scheduler: Any = None


def parse_deployment(value: Any, path: str) -> Deployment:
    f = Fields(value, path)
    d = Deployment(
        model=f.str("model"),
        model_version=f.str("model_version"),
        backend=f.str("backend"),
        accelerator=f.str("accelerator"),
        route=f.raw("route", None),
        scheduler=f.raw("scheduler", None),
    )
    f.done()
    return d
