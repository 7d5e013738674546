"""E2E metrics = `measure_scores.py -p` of tuetschek/e2e-metrics: reading rules, bad inputs, calibration on the
challenge outputs (TGen's published scores; all 21 primary systems)."""
from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from prefixtune import paths
from prefixtune.metrics.e2e import (METRIC_KEYS, mr_key, read_e2e_gold, read_e2e_predictions, read_tsv,
                                    score_e2e, score_e2e_many)
from prefixtune.metrics.errors import MetricInputError
from prefixtune.metrics.java import java_available

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
requires_java = pytest.mark.skipif(not java_available(),
                                   reason="java not found: METEOR 1.5 and the PTB tokenizer need a Java runtime")


def _data(rel: str) -> Path:
    for root in (paths.data_dir(), paths.shared_dir() / "data"):
        if (root / rel).exists():
            return root / rel
    pytest.skip(f"{rel} not found under data/ or ../shared/data")


def _read_scores(name: str) -> dict[str, dict[str, float]]:
    with open(FIXTURES / name, encoding="utf-8") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        return {r["system"]: {k: float(r[k]) for k in METRIC_KEYS} for r in rows}


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


GOLD_CSV = ('"mr","ref"\n'
            '"name[Aromi], eatType[pub]","Aromi is a pub."\n'
            '"name[Aromi], eatType[pub]","There is a pub called Aromi."\n'
            '"name[Cotto], food[Ã©clair], priceRange[Â£20-25]","Cotto sells Ã©clairs for Â£20-25."\n'
            '"name[Aromi], eatType[pub]","A third group with the first MR again."\n')


# -- reading rules ------------------------------------------------------------------------------------------
def test_gold_csv_header_quotes_fixes_and_consecutive_grouping(tmp_path):
    gold = read_e2e_gold(_write(tmp_path / "gold.csv", "\ufeff" + GOLD_CSV))
    assert gold.mrs == ["name[Aromi], eatType[pub]", "name[Cotto], food[éclair], priceRange[£20-25]",
                        "name[Aromi], eatType[pub]"]  # consecutive grouping: the repeated MR is a new instance
    assert gold.refs == [["Aromi is a pub.", "There is a pub called Aromi."], ["Cotto sells éclairs for £20-25."],
                         ["A third group with the first MR again."]]


def test_tsv_reader_strips_one_quote_and_rejects_inner_quotes(tmp_path):
    rows = read_tsv(_write(tmp_path / "p.tsv", "MR\toutput\n  'name[A]'  \t \"A is nice.\" \n\nname[B]\tB Ł5\n"))
    assert rows.srcs == ["name[A]", "name[B]"] and rows.outs == ["A is nice.", "B £5"] and rows.lines == [2, 4]
    with pytest.raises(MetricInputError, match=r"p2\.tsv, line 3: .*double quote"):
        read_tsv(_write(tmp_path / "p2.tsv", 'mr\tref\nname[A]\tok\nname[B]\tsaid "hi"\n'))


def test_src1_gold_groups_consecutive_mrs_and_matches_csv_mrs(tmp_path):
    src1 = ("name : Aromi | Type : pub||Aromi is a pub . \n"
            "name : Aromi | Type : pub||There is a pub called Aromi . \n"
            "name : Cotto | food : éclair | price : £ 20 - 25||Cotto sells éclairs . \n")
    gold = read_e2e_gold(_write(tmp_path / "src1_test.txt", src1))
    assert gold.refs == [["Aromi is a pub .", "There is a pub called Aromi ."], ["Cotto sells éclairs ."]]
    assert mr_key(gold.mrs[0]) == mr_key("name[Aromi], eatType[pub]")
    assert mr_key(gold.mrs[1]) == mr_key("name[Cotto], food[éclair], priceRange[£20-25]")


def test_blank_line_separated_gold(tmp_path):
    gold = read_e2e_gold(_write(tmp_path / "refs.txt", "a\nb\n\nc\n\n\nd\ne\n"))
    assert gold.refs == [["a", "b"], ["c"], ["d", "e"]] and gold.mrs is None
    single = read_e2e_gold(_write(tmp_path / "single.txt", "a\nb\n"))
    assert single.refs == [["a"], ["b"]]  # no blank line: one reference per line, as the script


def test_plain_text_predictions_keep_empty_lines(tmp_path):
    gold = read_e2e_gold(_write(tmp_path / "gold.csv", GOLD_CSV))
    assert read_e2e_predictions(_write(tmp_path / "p.txt", "one\n\nthree\n"), gold) == ["one", "", "three"]


def test_tsv_predictions_reordered_to_gold(tmp_path, caplog):
    gold = read_e2e_gold(_write(tmp_path / "gold.csv", GOLD_CSV.rsplit("\n", 2)[0] + "\n"))  # 2 unique MRs
    pred = _write(tmp_path / "p.tsv", "MR\toutput\nname[Cotto], food[éclair], priceRange[£20-25]\tsecond\n"
                                      "name[Aromi], eatType[pub]\tfirst\n")
    assert read_e2e_predictions(pred, gold) == ["first", "second"]
    assert "re-ordered" in caplog.text


# -- bad inputs: a clear error naming file and line ---------------------------------------------------------
@pytest.fixture
def gold(tmp_path):
    return read_e2e_gold(_write(tmp_path / "gold.csv", GOLD_CSV))


def test_error_missing_file(tmp_path, gold):
    with pytest.raises(MetricInputError, match=r"nope\.tsv: file not found"):
        read_e2e_predictions(tmp_path / "nope.tsv", gold)


def test_error_wrong_columns(tmp_path, gold):
    pred = _write(tmp_path / "p.tsv", "MR\toutput\nname[Aromi], eatType[pub]\tA\textra column\n")
    with pytest.raises(MetricInputError, match=r"p\.tsv, line 2: expected 2 columns"):
        read_e2e_predictions(pred, gold)


def test_error_length_mismatch(tmp_path, gold):
    with pytest.raises(MetricInputError, match=r"p\.txt, line 3: 2 prediction lines but .* has 3 MRs"):
        read_e2e_predictions(_write(tmp_path / "p.txt", "a\nb\n"), gold)
    with pytest.raises(MetricInputError, match=r"1 of them empty at the end"):
        read_e2e_predictions(_write(tmp_path / "q.txt", "a\nb\nc\n\n"), gold)


def test_error_unknown_mr(tmp_path, gold):
    pred = _write(tmp_path / "p.tsv", "MR\toutput\nname[Aromi], eatType[pub]\tA\nname[Nowhere]\tB\n"
                                      "name[Aromi], eatType[pub]\tC\n")
    with pytest.raises(MetricInputError, match=r"p\.tsv, line 3: unknown MR .*Nowhere"):
        read_e2e_predictions(pred, gold)


def test_error_duplicate_and_missing_mrs(tmp_path):
    g2 = read_e2e_gold(_write(tmp_path / "g2.csv", GOLD_CSV.rsplit("\n", 2)[0] + "\n"))
    dup = _write(tmp_path / "dup.tsv", "MR\toutput\nname[Aromi], eatType[pub]\tA\nname[Aromi], eatType[pub]\tB\n")
    with pytest.raises(MetricInputError, match=r"dup\.tsv, line 3: duplicate MR"):
        read_e2e_predictions(dup, g2)
    short = _write(tmp_path / "short.tsv", "MR\toutput\nname[Cotto], food[éclair], priceRange[£20-25]\tA\n")
    with pytest.raises(MetricInputError, match=r"short\.tsv: 1 predictions .* no prediction"):
        read_e2e_predictions(short, g2)


def test_error_quotes_in_prediction(tmp_path, gold):
    pred = _write(tmp_path / "p.tsv", 'MR\toutput\nname[Aromi], eatType[pub]\tA "pub"\n')
    with pytest.raises(MetricInputError, match=r"p\.tsv, line 2: .*double quote"):
        read_e2e_predictions(pred, gold)


def test_error_not_utf8(tmp_path, gold):
    with pytest.raises(MetricInputError, match=r"p\.txt, line 2: not valid UTF-8"):
        read_e2e_predictions(_write(tmp_path / "p.txt", "ok\ncaf\xe9\nx\n", encoding="latin-1"), gold)


def test_score_rejects_mismatched_inputs():
    with pytest.raises(MetricInputError):
        score_e2e(["a"], [["a"], ["b"]])
    with pytest.raises(MetricInputError):
        score_e2e(["a"], [[]])


# -- calibration --------------------------------------------------------------------------------------------
@requires_java
def test_tgen_calibration():
    """TGen's challenge output reproduces the published scores of the official script (-p)."""
    published = _read_scores("e2e_challenge_scores.csv")["tgen"]
    gold = read_e2e_gold(_data("e2e/testset_w_refs.csv"))
    preds = read_e2e_predictions(_data("e2e/challenge_outputs/tgen.tsv"), gold)
    assert len(preds) == 630 and sum(len(r) for r in gold.refs) == 4693
    scores = score_e2e(preds, gold.refs)
    assert set(scores) == set(METRIC_KEYS)
    for key in ("bleu", "meteor", "rouge_l", "cider"):
        assert scores[key] == pytest.approx(published[key], abs=5e-5 + 1e-9), key  # published to 4 decimals
    assert scores["nist"] == pytest.approx(published["nist"], abs=5e-5 + 1e-9)


@requires_java
@pytest.mark.slow
def test_all_primary_challenge_systems():
    """All 21 primary systems: one PTB call, one METEOR JVM. TGen against its published row (4 decimals, the only
    published row we have); every system against *independent* implementations, never against numbers this code
    wrote: BLEU equals sacrebleu's (13a tokenisation, lower-cased, multi-reference) to 1e-4 -- measured: equal to
    4 decimals for all 21 --, NIST ranks the systems as NLTK's independent NIST does (Spearman >= 0.9; the values
    differ, NLTK's NIST is not mteval's), and every score lies in a sane range."""
    import sacrebleu
    from nltk.translate.nist_score import corpus_nist
    from scipy.stats import spearmanr

    from prefixtune.metrics.mteval import mteval_tokenize

    gold = read_e2e_gold(_data("e2e/testset_w_refs.csv"))
    folder = _data("e2e/challenge_outputs")
    systems = {f.stem: read_e2e_predictions(f, gold) for f in sorted(folder.glob("*.tsv"))}
    assert len(systems) == 21
    start = time.time()
    scores = score_e2e_many(systems, gold.refs)
    print(f"scored 21 systems in {time.time() - start:.0f} s")
    published = _read_scores("e2e_challenge_scores.csv")
    streams = [[r[i] if i < len(r) else None for r in gold.refs] for i in range(max(map(len, gold.refs)))]
    ref_toks = [[mteval_tokenize(x.lower()) for x in rs] for rs in gold.refs]
    nist_ours, nist_nltk = [], []
    for name, got in scores.items():
        assert 0.35 < got["bleu"] < 0.75 and 4.5 < got["nist"] < 9.5 and 0.3 < got["meteor"] < 0.5, name
        assert 0.5 < got["rouge_l"] < 0.75 and 1.0 < got["cider"] < 2.5, name
        sb = sacrebleu.corpus_bleu(systems[name], streams, tokenize="13a", lowercase=True, force=True).score / 100
        assert got["bleu"] == pytest.approx(sb, abs=1e-4), name
        nist_ours.append(got["nist"])
        nist_nltk.append(corpus_nist(ref_toks, [mteval_tokenize(p.lower()) for p in systems[name]], n=5))
        if name in published:
            for key in METRIC_KEYS:
                assert got[key] == pytest.approx(published[name][key], abs=5e-5 + 1e-9), (name, key)
    assert "tgen" in published
    assert spearmanr(nist_ours, nist_nltk).statistic >= 0.9
