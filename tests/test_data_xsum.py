"""XSUM: the labelled offline sample splits, local full-corpus formats, and failing fast when offline."""

from __future__ import annotations

import json
import time

import pytest

from prefixtune import paths
from prefixtune.data import DataError, load_split
from prefixtune.data.xsum import read_xsum_jsonl

ROOT = paths.data_dir() / "xsum"
needs_data = pytest.mark.skipif(
    not (ROOT / "test.sample1000.jsonl.xz").is_file(),
    reason=f"{ROOT} not prepared: run `make setup` (python -m prefixtune.setup_data)",
)


def test_offline_full_split_fails_fast_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.delenv("PREFIXTUNE_XSUM", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"HF_HUB_OFFLINE=1.*sample_train"):
        load_split("xsum", "train", data_dir=tmp_path)
    assert time.perf_counter() - start < 2.0


def test_unreachable_hub_fails_fast(monkeypatch, tmp_path):
    from prefixtune.data import xsum

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "PREFIXTUNE_XSUM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(xsum, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(DataError, match="not reachable"):
        load_split("xsum", "test", data_dir=tmp_path)


def test_local_jsonl_folder(tmp_path):
    rows = [
        {"document": "Doc one.\nSecond sentence.", "summary": " One. ", "id": 7},
        {"document": "", "summary": "Empty article.", "id": 8},
    ]
    (tmp_path / "validation.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8"
    )
    s = load_split("xsum", "dev", source=tmp_path)
    assert [(p.source, p.target) for p in s.pairs] == [("Doc one.\nSecond sentence.", "One.")]
    assert [g.meta["id"] for g in s.groups] == ["7", "8"]  # every article is a group, even an empty one


def test_local_legacy_layout(tmp_path, monkeypatch):
    (tmp_path / "val.source").write_text("article a\narticle b\n", encoding="utf-8")
    (tmp_path / "val.target").write_text("sum a\nsum b\n", encoding="utf-8")
    monkeypatch.setenv("PREFIXTUNE_XSUM", str(tmp_path))
    s = load_split("xsum", "dev")
    assert [(p.source, p.target) for p in s.pairs] == [("article a", "sum a"), ("article b", "sum b")]
    with pytest.raises(DataError, match="no XSUM 'test' data found"):
        load_split("xsum", "test")


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"document": "a", "summary": "b"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.jsonl:2: malformed JSON"):
        read_xsum_jsonl(path)


def test_unknown_split_names_the_choices(tmp_path):
    with pytest.raises(DataError, match="sample_test"):
        load_split("xsum", "test_sample", data_dir=tmp_path)


@pytest.mark.integration
@needs_data
def test_sample_splits():
    sizes = {
        name: len(load_split("xsum", name).groups)
        for name in ("sample_train", "sample_dev", "sample_test", "sample1000")
    }
    assert sizes == {"sample_train": 800, "sample_dev": 100, "sample_test": 100, "sample1000": 1000}
    ids = [
        {g.meta["id"] for g in load_split("xsum", n).groups}
        for n in ("sample_train", "sample_dev", "sample_test")
    ]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    first = load_split("xsum", "sample_train").pairs[0]
    assert first.source.startswith("The owners said their planned £80m development at the site in Bewdley")
    assert load_split("xsum", "sample_train").groups[0].meta == {"id": "34268361"}
    assert len(load_split("xsum", "sample1000").pairs) == 1000


def test_local_parquet_snapshot_and_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"document": "Article text.", "summary": "A summary.", "id": "42"}]
    snapshot = tmp_path / "snapshot" / "data"
    snapshot.mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(snapshot / "test-00000-of-00001.parquet"))
    s = load_split("xsum", "test", source=tmp_path / "snapshot")
    assert [(p.source, p.target) for p in s.pairs] == [("Article text.", "A summary.")]
    assert s.groups[0].meta == {"id": "42"}
    saved = tmp_path / "saved"
    datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)}).save_to_disk(str(saved))
    assert load_split("xsum", "dev", source=saved).pairs[0].target == "A summary."
