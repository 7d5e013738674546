"""What a finished record decoded on its test split: its sources, their references and its predictions, aligned.

The pipeline decodes a fixed subset of the test groups (`scale.max_decode_groups`, pipeline._subset with the
subset seed 0, the same for every row of a table) and writes one prediction per line; this rebuilds that
alignment from the record's config, so that decode health and the paired bootstrap over test sources are pure
functions of the record and its stored predictions. A prediction file whose length disagrees with the subset is
an error naming the file, never a silently misaligned score.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from .data import Group
from .paths import REPO_ROOT, results_dir


@dataclasses.dataclass(frozen=True)
class Decoded:
    dataset: str
    split: str
    indices: tuple[int, ...]          # positions of the decoded groups in the full split
    groups: tuple[Group, ...]
    predictions: tuple[str, ...]

    @property
    def sources(self) -> list[str]:
        return [g.source for g in self.groups]

    @property
    def references(self) -> list[list[str]]:
        return [list(g.references) for g in self.groups]


@functools.lru_cache(maxsize=16)
def _groups(dataset: str, split: str, cap: int | None) -> tuple[tuple[int, ...], tuple[Group, ...]]:
    from .data import load_split
    from .pipeline import _subset

    chosen = _subset(list(enumerate(load_split(dataset, split).groups)), cap)
    return tuple(i for i, _ in chosen), tuple(g for _, g in chosen)


def output_path(rec, key: str, root: Path | None = None) -> Path | None:
    """Where the file a record names under `outputs[key]` lies (record paths are relative to the checkout, or to a
    results folder and its parent); None when the record names none, FileNotFoundError when it is not there."""
    rel = rec.outputs.get(key)
    if not rel:
        return None
    for base in (REPO_ROOT, Path(root or results_dir()).parent, Path(root or results_dir())):
        if (base / rel).exists():
            return base / rel
    raise FileNotFoundError(f"{rel} (the {key} of {rec.run_id}) not found under {REPO_ROOT} or {root or results_dir()}")


def predictions_path(rec, root: Path | None = None, split: str = "test") -> Path:
    path = output_path(rec, f"{split}_predictions", root)
    if path is None:
        raise FileNotFoundError(f"record {rec.run_id} names no {split}_predictions")
    return path


def decoded_split(rec, root: Path | None = None) -> Decoded:
    path = predictions_path(rec, root)
    data = rec.config["data"]
    cap = rec.config["scale"].get("max_decode_groups")
    indices, groups = _groups(data["name"], data["test_split"], None if cap is None else int(cap))
    preds = path.read_text(encoding="utf-8").splitlines()
    if len(preds) != len(groups):
        raise ValueError(f"{path}: {len(preds)} prediction lines, but the record's config decodes {len(groups)} "
                         f"{data['name']}/{data['test_split']} sources (scale.max_decode_groups={cap})")
    return Decoded(data["name"], data["test_split"], indices, groups, tuple(preds))
