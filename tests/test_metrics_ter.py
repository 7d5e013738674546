"""TER as tercom 0.7.25 (default options) computes it: sanity checks on hand-countable cases."""
from __future__ import annotations

import pytest

from prefixtune.metrics.ter import TerStats, corpus_ter, segment_ter, segment_ter_stats


@pytest.mark.parametrize("hyp, refs, edits, words", [
    ("a b c d", ["a b c d"], 0, 4),                      # identical
    ("The Cat sat", ["the cat sat"], 0, 3),              # case-insensitive (tercom without -s)
    ("d e f g h a b c", ["a b c d e f g h"], 1, 8),      # one block shift fixes it
    ("x y z", ["a b c"], 3, 3),                          # three substitutions
    ("a b c", ["a b c d e"], 2, 5),                      # two deletions (reference words missing)
    ("a b c d e", ["a b c"], 2, 3),                      # two insertions
    ("", ["a b"], 2, 2),                                 # empty hypothesis
    ("a b", [""], 2, 0),                                 # empty reference: every word is an edit
    ("a b , c", ["a b, c"], 2, 3),                       # no tokenisation: "b," is one word (-N not given)
])
def test_segment_ter(hyp, refs, edits, words):
    assert segment_ter(hyp, refs) == TerStats(edits, words)


def test_multiple_references_best_edits_average_length():
    # edits against "a b c d" = 1, against "x y" = 3 -> 1; length = mean(4, 2) = 3
    stats = segment_ter("a b c", ["a b c d", "x y"])
    assert stats == TerStats(1.0, 3.0) and stats.score == pytest.approx(1 / 3)


def test_corpus_ter_sums_edits_and_lengths():
    total = corpus_ter(["a b c", "x y z"], [["a b c d"], ["x y z", "x y z w v"]])
    assert total == TerStats(1.0, 4.0 + 4.0)  # (0 edits; mean(3, 5) = 4 words) for the second segment
    assert total.score == pytest.approx(1 / 8)
    assert TerStats(3.0, 0.0).score == 1.0 and TerStats(0.0, 0.0).score == 0.0


def test_parallel_equals_serial():
    hyps = [f"w{i} a b c d{i % 7} e f" for i in range(240)]
    refs = [[f"a b c w{i} e f d{i % 5}", "a b"] for i in range(240)]
    assert segment_ter_stats(hyps, refs, workers=2) == segment_ter_stats(hyps, refs, workers=1)
