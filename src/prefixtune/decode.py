"""Batched beam search with any method (paper §4.3 settings live in conf/decode/).

One output per unique source. Sources are decoded in length-sorted batches (less padding) and returned in the
input order; prompts are left-padded with attention masks, so a batch gives the same outputs as decoding one
source at a time (tests/test_decode.py checks this). Outputs are cleaned as the original code did: cut at the
first end-of-sequence token, stripped, and an empty output is written as `decode.empty_output` ("Error").
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import torch

from .data.collate import Collator, Encoder


@functools.lru_cache(maxsize=8)
def _newline_ids(tokenizer) -> tuple[int, ...]:
    """Every vocabulary entry that decodes to text containing a newline. The original code banned GPT-2's "\\n"
    (198) and "\\n\\n" (628); for other vocabularies we ban all newline-bearing tokens, which generalises it."""
    ids = []
    for i in range(len(tokenizer)):
        if "\n" in tokenizer.decode([i]):
            ids.append(i)
    return tuple(ids)


def generation_kwargs(method, dcfg: Any) -> dict[str, Any]:
    bb = method.backbone
    kw: dict[str, Any] = dict(num_beams=int(dcfg.num_beams), max_new_tokens=int(dcfg.max_new_tokens),
                              min_new_tokens=int(dcfg.get("min_new_tokens", 0)) or None,
                              length_penalty=float(dcfg.length_penalty), do_sample=False,
                              eos_token_id=bb.eos_id, pad_token_id=bb.pad_id)
    if int(dcfg.get("no_repeat_ngram_size", 0)):
        kw["no_repeat_ngram_size"] = int(dcfg.no_repeat_ngram_size)
    if dcfg.get("ban_newlines", True):
        kw["bad_words_ids"] = [[i] for i in _newline_ids(bb.tokenizer)]
    if bb.is_encoder_decoder:
        kw["decoder_start_token_id"] = bb.model.config.decoder_start_token_id
    return {k: v for k, v in kw.items() if v is not None}


def clean(tokenizer, ids: Sequence[int], eos_id: int, empty: str) -> str:
    ids = list(ids)
    if eos_id in ids:
        ids = ids[: ids.index(eos_id)]
    text = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return text if text else empty


def decode(method, encoder: Encoder, sources: Sequence[str], dcfg: Any, progress: bool = False,
           eos: list[bool] | None = None, engine: str = "pruned") -> list[str]:
    """Outputs in the order of `sources`; `eos`, when given, is filled with whether each output ended with an
    end-of-sequence token (False: it ran to max_new_tokens -- prefixtune.health's no-EOS share). `engine`:
    "pruned" (prefixtune.beam, finished sources leave the batch) or "hf" (`generate`; the same outputs, slower)."""
    bb = method.backbone
    feats = encoder.prompt_features(sources)
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i]["input_ids"]))
    collate = Collator(pad_id=bb.pad_id, left=not bb.is_encoder_decoder,
                       with_infix=method.extra_source_tokens() > 0)
    kwargs = generation_kwargs(method, dcfg)
    device = next(method.parameters()).device
    outputs: list[str] = [""] * len(feats)
    ended: list[bool] = [False] * len(feats)
    size = int(dcfg.batch_size)
    chunks = [order[i:i + size] for i in range(0, len(order), size)]
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="decode", unit="batch")
    # bf16 autocast (decode.bf16; on at cpu scale: ~1.7x faster on an avx512_bf16 CPU): a few beams tie-break
    # differently, so it is part of the config hash, never a silent speed switch
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(dcfg.get("bf16", False)))
    for chunk in chunks:
        batch = {k: v.to(device) for k, v in collate([feats[i] for i in chunk]).items()}
        with bf16:
            gen = method.generate(engine=engine, **batch, **kwargs)
        start = 1 if bb.is_encoder_decoder else batch["input_ids"].shape[1]  # skip decoder start / the prompt
        for row, i in enumerate(chunk):
            ids = gen[row, start:].tolist()
            ended[i] = bb.eos_id in ids
            outputs[i] = clean(bb.tokenizer, ids, bb.eos_id, str(dcfg.empty_output))
    if eos is not None:
        eos[:] = ended
    return outputs


def decode_one_at_a_time(method, encoder: Encoder, sources: Sequence[str], dcfg: Any,
                         engine: str = "pruned") -> list[str]:
    """Reference path (the original code decoded one source at a time); used by tests and `make bench`."""
    single = dict(dcfg)
    single["batch_size"] = 1
    return decode(method, encoder, sources, _Cfg(single), engine=engine)


class _Cfg(dict):
    def __getattr__(self, key: str) -> Any:
        return self[key]
