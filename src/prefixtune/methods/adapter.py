"""Adapter baseline of ACL Table 2 (Lin, Madotto & Fung 2020, as in the paper's `adaptertune` mode): a bottleneck
after every transformer block, h <- h + W_up ReLU(W_down LN(h)), everything else frozen.

The bottleneck width is derived from the target share of the backbone's parameters (`method.target_pct`, the
paper's "3%" and "0.1%" rows) and printed, not assumed: with LN and biases each block's adapter has
2*d*r + r + 3*d parameters. `method.reduction_factor` (d / r, the adapters library's convention) or
`method.bottleneck` set the width directly; `method.gate` adds UniPELT's learned gate (methods/gates.py):
h <- h + G(h) * W_up ReLU(W_down LN(h)). Those two keys are absent from conf/method/adapter.yaml on purpose (absent =
off), so adding them did not change the config hash of the Table 2 adapter cells; conf/method/unipelt.yaml sets
them.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .base import Method, register
from .gates import Gate

log = logging.getLogger(__name__)


class Bottleneck(nn.Module):
    def __init__(self, d_model: int, r: int, gate: bool = False) -> None:
        super().__init__()
        self.gate = Gate(d_model) if gate else None
        self.norm = nn.LayerNorm(d_model)
        self.down = nn.Linear(d_model, r)
        self.up = nn.Linear(r, d_model)
        nn.init.zeros_(self.up.weight)  # starts as the identity: the frozen LM's behaviour at step 0
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        delta = self.up(torch.relu(self.down(self.norm(h))))
        return h + (delta if self.gate is None else self.gate(h) * delta)


def bottleneck_for(pct: float, n_params: int, n_blocks: int, d_model: int) -> int:
    per_block = pct / 100.0 * n_params / n_blocks
    return max(1, round((per_block - 3 * d_model) / (2 * d_model + 1)))


@register("adapter")
class Adapter(Method):
    def __init__(self, backbone, cfg: Any) -> None:
        super().__init__(backbone, cfg)
        self.freeze_backbone()
        blocks = backbone.blocks()
        if cfg.get("bottleneck"):
            r = int(cfg.bottleneck)
        elif cfg.get("reduction_factor"):
            r = max(1, backbone.d_model // int(cfg.reduction_factor))
        else:
            r = bottleneck_for(float(cfg.target_pct), backbone.num_parameters(), len(blocks), backbone.d_model)
        self.bottleneck = int(r)
        gate = bool(cfg.get("gate", False))
        self.adapters = nn.ModuleList(Bottleneck(backbone.d_model, self.bottleneck, gate) for _ in blocks)
        for block, adapter in zip(blocks, self.adapters):
            block.register_forward_hook(_after(adapter))
        pct = 100.0 * sum(p.numel() for p in self.adapters.parameters()) / backbone.num_parameters()
        log.info("adapter bottleneck r=%d -> %.3f%% of %s's parameters (target %s%%)", self.bottleneck, pct,
                 backbone.name, cfg.get("target_pct"))


def _after(adapter: Bottleneck):
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (adapter(output[0]),) + tuple(output[1:])
        return adapter(output)

    return hook
