"""Equivalences that pin down what the prefix does (design.md "Style habits" 5; minGPT's logits-vs-HF habit).

* A zero-length or switched-off prefix is exactly the plain model (torch.equal) for GPT-2, Llama-GQA and BART.
* A materialised prefix gives the same logits and beam-search output as PEFT's `PrefixTuning` loaded with the
  same values (GPT-2, Llama-GQA), on padded batches.
* MLP form == its materialised (flat) form; the GQA prefix is sized by kv heads.
* Infix (paper §7.3): x cannot see the infix; embedding-only (§7.2) == literally prepending virtual-token embeddings.
* Gradient checkpointing gives the prefix the same gradients; bf16 autocast runs.
"""
from __future__ import annotations

import pytest
import torch

from conftest import _tiny_backbone, _tiny_method

SOURCES = ["name[The Eagle], eatType[coffee shop], food[French]", "name[Cotto]", "name[Zizzi], area[riverside]"]
TARGETS = ["The Eagle is a French coffee shop.", "Cotto.", "Zizzi is by the riverside, it is a nice place to be."]


def _batch(bb, n_extra: int = 0, left: bool = False, labels: bool = True) -> dict[str, torch.Tensor]:
    """A padded batch of rows of different lengths (so padding and masks matter)."""
    from prefixtune.data.collate import Collator, Encoder

    enc = Encoder(bb, n_extra, 64, 64)
    feats = enc.train_features(SOURCES, TARGETS) if labels else enc.prompt_features(SOURCES)
    batch = Collator(bb.pad_id, left=left, with_infix=n_extra > 0)(feats)
    assert (batch["attention_mask"] == 0).any(), "the test batch must contain padding"
    return batch


def _plain_logits(model: str, batch: dict[str, torch.Tensor], **kw) -> torch.Tensor:
    plain = _tiny_backbone(model).model.eval()
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "infix_start")}
    with torch.no_grad():
        return plain(**inputs, use_cache=False, **kw).logits


def _logits(method, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Full (B, T, V) logits: without labels (with labels a method returns only the loss, methods/base.py)."""
    method.eval()
    with torch.no_grad():
        return method(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _random_materialised(method, std: float = 1.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """A strong (N(0, std^2)) materialised prefix with the method's export shapes, so it visibly changes outputs."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * std for k, v in method.export().items()}


# ---- the plain model ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gpt2", "llama", "bart"])
def test_zero_length_prefix_is_the_plain_model(model):
    bb, method, _ = _tiny_method(model, "method=prefix", "method.length=0")
    batch = _batch(bb)
    assert torch.equal(_logits(method, batch), _plain_logits(model, batch))
    assert method.param_counts()["stored"] == 0


@pytest.mark.parametrize("model", ["gpt2", "llama", "bart"])
def test_disabled_provider_is_the_plain_model(model):
    bb, method, _ = _tiny_method(model, "method=prefix", "method.length=5")
    batch = _batch(bb)
    plain = _plain_logits(model, batch)
    assert not torch.allclose(_logits(method, batch), plain, atol=1e-4), "an enabled prefix must change the logits"
    method.provider.enabled = False
    assert torch.equal(_logits(method, batch), plain)


# ---- PEFT ---------------------------------------------------------------------------------------------------

def _peft_twin(model: str, kv: torch.Tensor):
    """PEFT PrefixTuning on a fresh copy of the same tiny model, loaded with our materialised prefix."""
    from peft import PrefixTuningConfig, get_peft_model

    length = kv.shape[3]
    plain = _tiny_backbone(model).model
    peft_model = get_peft_model(plain, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=length))
    with torch.no_grad():
        emb = peft_model.prompt_encoder["default"].embedding.weight
        flat = kv.permute(3, 0, 1, 2, 4).reshape(length, -1)  # (L, n_layer*2*n_kv*head_dim), PEFT's layout
        assert emb.shape == flat.shape, (emb.shape, flat.shape)
        emb.copy_(flat)
    return peft_model.eval()


@pytest.mark.parametrize("left", [False, True], ids=["right_padded", "left_padded"])
@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_same_logits_as_peft_prefix_tuning(model, left):
    bb, method, _ = _tiny_method(model, "method=prefix", "method.length=4", "method.reparam=none")
    method.load_export(_random_materialised(method))
    kv = method.export()["prefix.self"]
    assert kv.shape == (bb.n_layer, 2, bb.n_kv_head, 4, bb.head_dim)
    peft_model = _peft_twin(model, kv)
    batch = _batch(bb, left=left)
    ours = _logits(method, batch)
    with torch.no_grad():
        theirs = peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)
    assert not torch.allclose(ours[real], _plain_logits(model, batch)[real], atol=1e-2), "prefix had no effect"


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_same_beam_search_as_peft_prefix_tuning(model):
    bb, method, _ = _tiny_method(model, "method=prefix", "method.length=4", "method.reparam=none")
    method.load_export(_random_materialised(method))
    peft_model = _peft_twin(model, method.export()["prefix.self"])
    batch = _batch(bb, left=True, labels=False)
    kw = dict(num_beams=3, max_new_tokens=8, min_new_tokens=4, do_sample=False, pad_token_id=bb.pad_id,
              eos_token_id=bb.eos_id)
    ours = method.generate(**dict(batch), **kw)
    with torch.no_grad():
        theirs = peft_model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw)
    assert torch.equal(ours, theirs), f"\nours  {ours[:, -8:].tolist()}\ntheirs {theirs[:, -8:].tolist()}"
    method.provider.enabled = False  # the prefix matters for what is generated
    assert not torch.equal(method.generate(**dict(batch), **kw), ours)


# ---- forms and geometry -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "variant"), [("gpt2", "prefix"), ("llama", "prefix"), ("bart", "prefix"),
                                                ("gpt2", "infix"), ("llama", "embedding_only")])
def test_mlp_form_equals_materialised_form(model, variant):
    torch.manual_seed(0)
    bb, mlp, _ = _tiny_method(model, f"method={variant}", "method.length=3")
    with torch.no_grad():  # move away from the init so the check is not about a special point
        for p in mlp.trainable_parameters():
            p.add_(0.1 * torch.randn_like(p))
    artefact = mlp.export()
    _, flat, _ = _tiny_method(model, f"method={variant}", "method.length=3", "method.reparam=none")
    flat.load_export(artefact)
    n_extra = mlp.extra_source_tokens()
    batch = _batch(bb, n_extra=n_extra)
    assert torch.equal(_logits(mlp, batch), _logits(flat, batch))
    # the materialised form stores exactly the artefact (paper §4.3: P' and the MLP are dropped)
    back = flat.export()
    assert all(torch.equal(artefact[k], back[k]) for k in artefact)
    assert flat.param_counts()["trainable"] == flat.param_counts()["stored"] == mlp.param_counts()["stored"]


def test_gqa_prefix_is_sized_by_kv_heads():
    bb, method, _ = _tiny_method("llama", "method=prefix", "method.length=7")
    cfg = bb.model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads) == (4, 2)
    assert bb.n_kv_head == 2 and bb.head_dim == 16
    kv = method.export()["prefix.self"]
    assert kv.shape == (2, 2, 2, 7, 16)  # (n_layer, key/value, n_kv_heads, L, head_dim)
    assert method.param_counts()["stored"] == 2 * 2 * 2 * 7 * 16
    # and the attention layers accept it (a prefix sized by query heads would fail to concatenate)
    _logits(method, _batch(bb))


def test_bart_has_encoder_decoder_and_cross_prefixes():
    bb, method, _ = _tiny_method("bart", "method=prefix", "method.length=3")
    art = method.export()
    assert set(art) == {"prefix.encoder", "prefix.self", "prefix.cross"}
    for t in art.values():
        assert t.shape == (bb.n_layer, 2, bb.n_kv_head, 3, bb.head_dim)


# ---- infix and embedding-only -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_infix_is_invisible_to_x(model):
    """[x; INFIX; y]: x precedes the infix causally, so changing the infix changes y's logits, never x's (§7.3)."""
    bb, method, _ = _tiny_method(model, "method=infix", "method.length=3")
    batch = _batch(bb, n_extra=3)
    before = _logits(method, batch)
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.add_(torch.randn_like(p))
    after = _logits(method, batch)
    sep_pos = (batch["input_ids"] == bb.sep_id).int().argmax(dim=1)  # first sep = end of x + infix slots
    for row in range(batch["input_ids"].shape[0]):
        start = int(batch["infix_start"][row])
        assert start > 0
        assert torch.equal(before[row, :start], after[row, :start]), f"row {row}: x saw the infix"
        n_real = int(batch["attention_mask"][row].sum())
        y = slice(int(sep_pos[row]), n_real)
        assert not torch.allclose(before[row, y], after[row, y], atol=1e-4), f"row {row}: y ignores the infix"


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_embedding_only_equals_prepending_virtual_token_embeddings(model):
    bb, method, _ = _tiny_method(model, "method=embedding_only", "method.length=4")
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.add_(0.5 * torch.randn_like(p))
    batch = _batch(bb)
    ours = _logits(method, batch)

    prefix_emb = method.export()["prefix_embedding.self"]  # (L, d_model)
    assert prefix_emb.shape == (4, bb.d_model)
    plain = _tiny_backbone(model).model.eval()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        tok = plain.get_input_embeddings()(ids)
        embeds = torch.cat([prefix_emb[None].expand(ids.shape[0], -1, -1), tok], dim=1)
        full_mask = torch.cat([torch.ones(ids.shape[0], 4, dtype=mask.dtype), mask], dim=1)
        ref = plain(inputs_embeds=embeds, attention_mask=full_mask, use_cache=False).logits[:, 4:]
    real = mask.bool()
    torch.testing.assert_close(ours[real], ref[real], atol=1e-5, rtol=1e-5)


# ---- training-time features ---------------------------------------------------------------------------------

def _first_step_grads(model: str, checkpointing: bool, tmp_path):
    from transformers import TrainerCallback

    from prefixtune.data.collate import Encoder
    from prefixtune.trainer import fit

    torch.manual_seed(0)
    bb, method, cfg = _tiny_method(model, "method=prefix", "method.length=3", "trainer.max_steps=1",
                                   "scale.max_steps=null", "trainer.batch_size=3", "trainer.save_every=100",
                                   "optim.max_grad_norm=0.0", f"trainer.grad_checkpointing={checkpointing}")
    grads: dict[str, torch.Tensor] = {}
    calls = {"attn0": 0}
    # a module *inside* block 0 (HF checkpoints the block's `forward`, so hooks on the block itself fire once)
    bb.sites[0].module.register_forward_hook(lambda *a: calls.__setitem__("attn0", calls["attn0"] + 1))

    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            for n, p in model.named_parameters():
                if p.requires_grad:
                    grads[n] = p.grad.detach().clone()

    feats = Encoder(bb, 0, 64, 64).train_features(SOURCES, TARGETS)
    fit(method, feats, [], cfg, tmp_path / f"ckpt-{checkpointing}", [], callbacks=[Grab()])
    return grads, calls["attn0"], bb.model.is_gradient_checkpointing


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_gradient_checkpointing_gives_the_same_prefix_gradients(model, tmp_path):
    plain, n_plain, on_plain = _first_step_grads(model, False, tmp_path)
    ckpt, n_ckpt, on_ckpt = _first_step_grads(model, True, tmp_path)
    assert not on_plain and on_ckpt
    assert (n_plain, n_ckpt) == (1, 2), "with checkpointing block 0 must be recomputed in the backward pass"
    assert set(plain) == set(ckpt) and plain
    for name in plain:
        assert plain[name].abs().sum() > 0, f"{name} got no gradient"
        torch.testing.assert_close(ckpt[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("model", ["gpt2", "llama", "bart"])
def test_bf16_autocast_forward(model):
    bb, method, _ = _tiny_method(model, "method=prefix", "method.length=4")
    batch = _batch(bb)
    method.train()
    fp32 = method(**dict(batch)).loss.detach()
    seen = []
    bb.sites[-1].module.register_forward_hook(lambda mod, args, out: seen.append(out[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(**dict(batch))
    assert seen and set(seen) == {torch.bfloat16}, seen  # attention (with its prefix) ran in bf16
    assert torch.isfinite(out.loss)
    assert abs(out.loss.item() - fp32.item()) / fp32.item() < 0.05
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in method.trainable_parameters())
