"""Datasets of the paper (E2E, WebNLG 2017, DART v1.1.1, XSUM), linearised exactly as the paper's code does.

    from prefixtune.data import load_split
    s = load_split("e2e", "train")
    s.pairs   # list[Pair(source, target)]
    s.groups  # list[Group(source, references, meta)]

``python -m prefixtune.setup_data`` prepares ``paths.data_dir()``; ``prefixtune.data.lowdata`` has the
low-data sampler. See each module's docstring for the exact input format and every deviation from the paper.
"""

from __future__ import annotations

from .registry import DATASETS, dataset_names, load_split, split_names
from .types import DataError, Group, Pair, Split

__all__ = [
    "load_split",
    "Pair",
    "Group",
    "Split",
    "DataError",
    "DATASETS",
    "dataset_names",
    "split_names",
    "lowdata_split",
    "lowdata_indices",
]


def __getattr__(name: str):
    # lazy, so that `python -m prefixtune.data.lowdata` does not import its own module twice (runpy warning)
    if name in ("lowdata_split", "lowdata_indices"):
        from . import lowdata

        return getattr(lowdata, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
