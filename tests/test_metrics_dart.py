"""DART metrics as `tolower.py` + Yale-LILY/dart `run_eval_on_dart.sh`: references, lower-casing, ref-0-only
METEOR/TER, and model-based metrics reported as null with a reason when not installed."""
from __future__ import annotations

import collections
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from prefixtune import paths
from prefixtune.metrics.dart import dart_preprocess, dart_reference_preprocess, dart_references, score_dart
from prefixtune.metrics.errors import MetricInputError
from prefixtune.metrics.java import java_available
from prefixtune.metrics.model_based import bertscore_f1

requires_java = pytest.mark.skipif(not java_available(), reason="java not found: METEOR 1.5 needs a Java runtime")


def _dart_dir() -> Path:
    for root in (paths.data_dir(), paths.shared_dir() / "data"):
        if (root / "dart" / "references" / "all-delex-reference0.lex").is_file():
            return root / "dart"
    pytest.skip("DART references not found under data/ or ../shared/data")


def test_references():
    dart = _dart_dir()
    refs = dart_references(dart)
    assert len(refs) == 5097
    assert collections.Counter(len(r) for r in refs) == {3: 2527, 2: 1094, 1: 1476}
    assert dart_references(dart / "references") == refs


def test_reference_preprocess_reproduces_reference0_from_the_xml():
    dart = _dart_dir()
    entries = ET.parse(dart / "dart-v1.1.1-full-test.xml").getroot().iter("entry")
    first = [e.find("lex").text or "" for e in entries]
    assert [dart_reference_preprocess(t) for t in first] == [r[0] for r in dart_references(dart)]


def test_prediction_is_only_lower_cased():
    assert dart_preprocess("  Jeff Daniels played in Hawaii Five-O.\n") == "jeff daniels played in hawaii five-o."


@requires_java
def test_score_dart_small():
    refs = [["jeff daniels played in the hawaii five - o episode", "jeff daniels was in hawaii five - o"],
            ["the cat sat on the mat .", "a cat sat on the mat .", "there is a cat ."]]
    preds = ["JEFF DANIELS played in the Hawaii Five - O episode", "the cat sat on the mat ."]
    scores = score_dart(preds, refs)
    assert scores["bleu"] == pytest.approx(100.0) and scores["ter"] == 0.0 and scores["meteor"] > 0.99
    for name in ("moverscore", "bertscore", "bleurt"):
        if scores[name] is None:
            assert scores["unavailable"][name]  # a reason, never a silent 0
        else:
            assert name not in scores["unavailable"]
    off = score_dart(preds, refs, model_metrics=False)
    assert off["bertscore"] is None and "not requested" in off["unavailable"]["bertscore"]


@requires_java
def test_meteor_and_ter_use_reference_0_only():
    # the prediction equals reference 1 but not reference 0: BLEU (3 refs) is perfect, TER (ref 0 only) is not
    refs = [["a dog runs in the park .", "the dog is running in a park ."]]
    scores = score_dart(["the dog is running in a park ."], refs, model_metrics=False)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["ter"] > 0.3 and scores["meteor"] < 0.9


@requires_java
def test_raw_references():
    scores = score_dart(["jeff daniels played in hawaii five - o ."], [["Jeff Daniels played in Hawaii Five-O."]],
                        model_metrics=False, raw_references=True)
    assert scores["ter"] == 0.0


def test_model_metric_unavailable_reason(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    value, reason = bertscore_f1(["a"], [["a"]])
    assert value is None and "bert-score" in reason


def test_errors():
    with pytest.raises(MetricInputError, match="2 predictions but 1 reference sets"):
        score_dart(["a", "b"], [["a"]])
    with pytest.raises(MetricInputError, match="non-empty reference"):
        score_dart(["a"], [["", " "]])
