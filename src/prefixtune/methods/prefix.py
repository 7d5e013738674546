"""Prefix-tuning (paper §4) and its ablations -- infix (§7.3) and embedding-only (§7.2) -- in one module.

Orthogonal config fields (conf/method/prefix.yaml), so every ablation is a config diff:
  position: prefix | infix      where the trained activations sit: [P; x; y] or [x; P; y]
  depth:    all_layers | embedding
            all_layers: P holds keys/values for every layer (the paper's method);
            embedding:  only the L input embeddings are free, the frozen LM computes the upper layers
  reparam:  mlp | none          P = MLP(P') with tanh and hidden width k (paper fn. 4, original `mid_dim`) or P directly
  init:     random | words | peft   real-word initialisation (§7.4): activations of e.g. "table-to-text:";
                                     or a PEFT PrefixTuning adapter directory (prefixtune/interop.py)
  gate:     UniPELT's learned per-row gate on every site's prefix keys/values (methods/gates.py); absent from
            conf/method/prefix.yaml (absent = off) and set by conf/method/unipelt.yaml

Geometry: per position, all_layers stores n_layer x 2 x (n_kv_heads x head_dim) numbers -- for GPT-2 medium that
is 24 x 2 x 1024 = 49,152 per position (paper fn. 1), so length 5 stores 245,760. With grouped-query attention
(SmolLM2: 3 kv heads of 64) it is sized by the kv heads, as the attention layer actually consumes.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from .base import Method, register
from .gates import Gate
from .injection import KVState, install

log = logging.getLogger(__name__)


class PrefixPool(nn.Module):
    """Produces an (L, out_dim) matrix: MLP(P') (original code: Embedding(L, d) -> Linear(d, k) -> tanh ->
    Linear(k, out)) or a flat parameter."""

    def __init__(self, length: int, d_model: int, out_dim: int, reparam: str, hidden: int, flat_std: float):
        super().__init__()
        self.length, self.out_dim, self.reparam = length, out_dim, reparam
        if reparam == "mlp":
            self.embed = nn.Parameter(torch.randn(length, d_model))  # nn.Embedding's N(0, 1), as the original
            self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))
        elif reparam == "none":
            self.flat = nn.Parameter(torch.randn(length, out_dim) * flat_std)
        else:
            raise ValueError(f"method.reparam={reparam!r}: expected mlp or none")

    def forward(self) -> torch.Tensor:  # (L, out_dim)
        return self.mlp(self.embed) if self.reparam == "mlp" else self.flat

    def fit(self, target: torch.Tensor, steps: int, lr: float) -> float:
        """Initialise to `target` (L, out_dim): exactly for a flat prefix, by regression for MLP(P')."""
        if self.reparam == "none":
            with torch.no_grad():
                self.flat.copy_(target)
            return 0.0
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                loss = torch.mean((self() - target) ** 2)
                loss.backward()
                opt.step()
        return float(torch.mean((self().detach() - target) ** 2))


@register("prefix")
class PrefixTuning(Method):
    extra_batch_keys = ("infix_start",)

    def __init__(self, backbone, cfg: Any) -> None:
        super().__init__(backbone, cfg)
        self.freeze_backbone()
        self.position = cfg.get("position", "prefix")
        self.depth = cfg.get("depth", "all_layers")
        if self.position not in ("prefix", "infix"):
            raise ValueError(f"method.position={self.position!r}: expected prefix or infix")
        if self.depth not in ("all_layers", "embedding"):
            raise ValueError(f"method.depth={self.depth!r}: expected all_layers or embedding")
        bb = backbone
        if bb.is_encoder_decoder and (self.depth == "embedding" or self.position == "infix"):
            raise ValueError("method.depth=embedding and method.position=infix are implemented for decoder-only "
                             "models (the paper ran these ablations on GPT-2, §7.2-7.3)")
        kinds = list(cfg.get("sites") or bb.site_kinds())
        unknown = set(kinds) - set(bb.site_kinds())
        if unknown:
            raise ValueError(f"method.sites={kinds}: {sorted(unknown)} not in this model ({bb.site_kinds()})")
        if self.depth == "embedding":
            kinds = ["self"]
        self.kinds = kinds
        init = cfg.get("init") or {}
        words = init.get("words") if init.get("kind", "random") == "words" else None
        word_ids = None
        if words:
            if bb.is_encoder_decoder:
                raise ValueError("method.init.kind=words is implemented for decoder-only models")
            # no leading space: "table-to-text:" is 6 GPT-2 BPE tokens, as in the paper (§7.4 / A.2)
            word_ids = bb.tokenizer(words, add_special_tokens=False)["input_ids"]
            if not word_ids:
                raise ValueError(f"method.init.words={words!r} tokenizes to nothing")
        peft_kv = None
        if init.get("kind", "random") == "peft":
            from ..interop import read_peft_prefix

            if bb.is_encoder_decoder or self.position != "prefix" or self.depth != "all_layers":
                raise ValueError("method.init.kind=peft imports a decoder-only, all-layer PEFT PrefixTuning adapter")
            peft_kv = read_peft_prefix(init.get("path"), bb)  # (n_layer, 2, H, L, D)
        self.length = len(word_ids) if word_ids else peft_kv.shape[3] if peft_kv is not None else int(cfg.length)
        if self.length < 0:
            raise ValueError(f"method.length={self.length} must be >= 0 (0 = the plain model)")
        out_dim = bb.d_model if self.depth == "embedding" else bb.n_layer * 2 * bb.kv_dim
        self.pools = nn.ModuleDict({
            k: PrefixPool(self.length, bb.d_model, out_dim, cfg.get("reparam", "mlp"), int(cfg.get("mlp_hidden", 512)),
                          float(init.get("flat_std", 0.02)))
            for k in kinds})
        install(bb, self.provider)
        self.gates = nn.ModuleDict()
        if cfg.get("gate", False):
            for site in bb.sites:
                if site.kind in kinds:
                    self.gates[f"{site.kind}_{site.layer}"] = gate = Gate(bb.d_model, 2)
                    site.module.register_forward_pre_hook(self._gate_hook(gate, (site.kind, site.layer)),
                                                          with_kwargs=True)
        self._offset_active = True
        if not bb.is_encoder_decoder:
            bb.model.base_model.register_forward_pre_hook(self._offset_positions, with_kwargs=True)
        if word_ids:
            self._init_from_words(torch.tensor([word_ids]), int(init.get("fit_steps", 300)),
                                  float(init.get("fit_lr", 1e-3)))
        if peft_kv is not None:
            err = self.pools["self"].fit(self._from_layers(peft_kv), int(init.get("fit_steps", 300)),
                                         float(init.get("fit_lr", 1e-3)))
            log.info("initialised from the PEFT prefix adapter %s (fit MSE %.3g)", init.get("path"), err)

    def _gate_hook(self, gate: Gate, site: tuple[str, int]):
        def hook(module, args, kwargs):
            hidden = kwargs.get("hidden_states", args[0] if args else None)  # (B, T, d): the attention input
            self.provider.state.gates[site] = gate(hidden, pool_tokens=True)  # (B, 2)
        return hook

    # ---- geometry -------------------------------------------------------------------------------------------
    def _to_layers(self, flat: torch.Tensor) -> torch.Tensor:
        """(L, n_layer*2*H*D) -> (n_layer, 2, H, L, D): the original code's view/permute of the MLP output."""
        bb = self.backbone
        return flat.view(self.length, bb.n_layer, 2, bb.n_kv_head, bb.head_dim).permute(1, 2, 3, 0, 4)

    def _from_layers(self, kv: torch.Tensor) -> torch.Tensor:
        return kv.permute(3, 0, 1, 2, 4).reshape(self.length, -1)

    @property
    def position_offset(self) -> int:
        # x and y sit after the prefix: GPT-2's absolute positions and Llama's RoPE phases start at L, as in the
        # original code (a past of length L shifts position ids) and in PEFT.
        return self.length if self.position == "prefix" else 0

    def _offset_positions(self, module, args, kwargs):
        if not (self._offset_active and self.provider.enabled) or self.position_offset == 0:
            return None
        pos = kwargs.get("position_ids")
        if pos is None:
            x = kwargs.get("input_ids", args[0] if args else None)
            t = x.shape[1] if x is not None else kwargs["inputs_embeds"].shape[1]
            cache = kwargs.get("past_key_values")
            past = cache.get_seq_length() if cache is not None else 0
            device = (x if x is not None else kwargs["inputs_embeds"]).device
            pos = (torch.arange(t, device=device) + past)[None]
        kwargs["position_ids"] = pos + self.position_offset
        return args, kwargs

    # ---- forward-time state -----------------------------------------------------------------------------------
    def _capture(self, **inputs) -> dict:
        """Run the frozen LM on `inputs` (positions 0..L-1) and return every layer's (key, value) (H, L, D)."""
        self.provider.state = KVState(capture={})
        self._offset_active = False
        try:
            self.model(**inputs, use_cache=False)
            return self.provider.state.capture
        finally:
            self._offset_active = True
            self.provider.reset()

    def layer_kv(self) -> dict[str, torch.Tensor]:
        """kind -> (n_layer, 2, H, L, D): the activations the attention layers see."""
        if self.depth == "all_layers":
            return {k: self._to_layers(pool()) for k, pool in self.pools.items()}
        cap = self._capture(inputs_embeds=self.pools["self"]()[None])
        n = self.backbone.n_layer
        return {"self": torch.stack([torch.stack(cap[("self", i)]) for i in range(n)])}

    def prepare(self, extras: dict[str, torch.Tensor]) -> None:
        state = KVState()
        if self.length == 0:  # a zero-length prefix is exactly the plain model
            self.provider.state = state
            return
        for kind, kv in self.layer_kv().items():
            target = state.prefix if self.position == "prefix" else state.infix
            for layer in range(kv.shape[0]):
                target[(kind, layer)] = (kv[layer, 0], kv[layer, 1])
        if self.position == "infix":
            if "infix_start" not in extras:
                raise KeyError("infix method needs batch['infix_start'] (the collator adds it)")
            state.infix_start = extras["infix_start"]
        self.provider.state = state

    def extra_source_tokens(self) -> int:
        return self.length if self.position == "infix" else 0

    # ---- initialisation and artefacts ----------------------------------------------------------------------
    @torch.no_grad()
    def _init_from_words(self, ids: torch.Tensor, steps: int, lr: float) -> None:
        if self.depth == "embedding":
            target = self.model.get_input_embeddings()(ids)[0]
        else:
            was_training = self.model.training
            self.model.eval()  # the words' real activations, without dropout (a model built from a config is in
            try:               # train mode; from_pretrained ones are already in eval mode)
                cap = self._capture(input_ids=ids)
            finally:
                self.model.train(was_training)
            n = self.backbone.n_layer
            kv = torch.stack([torch.stack(cap[("self", i)]) for i in range(n)])
            target = self._from_layers(kv)
        err = self.pools["self"].fit(target.detach(), steps, lr)
        log.info("real-word init: %d tokens, fit MSE %.3g (target mean square %.3g)", self.length, err,
                 float(target.pow(2).mean()))

    def export(self) -> dict[str, torch.Tensor]:
        """Materialised prefix (paper §4.3: only P is kept; P' and the MLP are dropped)."""
        with torch.no_grad():
            gates = {f"prefix_gate.{k}": v.detach().clone() for k, v in self.gates.state_dict().items()}
            if self.depth == "embedding":
                return {"prefix_embedding.self": self.pools["self"]().detach().clone(), **gates}
            return {**{f"prefix.{k}": v.detach().clone().contiguous() for k, v in self.layer_kv().items()}, **gates}

    def load_export(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load a materialised prefix into flat pools (an MLP-trained prefix becomes its exact flat form)."""
        gates = {k.split(".", 1)[1]: t for k, t in tensors.items() if k.startswith("prefix_gate.")}
        if gates or len(self.gates):
            self.gates.load_state_dict(gates)
        for key, t in tensors.items():
            if key.startswith("prefix_gate."):
                continue
            kind = key.split(".", 1)[1]
            if kind not in self.pools:
                raise KeyError(f"artefact has {key!r} but this method has sites {list(self.pools)}")
            flat = t if key.startswith("prefix_embedding.") else self._from_layers(t)
            if flat.shape[0] != self.length:
                raise ValueError(f"artefact {key} has length {flat.shape[0]}, method.length is {self.length}")
            pool = self.pools[kind]
            if pool.reparam != "none":
                self.pools[kind] = pool = PrefixPool(self.length, 1, flat.shape[1], "none", 1, 0.0)
            pool.fit(flat.to(pool.flat.dtype), 0, 0.0)
