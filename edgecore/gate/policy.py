"""Gate policy: thresholds, output-comparison rules and required provenance.

Every field has a documented default (docs/gate.md), so ``{}`` is a valid
policy. Policies are JSON objects or TOML documents with the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .._jsoninput import Fields, InputError, check_str_list, join, read_document
from .observation import PROVENANCE_FIELDS, Observation

EXACT = "exact"
NUMERIC = "numeric"

# every check, in report order, with the decision a failure leads to
CHECKS = {
    "matched_traffic": "hold",
    "provenance": "hold",
    "output_exact": "rollback",
    "output_numeric": "rollback",
    "error_rate": "rollback",
    "latency_p95": "hold",
    "ttft_p95": "hold",
    "decode_p95": "hold",
    "kv_pressure": "hold",
}


@dataclass(frozen=True)
class OutputRule:
    """How outputs are compared for the candidate observations it matches.

    ``model``/``backend``/``accelerator`` left as None match anything; the
    first matching rule of the policy applies, else the policy's default.
    """

    mode: str = EXACT
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    model: str | None = None
    backend: str | None = None
    accelerator: str | None = None

    def matches(self, obs: Observation) -> bool:
        return ((self.model is None or self.model == obs.model)
                and (self.backend is None or self.backend == obs.backend)
                and (self.accelerator is None or self.accelerator == obs.accelerator))

    def scope(self) -> dict[str, str]:
        """The non-wildcard matchers, for reports."""
        return {k: v for k, v in (("model", self.model), ("backend", self.backend),
                                  ("accelerator", self.accelerator)) if v is not None}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.scope())
        doc.update(mode=self.mode, abs_tol=self.abs_tol, rel_tol=self.rel_tol)
        return doc


@dataclass(frozen=True)
class Policy:
    """Release-gate thresholds. Fractions are plain ratios (0.10 = 10 %)."""

    output: OutputRule = field(default_factory=OutputRule)
    output_rules: tuple[OutputRule, ...] = ()
    max_error_rate_increase: float = 0.01
    max_latency_p95_regression: float = 0.10
    max_ttft_p95_regression: float = 0.10
    max_decode_p95_regression: float = 0.10
    max_kv_pressure: float = 0.90
    min_matched_requests: int = 20
    min_matched_fraction: float = 0.90
    required_provenance: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()

    def rule_for(self, candidate: Observation) -> OutputRule:
        """The output rule that applies to a candidate observation."""
        for rule in self.output_rules:
            if rule.matches(candidate):
                return rule
        return self.output

    def to_json(self) -> dict[str, Any]:
        """The effective policy, in the policy file format."""
        out = self.output.to_json()
        out["rules"] = [r.to_json() for r in self.output_rules]
        doc: dict[str, Any] = {"output": out}
        for f in fields(self):
            if f.name not in ("output", "output_rules"):
                value = getattr(self, f.name)
                doc[f.name] = list(value) if isinstance(value, tuple) else value
        return doc


def _rule(f: Fields, wildcard_ok: bool) -> OutputRule:
    defaults = OutputRule()
    rule = OutputRule(
        mode=f.str("mode", defaults.mode, choices=(EXACT, NUMERIC)),
        abs_tol=f.number("abs_tol", defaults.abs_tol, minimum=0),
        rel_tol=f.number("rel_tol", defaults.rel_tol, minimum=0),
        model=f.str("model", None) if wildcard_ok else None,
        backend=f.str("backend", None) if wildcard_ok else None,
        accelerator=f.str("accelerator", None) if wildcard_ok else None,
    )
    return rule


def parse_policy(doc: Any, path: str = "policy") -> Policy:
    """Validate a policy object (from JSON or TOML); errors name the path."""
    f = Fields(doc, path)
    d = Policy()
    output = OutputRule()
    rules: list[OutputRule] = []
    if f.has("output"):
        out = f.obj("output")
        output = _rule(out, wildcard_ok=False)
        for i, item in enumerate(out.list("rules", [])):
            rf = Fields(item, join(join(out.path, "rules"), i))
            rule = _rule(rf, wildcard_ok=True)
            rf.done()
            rules.append(rule)
        out.done()
    required = tuple(check_str_list(f.list("required_provenance", []), join(path, "required_provenance")))
    for i, name in enumerate(required):
        if name not in PROVENANCE_FIELDS:
            raise InputError(join(join(path, "required_provenance"), i),
                             "one of " + ", ".join(f'"{p}"' for p in PROVENANCE_FIELDS), name)
    disable = tuple(check_str_list(f.list("disable", []), join(path, "disable")))
    for i, name in enumerate(disable):
        if name not in CHECKS:
            raise InputError(join(join(path, "disable"), i), "a check name (" + ", ".join(CHECKS) + ")", name)
    policy = Policy(
        output=output,
        output_rules=tuple(rules),
        max_error_rate_increase=f.number("max_error_rate_increase", d.max_error_rate_increase, minimum=0),
        max_latency_p95_regression=f.number("max_latency_p95_regression", d.max_latency_p95_regression,
                                            minimum=0),
        max_ttft_p95_regression=f.number("max_ttft_p95_regression", d.max_ttft_p95_regression, minimum=0),
        max_decode_p95_regression=f.number("max_decode_p95_regression", d.max_decode_p95_regression,
                                           minimum=0),
        max_kv_pressure=f.number("max_kv_pressure", d.max_kv_pressure, minimum=0),
        min_matched_requests=f.int("min_matched_requests", d.min_matched_requests, minimum=0),
        min_matched_fraction=f.number("min_matched_fraction", d.min_matched_fraction, minimum=0),
        required_provenance=required,
        disable=disable,
    )
    if policy.min_matched_fraction > 1:
        raise InputError(join(path, "min_matched_fraction"), "a fraction between 0 and 1",
                         policy.min_matched_fraction)
    f.done()
    return policy


def load_policy(file: str | Path) -> Policy:
    """Read a policy file: TOML when the name ends in .toml, JSON otherwise."""
    return parse_policy(read_document(file), path="")
