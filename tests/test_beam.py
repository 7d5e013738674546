"""The pruned beam search (prefixtune.beam) returns exactly what `transformers`' `generate` returns, in fp32.

Pruning only pays when sources finish at different steps, so the end-of-sequence logit gets a bias (a hook on the
LM head, weights untouched): with it some sources end after a few tokens while others run on; the same token ids
must come out of both engines, and the test checks that sources did finish early, so pruning happened.
"""
from __future__ import annotations

import pytest
import torch

from test_decode import SOURCES, _boost, _perturb, _setup


def _generate(method, enc, cfg, engine: str) -> torch.Tensor:
    from prefixtune.data.collate import Collator
    from prefixtune.decode import generation_kwargs

    bb = method.backbone
    batch = Collator(pad_id=bb.pad_id, left=True)(enc.prompt_features(SOURCES))
    return method.generate(engine=engine, **batch, **generation_kwargs(method, cfg.decode))


@pytest.mark.parametrize("model", ["gpt2", "llama"])
@pytest.mark.parametrize("method_name", ["prefix", "finetune"])
@pytest.mark.parametrize("bias", [0.0, 3.0, 6.0])
@pytest.mark.parametrize("min_new", [0, 3])
def test_pruned_equals_generate(model, method_name, bias, min_new):
    _, method, cfg, enc = _setup(model, f"method={method_name}", f"decode.min_new_tokens={min_new}",
                                 "decode.max_new_tokens=12")
    if method_name != "finetune":
        _perturb(method)
    handle = _boost(method, [method.backbone.eos_id], bias)
    try:
        pruned, hf = _generate(method, enc, cfg, "pruned"), _generate(method, enc, cfg, "hf")
    finally:
        handle.remove()
    assert torch.equal(pruned, hf), (pruned, hf)
    if bias >= 6.0:  # sources that ended before the cap: pruning left the batch smaller than it started
        new = pruned[:, -12:]
        ended = [(row == method.backbone.eos_id).any() for row in new]
        assert any(ended), new


def test_unsupported_settings_fall_back_to_generate():
    from prefixtune import beam

    _, method, cfg, _ = _setup("bart", "method=prefix")
    assert not beam.supports(method.model, {"num_beams": 3})
    _, method, _, _ = _setup("llama", "method=prefix")
    assert beam.supports(method.model, {"num_beams": 3})
    assert not beam.supports(method.model, {"num_beams": 1})
    assert not beam.supports(method.model, {"num_beams": 3, "do_sample": True})


def test_unknown_engine_is_an_error():
    _, method, cfg, enc = _setup("llama", "method=prefix")
    with pytest.raises(ValueError, match="engine"):
        _generate(method, enc, cfg, "fast")
