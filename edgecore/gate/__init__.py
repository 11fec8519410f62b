"""Release gate: a candidate run against a baseline -> promote, hold or rollback.

Pure Python, no NumPy. See docs/gate.md for the input, policy and decision
formats, the rules and the defaults.
"""

from .checks import Check, Pair, Traffic, join_traffic, run_checks
from .decision import HOLD, PROMOTE, ROLLBACK, GateInput, decide, gate, parse_gate_input
from .observation import Observation, parse_observation, parse_observations
from .policy import CHECKS, OutputRule, Policy, load_policy, parse_policy

__all__ = [
    "CHECKS", "Check", "GateInput", "HOLD", "Observation", "OutputRule", "PROMOTE", "Pair", "Policy",
    "ROLLBACK", "Traffic", "decide", "gate", "join_traffic", "load_policy", "parse_gate_input",
    "parse_observation", "parse_observations", "parse_policy", "run_checks",
]
