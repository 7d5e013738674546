"""The training speed settings (prefixtune.speed, conf/trainer `speed`) change throughput, not what is learned.

* frozen_bf16: the frozen Linear weights in bf16 give bitwise the autocast forward and gradients, an embedding-tied
  head keeps its fp32 lookup, and every original fp32 tensor is back afterwards (fp32 decoding sees it);
* sdpa_backend=math: the same losses as PyTorch's default kernel within bf16 rounding, and a bad name is an error
  naming the key;
* the trainer with every setting on follows the stock run's first 6 losses within bf16 tolerance.
"""
from __future__ import annotations

import pytest
import torch

from conftest import _tiny_method
from prefixtune import speed

SOURCES = ["name : Aromi | food : Chinese", "name : Blue Spice | area : riverside", "name : Zizzi | eatType : pub"]
TARGETS = ["Aromi serves Chinese food .", "Blue Spice is by the riverside .", "Zizzi is a pub ."]


def _batch(bb, m):
    from prefixtune.data.collate import Collator, Encoder

    feats = Encoder(bb, m.extra_source_tokens(), 64, 64).train_features(SOURCES, TARGETS)
    return feats, Collator(pad_id=bb.pad_id, left=False, with_infix=m.extra_source_tokens() > 0)(feats)


def _loss_and_grads(m, batch):
    m.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m(**batch).loss
    loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in m.trainable_parameters()]


@pytest.mark.parametrize("model", ["llama", "gpt2"])
def test_frozen_bf16_is_bitwise_autocast_and_restores(model):
    bb, m, _ = _tiny_method(model, "method=prefix")
    feats, batch = _batch(bb, m)
    m.train()
    before = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    loss0, grads0 = _loss_and_grads(m, batch)
    with speed.frozen_in_bf16(bb.model) as n:
        assert n > 0
        lin = [mod for mod in bb.model.modules() if isinstance(mod, torch.nn.Linear)]
        assert all(mod.weight.dtype == torch.bfloat16 for mod in lin if not mod.weight.requires_grad)
        loss1, grads1 = _loss_and_grads(m, batch)
        emb = bb.model.get_input_embeddings().weight
        assert emb.dtype == torch.float32  # the lookup is never cast by autocast
    assert loss1 == loss0
    assert all(torch.equal(a, b) for a, b in zip(grads0, grads1))
    after = dict(bb.model.named_parameters())
    assert before.keys() == after.keys()
    assert all(after[k].dtype == torch.float32 and torch.equal(before[k], after[k]) for k in before)
    head = bb.model.get_output_embeddings()
    if getattr(bb.model.config, "tie_word_embeddings", False) and isinstance(head, torch.nn.Linear):
        assert head.weight is bb.model.get_input_embeddings().weight  # tying restored


def test_frozen_bf16_leaves_trainable_weights_alone():
    bb, m, _ = _tiny_method("llama", "method=finetune")
    with speed.frozen_in_bf16(bb.model) as n:
        assert n == 0
        assert all(p.dtype == torch.float32 for p in m.trainable_parameters())


def test_math_sdpa_matches_the_default_kernel_and_rejects_bad_names():
    bb, m, _ = _tiny_method("llama", "method=prefix")
    _, batch = _batch(bb, m)
    m.eval()
    with torch.no_grad():
        ref = float(m(**batch).loss)
        with speed.sdpa_backend("math"):
            math = float(m(**batch).loss)
    assert math == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="trainer.speed.sdpa_backend='fast'"):
        with speed.sdpa_backend("fast"):
            pass


def test_tune_malloc_is_idempotent():
    first = speed.tune_malloc()
    assert speed.tune_malloc() == first


def test_trainer_with_every_setting_follows_the_stock_losses(tmp_path):
    """Six AdamW steps under bf16 autocast, stock vs sdpa math + frozen bf16 + mallopt: the same losses within bf16
    rounding (the setting changes only the kernels' summation order), and the record says what was applied."""
    from prefixtune.trainer import fit

    common = ("method=prefix", "optim.lr=1e-2", "trainer.max_steps=6", "scale.max_steps=null",
              "trainer.log_every=1", "trainer.save_every=6", "trainer.batch_size=3", "optim.warmup_steps=0",
              "trainer.early_stopping_patience=null", "trainer.eval_every=null", "trainer.bf16=true")
    runs = {}
    for name, over in (("stock", ("trainer.speed.sdpa_backend=null", "trainer.speed.frozen_bf16=false",
                                  "trainer.speed.malloc_tune=false")),
                       ("fast", ("trainer.speed.sdpa_backend=math", "trainer.speed.frozen_bf16=true",
                                 "trainer.speed.malloc_tune=true"))):
        torch.manual_seed(0)
        bb, m, cfg = _tiny_method("llama", *common, *over)
        feats, _ = _batch(bb, m)
        summary = fit(m, feats, [], cfg, tmp_path / name, report_to=[])
        runs[name] = ([h["loss"] for h in summary["log_history"] if "loss" in h], summary["speed"], m)
    stock, fast = runs["stock"][0], runs["fast"][0]
    assert len(stock) == len(fast) == 6
    assert stock[-1] < stock[0]  # it trained: the comparison is over a moving loss, not a flat one
    assert fast == pytest.approx(stock, rel=2e-2)
    assert runs["fast"][1]["frozen_bf16_linears"] > 0 and runs["fast"][1]["sdpa_backend"] == "math"
    assert runs["stock"][1]["frozen_bf16_linears"] == 0
    # after training every frozen weight is fp32 again (decoding in fp32 reads the original weights)
    assert all(p.dtype == torch.float32 for p in runs["fast"][2].backbone.model.parameters())
