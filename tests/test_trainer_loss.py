"""The training losses a record stores (`train/loss`, `train/loss_final`) are the method's own loss, in its units.

With the learning rate at 0 nothing moves, so every optimiser step sees the same loss: the one the method computes
on the whole (single-batch) training set by hand. Both the whole-run mean and the end-of-run value must equal it,
for the paper's per-sentence summed NLL (prefix, `sequence_sum`, tens of nats) and the token mean (fine-tuning).
"""
from __future__ import annotations

import pytest
import torch

from conftest import _tiny_method
from prefixtune.trainer import final_loss, whole_run_loss

SOURCES = ["name : Aromi | food : Chinese", "name : Blue Spice | area : riverside", "name : Zizzi | eatType : pub"]
TARGETS = ["Aromi serves Chinese food .", "Blue Spice is by the riverside .", "Zizzi is a pub ."]


@pytest.mark.parametrize("method, reduction", [("prefix", "sequence_sum"), ("finetune", "token_mean")])
def test_recorded_losses_are_the_methods_loss(tmp_path, method, reduction):
    from prefixtune.data.collate import Collator, Encoder
    from prefixtune.trainer import fit

    bb, m, cfg = _tiny_method("gpt2", f"method={method}", f"method.loss_reduction={reduction}", "optim.lr=0.0",
                              "trainer.max_steps=6", "scale.max_steps=null", "trainer.log_every=2",
                              "trainer.save_every=6", "trainer.batch_size=3", "optim.warmup_steps=0",
                              "trainer.early_stopping_patience=null", "trainer.eval_every=null")
    if method == "finetune":  # fine-tuning keeps the LM's dropout on; the tiny model's is switched off here
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    feats = Encoder(bb, m.extra_source_tokens(), 64, 64).train_features(SOURCES, TARGETS)
    batch = Collator(pad_id=bb.pad_id, left=False, with_infix=m.extra_source_tokens() > 0)(feats)
    m.train()
    with torch.no_grad():
        by_hand = float(m(**batch).loss)
    summary = fit(m, feats, [], cfg, tmp_path / "ckpt", report_to=[])
    assert summary["global_step"] == 6
    assert summary["train_loss"] == pytest.approx(by_hand, rel=1e-5)
    assert summary["final_loss"] == pytest.approx(by_hand, rel=1e-5)
    # the units: the per-sentence sum is the token mean times the labelled tokens per sentence
    m.loss_reduction = "token_mean" if reduction == "sequence_sum" else "sequence_sum"
    with torch.no_grad():
        other = float(m(**batch).loss)
    per_sentence = int((batch["labels"] != -100).sum()) / len(feats)
    seq_sum, tok_mean = (by_hand, other) if reduction == "sequence_sum" else (other, by_hand)
    assert seq_sum == pytest.approx(tok_mean * per_sentence, rel=1e-5)


def test_final_loss_is_the_last_logged_window():
    history = [{"loss": 4.0, "step": 10}, {"eval_loss": 9.0, "step": 10}, {"loss": 2.5, "step": 20},
               {"train_loss": 3.1, "step": 20}]
    assert final_loss(history) == 2.5
    assert final_loss([{"eval_loss": 1.0, "step": 5}]) is None


def test_whole_run_loss_weights_each_window_by_its_steps():
    """Resumed at step 20 of 25 (logging every 10): windows 0-10, 10-20 from the history, 20-25 from the tail."""
    history = [{"loss": 4.0, "step": 10}, {"loss": 2.0, "step": 20}]
    # after the restart HF's training_loss covers steps 21-25 only: their mean 1.0
    got = whole_run_loss(history, 25, "ckpt/checkpoint-20", tail_mean=1.0)
    assert got == pytest.approx((4.0 * 10 + 2.0 * 10 + 1.0 * 5) / 25)
    assert whole_run_loss(history, 20, None, tail_mean=3.0) == 3.0  # not resumed: HF's own mean
