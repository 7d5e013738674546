"""`python -m prefixtune.score`: one JSON object on stdout, logs on stderr, exit code 2 + file/line on bad input."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from prefixtune.metrics.java import java_available
from prefixtune.score import default_gold, main

requires_java = pytest.mark.skipif(not java_available(), reason="java not found: METEOR 1.5 needs a Java runtime")

GOLD_CSV = ('"mr","ref"\n'
            '"name[Aromi], eatType[pub]","Aromi is a pub."\n'
            '"name[Aromi], eatType[pub]","There is a pub called Aromi."\n'
            '"name[Cotto], eatType[coffee shop]","Cotto is a coffee shop."\n')


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@requires_java
def test_e2e_cli_prints_one_json_object(tmp_path):
    gold = _write(tmp_path / "gold.csv", GOLD_CSV)
    pred = _write(tmp_path / "pred.tsv", "MR\toutput\nname[Aromi], eatType[pub]\tAromi is a pub.\n"
                                         "name[Cotto], eatType[coffee shop]\tCotto is a coffee shop.\n")
    proc = subprocess.run([sys.executable, "-m", "prefixtune.score", "e2e", "--pred", pred, "--gold", gold],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # the whole of stdout is one JSON object
    assert result["dataset"] == "e2e" and result["n_segments"] == 2
    assert set(result["metrics"]) == {"bleu", "nist", "meteor", "rouge_l", "cider"}
    assert result["metrics"]["bleu"] == pytest.approx(1.0)


def test_xsum_cli(tmp_path, capsys):
    pred = _write(tmp_path / "pred.txt", "the cat sat on the mat\nhello world\n")
    gold = _write(tmp_path / "gold.txt", "the cat is on the mat\nhello world\n")
    code, out, _ = _run(capsys, "xsum", "--pred", pred, "--gold", gold)
    assert code == 0
    result = json.loads(out)
    assert set(result["metrics"]) == {"rouge1", "rouge2", "rougeL"} and result["n_segments"] == 2


@pytest.mark.parametrize("case, files, pattern", [
    ("missing file", {"gold.csv": GOLD_CSV}, r"error: .*pred\.tsv: file not found"),
    ("wrong columns", {"gold.csv": GOLD_CSV, "pred.tsv": "MR\toutput\nname[Aromi], eatType[pub]\ta\tb\n"},
     r"pred\.tsv, line 2: expected 2 columns"),
    ("length mismatch", {"gold.csv": GOLD_CSV, "pred.txt": "only one line\n"},
     r"pred\.txt, line 2: 1 prediction lines but .*gold\.csv has 2 MRs"),
    ("unknown MR", {"gold.csv": GOLD_CSV,
                    "pred.tsv": "MR\toutput\nname[Aromi], eatType[pub]\ta\nname[Zizzi], eatType[pub]\tb\n"},
     r"pred\.tsv, line 3: unknown MR"),
    ("quotes", {"gold.csv": GOLD_CSV,
                "pred.tsv": 'MR\toutput\nname[Aromi], eatType[pub]\tsay "hi"\nname[Cotto], eatType[coffee shop]\tb\n'},
     r"pred\.tsv, line 2: .*double quote"),
    ("quotes in gold", {"gold.csv": GOLD_CSV + '"name[X]","He said ""hi""."\n', "pred.txt": "a\nb\nc\n"},
     r"gold\.csv, line 5: .*double quote"),
])
def test_e2e_bad_input_exit_code_2(tmp_path, capsys, case, files, pattern):
    for name, text in files.items():
        _write(tmp_path / name, text)
    pred = next((str(tmp_path / n) for n in ("pred.tsv", "pred.txt") if n in files), str(tmp_path / "pred.tsv"))
    code, out, err = _run(capsys, "e2e", "--pred", pred, "--gold", str(tmp_path / "gold.csv"))
    assert code == 2 and out == ""
    assert re.search(pattern, err), err


def test_webnlg_and_dart_line_count_errors(tmp_path, capsys):
    if default_gold("webnlg") is None or default_gold("dart") is None:
        pytest.skip("WebNLG/DART references not found under data/ or ../shared/data")
    pred = _write(tmp_path / "pred.txt", "one\ntwo\n")
    code, out, err = _run(capsys, "webnlg", "--pred", pred)
    assert code == 2 and out == "" and "pred.txt, line 3: 2 prediction lines but" in err and "1862 entries" in err
    pred = _write(tmp_path / "pred6959.txt", "x\n" * 6959)
    code, _, err = _run(capsys, "dart", "--pred", pred)
    assert code == 2 and "5097 entries" in err and "2020 test grouping had 6,959" in err


def test_missing_gold_argument(tmp_path, capsys):
    code, _, err = _run(capsys, "xsum", "--pred", _write(tmp_path / "p.txt", "a\n"))
    assert code == 2 and "--gold is required" in err
