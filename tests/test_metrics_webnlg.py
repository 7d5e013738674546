"""WebNLG 2017 metrics as the challenge scripts (run_eval_on_webnlg.sh): references, pre-processing, multi-bleu
equivalence on hand-computed examples, and calibration against published ADAPT_Centre runs."""
from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sacrebleu

from prefixtune import paths
from prefixtune.metrics.errors import MetricInputError, ToolUnavailable
from prefixtune.metrics.java import java_available
from prefixtune.metrics.multibleu import multi_bleu
from prefixtune.metrics.ter import tercom_words
from prefixtune.metrics.webnlg import (_fallback_ascii, read_lex_files, score_webnlg, webnlg_preprocess,
                                       webnlg_reference_preprocess, webnlg_references, webnlg_test_seen)

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
requires_java = pytest.mark.skipif(not java_available(),
                                   reason="java not found: METEOR 1.5 needs a Java runtime")


def _webnlg_dir() -> Path:
    for root in (paths.data_dir(), paths.shared_dir() / "data"):
        if (root / "webnlg" / "references" / "gold-all-cat-reference0.lex").is_file():
            return root / "webnlg"
    pytest.skip("WebNLG references not found under data/ or ../shared/data")


def _test_entries(webnlg: Path) -> list[ET.Element]:
    return list(ET.parse(webnlg / "webnlg_challenge_2017" / "test" / "testdata_with_lex.xml").getroot().iter("entry"))


# -- references ---------------------------------------------------------------------------------------------
def test_references_and_seen_flags():
    webnlg = _webnlg_dir()
    refs, seen = webnlg_references(webnlg)
    assert len(refs) == 1862 and sum(seen) == 971 and all(seen[:971]) and not any(seen[971:])
    assert all(refs) and all(all(r for r in rs) for rs in refs)  # empty lines dropped per entry
    assert sum(len(rs) for rs in refs) == 4928
    assert seen == webnlg_test_seen(webnlg / "webnlg_challenge_2017" / "test" / "testdata_with_lex.xml")
    assert webnlg_references(webnlg / "references") == (refs, seen)  # the references folder itself works too


def test_reference_preprocess_reproduces_the_official_lex_files():
    webnlg = _webnlg_dir()
    gold = read_lex_files(webnlg / "references", "gold-all-cat-reference")
    lexs = [[lex.text or "" for lex in e.findall("lex")] for e in _test_entries(webnlg)]
    pairs = [(raw, ref) for entry_raw, entry_ref in zip(lexs, gold) for raw, ref in zip(entry_raw, entry_ref)]
    assert len(pairs) == 4928
    assert [webnlg_reference_preprocess(raw) for raw, _ in pairs] == [ref for _, ref in pairs]


def test_lex_files_with_a_gap_are_rejected(tmp_path):
    (tmp_path / "x0.lex").write_text("a\n\n")
    (tmp_path / "x1.lex").write_text("b\nc\n")
    with pytest.raises(MetricInputError, match=r"x0\.lex, line 2: reference 0 of entry 2 is empty"):
        read_lex_files(tmp_path, "x")


# -- prediction pre-processing (evaluation.py) ---------------------------------------------------------------
@pytest.mark.parametrize("raw, processed", [
    ("The Atatürk Monument (İzmir) is in Turkey.", "the ataturk monument ( izmir ) is in turkey ."),
    ("Adolfo Suárez Madrid–Barajas Airport's runway is 18L/36R.",
     "adolfo suarez madrid - barajas airport ' s runway is 18l / 36r ."),
    ("  1634:_The Ram   Rebellion  ", "1634 : _the ram rebellion"),  # '_' is a word character
    ("", ""),
])
def test_prediction_preprocess(raw, processed):
    assert webnlg_preprocess(raw) == processed


def test_fallback_transliteration_is_strict():
    assert _fallback_ascii("Suárez – Ł") == "Suarez - L"
    with pytest.raises(ToolUnavailable, match="unidecode"):
        _fallback_ascii("東京")  # unidecode would romanise it; without it we refuse instead of guessing


# -- multi-bleu.perl ----------------------------------------------------------------------------------------
def test_multi_bleu_hand_computed():
    # segment 1: hyp "the cat sat on the mat" (6), refs "the cat sat on a mat" (6), "" (empty line)
    #   1-grams: the x2 (ref max 1) -> 1, cat, sat, on, mat -> 5/6; 2-grams: the cat, cat sat, sat on -> 3/5
    #   3-grams: the cat sat, cat sat on -> 2/4; 4-grams: the cat sat on -> 1/3; closest ref length 6
    # segment 2: hyp "a b c" (3), refs "a b c d e f g" (7), "" (0): |3-7| = 4 > |3-0| = 3 -> r = 0 (!)
    #   1-grams 3/3, 2-grams 2/2, 3-grams 1/1, 4-grams 0/0
    # corpus: p1 = 8/9, p2 = 5/7, p3 = 3/5, p4 = 1/3; c = 9, r = 6 -> BP = 1
    hyps = ["the cat sat on the mat", "a b c"]
    refs = [["the cat sat on a mat", ""], ["a b c d e f g", ""]]
    expected = 100 * math.exp((math.log(8 / 9) + math.log(5 / 7) + math.log(3 / 5) + math.log(1 / 3)) / 4)
    got = multi_bleu(hyps, refs)
    assert (got.hyp_len, got.ref_len) == (9, 6)
    assert got.score == pytest.approx(expected, abs=1e-9)
    assert str(got) == f"BLEU = {expected:.2f}, 88.9/71.4/60.0/33.3 (BP=1.000, ratio=1.500, hyp_len=9, ref_len=6)"


def test_multi_bleu_lowercase_brevity_and_zero():
    # -lc lower-cases hypotheses and references; c = 2 < r = 4 -> BP = exp(1 - 4/2)
    got = multi_bleu(["A B"], [["a b c d"]], lowercase=True)
    assert got.bp == pytest.approx(math.exp(-1)) and got.precisions[:2] == (100.0, 100.0)
    assert got.score == 0.0  # no 3-gram in a 2-word hypothesis: p3 = 0 -> BLEU 0, as the script's my_log(0)
    assert multi_bleu(["A B C D"], [["a b c d"]], lowercase=False).score == 0.0  # case-sensitive without -lc


def test_multi_bleu_equals_sacrebleu_with_multi_bleu_settings():
    hyps = ["the cat sat on the mat", "a b c", "there is a cat on the mat today", ""]
    refs = [["the cat sat on a mat", "a cat sat on the mat", ""],
            ["a b c d e f g", "", ""],
            ["there is a cat on the mat", "a cat is on the mat", "the cat is there"],
            ["nothing here", "", ""]]
    ours = multi_bleu(hyps, refs, lowercase=True)
    theirs = sacrebleu.corpus_bleu(hyps, [list(s) for s in zip(*refs)], tokenize="none", lowercase=True,
                                   smooth_method="none", force=True)
    assert ours.score == pytest.approx(theirs.score, abs=1e-9)
    assert (ours.hyp_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)


# -- calibration against published challenge runs ------------------------------------------------------------
def _published_rows():
    with open(FIXTURES / "webnlg_challenge_scores.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def _rows_with_marks():
    for row in _published_rows():
        slow = row["subset"] == "CelestialBody"  # long degenerate outputs: the pure-Python TER takes a while
        yield pytest.param(row, id=row["subset"], marks=[pytest.mark.slow] if slow else [])


@requires_java
@pytest.mark.parametrize("row", _rows_with_marks())
def test_adapt_centre_published_scores(row):
    """BLEU line, METEOR and TER of the official scripts on ADAPT_Centre's outputs, subsetted by category/size."""
    webnlg = _webnlg_dir()
    refs, seen = webnlg_references(webnlg)
    key, value = row["select"].split("=")
    idx = [i for i, e in enumerate(_test_entries(webnlg)) if e.get(key) == value]
    hyps = (FIXTURES / row["fixture"]).read_text(encoding="utf-8").splitlines()
    assert len(hyps) == len(idx)
    sub_refs, sub_seen = [refs[i] for i in idx], [seen[i] for i in idx]
    padded = [(rs + ["", "", ""])[:3] for rs in sub_refs]
    assert str(multi_bleu([webnlg_preprocess(h) for h in hyps], padded, lowercase=True)) == row["bleu_line"]
    scores = score_webnlg(hyps, sub_refs, sub_seen)
    split = "seen" if all(sub_seen) else "unseen"
    other = "unseen" if split == "seen" else "seen"
    assert scores[f"bleu_{other}"] is None and scores[f"bleu_{split}"] == scores["bleu_all"]
    assert scores[f"meteor_{split}"] == pytest.approx(float(row["meteor"]), abs=1e-12)
    assert scores["meteor_all"] == scores[f"meteor_{split}"]
    # tercom's denominator: the average length of the (up to) three references, summed over segments
    words = sum(sum(len(tercom_words(r)) for r in rs[:3]) / len(rs[:3]) for rs in sub_refs)
    assert words == pytest.approx(float(row["ter_words"]), abs=1e-9)
    edits = scores[f"ter_{split}"] * words
    tolerance = float(row["ter_tolerance"])
    if tolerance == 0:
        assert edits == pytest.approx(float(row["ter_edits"]), abs=1e-6)
    assert scores[f"ter_{split}"] == pytest.approx(float(row["ter"]), abs=tolerance + 1e-12)


@requires_java
def test_score_webnlg_splits_and_raw_references():
    refs = [["the cat sat on the mat .", "a cat sat on the mat ."], ["hello world ."], ["good bye ."]]
    seen = [True, True, False]
    preds = ["The cat sat on the mat.", "Hello, world.", "Good bye."]
    scores = score_webnlg(preds, refs, seen)
    assert list(scores) == [f"{m}_{s}" for m in ("bleu", "meteor", "ter") for s in ("all", "seen", "unseen")]
    assert scores["ter_unseen"] == 0.0 and scores["meteor_unseen"] > 0.9
    only_seen = score_webnlg(preds[:2], refs[:2], seen[:2])
    assert only_seen["bleu_unseen"] is None and only_seen["ter_unseen"] is None
    raw = score_webnlg(preds, [["The cat sat on the mat."], ["Hello world."], ["Good bye."]], seen,
                       raw_references=True)
    assert raw["ter_all"] == pytest.approx(1 / 13)  # "hello , world ." vs "hello world .": 1 edit / 13 ref words


def test_score_webnlg_length_mismatch():
    with pytest.raises(MetricInputError, match="2 predictions, 1 reference sets"):
        score_webnlg(["a", "b"], [["a"]], [True, True])
