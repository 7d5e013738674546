"""Methods made of other methods on one backbone: the "unified view" combinations.

* **mam** (He et al. 2022, §4.4): prefix-tuning on attention + a scaled parallel adapter at the FFN.
* **unipelt** (Mao et al. 2022): LoRA on W_q/W_v, a prefix on every layer's keys/values and a sequential
  adapter after the FFN, each scaled by its own learned gate (methods/gates.py).
A combination is a config (conf/method/mam.yaml, unipelt.yaml) whose `parts` are ordinary method configs, each
built from the registry; the trainer still sees one Method. Parts keep their own modules and hooks; their
trained tensors are saved and exported under `<part>/`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Method, build_method, register


class Combination(Method):
    def __init__(self, backbone, cfg: Any) -> None:
        super().__init__(backbone, cfg)
        self.freeze_backbone()
        parts = dict(cfg.parts)
        if not parts:
            raise ValueError(f"method.parts of {cfg.name} is empty")
        self.parts = nn.ModuleDict({name: build_method(backbone, part) for name, part in parts.items()})
        prefixes = [n for n, p in self.parts.items() if getattr(p, "pools", None) is not None]
        if len(prefixes) > 1:
            raise ValueError(f"method.parts {prefixes}: one prefix per model (they share the attention hook)")
        self.extra_batch_keys = tuple(dict.fromkeys(k for p in self.parts.values() for k in p.extra_batch_keys))
        self.inside_model = tuple(dict.fromkeys(k for p in self.parts.values() for k in p.inside_model))

    def extra_source_tokens(self) -> int:
        return sum(p.extra_source_tokens() for p in self.parts.values())

    def prepare(self, extras: dict[str, torch.Tensor]) -> None:
        for part in self.parts.values():
            part.prepare(extras)

    def release(self) -> None:
        for part in self.parts.values():
            part.release()

    def export(self) -> dict[str, torch.Tensor]:
        return {f"{name}/{k}": v for name, part in self.parts.items() for k, v in part.export().items()}

    def load_export(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, part in self.parts.items():
            own = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{name}/")}
            part.load_export(own)
        unknown = sorted(k for k in tensors if k.split("/", 1)[0] not in self.parts)
        if unknown:
            raise KeyError(f"artefact tensors for no part of {self.cfg.name}: {unknown[:5]}")


@register("mam")
class MAMAdapter(Combination):
    """Prefix (attention) + scaled parallel adapter (FFN)."""


@register("unipelt")
class UniPELT(Combination):
    """Gated LoRA + gated prefix + gated sequential adapter."""
