"""UniPELT's learned gates (Mao et al. 2022, §3): each sub-module's contribution is scaled by
G = sigmoid(W_g x + b_g), computed from that sub-module's own input x, so the model learns per input how much of
LoRA, prefix and adapter to use. Shapes: x (B, T, d) -> gate (B, T, n) per token, or (B, n) averaged over tokens
(the prefix gate: one scale per row for the prefix keys and values, as adapters' UniPELT does).
"""
from __future__ import annotations

import torch
from torch import nn


class Gate(nn.Module):
    def __init__(self, d_in: int, n_out: int = 1) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, n_out)

    def forward(self, x: torch.Tensor, pool_tokens: bool = False) -> torch.Tensor:
        g = torch.sigmoid(self.proj(x))  # (B, T, n)
        return g.mean(dim=1) if pool_tokens else g
