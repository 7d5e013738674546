"""The one Method protocol that the trainer and the decoder talk to, and the method registry.

A method wraps a backbone and decides (a) which parameters train, (b) how the forward pass changes, (c) what
is stored after training. The trainer never asks which method it holds (design.md, "Methods").

Checkpoints vs artefacts (peers.md lesson 3): `state_dict()` holds exactly the *trained* parameters (for a
prefix: P' and the MLP) so a checkpoint is resumable and small; `export()` holds what is *stored* after
training (for a prefix: the materialised per-layer keys/values, paper §4.3) and is what users ship.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import ModelOutput

from ..backbone import Backbone, _unique_params
from . import injection

REGISTRY: dict[str, type["Method"]] = {}
# name fragments of trained tensors that methods put inside the backbone's module tree (PEFT's LoRA layers)
INJECTED = ("lora_",)


def register(name: str) -> Callable[[type["Method"]], type["Method"]]:
    def deco(cls: type["Method"]) -> type["Method"]:
        if name in REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        cls.registry_name = name
        REGISTRY[name] = cls
        return cls

    return deco


def build_method(backbone: Backbone, cfg: Any) -> "Method":
    """`cfg` is the `method` config node; `cfg.name` is the registry key."""
    from . import adapter, combo, finetune, lora, parallel_adapter, prefix  # noqa: F401  (registration)

    try:
        cls = REGISTRY[cfg.name]
    except KeyError:
        raise KeyError(f"method.name={cfg.name!r} is not registered; known: {sorted(REGISTRY)}") from None
    return cls(backbone, cfg)


@dataclass
class Output(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class Method(nn.Module):
    registry_name: ClassVar[str] = ""
    # batch keys that belong to the method, not to the HF model (e.g. infix positions)
    extra_batch_keys: ClassVar[tuple[str, ...]] = ()
    # Our loss is already normalised per batch (token mean / sequence sum); tell the HF Trainer to scale it for
    # gradient accumulation itself instead of passing `num_items_in_batch`.
    accepts_loss_kwargs: ClassVar[bool] = False
    checkpoint_layers: bool = False  # set by the trainer when gradient checkpointing is on
    # name fragments of trained tensors that a method puts inside the backbone's module tree (PEFT's LoRA layers);
    # every other backbone tensor of a parameter-efficient method stays frozen
    inside_model: ClassVar[tuple[str, ...]] = ()
    _keys_to_ignore_on_save = None   # read by the HF Trainer on PreTrainedModel-like objects

    def __init__(self, backbone: Backbone, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = backbone.model  # registered: .to(device) and fine-tuning need it
        self.__dict__["backbone"] = backbone  # not a submodule (it holds the tokenizer)
        # The paper keeps the frozen LM in eval mode (no dropout) for prefix-tuning (original code, paper.md §3)
        self.lm_dropout = bool(cfg.get("lm_dropout", False))
        self.loss_reduction = cfg.get("loss_reduction", "token_mean")
        if self.loss_reduction not in ("token_mean", "sequence_sum"):
            raise ValueError(f"method.loss_reduction={self.loss_reduction!r}: token_mean or sequence_sum")
        self.provider = injection.KVProvider()

    # ---- what subclasses override -------------------------------------------------------------------------
    def extra_source_tokens(self) -> int:
        """Placeholder positions the collator inserts between source and separator (infix, paper §7.3)."""
        return 0

    def prepare(self, extras: dict[str, torch.Tensor]) -> None:
        """Called before every training forward and once before generation: set what attention reads."""

    def export(self) -> dict[str, torch.Tensor]:
        """The stored artefact (what is kept after training)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()}

    def load_export(self, tensors: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(tensors, strict=False)
        if unexpected:
            raise KeyError(f"unexpected tensors in artefact: {unexpected}")

    # ---- shared machinery -----------------------------------------------------------------------------------
    def freeze_backbone(self) -> None:
        """Freeze the backbone's own weights; tensors that a method injected into its tree (INJECTED, e.g. PEFT's
        LoRA layers built by an earlier part of a combination) keep their flag."""
        for name, p in self.model.named_parameters():
            if not any(f in name for f in INJECTED):
                p.requires_grad_(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in _unique_named(self) if p.requires_grad]

    def param_counts(self) -> dict[str, float]:
        backbone_total = self.backbone.num_parameters()
        trainable = sum(p.numel() for p in self.trainable_parameters())
        stored = sum(t.numel() for t in _unique_tensors(self.export().values()))
        return {"trainable": trainable, "stored": stored, "backbone_total": backbone_total,
                "trainable_pct": 100.0 * trainable / backbone_total,
                "stored_pct": 100.0 * stored / backbone_total}

    def state_dict(self, *args, **kwargs):  # noqa: D401  (checkpoint = trained params + method buffers)
        full = super().state_dict(*args, **kwargs)
        keep = {id(p) for p in self.trainable_parameters()}
        names = {n for n, p in self.named_parameters(remove_duplicate=False) if id(p) in keep}
        own_buffers = {n for n, _ in self.named_buffers() if not n.startswith("model.")}
        out, seen = {}, set()
        for k, v in full.items():
            key = k[len(kwargs.get("prefix", "")):] if kwargs.get("prefix") else k
            if key in names or key in own_buffers:
                # tied weights appear under several names; keep one so safetensors can write it
                ptr = (v.data_ptr(), v.shape)
                if v.numel() and ptr in seen:
                    continue
                seen.add(ptr)
                out[k] = v
        return out

    def load_state_dict(self, state_dict, strict: bool = False, assign: bool = False):
        """Load a checkpoint (trained tensors only). Frozen backbone weights are not "missing": report only the
        keys that `state_dict()` itself would hold, so the HF Trainer's resume check sees a complete load."""
        from torch.nn.modules.module import _IncompatibleKeys

        res = super().load_state_dict(state_dict, strict=False, assign=assign)
        expected = set(self.state_dict())
        missing = [k for k in res.missing_keys if k in expected]
        if strict and (missing or res.unexpected_keys):
            raise RuntimeError(f"checkpoint mismatch: missing {missing}, unexpected {res.unexpected_keys}")
        return _IncompatibleKeys(missing, res.unexpected_keys)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.train(mode and self.lm_dropout)
        if self.checkpoint_layers and mode and not self.lm_dropout:
            # HF checkpoints a block only when that block is in training mode; flip the flag on the blocks alone
            # so a frozen LM keeps its dropout off while activations are recomputed in the backward pass.
            from transformers.modeling_layers import GradientCheckpointingLayer

            for m in self.model.modules():
                if isinstance(m, GradientCheckpointingLayer):
                    m.training = True
        return self

    def _split(self, batch: dict[str, Any]) -> tuple[dict, dict]:
        extras = {k: batch.pop(k) for k in list(batch) if k in self.extra_batch_keys}
        return batch, extras

    def forward(self, **batch: Any) -> Output:
        labels = batch.pop("labels", None)
        batch.pop("num_items_in_batch", None)
        batch, extras = self._split(batch)
        self.prepare(extras)
        parts = None if labels is None else self._labelled_head()
        if parts is not None:
            return Output(loss=self._labelled_loss(parts, batch, labels))
        out = self.model(**batch, use_cache=False)
        loss = None if labels is None else self.lm_loss(out.logits, labels)
        return Output(loss=loss, logits=out.logits)

    def _labelled_head(self) -> tuple[nn.Module, nn.Module] | None:
        """(body, LM head) of a decoder-only backbone whose logits are `head(body(...).last_hidden_state)` (GPT-2,
        Llama); None where the head does more (BART's final_logits_bias, soft-capping): those take the full path."""
        if self.backbone.is_encoder_decoder or getattr(self.model.config, "final_logit_softcapping", None):
            return None
        body, head = getattr(self.model, "base_model", None), self.model.get_output_embeddings()
        if body is None or body is self.model or not isinstance(head, nn.Linear):
            return None
        return body, head

    def _labelled_loss(self, parts: tuple[nn.Module, nn.Module], batch: dict[str, Any],
                       labels: torch.Tensor) -> torch.Tensor:
        """The loss of `lm_loss`, with the LM head applied only where a label is (the target tokens).

        With labels, the caller wants the loss, not the logits: the source tokens of table-to-text (about half of
        each row, label -100) need no vocabulary projection, and the (B, T, V) logits -- V = 49,152 for SmolLM2,
        with their fp32 copy, softmax and gradient -- are the largest activation of a frozen-LM method's step.
        Same value as `lm_loss` on the full logits (tests/test_labelled_loss.py); `Output.logits` is then None."""
        body, head = parts  # from `_labelled_head`, looked up once per forward
        hidden = body(**batch, use_cache=False).last_hidden_state
        hidden, labels = hidden[:, :-1], labels[:, 1:]  # decoder-only: predict token t+1 from position t
        keep = labels != -100
        return self._reduce(F.cross_entropy(head(hidden[keep]).float(), labels[keep], reduction="none"), keep)

    def lm_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.backbone.is_encoder_decoder:  # decoder-only: predict token t+1 from position t
            logits, labels = logits[:, :-1], labels[:, 1:]
        keep = labels != -100
        return self._reduce(F.cross_entropy(logits[keep].float(), labels[keep], reduction="none"), keep)

    def _reduce(self, nll: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The configured loss from the NLL of the labelled tokens (`nll[i]` belongs to the i-th True of `keep`,
        a (B, T) mask): `token_mean` averages over all labelled tokens of the batch; `sequence_sum` is the paper
        code's `--objective_mode 1`, each sentence's summed token NLL, averaged over the batch."""
        if self.loss_reduction == "sequence_sum":
            rows = keep.nonzero()[:, 0]
            return torch.zeros(keep.shape[0], dtype=nll.dtype, device=nll.device).index_add(0, rows, nll).mean()
        return nll.sum() / keep.sum().clamp(min=1)

    @torch.no_grad()
    def generate(self, engine: str = "pruned", **kwargs: Any) -> torch.Tensor:
        """Beam search over the method's model. engine="pruned" (prefixtune.beam: finished sources leave the batch,
        the same outputs) where it supports the settings and the method adds no per-row batch keys (infix
        positions); engine="hf" is `transformers`' own `generate`, the reference path."""
        from .. import beam

        kwargs, extras = self._split(kwargs)
        if engine not in ("pruned", "hf"):
            raise ValueError(f"generate(engine={engine!r}): expected 'pruned' or 'hf'")
        pruned = engine == "pruned" and not extras and beam.supports(self.model, kwargs)
        was_training = self.training
        self.eval()
        try:
            self.prepare(extras)
            if pruned:
                return beam.beam_search(self.model, **kwargs)
            return self.model.generate(**kwargs)
        finally:
            self.release()
            self.train(was_training)

    def release(self) -> None:
        """Drop the forward-time state set by `prepare` (after generation)."""
        self.provider.reset()


def _unique_named(module: nn.Module):
    return list(_unique_params(module))


def _unique_tensors(tensors):
    seen: set[tuple[int, tuple]] = set()
    for t in tensors:
        key = (t.data_ptr(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            yield t
