"""`edgecore quantize SRC OUT.gguf --type T`: a Hugging Face model directory to a GGUF file."""

from __future__ import annotations

import sys

from edgecore.cli import CliError

TYPES = ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "f16", "bf16", "f32")


def register(sub) -> None:
    p = sub.add_parser("quantize", help="write a Hugging Face model as a GGUF file (f16, bf16, q8_0, q4_0 ...)",
                       description="Convert a Hugging Face model directory (config.json + F32/F16/BF16 safetensors; "
                                   "GPT-2, Llama, Mistral, Mixtral, Gemma 3) to a GGUF file that llama.cpp and "
                                   "edgecore load: "
                                   "llama.cpp's tensor names and architecture metadata, the tokenizer when the "
                                   "directory has a byte-level BPE tokenizer.json, norms, biases and MoE routers in "
                                   "F32. Quantized blocks are bit for bit those of the gguf package's quantizer. "
                                   "Needs the gguf package: pip install \"edgecore[quantize]\".")
    p.add_argument("src", metavar="SRC", help="Hugging Face model directory")
    p.add_argument("out", metavar="OUT.gguf", help="GGUF file to write")
    p.add_argument("--type", dest="wtype", required=True, choices=TYPES, metavar="T",
                   help=f"type of the weight matrices: {', '.join(TYPES)}")
    p.add_argument("--head-type", choices=TYPES, metavar="T",
                   help="type of the token embedding and output head (default: --type)")
    p.add_argument("--no-tokenizer", action="store_true", help="leave the tokenizer out of the file")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.memory import format_size
    from edgecore.quantize import QuantizeError, quantize_model

    bar = _Bar(sys.stderr)
    try:
        summary = quantize_model(args.src, args.out, args.wtype, args.head_type, force=args.force,
                                 tokenizer=not args.no_tokenizer, progress=bar)
    except ValueError as exc:  # QuantizeError, ModelError, SafetensorsError: one line each
        bar.abandon()
        raise CliError(str(exc), status=2 if isinstance(exc, QuantizeError) else 1) from None
    except OSError as exc:
        bar.abandon()
        raise CliError(f"cannot write {args.out}: {exc.strerror or exc}", status=1) from None
    for line in summary.fallbacks:
        print(f"edgecore quantize: note: {line}", file=sys.stderr)
    types = ", ".join(f"{n} {name}" for name, n in sorted(summary.by_type.items()))
    ratio = summary.file_bytes / summary.source_bytes if summary.source_bytes else 0.0
    print(f"{summary.path}: {summary.arch}, {summary.tensors} tensors ({types}), "
          f"tokenizer {'included' if summary.tokenizer else 'not included'}; "
          f"{format_size(summary.source_bytes)} -> {format_size(summary.file_bytes)} ({ratio:.2f}x)")
    return 0


class _Bar:
    """A progress bar on stderr: redrawn in place on a terminal, a line per
    tenth of the work otherwise (logs stay short)."""

    WIDTH = 30

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = -1
        self.open = False

    def __call__(self, done: int, total: int, name: str) -> None:
        frac = done / total if total else 1.0
        step = int(frac * (100 if self.tty else 10))
        if step == self.shown:
            return
        self.shown = step
        fill = int(frac * self.WIDTH)
        line = f"edgecore quantize: [{'#' * fill}{'.' * (self.WIDTH - fill)}] {100 * frac:3.0f}% {name}"
        if self.tty:
            print(f"\r{line:<100}", end="\n" if done >= total else "", file=self.stream, flush=True)
            self.open = done < total
        else:
            print(line.rstrip(), file=self.stream, flush=True)

    def abandon(self) -> None:
        if self.open:
            print(file=self.stream, flush=True)
            self.open = False
