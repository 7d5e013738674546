"""XSUM ROUGE as the paper's seq2seq/utils.py: rouge-score, stemming, rouge1/rouge2/rougeL, bootstrap mid F1 x100."""
from __future__ import annotations

import numpy as np
import pytest

from prefixtune.metrics.errors import MetricInputError
from prefixtune.metrics.rouge import score_rouge


def test_rouge_hand_computed():
    # pred vs ref: unigram overlap 5/6 both ways; bigrams "the cat", "on the", "the mat" = 3/5; LCS = 5 tokens
    # one pair -> every bootstrap resample is that pair -> mid = the pair's F1
    scores = score_rouge(["the cat sat on the mat"], ["the cat is on the mat"])
    assert scores == pytest.approx({"rouge1": 500 / 6, "rouge2": 60.0, "rougeL": 500 / 6})


def test_rouge_uses_stemmer_and_rougeL_not_lsum():
    assert score_rouge(["Cats running."], ["cat run"])["rouge1"] == pytest.approx(100.0)  # Porter stemming
    # two "sentences" in one line: rougeL is one LCS over the whole text (rougeLsum would split at newlines)
    assert set(score_rouge(["a b. c d."], ["a b. c d."])) == {"rouge1", "rouge2", "rougeL"}


def test_bootstrap_is_seeded_and_leaves_global_rng_alone():
    preds = ["the cat sat", "a dog ran home", "hello world", "nothing in common"]
    refs = ["the cat sat down", "the dog ran", "hello there world", "completely different"]
    state = np.random.get_state()
    first = score_rouge(preds, refs)
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert score_rouge(preds, refs) == first
    mean_r1 = np.mean([score_rouge([p], [r])["rouge1"] for p, r in zip(preds, refs)])
    assert first["rouge1"] == pytest.approx(mean_r1, abs=5.0)  # mid is a bootstrap median of the mean


def test_rouge_errors():
    with pytest.raises(MetricInputError):
        score_rouge(["a"], ["a", "b"])
    with pytest.raises(MetricInputError):
        score_rouge([], [])
