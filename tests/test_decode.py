"""Batched beam search (prefixtune.decode) is batch-invariant, bans newlines, and writes "Error" for empty outputs.

Batch invariance is the property the paper's one-source-at-a-time decoding had for free: with left-padded
prompts and attention masks (and prefixes injected inside attention, broadcast over beams), a batch of 4 with
beam 3 must return exactly the strings of decoding each source alone.
"""
from __future__ import annotations

import pytest
import torch

from conftest import _tiny_method

# different lengths, so the batches are left-padded; 6 sources with batch_size 4 = one full and one partial batch
SOURCES = ["name[The Eagle], eatType[coffee shop], food[French], priceRange[moderate], area[riverside]",
           "name[Cotto]", "name[Zizzi], area[riverside]", "name[Wok], eatType[pub], food[Chinese]",
           "name[Aromi], customer rating[5 out of 5], familyFriendly[yes]", "name[X]"]


def _setup(model: str, *overrides: str):
    from prefixtune.data.collate import Encoder

    bb, method, cfg = _tiny_method(model, *overrides, "decode.num_beams=3", "decode.batch_size=4",
                                   "decode.max_new_tokens=8")
    method.eval()
    return bb, method, cfg, Encoder(bb, method.extra_source_tokens(), 64, 32)


def _perturb(method, scale: float = 1.0) -> None:
    """Give a prefix/infix visible influence (the MLP init is small)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(("model", "method_name"), [
    ("gpt2", "prefix"), ("llama", "prefix"), ("gpt2", "infix"), ("llama", "infix"),
    ("gpt2", "finetune"), ("llama", "finetune"), ("bart", "prefix")])
@pytest.mark.parametrize("min_new", [0, 4], ids=["eos_allowed", "min4"])
def test_batched_equals_one_at_a_time(model, method_name, min_new):
    from prefixtune.decode import decode, decode_one_at_a_time

    _, method, cfg, enc = _setup(model, f"method={method_name}", f"decode.min_new_tokens={min_new}")
    if method_name != "finetune":
        _perturb(method)
    batched = decode(method, enc, SOURCES, cfg.decode)
    single = decode_one_at_a_time(method, enc, SOURCES, cfg.decode)
    assert batched == single
    assert len(batched) == len(SOURCES)
    if min_new:
        assert all(s != cfg.decode.empty_output for s in batched), batched


def _boost(method, token_ids: list[int], amount: float = 50.0):
    """Make the LM strongly prefer `token_ids` (a hook on the output layer; the weights stay untouched)."""
    head = method.model.get_output_embeddings()

    def hook(module, args, out):
        out = out.clone()
        out[..., token_ids] += amount
        return out

    return head.register_forward_hook(hook)


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_newlines_are_banned(model):
    from prefixtune.decode import _newline_ids, decode, generation_kwargs
    from prefixtune.data.collate import Collator

    bb, method, cfg, enc = _setup(model, "method=prefix", "decode.ban_newlines=true")
    newline = _newline_ids(bb.tokenizer)
    assert {198, 628} <= set(newline)  # GPT-2 BPE "\n" and "\n\n", what the original code banned
    _boost(method, [198, 628])
    batch = Collator(bb.pad_id, left=True)(enc.prompt_features(SOURCES[:3]))

    def generated(ban: bool) -> torch.Tensor:
        dcfg = cfg.decode.copy()
        dcfg.ban_newlines = ban
        out = method.generate(**dict(batch), **generation_kwargs(method, dcfg))
        return out[:, batch["input_ids"].shape[1]:]

    assert torch.isin(generated(False), torch.tensor(newline)).any(), "control: the boost must produce newlines"
    assert not torch.isin(generated(True), torch.tensor(newline)).any()
    outputs = decode(method, enc, SOURCES, cfg.decode)
    assert all("\n" not in s and s for s in outputs), outputs


def test_clean_writes_error_for_empty_generations(tiny_backbone):
    from prefixtune.decode import clean

    bb = tiny_backbone("gpt2")
    tok, eos = bb.tokenizer, bb.eos_id
    hello = tok(" hello world", add_special_tokens=False)["input_ids"]
    assert clean(tok, [], eos, "Error") == "Error"
    assert clean(tok, [eos, *hello], eos, "Error") == "Error"        # eos first: nothing before it
    assert clean(tok, tok(" \n ", add_special_tokens=False)["input_ids"], eos, "Error") == "Error"  # whitespace
    assert clean(tok, [*hello, eos, *hello], eos, "Error") == "hello world"  # cut at the first eos, stripped
    assert clean(tok, hello, eos, "Error") == "hello world"


@pytest.mark.parametrize("model", ["gpt2", "bart"])
def test_decode_writes_error_when_the_model_stops_at_once(model):
    from prefixtune.decode import decode

    bb, method, cfg, enc = _setup(model, "method=prefix")
    _boost(method, [bb.eos_id], amount=1e4)
    assert decode(method, enc, SOURCES[:3], cfg.decode) == [cfg.decode.empty_output] * 3 == ["Error"] * 3


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_decode_reports_which_outputs_ended_with_eos(model):
    """The EOS flags behind decode health (prefixtune.health): a model forced to stop at once ends every output
    with EOS; one that is forbidden EOS (min_new_tokens = max_new_tokens) runs every output to the cap."""
    from prefixtune.decode import decode

    bb, method, cfg, enc = _setup(model, "method=prefix")
    hook = _boost(method, [bb.eos_id], amount=1e4)
    ended: list[bool] = []
    decode(method, enc, SOURCES, cfg.decode, eos=ended)
    assert ended == [True] * len(SOURCES)
    hook.remove()
    dcfg = cfg.decode.copy()
    dcfg.min_new_tokens = dcfg.max_new_tokens
    decode(method, enc, SOURCES, dcfg, eos=ended)
    assert ended == [False] * len(SOURCES)
