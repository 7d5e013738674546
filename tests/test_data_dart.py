"""DART v1.1.1: linearisation, counts, 2021 test grouping aligned with the references, and the rebuilds."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from prefixtune import paths
from prefixtune.data import DataError, Pair, load_split
from prefixtune.data.dart import flatten_split, linearise_dart, rebuild_dart_test, rebuild_dart_train

ROOT = paths.data_dir() / "dart"
TRAIN_JSON_SHA256 = "0bcb16edacb10fde173323585119453be8ea5e1a8aafb1519b0ef02660d83ac7"  # DATA.md
TEST_JSON_SHA256 = "176d73ab3a2f476f8a93535aa1ca99f17c45bfef8f79d1cd3dc909af9dd3437d"
needs_data = pytest.mark.skipif(
    not (ROOT / "dart-v1.1.1-full-test.reconstructed.json.xz").is_file(),
    reason=f"{ROOT} not prepared: run `make setup` (python -m prefixtune.setup_data)",
)


def test_linearisation_literal():
    triples = [
        ["Mars Hill College", "JOINED", "1973"],
        ["Mars Hill College", "LOCATION", "Mars Hill, North Carolina"],
    ]
    assert linearise_dart(triples) == (
        "Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill, North Carolina"
    )


def _write(tmp_path, name, entries):
    folder = tmp_path / "dart"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps(entries), encoding="utf-8")
    return tmp_path


def test_dev_groups_by_source_and_skips_empty_text(tmp_path):
    a = {"tripleset": [["X", "R", "Y"]], "annotations": [{"source": "e2e", "text": " one "}, {"text": ""}]}
    b = {"tripleset": [["X", "R", "Y"]], "annotations": [{"source": "e2e", "text": "two"}]}
    s = load_split("dart", "dev", data_dir=_write(tmp_path, "dart-v1.1.1-full-dev.json", [a, b]))
    assert s.pairs == [Pair("X : r : Y", "one"), Pair("X : r : Y", "two")]
    assert len(s.groups) == 1 and s.groups[0].references == ["one", "two"]


def test_malformed_entry_names_file_and_index(tmp_path):
    bad = [
        {"tripleset": [["X", "R", "Y"]], "annotations": []},
        {"tripleset": [["X", "R"]], "annotations": []},
    ]
    with pytest.raises(DataError, match=r"dart-v1\.1\.1-full-dev\.json: entry 1: 'tripleset'"):
        load_split("dart", "dev", data_dir=_write(tmp_path, "dart-v1.1.1-full-dev.json", bad))


def test_flatten_groups_only_consecutive_equal_records():
    def rec(t, sw, text):
        return {"split": "train", "source": "s", "text": text, "tripleset": t, "subtree_was_extended": sw}

    t1, t2 = [["a", "R", "b"]], [["c", "R", "d"]]
    entries = flatten_split(
        [rec(t1, None, "1"), rec(t1, None, "2"), rec(t2, True, "3"), rec(t1, None, "4")], "train"
    )
    assert [len(e["annotations"]) for e in entries] == [2, 1, 1]
    assert "subtree_was_extended" not in entries[0] and entries[1]["subtree_was_extended"] is True


def test_rebuild_test_on_toy_inputs(tmp_path):
    dialogues = [
        {
            "data_split": "test",
            "domains": ["webnlg"],
            "turns": [{"utterance": text, "tripleset": [["A", "B", "C"]], "subtree_was_extended": False}],
        }
        for text in ("first", "second")
    ]
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data/dialogues.json", json.dumps(dialogues))
    xml = tmp_path / "test.xml"
    xml.write_text(
        '<benchmark><entries><entry category="MISC" eid="Id1" size="1"><modifiedtripleset>'
        '<mtriple>A | B | C</mtriple></modifiedtripleset><lex comment="webnlg" lid="Id1">first</lex>'
        '<lex comment="webnlg" lid="Id2">second</lex></entry></entries></benchmark>',
        encoding="utf-8",
    )
    out = json.loads(rebuild_dart_test(archive, xml))
    assert out == [
        {
            "tripleset": [["A", "B", "C"]],
            "subtree_was_extended": False,
            "annotations": [{"source": "webnlg", "text": "first"}, {"source": "webnlg", "text": "second"}],
        }
    ]
    xml.write_text(xml.read_text().replace(">second<", ">other<"), encoding="utf-8")
    with pytest.raises(DataError, match="does not match the XML"):
        rebuild_dart_test(archive, xml)


# --- the prepared data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dart():
    return {s: load_split("dart", s) for s in ("train", "dev", "test")}


@pytest.mark.integration
@needs_data
def test_counts(dart):
    assert len(dart["train"].pairs) == 62659
    assert len(dart["dev"].pairs) == 6980
    assert len(dart["test"].pairs) == 12551  # 12,552 annotations, one with empty text
    assert len(dart["test"].groups) == 5097  # the 2021 grouping


@pytest.mark.integration
@needs_data
def test_known_linearisation(dart):
    assert dart["dev"].pairs[0] == Pair(
        "Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill, North Carolina",
        "A school from Mars Hill, North Carolina, joined in 1973.",
    )
    assert dart["test"].groups[0].source == (
        "Hawaii Five-O : notes : Episode: The Flight of the Jewels | "
        "[TABLECONTEXT] : [title] : Jeff Daniels | "
        "[TABLECONTEXT] : title : Hawaii Five-O"
    )


@pytest.mark.integration
@needs_data
def test_test_groups_line_up_with_the_official_references(dart):
    refs = [
        (ROOT / f"references/all-delex-reference{k}.lex").read_text(encoding="utf-8").split("\n")[:5097]
        for k in range(3)
    ]
    groups = dart["test"].groups
    for i in (0, 1, 2, 100, 2500, 5096):
        assert refs[0][i] and refs[0][i].split()[0] in groups[i].references[0].lower()
    # line i of reference k is non-empty iff entry i has a k-th annotation
    assert (
        sum(bool(refs[k][i].strip()) for k in range(3) for i in range(5097))
        == sum(min(3, len(g.meta["annotation_sources"])) for g in groups) - 1
    )  # minus the empty annotation


@pytest.mark.integration
@needs_data
def test_rebuilds_match_the_reconstructed_sha256():
    from prefixtune.data.dart import read_convlab_records

    records = read_convlab_records(ROOT / "convlab3-unified-dart-data.zip")
    assert hashlib.sha256(rebuild_dart_train(None, records=records)).hexdigest() == TRAIN_JSON_SHA256
    test = rebuild_dart_test(None, ROOT / "dart-v1.1.1-full-test.xml", records=records)
    assert hashlib.sha256(test).hexdigest() == TEST_JSON_SHA256
    dev = flatten_split(records, "validation")  # DATA.md's check: dev flattening == the paper's dev file
    original = json.loads((ROOT / "dart-v1.1.1-full-dev.json").read_text(encoding="utf-8"))

    def flat(entries):
        return [(e["tripleset"], a["source"], a["text"].strip()) for e in entries for a in e["annotations"]]

    assert flat(dev) == flat(original)
