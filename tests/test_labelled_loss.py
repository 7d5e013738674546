"""With labels, a method applies the LM head only at the labelled positions (methods/base.py, `_labelled_loss`).

That is a speed/memory change only: the loss and every gradient must be those of `lm_loss` on the full (B, T, V)
logits, for every method, loss reduction and architecture that takes the path, and BART must keep the full path.
"""
from __future__ import annotations

import pytest
import torch

from conftest import _tiny_method
from test_prefix_equivalence import _batch

METHODS = ["prefix", "finetune", "finetune_top2", "adapter", "lora", "embedding_only", "infix", "prompt_tuning",
           "parallel_adapter", "mam", "unipelt"]


def _both(method, batch):
    """(loss via the labelled path, its grads), (loss of lm_loss on the full logits, its grads)."""
    method.train()
    params = method.trainable_parameters()
    assert params
    torch.manual_seed(0)  # fine-tuning keeps dropout on: both passes draw the same masks
    fast = method(**dict(batch)).loss
    g_fast = torch.autograd.grad(fast, params, allow_unused=True)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    torch.manual_seed(0)
    full = method.lm_loss(method(**inputs).logits, batch["labels"])
    g_full = torch.autograd.grad(full, params, allow_unused=True)
    return (fast, g_fast), (full, g_full)


@pytest.mark.parametrize("reduction", ["token_mean", "sequence_sum"])
@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_labelled_loss_equals_full_logits_loss(model, name, reduction):
    over = [f"method={name}", f"method.loss_reduction={reduction}"]
    bb, method, _ = _tiny_method(model, *over)
    assert method._labelled_head() is not None, "decoder-only backbones must take the labelled path"
    batch = _batch(bb, n_extra=method.extra_source_tokens())
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < labelled < batch["labels"][:, 1:].numel(), "the batch must have unlabelled (source) positions"
    (fast, g_fast), (full, g_full) = _both(method, batch)
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-5)
    seen = 0
    for a, b in zip(g_fast, g_full):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-6 * float(b.abs().max()) + 1e-7, rtol=1e-4)
            seen += int(a.abs().sum() > 0)
    assert seen, "no trained tensor got a gradient"


def test_labelled_path_returns_no_logits_and_inference_still_does():
    bb, method, _ = _tiny_method("llama", "method=prefix")
    batch = _batch(bb)
    out = method(**dict(batch))
    assert out.logits is None and torch.isfinite(out.loss)
    logits = method(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert logits.shape == (*batch["input_ids"].shape, bb.model.config.vocab_size)


def test_encoder_decoder_keeps_the_full_path():
    bb, method, _ = _tiny_method("bart", "method=prefix")
    assert method._labelled_head() is None  # BART's head adds final_logits_bias
    out = method(**dict(_batch(bb)))
    assert out.logits is not None and torch.isfinite(out.loss)


def test_bf16_labelled_loss_close_to_fp32():
    bb, method, _ = _tiny_method("llama", "method=prefix")
    batch = _batch(bb)
    method.train()
    fp32 = method(**dict(batch)).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = method(**dict(batch)).loss
    assert bf16.dtype == torch.float32  # the cross-entropy runs on fp32 logits
    assert abs(bf16.item() - fp32) / fp32 < 0.05


@pytest.mark.parametrize("model", ["gpt2", "bart"])
def test_the_two_reductions_are_the_papers_definitions(model):
    """`lm_loss` against the definitions written out with log_softmax and loops: token_mean = mean NLL over the
    labelled tokens of the batch; sequence_sum (paper code --objective_mode 1) = per-sentence summed NLL,
    averaged over the sentences. Rows of different label counts tell the two apart."""
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 6, 11), torch.randint(0, 11, (3, 6))
    labels[0, :4] = -100  # sentence 0 has 2 labelled tokens, sentence 1 all 6, sentence 2 one
    labels[2, :5] = -100
    expected: dict[str, float] = {}
    for reduction in ("token_mean", "sequence_sum"):
        bb, method, _ = _tiny_method(model, f"method.loss_reduction={reduction}")
        lg, lb = (logits, labels) if bb.is_encoder_decoder else (logits[:, :-1], labels[:, 1:])
        logp = torch.log_softmax(lg, dim=-1)
        per_row = [[-float(logp[b, t, lb[b, t]]) for t in range(lb.shape[1]) if lb[b, t] != -100]
                   for b in range(lb.shape[0])]
        expected = {"token_mean": sum(map(sum, per_row)) / sum(map(len, per_row)),
                    "sequence_sum": sum(map(sum, per_row)) / len(per_row)}
        assert method.lm_loss(logits, labels).item() == pytest.approx(expected[reduction], rel=1e-5)
    assert expected["token_mean"] != pytest.approx(expected["sequence_sum"])
