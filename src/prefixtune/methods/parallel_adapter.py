"""Scaled parallel adapter at the feed-forward sub-layer (He et al. 2022, "Towards a unified view of
parameter-efficient transfer learning", §3-4): FFN(x) + s * W_up ReLU(W_down x), reading the FFN's own input x,
with no layer norm inside the adapter. MAM adapter = this + prefix-tuning on attention (conf/method/mam.yaml).

Placement: GPT-2 and Llama blocks have an `mlp` module (input = the normalised hidden state); BART layers have
`fc1`/`fc2`, so the adapter reads fc1's input and adds to fc2's output. BART gets it in encoder and decoder, as
He et al. did on BART.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .base import Method, register

log = logging.getLogger(__name__)


class ParallelBottleneck(nn.Module):
    def __init__(self, d_model: int, r: int, scale: float) -> None:
        super().__init__()
        self.down = nn.Linear(d_model, r)
        self.up = nn.Linear(r, d_model)
        self.scale = scale
        nn.init.zeros_(self.up.weight)  # LoRA-style init (He et al.): the frozen LM's function at step 0
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(torch.relu(self.down(x)))


def ffn_sites(backbone) -> list[tuple[nn.Module, nn.Module]]:
    """(module whose input the adapter reads, module whose output it adds to), bottom to top, every layer."""
    sites = []
    for block in backbone.all_blocks():
        if hasattr(block, "mlp"):
            sites.append((block.mlp, block.mlp))
        elif hasattr(block, "fc1") and hasattr(block, "fc2"):
            sites.append((block.fc1, block.fc2))
        else:
            raise ValueError(f"cannot find the feed-forward sub-layer of {type(block).__name__}")
    return sites


def attach_parallel(read: nn.Module, write: nn.Module, adapter: nn.Module) -> None:
    """Add adapter(input of `read`) to the output of `write` (the same module for GPT-2/Llama)."""
    stash: dict[str, torch.Tensor] = {}

    def keep_input(module, args, kwargs):
        stash["x"] = args[0] if args else kwargs["hidden_states"]

    def add(module, args, kwargs, output):
        return output + adapter(stash.pop("x")).to(output.dtype)

    read.register_forward_pre_hook(keep_input, with_kwargs=True)
    write.register_forward_hook(add, with_kwargs=True)


@register("parallel_adapter")
class ParallelAdapter(Method):
    def __init__(self, backbone, cfg: Any) -> None:
        super().__init__(backbone, cfg)
        self.freeze_backbone()
        sites = ffn_sites(backbone)
        self.adapters = nn.ModuleList(ParallelBottleneck(backbone.d_model, int(cfg.bottleneck), float(cfg.scale))
                                      for _ in sites)
        for (read, write), adapter in zip(sites, self.adapters):
            attach_parallel(read, write, adapter)
        log.info("parallel adapter r=%d scale %g on %d FFNs", int(cfg.bottleneck), float(cfg.scale), len(sites))
