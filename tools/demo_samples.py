"""Print sample generations of the built-in demo models, made by ``transformers`` itself.

The models are byte-level (token id = byte value, see tools/train_demo.py), so
a prompt is its UTF-8 bytes and the output bytes are decoded as UTF-8.  Used
for the samples recorded in docs/demo-models.md:

    python tools/demo_samples.py edgecore/demo/gpt2-bytes edgecore/demo/mixtral-bytes
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

PROMPTS = ["The list", "The import statement", "An exception"]


def generate(model: torch.nn.Module, prompt: str, max_new_tokens: int, sample: bool, seed: int) -> str:
    """Continue ``prompt`` greedily or by sampling (temperature 0.8, top-k 40); return the new text."""
    ids = torch.tensor([list(prompt.encode("utf-8"))])
    torch.manual_seed(seed)
    kwargs = dict(do_sample=True, temperature=0.8, top_k=40) if sample else dict(do_sample=False)
    with torch.inference_mode():
        mask = torch.ones_like(ids)
        out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, **kwargs)
    return bytes(out[0, ids.shape[1] :].tolist()).decode("utf-8", errors="replace")


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoModelForCausalLM

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", type=Path, nargs="+", help="checkpoint directories")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for path in args.models:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        print(f"### `{path}` ({type(model).__name__})\n")
        for prompt in PROMPTS:
            for sample in (False, True):
                how = f"sampled (temperature 0.8, top-k 40, seed {args.seed})" if sample else "greedy"
                text = generate(model, prompt, args.max_new_tokens, sample, args.seed)
                print(f"Prompt `{prompt}`, {how}:\n\n```text\n{prompt}{text}\n```\n")


if __name__ == "__main__":
    main()
