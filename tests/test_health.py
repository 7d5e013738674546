"""Decode health (prefixtune.health): measured shares, thresholds of conf/health.yaml, table text, backfill."""
from __future__ import annotations

import pytest

from prefixtune import health

SRC = "name : Blue Spice | Type : pub | area : riverside"
REF = ["Blue Spice is a pub by the riverside ."]


def test_measure_counts_runaways_copies_and_length():
    preds = ["Blue Spice is a pub by the riverside .",                      # healthy
             "name : Blue Spice | Type : pub | area : riverside",          # a copy of the source
             "Blue Spice is a pub " * 10,                                  # a runaway (no EOS)
             "Error"]                                                      # empty output
    h = health.measure(preds, [SRC] * 4, [REF] * 4, [True, True, False, True], "Error")
    assert h["no_eos"] == 0.25 and h["copy"] == 0.25 and h["empty"] == 0.25
    # words (\w+ runs, punctuation not counted): 8 + 7 + 50 + 1 = 66 over 4 outputs, references 8 words
    assert h["len_ratio"] == pytest.approx(66 / 4 / 8)


def test_copy_overlap_on_word_trigrams():
    assert health.copy_overlap("name : Blue Spice | Type : pub", SRC) == 1.0
    assert health.copy_overlap("Blue Spice is a pub", SRC) == 0.0  # "blue spice is" is not in the source
    assert health.copy_overlap("", SRC) == 0.0


def test_failures_follow_the_configured_thresholds():
    th = health.thresholds()
    ok = {"test/health/no_eos": th["max_no_eos_share"], "test/health/len_ratio": 1.0, "test/health/copy": 0.0}
    assert health.failures(ok) == []                       # at the threshold: not failed
    assert health.failures({**ok, "test/health/no_eos": 0.41}) == ["no EOS in 41%"]
    assert health.failures({**ok, "test/health/len_ratio": 2.7}) == ["length 2.70x the references"]
    assert health.failures({**ok, "test/health/copy": 0.5}) == ["copies the source in 50%"]
    assert health.failures({"test/bleu": 0.6}) is None     # no health recorded: not measured, not healthy


def test_cell_names_every_failed_seed():
    class R:
        def __init__(self, seed, no_eos):
            self.config = {"seed": seed}
            self.metrics = {"test/health/no_eos": no_eos, "test/health/len_ratio": 1.1, "test/health/copy": 0.0}
    text, failed = health.cell([R(1, 0.41), R(2, 0.0), R(3, 0.93)])
    assert text == "failed: s1 no EOS in 41%, s3 no EOS in 93%" and len(failed) == 2
    assert health.cell([R(1, 0.02), R(2, 0.0)]) == ("ok (no EOS ≤ 2%, len 1.10x)", [])


def test_retokenized_eos_marks_outputs_at_the_cap(tiny_backbone):
    tok = tiny_backbone("gpt2").tokenizer
    long = " ".join(["word"] * 40)
    n = len(tok(long, add_special_tokens=False)["input_ids"])
    assert health.retokenized_eos(tok, [long, "short one", "Error"], n + 2, "Error", 3) == [False, True, True]
