"""`owner/name` as a Hugging Face hub model, when huggingface_hub is installed.

Only the files edgecore reads are downloaded (config, generation config,
tokenizer, chat template, safetensors), into the hub's own cache, so a
model fetched once is found again offline. Every failure (no package,
offline, unknown repository, a repository without safetensors) is one
ModelError line, never a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgecore.models.spec import ModelError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_]")
FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "chat_template.jinja", "*.safetensors", "model.safetensors.index.json"]


def looks_like_hub_id(name: str) -> bool:
    return bool(HUB_ID.fullmatch(name)) and ".." not in name


def hub_snapshot(repo_id: str) -> Path:
    """The local snapshot folder of a hub model (downloaded if needed)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ModelError(f"{repo_id}: not a local path; to download it from the Hugging Face hub install "
                         f"huggingface_hub (pip install huggingface_hub)") from None
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=FILES))
    except Exception as exc:  # offline, unknown repo, gated repo, HTTP errors: one line each
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{repo_id}: could not fetch it from the Hugging Face hub ({type(exc).__name__}: "
                         f"{first[:200]}); offline, a model is found only if it was fetched before") from None
    if not (path / "config.json").exists() or not any(path.glob("*.safetensors")):
        raise ModelError(f"{repo_id}: the hub repository has no config.json + safetensors weights (a GGUF-only "
                         f"repository? download one .gguf file and pass its path)")
    return path
