"""Token-level encoding of (source, target) pairs and batching, for decoder-only and encoder-decoder models.

Decoder-only (paper §4.4, original `' {src} {bos} {tgt} {eos}'` with bos = eos = <|endoftext|>):
    ids    = enc(' ' + src) + [pad] * n_extra + [sep] + enc(' ' + tgt) + [eos]
    labels = -100 up to and including sep, then the target and the final eos
`n_extra` placeholder positions are the method's (infix-tuning keeps its activations there, §7.3). Source and
target are tokenised separately, each as a space-prefixed BPE word sequence, so the separator is always exactly
one special token (tokenising the joined string would insert a stray " " token before <|endoftext|> in
transformers >= 4; the original transformers-3 fork stripped it).

Encoder-decoder (BART): encoder = enc(src) + [eos]; decoder target = enc(' ' + tgt) + [eos], shifted right
behind `decoder_start_token_id`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..backbone import Backbone


@dataclass
class Encoder:
    backbone: Backbone
    n_extra: int
    max_source_tokens: int
    max_target_tokens: int

    def _enc(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        ids = self.backbone.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [x[:limit] for x in ids]

    def train_features(self, sources: Sequence[str], targets: Sequence[str]) -> list[dict[str, Any]]:
        bb = self.backbone
        srcs = self._enc([" " + s for s in sources], self.max_source_tokens)
        tgts = self._enc([" " + t for t in targets], self.max_target_tokens)
        feats = []
        for s, t in zip(srcs, tgts):
            if bb.is_encoder_decoder:
                labels = t + [bb.eos_id]
                start = bb.model.config.decoder_start_token_id
                feats.append({"input_ids": s + [bb.eos_id], "labels": labels,
                              "decoder_input_ids": [start] + labels[:-1]})
            else:
                prompt = s + [bb.pad_id] * self.n_extra + [bb.sep_id]
                feats.append({"input_ids": prompt + t + [bb.eos_id],
                              "labels": [-100] * len(prompt) + t + [bb.eos_id],
                              "infix_start": len(s)})
        return feats

    def prompt_features(self, sources: Sequence[str]) -> list[dict[str, Any]]:
        bb = self.backbone
        srcs = self._enc([" " + s for s in sources], self.max_source_tokens)
        if bb.is_encoder_decoder:
            return [{"input_ids": s + [bb.eos_id]} for s in srcs]
        return [{"input_ids": s + [bb.pad_id] * self.n_extra + [bb.sep_id], "infix_start": len(s)} for s in srcs]


@dataclass
class Collator:
    """Pads a list of features. Training batches are right-padded; generation prompts of decoder-only models
    are left-padded so that every row's continuation starts at the same position."""

    pad_id: int
    left: bool = False
    with_infix: bool = False

    def __call__(self, feats: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        width = max(len(f["input_ids"]) for f in feats)
        pads = [width - len(f["input_ids"]) for f in feats]
        out["input_ids"] = self._pad([f["input_ids"] for f in feats], width, self.pad_id)
        out["attention_mask"] = self._pad([[1] * len(f["input_ids"]) for f in feats], width, 0)
        if "labels" in feats[0]:
            lw = max(len(f["labels"]) for f in feats)
            out["labels"] = self._pad([f["labels"] for f in feats], lw, -100, left=False)
        if "decoder_input_ids" in feats[0]:
            dw = max(len(f["decoder_input_ids"]) for f in feats)
            out["decoder_input_ids"] = self._pad([f["decoder_input_ids"] for f in feats], dw, self.pad_id,
                                                 left=False)
            out["decoder_attention_mask"] = self._pad([[1] * len(f["decoder_input_ids"]) for f in feats], dw, 0,
                                                      left=False)
        if self.with_infix and "infix_start" in feats[0]:
            shift = pads if self.left else [0] * len(feats)
            out["infix_start"] = torch.tensor([f["infix_start"] + p for f, p in zip(feats, shift)])
        return out

    def _pad(self, rows: list[list[int]], width: int, value: int, left: bool | None = None) -> torch.Tensor:
        left = self.left if left is None else left
        return torch.tensor([[value] * (width - len(r)) + r if left else r + [value] * (width - len(r))
                             for r in rows])
