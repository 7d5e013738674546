"""Fine-tuning baselines of ACL Table 2: FT-FULL (all parameters) and FT-TOP2.

FT-TOP2 follows the original code (`top_layers==2` branch of gpt2/run_language_modeling.py, paper.md §4.2): the
top two transformer blocks, the final layer norm, and the token embeddings (tied to the LM head) train.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .base import Method, register

_FINAL_NORMS = ("transformer.ln_f", "model.norm", "model.decoder.layer_norm", "model.decoder.layernorm_embedding")


def _get(module: nn.Module, dotted: str) -> nn.Module | None:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


@register("finetune")
class FineTune(Method):
    """All parameters train; dropout stays on (the HF Trainer default used by the paper's FT runs)."""

    def __init__(self, backbone, cfg: Any) -> None:
        super().__init__(backbone, cfg)
        for p in self.model.parameters():
            p.requires_grad_(True)
        top = cfg.get("top_layers")
        if top:
            self.freeze_backbone()
            blocks = backbone.blocks()
            if not 0 < int(top) <= len(blocks):
                raise ValueError(f"method.top_layers={top}: the model has {len(blocks)} blocks")
            keep: list[nn.Module] = list(blocks[-int(top):])
            norm = next((m for m in (_get(self.model, n) for n in _FINAL_NORMS) if m is not None), None)
            if norm is None:
                raise ValueError(f"cannot find the final norm of {type(self.model).__name__}")
            # the token embeddings are tied to the LM head in GPT-2 (the paper's `wte`); where a model does not
            # tie them, the output projection trains too so the same role is covered
            keep += [norm, self.model.get_input_embeddings(), self.model.get_output_embeddings()]
            for module in keep:
                for p in module.parameters():
                    p.requires_grad_(True)

    def export(self):
        return {k: v.detach().clone() for k, v in self.state_dict().items()}
