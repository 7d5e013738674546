"""LoRA (Hu et al. 2021) on the attention projections, through PEFT rather than re-written: `LoraConfig` +
`inject_adapter_in_model` put PEFT's LoRA layers into the backbone in place (no PeftModel wrapper), so the
trainer, decoder and the other methods see an ordinary model. The frozen weight W0 is untouched; each target
computes W0 x + (alpha / r) * B A dropout(x) with B = 0 at the start.

Targets default to PEFT's per-architecture mapping: Llama and BART `q_proj`, `v_proj` (the LoRA paper's W_q, W_v);
GPT-2 `c_attn`, its fused q/k/v projection, so on GPT-2 LoRA also adapts W_k (the LoRA repo's own GPT-2 code
splits the fused matrix; PEFT does not).

`method.gate` (UniPELT, Mao et al. 2022) scales each LoRA update by a learned gate of the layer input:
W0 x + G(x) * (alpha / r) * B A x; the key is absent from conf/method/lora.yaml (absent = off) and set by
conf/method/unipelt.yaml.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .base import INJECTED, Method, register
from .gates import Gate

log = logging.getLogger(__name__)
ADAPTER = "default"


def inject_lora(backbone, cfg: Any) -> list[tuple[str, nn.Module]]:
    """Put PEFT LoRA layers into `backbone.model`; return (name, layer) for every adapted projection."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULT_TARGETS

    model_type = backbone.model.config.model_type
    targets = list(cfg.get("target_modules") or DEFAULT_TARGETS.get(model_type) or [])
    if not targets:
        raise ValueError(f"method.target_modules: no default LoRA targets for model type {model_type!r}")
    conf = LoraConfig(r=int(cfg.r), lora_alpha=float(cfg.alpha), lora_dropout=float(cfg.dropout),
                      target_modules=targets, bias="none", fan_in_fan_out=model_type == "gpt2")
    inject_adapter_in_model(conf, backbone.model, adapter_name=ADAPTER)
    layers = [(n, m) for n, m in backbone.model.named_modules() if isinstance(m, LoraLayer)]
    if not layers:
        raise ValueError(f"method.target_modules={targets} matched no module of {type(backbone.model).__name__}")
    for n, p in backbone.model.named_parameters():
        p.requires_grad_(any(f in n for f in INJECTED))
    return layers


def attach_gate(layer: nn.Module, gate: Gate) -> None:
    """Multiply the LoRA branch (the output of lora_B, before PEFT's alpha/r scaling) by gate(layer input)."""
    stash: dict[str, torch.Tensor] = {}

    def keep_input(module, args, kwargs):
        stash["x"] = args[0] if args else kwargs["x"]

    def scale(module, args, output):
        return output * gate(stash["x"]).to(output.dtype)

    layer.register_forward_pre_hook(keep_input, with_kwargs=True)
    layer.lora_B[ADAPTER].register_forward_hook(scale)


@register("lora")
class LoRA(Method):
    # PEFT's LoRA tensors live inside the backbone's module tree (names contain "lora_"); everything else there
    # stays frozen, bit for bit.
    inside_model = INJECTED

    def __init__(self, backbone, cfg: Any) -> None:
        super().__init__(backbone, cfg)
        self.freeze_backbone()
        layers = inject_lora(backbone, cfg)
        self.gates = nn.ModuleList()
        if cfg.get("gate", False):
            for _, layer in layers:
                g = Gate(layer.in_features)
                self.gates.append(g)
                attach_gate(layer, g)
        log.info("LoRA r=%s alpha=%s on %d projections (%s)%s", cfg.r, cfg.alpha, len(layers),
                 ", ".join(sorted({n.rsplit(".", 1)[-1] for n, _ in layers})), " with gates" if len(self.gates) else "")
