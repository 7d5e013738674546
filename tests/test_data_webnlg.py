"""WebNLG 2017: linearisation, 'good'-only training pairs, entry order, seen/unseen test split."""

from __future__ import annotations

import json

import pytest

from prefixtune import paths
from prefixtune.data import DataError, Pair, load_split
from prefixtune.data.webnlg import SEEN_CATEGORIES, linearise_webnlg, load_webnlg, webnlg_files

ROOT = paths.data_dir() / "webnlg"
needs_data = pytest.mark.skipif(
    not (ROOT / "webnlg_challenge_2017/test/testdata_with_lex.xml").is_file(),
    reason=f"{ROOT} not prepared: run `make setup` (python -m prefixtune.setup_data)",
)

TOY = """<benchmark><entries>
  <entry category="Airport" eid="Id1" size="2">
    <modifiedtripleset>
      <mtriple>Aarhus | leaderName | Jacob_Bundsgaard</mtriple>
      <mtriple>Aarhus_Airport | cityServed | "Aarhus, Denmark"</mtriple>
    </modifiedtripleset>
    <lex comment="good" lid="Id1">Good one.</lex>
    <lex comment="toFix" lid="Id2">Needs a fix.</lex>
  </entry>
  <entry category="Artist" eid="Id2" size="1">
    <modifiedtripleset><mtriple>A | b | C</mtriple></modifiedtripleset>
    <lex comment="good" lid="Id1">Second.</lex>
  </entry>
  <entry category="Airport" eid="Id3" size="2">
    <modifiedtripleset>
      <mtriple>Aarhus | leaderName | Jacob_Bundsgaard</mtriple>
      <mtriple>Aarhus_Airport | cityServed | "Aarhus, Denmark"</mtriple>
    </modifiedtripleset>
    <lex comment="good" lid="Id1">Same input again.</lex>
  </entry>
</entries></benchmark>
"""


def _toy_tree(tmp_path, test_xml=TOY, dev_xml=TOY):
    base = tmp_path / "webnlg" / "webnlg_challenge_2017"
    (base / "test").mkdir(parents=True)
    (base / "test" / "testdata_with_lex.xml").write_text(test_xml, encoding="utf-8")
    for n in (1, 2):
        (base / "dev" / f"{n}triples").mkdir(parents=True)
    (base / "dev" / "2triples" / "2triples_Airport_dev_challenge.xml").write_text(dev_xml, encoding="utf-8")
    (base / "dev" / "1triples" / "1triple_allSolutions_Zoo_dev_challenge.xml").write_text(
        '<benchmark><entries><entry category="City" eid="Z1" size="1"><modifiedtripleset><mtriple>Z | p | Q'
        '</mtriple></modifiedtripleset><lex comment="good" lid="Id1">Z first.</lex></entry></entries>'
        "</benchmark>",
        encoding="utf-8",
    )
    return tmp_path


def test_linearisation_literal():
    assert (
        linearise_webnlg([("Aarhus", "leaderName", "Jacob_Bundsgaard")])
        == " | Aarhus : leaderName : Jacob_Bundsgaard"
    )
    assert linearise_webnlg([("A", "p", "B"), ("A", "q", "C")]) == " | A : p : B | A : q : C"


def test_toy_pairs_groups_and_order(tmp_path):
    data_dir = _toy_tree(tmp_path)
    s = load_webnlg("dev", data_dir)
    # 1triples folder comes before 2triples; within a file, entries in file order
    assert [p.name for p in webnlg_files(data_dir, "dev")] == [
        "1triple_allSolutions_Zoo_dev_challenge.xml",
        "2triples_Airport_dev_challenge.xml",
    ]
    source = ' | Aarhus : leaderName : Jacob_Bundsgaard | Aarhus_Airport : cityServed : "Aarhus, Denmark"'
    assert s.pairs[:2] == [Pair(" | Z : p : Q", "Z first."), Pair(source, "Good one.")]
    assert "Needs a fix." not in [p.target for p in s.pairs]  # toFix: not a training pair ...
    assert s.groups[1].references == ["Good one.", "Needs a fix.", "Same input again."]  # ... but a reference
    assert s.groups[1].meta == {
        "eid": "Id1",
        "category": "Airport",
        "seen": True,
        "size": 2,
        "file": "webnlg_challenge_2017/dev/2triples/2triples_Airport_dev_challenge.xml",
    }
    assert len(s.groups) == 3 and len(s.pairs) == 4
    test = load_webnlg("test", data_dir)
    assert [g.meta["seen"] for g in test.groups] == [True, False]


def test_malformed_triple_names_file_and_entry(tmp_path):
    data_dir = _toy_tree(tmp_path, test_xml=TOY.replace("A | b | C", "A | b"))
    with pytest.raises(
        DataError, match=r"testdata_with_lex\.xml: entry eid=Id2: <mtriple> is not 'S \| P \| O'"
    ):
        load_split("webnlg", "test", data_dir=data_dir)


def test_malformed_xml_names_file_and_line(tmp_path):
    data_dir = _toy_tree(tmp_path, test_xml=TOY.replace("</entry>", "</entri>", 1))
    with pytest.raises(DataError, match=r"testdata_with_lex\.xml:\d+:\d+: malformed XML"):
        load_split("webnlg", "test", data_dir=data_dir)


def test_missing_split_data(tmp_path):
    with pytest.raises(DataError, match="make setup"):
        load_split("webnlg", "train", data_dir=tmp_path)


# --- the prepared data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webnlg():
    return {s: load_split("webnlg", s) for s in ("train", "dev", "test")}


@pytest.mark.integration
@needs_data
def test_counts(webnlg):
    assert len(webnlg["train"].pairs) == 18025  # "good" lexicalisations only
    assert sum(len(g.references) for g in webnlg["train"].groups) == 18102  # all of them
    assert len(webnlg["dev"].pairs) == 2258
    assert sum(len(g.references) for g in webnlg["dev"].groups) == 2268
    assert len(webnlg["test"].groups) == 1862
    assert len(webnlg["test"].pairs) == 4928


@pytest.mark.integration
@needs_data
def test_seen_unseen_split(webnlg):
    groups = webnlg["test"].groups
    seen = [g.meta["seen"] for g in groups]
    assert (sum(seen), len(seen) - sum(seen)) == (971, 891)
    assert all(seen[:971]) and not any(seen[971:])  # the official old-cat / new-cat cut at line 971
    assert {g.meta["category"] for g in groups if g.meta["seen"]} == SEEN_CATEGORIES
    assert [g.meta["eid"] for g in groups[:3]] == ["Id1", "Id2", "Id3"]
    refs = (ROOT / "references/gold-all-cat-reference0.lex").read_text(encoding="utf-8").splitlines()
    assert len(refs) == len(groups)
    assert refs[0] == "abilene , texas is served by the abilene regional airport ."
    assert groups[0].references[0] == "Abilene, Texas is served by the Abilene regional airport."


@pytest.mark.integration
@needs_data
def test_known_linearisation(webnlg):
    assert webnlg["dev"].pairs[0] == Pair(
        " | Aarhus : leaderName : Jacob_Bundsgaard", "The leader of Aarhus is Jacob Bundsgaard."
    )
    assert webnlg["test"].groups[0].source == " | Abilene_Regional_Airport : cityServed : Abilene,_Texas"


@pytest.mark.integration
@needs_data
def test_xml_order_equals_the_paper_repo_dev_json(webnlg):
    """The paper read a JSON rendering of the XML; its dev.json must give the same pairs in the same order."""
    entries = json.loads((ROOT / "webnlg_challenge_2017/dev.json").read_text(encoding="utf-8"))["entries"]
    pairs = []
    for i, wrapper in enumerate(entries):
        e = wrapper[str(i + 1)]
        source = linearise_webnlg(
            [(t["subject"], t["property"], t["object"]) for t in e["modifiedtripleset"]]
        )
        pairs += [Pair(source, lex["lex"]) for lex in e["lexicalisations"] if lex["comment"] == "good"]
    assert pairs == webnlg["dev"].pairs
