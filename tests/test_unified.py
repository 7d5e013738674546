"""The unified-view methods beside prefix-tuning (LoRA via PEFT, prompt tuning, parallel adapter, MAM, UniPELT)
and prefix interop with PEFT. Training, frozen weights and checkpoints of every method are in test_methods.py;
here: what each combination is made of, that UniPELT's gates are learned functions of the input, and that a
prefix crosses to and from PEFT's `PrefixTuning` unchanged (the same logits and the same generated text).
"""
from __future__ import annotations

import pytest
import torch

from conftest import _tiny_backbone, _tiny_method
from test_prefix_equivalence import SOURCES, _batch, _logits, _random_materialised

GEN = dict(num_beams=3, max_new_tokens=8, min_new_tokens=4, do_sample=False)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("model", ["gpt2", "llama", "bart"])
def test_mam_is_prefix_plus_parallel_adapter(model):
    bb, mam, _ = _tiny_method(model, "method=mam")
    _, prefix, _ = _tiny_method(model, "method=prefix", "method.length=30")
    _, pa, _ = _tiny_method(model, "method=parallel_adapter")
    assert set(mam.parts) == {"prefix", "parallel_adapter"}
    assert mam.param_counts()["trainable"] == prefix.param_counts()["trainable"] + pa.param_counts()["trainable"]
    n_ffn = bb.n_layer * (2 if bb.is_encoder_decoder else 1)  # BART: encoder and decoder FFNs
    assert len(mam.parts["parallel_adapter"].adapters) == n_ffn


def test_unipelt_has_gated_lora_prefix_and_adapter():
    bb, m, _ = _tiny_method("llama", "method=unipelt")
    assert set(m.parts) == {"lora", "prefix", "adapter"}
    n_lora = 2 * bb.n_layer  # q_proj and v_proj of every layer
    assert len(m.parts["lora"].gates) == n_lora
    assert len(m.parts["prefix"].gates) == bb.n_layer
    assert all(a.gate is not None for a in m.parts["adapter"].adapters)
    assert m.parts["adapter"].bottleneck == bb.d_model // 16


def test_unipelt_gates_depend_on_the_input_and_change_the_output():
    bb, m, _ = _tiny_method("llama", "method=unipelt")
    batch = _batch(bb)
    m.eval()
    with torch.no_grad():
        base = m(**{k: v for k, v in batch.items() if k != "labels"}).logits
        m.prepare({})
        m.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        gates = m.parts["prefix"].provider.state.gates
    g = gates[("self", 0)]  # (B, 2): one key scale and one value scale per row
    assert g.shape == (batch["input_ids"].shape[0], 2)
    assert g.std(dim=0).min() > 0, "the prefix gate is the same for every input"
    # closing a gate changes the output: push the prefix gates to ~0 and the logits move
    with torch.no_grad():
        for gate in m.parts["prefix"].gates.values():
            gate.proj.bias.fill_(-30.0)
        closed = m(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert not torch.allclose(base, closed, atol=1e-4)


# ---- PEFT interop -------------------------------------------------------------------------------------------

def _peft_plain(model: str):
    return _tiny_backbone(model).model


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_exported_prefix_loads_in_peft_and_generates_the_same_text(model, tmp_path):
    from peft import PeftModel

    from prefixtune.interop import write_peft_prefix

    bb, method, _ = _tiny_method(model, "method=prefix", "method.length=4")  # MLP form: exported materialised
    method.load_export(_random_materialised(method))
    out = write_peft_prefix(method, tmp_path / "peft", base_model=f"tiny_{model}")
    peft_model = PeftModel.from_pretrained(_peft_plain(model), str(out)).eval()
    batch = _batch(bb, left=True, labels=False)
    kw = dict(GEN, pad_token_id=bb.pad_id, eos_token_id=bb.eos_id)
    ours = method.generate(**dict(batch), **kw)
    with torch.no_grad():
        theirs = peft_model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw)
    assert torch.equal(ours, theirs)
    text = bb.tokenizer.batch_decode(ours[:, batch["input_ids"].shape[1]:])
    assert text == bb.tokenizer.batch_decode(theirs[:, batch["input_ids"].shape[1]:])
    assert len(SOURCES) == len(text)


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_peft_prefix_adapter_imports_into_a_run(model, tmp_path):
    from peft import PrefixTuningConfig, get_peft_model

    peft_model = get_peft_model(_peft_plain(model), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    with torch.no_grad():
        emb = peft_model.prompt_encoder["default"].embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)))
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    bb, method, _ = _tiny_method(model, "method=prefix", "method.reparam=none", "method.init.kind=peft",
                                 f"+method.init.path={tmp_path / 'adapter'}")
    assert method.length == 3
    batch = _batch(bb)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        theirs = peft_model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(_logits(method, batch)[real], theirs[real], atol=1e-5, rtol=0)


def test_interop_refuses_what_peft_cannot_hold(tmp_path):
    from prefixtune.interop import read_peft_prefix, write_peft_prefix

    _, bart, _ = _tiny_method("bart", "method=prefix", "method.length=2")
    with pytest.raises(ValueError, match="PrefixTuning"):
        write_peft_prefix(bart, tmp_path / "x")
    bb = _tiny_backbone("gpt2")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        read_peft_prefix(tmp_path / "missing", bb)
    # a GPT-2-shaped adapter does not fit the Llama geometry: a clear error, not a silent reshape
    _, gpt2, _ = _tiny_method("gpt2", "method=prefix", "method.length=2")
    write_peft_prefix(gpt2, tmp_path / "g")
    with pytest.raises(ValueError, match="does not fit"):
        read_peft_prefix(tmp_path / "g", _tiny_backbone("llama"))
