"""Parameter counts at the paper's scale (GPT-2 medium), without downloading weights.

The backbone is the real gpt2-medium geometry (GPT2Config(n_embd=1024, n_layer=24, n_head=16), GPT-2 vocabulary)
instantiated on the meta device -- counting needs shapes, not values -- while the Method itself is built for real.
Paper fn. 1 / §4.3: a prefix stores n_layer x 2 x d = 24 x 2 x 1024 = 49,152 numbers per position.
"""
from __future__ import annotations

import pytest
import torch

from conftest import _compose

GPT2_MEDIUM = dict(n_embd=1024, n_layer=24, n_head=16, vocab_size=50257, n_positions=1024)
GPT2_MEDIUM_PARAMS = 354_823_168  # HF gpt2-medium, tied LM head counted once


@pytest.fixture(scope="module")
def medium_backbone_factory():
    from transformers import AutoModelForCausalLM, GPT2Config

    from prefixtune.backbone import Backbone, _load_gpt2_tokenizer, find_attention_sites

    tokenizer = _load_gpt2_tokenizer()

    def make() -> Backbone:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(GPT2Config(**GPT2_MEDIUM))
        eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        tokenizer.pad_token_id = eos
        conf = model.config
        return Backbone(model=model, tokenizer=tokenizer, name="gpt2_medium", n_layer=conf.n_layer,
                        n_kv_head=conf.n_head, head_dim=conf.n_embd // conf.n_head, d_model=conf.n_embd,
                        is_encoder_decoder=False, sep_id=eos, eos_id=eos, pad_id=eos,
                        sites=find_attention_sites(model))

    return make


def _method(bb, *overrides: str):
    from prefixtune.methods.base import build_method

    return build_method(bb, _compose(*overrides).method)


def test_backbone_is_gpt2_medium(medium_backbone_factory):
    bb = medium_backbone_factory()
    assert bb.num_parameters() == GPT2_MEDIUM_PARAMS
    assert (bb.n_layer, bb.n_kv_head, bb.head_dim, bb.kv_dim) == (24, 16, 64, 1024)
    assert len(bb.sites) == 24 and bb.site_kinds() == ["self"]


@pytest.mark.parametrize(("length", "stored"), [(5, 245_760), (10, 491_520)])
def test_prefix_stores_paper_counts(medium_backbone_factory, length, stored):
    bb = medium_backbone_factory()
    m = _method(bb, "method=prefix", f"method.length={length}")
    counts = m.param_counts()
    assert counts["stored"] == stored == length * 24 * 2 * 1024
    assert next(iter(m.trainable_parameters())).device.type == "cpu"  # the method is real, only the LM is meta
    # the MLP reparametrisation trains far more than it stores (P' + MLP are dropped after training, §4.3)
    hidden = 512
    assert counts["trainable"] == length * 1024 + 1024 * hidden + hidden + hidden * 49_152 + 49_152
    print(f"\nprefix length {length}: stored {counts['stored']:,} ({counts['stored_pct']:.3f}% of "
          f"{counts['backbone_total']:,}), trained {counts['trainable']:,}")


def test_flat_prefix_trains_what_it_stores(medium_backbone_factory):
    m = _method(medium_backbone_factory(), "method=prefix", "method.length=5", "method.reparam=none")
    counts = m.param_counts()
    assert counts["trainable"] == counts["stored"] == 245_760


def test_embedding_only_and_infix_counts(medium_backbone_factory):
    emb = _method(medium_backbone_factory(), "method=embedding_only", "method.length=10")
    assert emb.param_counts()["stored"] == 10 * 1024
    infix = _method(medium_backbone_factory(), "method=infix", "method.length=10")
    assert infix.param_counts()["stored"] == 491_520


@pytest.mark.parametrize("target_pct", [3.0, 0.1])
def test_adapter_bottleneck_hits_target_share(medium_backbone_factory, target_pct):
    m = _method(medium_backbone_factory(), "method=adapter", f"method.target_pct={target_pct}")
    counts = m.param_counts()
    share = counts["trainable_pct"]
    print(f"\nadapter target {target_pct}%: bottleneck r={m.bottleneck}, {counts['trainable']:,} parameters = "
          f"{share:.3f}% of GPT-2 medium")
    assert counts["trainable"] == 24 * (2 * 1024 * m.bottleneck + m.bottleneck + 3 * 1024)
    assert abs(share - target_pct) <= 0.2 * target_pct, (m.bottleneck, share)
    assert counts["stored"] == counts["trainable"]


def test_finetune_top2_count(medium_backbone_factory):
    m = _method(medium_backbone_factory(), "method=finetune_top2")
    block = 12 * 1024 * 1024 + 13 * 1024  # GPT-2 block: attn 4d^2+4d, mlp 8d^2+5d, 2 LNs 4d
    assert m.param_counts()["trainable"] == 2 * block + 2 * 1024 + 50257 * 1024
