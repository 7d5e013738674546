"""Shared fixtures for the core tests: composed configs, tiny random backbones, methods built on them.

Everything here is offline (HF_HUB_OFFLINE=1) and W&B-free (WANDB_MODE=disabled). The tiny models are the ones
in conf/model/tiny_*.yaml (random GPT-2, Llama with grouped-query attention, BART), built in code.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

#: Overrides every core test composes with: the tiny scale and no W&B.
BASE_OVERRIDES = ("scale=tiny", "logger.mode=disabled")
TINY_MODELS = ("gpt2", "llama", "bart")


def _compose(*overrides: str, base: tuple[str, ...] = BASE_OVERRIDES):
    from hydra import compose, initialize_config_dir

    import prefixtune.train  # noqa: F401  (registers the `pt_path` resolver)
    from prefixtune.paths import REPO_ROOT

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


def _tiny_backbone(name: str, *overrides: str):
    from prefixtune.backbone import load_backbone

    model = name if name.startswith("tiny_") else f"tiny_{name}"
    return load_backbone(_compose(f"model={model}", *overrides).model)


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session", autouse=True)
def _quiet_and_small():
    """Tiny models gain nothing from many threads; keep transformers' own chatter down (our loggers untouched,
    so caplog-based tests still see prefixtune's INFO records)."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture
def compose_cfg():
    """`compose_cfg(*overrides)` -> the composed `train` config with `scale=tiny logger.mode=disabled` first."""
    return _compose


@pytest.fixture
def tiny_backbone():
    """`tiny_backbone("gpt2" | "llama" | "bart")` -> a fresh Backbone (methods patch their model, so each call
    builds a new one; the random init is seeded, so two calls give identical weights)."""
    return _tiny_backbone


@pytest.fixture
def tiny_method():
    """`tiny_method(model, *overrides)` -> (backbone, method, cfg) for `model` in gpt2/llama/bart; the overrides
    may touch the model too (e.g. `model.tiny.n_layer=4`)."""
    return _tiny_method


def _tiny_method(model: str, *overrides: str):
    from prefixtune.backbone import load_backbone
    from prefixtune.methods.base import build_method

    name = model if model.startswith("tiny_") else f"tiny_{model}"
    cfg = _compose(f"model={name}", *overrides)
    bb = load_backbone(cfg.model)
    return bb, build_method(bb, cfg.method), cfg
