"""Adapter baseline of ACL Table 2 (Lin, Madotto & Fung 2020, as in the paper's `adaptertune` mode): a bottleneck
after every transformer block, h <- h + W_up ReLU(W_down LN(h)), everything else frozen.

The bottleneck width is derived from the target share of the backbone's parameters (`method.target_pct`, the
paper's "3%" and "0.1%" rows) and printed, not assumed: with LN and biases each block's adapter has
2*d*r + r + 3*d parameters.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .base import Method, register

log = logging.getLogger(__name__)


class Bottleneck(nn.Module):
    def __init__(self, d_model: int, r: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.down = nn.Linear(d_model, r)
        self.up = nn.Linear(r, d_model)
        nn.init.zeros_(self.up.weight)  # starts as the identity: the frozen LM's behaviour at step 0
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(torch.relu(self.down(self.norm(h))))


def bottleneck_for(pct: float, n_params: int, n_blocks: int, d_model: int) -> int:
    per_block = pct / 100.0 * n_params / n_blocks
    return max(1, round((per_block - 3 * d_model) / (2 * d_model + 1)))


@register("adapter")
class Adapter(Method):
    def __init__(self, backbone, cfg: Any) -> None:
        super().__init__(backbone, cfg)
        self.freeze_backbone()
        blocks = backbone.blocks()
        r = cfg.get("bottleneck") or bottleneck_for(float(cfg.target_pct), backbone.num_parameters(),
                                                     len(blocks), backbone.d_model)
        self.bottleneck = int(r)
        self.adapters = nn.ModuleList(Bottleneck(backbone.d_model, self.bottleneck) for _ in blocks)
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
