"""A Hugging Face `tokenizer.json` as GGUF `tokenizer.ggml.*` metadata, the
way llama.cpp's converter writes a byte-level BPE vocabulary.

Only byte-level BPE is written (GPT-2, Llama 3, SmolLM and the like):
`tokenizer.ggml.pre` must name the pre-tokenizer llama.cpp will use, and a
wrong name would tokenize silently wrong, so a pre-tokenizer that is not
recognised here is refused (the caller may leave the tokenizer out).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgecore.models.spec import ModelError, ModelSpec

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5  # llama.cpp's token types

_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def tokenizer_metadata(model_dir: Path, spec: ModelSpec) -> tuple[tuple[str, str, object], ...]:
    """(key, kind, value) entries for the GGUF file; kinds: str, u32, bool,
    strs (string array), i32s (int32 array). Raises ModelError naming what
    cannot be written."""
    path = model_dir / "tokenizer.json"
    doc = _json(path)
    model = doc.get("model") or {}
    if model.get("type") != "BPE":
        raise ModelError(f"{path}: a {model.get('type')!r} tokenizer cannot be written to GGUF by edgecore "
                         f"(byte-level BPE only)")
    if doc.get("normalizer") is not None:
        raise ModelError(f"{path}: tokenizers with a normalizer are not supported (byte-level BPE has none)")
    pre = _pre_name(doc.get("pre_tokenizer"), path)

    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        raise ModelError(f"{path}: model.vocab must be an object of token -> id")
    by_id: dict[int, tuple[str, int]] = {int(i): (tok, NORMAL) for tok, i in vocab.items()}
    for added in doc.get("added_tokens") or []:
        by_id[int(added["id"])] = (added["content"], CONTROL if added.get("special") else USER_DEFINED)
    n = max(by_id) + 1 if by_id else 0
    if n > spec.vocab_size:
        raise ModelError(f"{path}: the tokenizer has {n} tokens but the model's vocab_size is {spec.vocab_size}")
    # rows of the embedding no token uses (padding to a round vocab_size) get placeholder tokens
    tokens, types = [], []
    for i in range(spec.vocab_size):
        token, kind = by_id.get(i, (f"[PAD{i}]", UNUSED))
        tokens.append(token)
        types.append(kind)

    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    meta = [("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.pre", "str", pre),
            ("tokenizer.ggml.tokens", "strs", tokens), ("tokenizer.ggml.token_type", "i32s", types),
            ("tokenizer.ggml.merges", "strs", merges)]

    ids = {tok: i for i, (tok, _) in by_id.items()}
    config = _json(model_dir / "tokenizer_config.json") if (model_dir / "tokenizer_config.json").exists() else {}
    special = {
        "bos_token_id": spec.bos_token_id,
        "eos_token_id": spec.eos_token_ids[0] if spec.eos_token_ids else None,
        "padding_token_id": None,
        "unknown_token_id": ids.get(model.get("unk_token")) if model.get("unk_token") else None,
    }
    for key, name in (("bos_token_id", "bos_token"), ("eos_token_id", "eos_token"), ("padding_token_id", "pad_token")):
        if special[key] is None and _token_text(config.get(name)) in ids:
            special[key] = ids[_token_text(config.get(name))]
    for key, value in special.items():
        if value is not None:
            if not 0 <= value < spec.vocab_size:
                raise ModelError(f"{model_dir}: {key} {value} is outside the vocabulary [0, {spec.vocab_size})")
            meta.append((f"tokenizer.ggml.{key}", "u32", value))
    meta.append(("tokenizer.ggml.add_bos_token", "bool", _adds_bos(doc, config, special["bos_token_id"])))

    template = config.get("chat_template")
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        template = jinja.read_text(encoding="utf-8")
    if isinstance(template, str) and template:
        meta.append(("tokenizer.chat_template", "str", template))
    return tuple(meta)


def _json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return doc


def _token_text(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _pre_name(pre, path: Path) -> str:
    """llama.cpp's name for the text split a byte-level pre-tokenizer does."""
    def byte_level(p, regex: bool) -> bool:
        return (isinstance(p, dict) and p.get("type") == "ByteLevel" and not p.get("add_prefix_space", False)
                and bool(p.get("use_regex", True)) == regex)

    steps = pre.get("pretokenizers") if isinstance(pre, dict) and pre.get("type") == "Sequence" else [pre]
    if len(steps) == 1 and byte_level(steps[0], True):
        return "gpt-2"
    if len(steps) == 2 and byte_level(steps[1], True) and steps[0].get("type") == "Digits" \
            and steps[0].get("individual_digits"):
        return "smollm"
    if len(steps) == 2 and byte_level(steps[1], False) and steps[0].get("type") == "Split" \
            and (steps[0].get("pattern") or {}).get("Regex") == _LLAMA3_REGEX:
        return "llama-bpe"
    raise ModelError(f"{path}: pre-tokenizer not recognised as one llama.cpp knows (GPT-2, SmolLM or Llama 3 "
                     f"byte-level BPE); pass --no-tokenizer to write the model without its tokenizer")


def _adds_bos(doc: dict, config: dict, bos: int | None) -> bool:
    """tokenizer_config.json's add_bos_token, else whether tokenizer.json's
    post-processor puts the BOS token first in a single sequence."""
    if isinstance(config.get("add_bos_token"), bool):
        return config["add_bos_token"]
    post = doc.get("post_processor") or {}
    processors = post.get("processors", []) if post.get("type") == "Sequence" else [post]
    for p in processors:
        if p.get("type") == "TemplateProcessing" and p.get("single"):
            first = p["single"][0].get("SpecialToken")
            if first is None or bos is None:
                return False
            return (p.get("special_tokens") or {}).get(first["id"], {}).get("ids") == [bos]
    return False
