"""``load_split(name, split)``: the one entry point from dataset name to pairs and groups.

Dataset names are identifiers (``e2e``, ``webnlg``, ``dart``, ``xsum``) -- the same strings as the config
group files and the folders under ``paths.data_dir()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from .dart import load_dart
from .e2e import load_e2e
from .types import DataError, Split
from .webnlg import load_webnlg
from .xsum import FULL_SPLITS, SAMPLE_SPLITS, load_xsum
from .xsum_topics import KINDS as TOPIC_KINDS

__all__ = ["load_split", "DATASETS", "DatasetInfo", "dataset_names", "split_names"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Callable[..., Split]
    splits: tuple[str, ...]
    task: str  # "table2text" | "summarization"
    note: str = ""


DATASETS: dict[str, DatasetInfo] = {
    "e2e": DatasetInfo(
        "e2e",
        load_e2e,
        ("train", "dev", "test"),
        "table2text",
        "train = rebuild from e2e_aligned.tar.gz (src1_train.reconstructed.txt.gz)",
    ),
    "webnlg": DatasetInfo(
        "webnlg",
        load_webnlg,
        ("train", "dev", "test"),
        "table2text",
        "WebNLG Challenge 2017 XML; test groups carry meta['seen']",
    ),
    "dart": DatasetInfo(
        "dart",
        load_dart,
        ("train", "dev", "test"),
        "table2text",
        "v1.1.1; test = 2021 grouping (5,097 entries), not the paper's 2020 grouping (6,959)",
    ),
    "xsum": DatasetInfo(
        "xsum",
        load_xsum,
        tuple(FULL_SPLITS) + tuple(SAMPLE_SPLITS) + tuple(f"{k}_{p}" for k in TOPIC_KINDS for p in FULL_SPLITS),
        "summarization",
        "train/dev/test need the full corpus (hub or $PREFIXTUNE_XSUM); sample_* are offline; "
        "news_to_sports_* / within_news_* also need the article URLs ($PREFIXTUNE_XSUM_URLS)",
    ),
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def split_names(name: str) -> tuple[str, ...]:
    return _info(name).splits


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def load_split(name: str, split: str, *, data_dir: str | Path | None = None, **options) -> Split:
    """Load ``split`` of dataset ``name`` from ``data_dir`` (default ``paths.data_dir()``).

    ``options`` go to the dataset's loader (only ``xsum`` takes one: ``source=``, a local folder or hub id for
    the full corpus). Raises :class:`DataError` for unknown names, missing files (with a hint to run ``make
    setup``) and malformed input (naming the file and line or entry).
    """
    info = _info(name)
    if split not in info.splits:
        raise DataError(f"{name} has no split {split!r}; choose one of {list(info.splits)}")
    return info.loader(split, Path(data_dir) if data_dir is not None else paths.data_dir(), **options)
