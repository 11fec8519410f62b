"""A random-weight Llama with SmolLM2-135M's shape and SmolLM2's tokenizer (for bench_serve.py runs that
should not depend on the pretrained weights).

    python bench/make_smollm2_shape.py OUT_DIR [--gguf FILE]   # default: `edgecore pull smollm2`'s file

The tokenizer (and chat template, special tokens, EOS ids) is rebuilt from the GGUF's metadata by
edgecore.models.tokenizer_gguf and saved as tokenizer.json; the weights are transformers' random
initialization, stored float16. Needs torch + transformers (the reference extra).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from common import real_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--gguf", type=Path, default=real_model("smollm2"))
    args = ap.parse_args()

    import torch
    from support.gguf_meta import gguf_metadata
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgecore.models.tokenizer_gguf import gguf_eos_token_ids, tokenizer_from_gguf

    args.out.mkdir(parents=True, exist_ok=True)
    meta = gguf_metadata(args.gguf)
    tok = tokenizer_from_gguf(meta, source=str(args.gguf))
    tok._tok.save(str(args.out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **tok.special_tokens,
              "chat_template": meta.get("tokenizer.chat_template")}
    (args.out / "tokenizer_config.json").write_text(json.dumps(config))
    eos = list(gguf_eos_token_ids(meta))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                      rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1,
                      eos_token_id=eos[0])
    LlamaForCausalLM(cfg).to(torch.float16).save_pretrained(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
