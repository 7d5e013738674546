"""Inject per-layer key/value activations into attention without touching the KV cache.

Following adapter-hub/adapters (reference/peers.md §2, §4 lesson 1), prefixes are concatenated to the keys and
values *inside* attention, after the cache update, so they never enter `past_key_values`. This keeps beam search,
gradient checkpointing, every Cache class and fp16/bf16 working, and makes a prefix independent of batch size
(beam expansion needs no special case: the same prefix is broadcast to every row).

Mechanism: we register an attention function "prefixtune" with transformers' `AttentionInterface` (a thin wrapper
around the stock SDPA function) and switch the model to it. Each attention module carries a `_pt_site` tag
(kind, layer) and a reference to the `KVProvider` that owns the current prefixes. Modules without a provider, or
a provider that is switched off, behave exactly like SDPA.

Shapes: key/value (B, H_kv, T, D); a prefix is (H_kv, L, D) and is broadcast over B.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

IMPL = "prefixtune"


@dataclass
class KVState:
    """What the attention function reads for one forward pass."""

    # site key (kind, layer) -> (key, value), each (H_kv, L, D): prepended to the attention keys/values
    prefix: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    # site key -> (key, value) each (H_kv, L, D) written over positions [start_b, start_b + L) (infix, §7.3)
    infix: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    infix_start: torch.Tensor | None = None  # (B0,) long: first infix position of each row
    capture: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] | None = None
    # site key -> (B, 2): UniPELT's gate scaling the prefix keys / values of each row (methods/gates.py)
    gates: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)


class KVProvider:
    """Holds the state that attention reads. Owned by a Method; one per model."""

    def __init__(self) -> None:
        self.state = KVState()
        self.enabled = True
        # analysis only (prefixtune.analysis): site -> list of (B, H_q, q) attention mass on the prefix positions,
        # one entry per forward call; None (the default) skips the extra softmax entirely
        self.observe: dict[tuple[str, int], list[torch.Tensor]] | None = None

    def reset(self) -> None:
        self.state = KVState()


def _attend_mask(attention_mask, module, query, key_len, batch, device):
    """A boolean (B, 1, q, kv) mask (True = attend) equivalent to what SDPA would have used."""
    q_len = query.shape[2]
    if attention_mask is None:
        if q_len > 1 and getattr(module, "is_causal", False):
            offset = key_len - q_len  # bottom-right aligned, as SDPA with a cache
            i = torch.arange(q_len, device=device)[:, None]
            j = torch.arange(key_len, device=device)[None, :]
            base = (j <= i + offset)[None, None]
        else:
            base = torch.ones(1, 1, q_len, key_len, dtype=torch.bool, device=device)
        return base.expand(batch, 1, q_len, key_len)
    if attention_mask.dtype == torch.bool:
        return attention_mask.expand(batch, -1, -1, -1)
    return (attention_mask > torch.finfo(attention_mask.dtype).min / 2).expand(batch, -1, -1, -1)


def _overwrite_infix(t: torch.Tensor, infix: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """t (B, H, T, D); infix (H, L, D); start (B,). Rows' positions start..start+L-1 get the infix activations."""
    b, _, t_len, _ = t.shape
    length = infix.shape[1]
    pos = torch.arange(t_len, device=t.device)[None, :] - start[:, None]  # (B, T)
    inside = (pos >= 0) & (pos < length)
    gathered = infix[:, pos.clamp(0, length - 1)]  # (H, B, T, D)
    gathered = gathered.permute(1, 0, 2, 3).to(t.dtype)
    return torch.where(inside[:, None, :, None], gathered, t)


def prefix_attention(module, query, key, value, attention_mask, **kwargs):
    provider: KVProvider | None = module.__dict__.get("_pt_provider")
    site = module.__dict__.get("_pt_site")
    if provider is None or not provider.enabled:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    state = provider.state
    if state.capture is not None:
        state.capture[site] = (key[0], value[0])
    batch = key.shape[0]
    if site in state.infix:
        start = state.infix_start
        if start is None:
            raise RuntimeError("infix activations set without infix_start")
        if start.shape[0] != batch:  # beam search expands each row num_beams times, contiguously
            start = start.repeat_interleave(batch // start.shape[0])
        ik, iv = state.infix[site]
        key, value = _overwrite_infix(key, ik, start), _overwrite_infix(value, iv, start)
    if site in state.prefix:
        pk, pv = state.prefix[site]
        length = pk.shape[1]
        pk, pv = pk.to(key.dtype).unsqueeze(0), pv.to(value.dtype).unsqueeze(0)  # (1, H, L, D)
        if site in state.gates:  # (B, 2) -> a per-row scale of the prefix keys and values
            g = state.gates[site].to(key.dtype)
            pk, pv = pk * g[:, 0, None, None, None], pv * g[:, 1, None, None, None]
        mask = _attend_mask(attention_mask, module, query, key.shape[2], batch, key.device)
        ones = torch.ones(batch, 1, mask.shape[2], length, dtype=torch.bool, device=key.device)
        attention_mask = torch.cat([ones, mask], dim=-1)
        key = torch.cat([pk.expand(batch, -1, -1, -1), key], dim=2)
        value = torch.cat([pv.expand(batch, -1, -1, -1), value], dim=2)
        kwargs["is_causal"] = False
        if provider.observe is not None:
            provider.observe.setdefault(site, []).append(
                _prefix_mass(query, key, attention_mask, length, kwargs.get("scaling")))
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


@torch.no_grad()
def _prefix_mass(query, key, mask, length: int, scaling: float | None) -> torch.Tensor:
    """(B, H_q, q): the softmax attention probability each query puts on the first `length` keys (the prefix),
    computed as SDPA would (grouped-query heads share their key/value head)."""
    k = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = (query.float() @ k.float().transpose(-1, -2)) * scale
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return probs[..., :length].sum(-1).cpu()


AttentionInterface.register(IMPL, prefix_attention)
AttentionMaskInterface.register(IMPL, sdpa_mask)


def install(backbone, provider: KVProvider) -> None:
    """Route every attention module of `backbone.model` through `prefix_attention` reading `provider`."""
    model = backbone.model
    for site in backbone.sites:
        # plain __dict__ entries: not registered as submodules, so they never reach state_dict()
        site.module.__dict__["_pt_provider"] = provider
        site.module.__dict__["_pt_site"] = (site.kind, site.layer)
    model.set_attn_implementation(IMPL)
    if model.config._attn_implementation != IMPL:
        raise RuntimeError(f"{type(model).__name__} refused attn_implementation={IMPL!r}")
