"""The public data API: names, errors, grouping."""

from __future__ import annotations

import pytest

import prefixtune.data as data
from prefixtune.data import DATASETS, DataError, Group, Pair, Split, load_split
from prefixtune.data.types import group_pairs


def test_public_api():
    for name in ("load_split", "Pair", "Group", "Split", "DataError", "lowdata_split", "lowdata_indices"):
        assert hasattr(data, name), name
    assert issubclass(DataError, ValueError)
    assert list(DATASETS) == ["e2e", "webnlg", "dart", "xsum"]
    assert DATASETS["xsum"].splits == (
        "train",
        "dev",
        "test",
        "sample1000",
        "sample_train",
        "sample_dev",
        "sample_test",
        *(f"{kind}_{part}" for kind in ("news_to_sports", "within_news") for part in ("train", "dev", "test")),
    )
    assert Pair("a", "b") == Pair(source="a", target="b")


def test_unknown_names():
    with pytest.raises(DataError, match=r"unknown dataset 'e2e_clean'.*'dart'"):
        load_split("e2e_clean", "train")
    with pytest.raises(DataError, match=r"e2e has no split 'valid'.*'dev'"):
        load_split("e2e", "valid")


@pytest.mark.parametrize(
    "name, split",
    [
        ("e2e", "train"),
        ("e2e", "test"),
        ("webnlg", "dev"),
        ("webnlg", "test"),
        ("dart", "train"),
        ("dart", "test"),
        ("xsum", "sample_test"),
    ],
)
def test_missing_data_says_run_make_setup(tmp_path, name, split):
    with pytest.raises(DataError, match=r"file not found.*make setup"):
        load_split(name, split, data_dir=tmp_path)


def test_group_pairs_first_appearance_order_and_empty_references():
    groups = group_pairs(
        [("b", "1", {"i": 0}), ("a", "2", {"i": 1}), ("b", "3", {"i": 2}), ("c", "", {"i": 3})]
    )
    assert groups == [Group("b", ["1", "3"], {"i": 0}), Group("a", ["2"], {"i": 1}), Group("c", [], {"i": 3})]


def test_split_repr_is_short():
    split = Split("e2e", "dev", [Pair("a", "b")] * 1000, [])
    assert repr(split) == "Split(dataset='e2e', split='dev', pairs=1000, groups=0)"
