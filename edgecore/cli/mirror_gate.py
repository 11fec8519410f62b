"""`edgecore mirror-gate`: gate traffic mirrored to two serving stacks, from their request logs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from edgecore.cli.gate import add_gate_arguments

    p = subparsers.add_parser(
        "mirror-gate",
        help="normalise vLLM/SGLang-style request logs into observations and run the release gate",
        description=(
            "Read baseline and candidate request logs (vLLM-style RequestOutput records or SGLang-"
            "style /generate responses, streamed or not), derive latency, TTFT and per-token decode "
            "gaps from their timestamps, and gate them like `edgecore gate`. See docs/gate.md."
        ),
    )
    p.add_argument("--input", required=True, metavar="MIRROR.json",
                   help='{"policy"?: {...}, "baseline": LOG, "candidate": LOG}')
    add_gate_arguments(p)
    p.add_argument("--observations", metavar="GATE.json",
                   help="also write the normalised observations (an `edgecore gate` input)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgecore._jsoninput import InputError, read_document
    from edgecore.cli._io import input_error, write_json
    from edgecore.cli.gate import finish, resolve_policy
    from edgecore.gate import gate
    from edgecore.gate.mirror import parse_mirror_input

    try:
        parsed = parse_mirror_input(read_document(args.input))
    except InputError as exc:
        raise input_error(args.input, exc) from None
    policy = resolve_policy(args, parsed.policy)
    if args.observations:
        write_json({"policy": policy.to_json(),
                    "baseline": [o.to_json() for o in parsed.baseline],
                    "candidate": [o.to_json() for o in parsed.candidate]}, args.observations)
    return finish(gate(parsed.baseline, parsed.candidate, policy), args)
