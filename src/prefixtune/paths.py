"""Where things live on disk. Every location can be moved with an environment variable so that a
shared cluster install can keep data and models outside the checkout."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Prepared datasets (`make setup` fills it; git-ignored)."""
    return _env_path("PREFIXTUNE_DATA", REPO_ROOT / "data")


def models_dir() -> Path:
    """Local model caches, e.g. the SmolLM2 safetensors converted from the GGUF at set-up."""
    return _env_path("PREFIXTUNE_MODELS", REPO_ROOT / "models")


def shared_dir() -> Path:
    """The optional `../shared` folder beside the checkout (offline copies of data that cannot be downloaded)."""
    return _env_path("PREFIXTUNE_SHARED", REPO_ROOT.parent / "shared")


def results_dir() -> Path:
    return _env_path("PREFIXTUNE_RESULTS", REPO_ROOT / "results")


def gpt2_tokenizer_dir() -> Path:
    """GPT-2 BPE files: from the model hub for users who have it; here from a local copy made at set-up."""
    return models_dir() / "gpt2-tokenizer"
