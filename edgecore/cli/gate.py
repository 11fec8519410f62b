"""`edgecore gate`: compare a candidate run with a baseline -> promote / hold / rollback."""

from __future__ import annotations

import argparse

# --exit-code statuses, distinct from 2 (user error)
EXIT_CODES = {"promote": 0, "hold": 10, "rollback": 20}


def add_gate_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `gate` and `mirror-gate`."""
    p.add_argument("--policy", metavar="POLICY.{json,toml}",
                   help="policy file (overrides a policy embedded in the input)")
    p.add_argument("--output", metavar="DECISION.json", help="write the decision JSON here ('-' = stdout)")
    p.add_argument("--exit-code", action="store_true",
                   help="exit 0 on promote, 10 on hold, 20 on rollback (for CI)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gate",
        help="release gate: baseline vs candidate observations -> promote / hold / rollback",
        description=(
            "Join baseline and candidate observations by request id, run every check of the policy "
            "(outputs, numeric tolerance, error rate, latency/TTFT/decode p95, KV pressure, matched "
            "traffic, provenance) and decide. See docs/gate.md."
        ),
    )
    p.add_argument("--input", required=True, metavar="GATE.json",
                   help='{"policy"?: {...}, "baseline": [...], "candidate": [...]}')
    add_gate_arguments(p)
    p.set_defaults(func=run)


def resolve_policy(args: argparse.Namespace, embedded):
    """The --policy file if given, else the input's own policy, else the defaults."""
    from edgecore._jsoninput import InputError
    from edgecore.cli._io import input_error
    from edgecore.gate import Policy, load_policy

    if args.policy:
        try:
            return load_policy(args.policy)
        except InputError as exc:
            raise input_error(args.policy, exc) from None
    return embedded if embedded is not None else Policy()


def finish(report: dict, args: argparse.Namespace) -> int:
    """Write/print the decision; the exit status for --exit-code."""
    from edgecore.cli._io import write_json

    if args.output:
        write_json(report, args.output)
    if args.output != "-":
        print_decision(report)
    return EXIT_CODES[report["decision"]] if args.exit_code else 0


def print_decision(report: dict) -> None:
    t = report["traffic"]
    print(f"decision: {report['decision'].upper()}  "
          f"({t['matched']} matched of {t['baseline']} baseline / {t['candidate']} candidate requests)")
    for c in report["checks"]:
        mark = {"pass": "ok", "fail": "FAIL", "missing": "MISSING"}.get(c["status"], c["status"])
        print(f"  {c['name']:<16} {mark:<15} {c['detail']}")
    for item in report["triage"]:
        print(f"  -> {item['response']}: {item['check']} (owner: {item['owner_hint']}): "
              f"{item['next_action']}")


def run(args: argparse.Namespace) -> int:
    from edgecore._jsoninput import InputError, read_document
    from edgecore.cli._io import input_error
    from edgecore.gate import gate, parse_gate_input

    try:
        parsed = parse_gate_input(read_document(args.input))
    except InputError as exc:
        raise input_error(args.input, exc) from None
    policy = resolve_policy(args, parsed.policy)
    return finish(gate(parsed.baseline, parsed.candidate, policy), args)
