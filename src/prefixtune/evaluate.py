"""Score decoded outputs of one split with the dataset's official-equivalent scorer (prefixtune.metrics).

Test sets use the official reference files the paper's evaluation used (WebNLG: gold-*-cat .lex, DART: the
official 2021 all-delex .lex references); dev sets use the references grouped from the data files.
`indices` are the positions of the decoded groups in the full split (decoding subsets at smaller scales).
"""
from __future__ import annotations

from typing import Sequence

from . import paths
from .data import Group


def _data_root():
    root = paths.data_dir()
    return root if root.exists() else paths.shared_dir() / "data"


def score_split(dataset: str, split: str, preds: Sequence[str], indices: Sequence[int],
                groups: Sequence[Group]) -> dict[str, float | None]:
    from . import metrics

    preds = list(preds)
    if len(preds) != len(groups) or len(indices) != len(groups):
        raise ValueError(f"{dataset}/{split}: {len(preds)} predictions for {len(groups)} sources")
    if dataset == "e2e":
        return metrics.score_e2e(preds, [g.references for g in groups])
    if dataset == "webnlg":
        if split == "test":
            refs, seen = metrics.webnlg_references(_data_root() / "webnlg")
            refs, seen = [refs[i] for i in indices], [seen[i] for i in indices]
        else:
            refs, seen = [g.references for g in groups], [bool(g.meta.get("seen", True)) for g in groups]
            # dev references come raw from the XML: pre-process them as the challenge made its .lex files
            return metrics.score_webnlg(preds, refs, seen, raw_references=True)
        return metrics.score_webnlg(preds, refs, seen)
    if dataset == "dart":
        if split == "test":
            all_refs = metrics.dart_references(_data_root() / "dart")
            refs = [all_refs[i] for i in indices]
        else:
            return metrics.score_dart(preds, [g.references for g in groups], raw_references=True)
        return metrics.score_dart(preds, refs)
    if dataset == "xsum":
        return metrics.score_rouge(preds, [g.references[0] for g in groups])
    raise KeyError(f"data.scorer for {dataset!r} is not defined")
