"""BLEU/NIST of the E2E script's Python MT-eval (`measure_scores.py -p`), checked on hand-computed examples."""
from __future__ import annotations

import math

import pytest

from prefixtune.metrics.mteval import NIST_BETA, MtevalReferences, corpus_bleu, corpus_nist, mteval_tokenize


@pytest.mark.parametrize("text, tokens", [
    ("Hello, world.", ["Hello", ",", "world", "."]),
    ("It costs £20-25.", ["It", "costs", "£20", "-", "25", "."]),   # '-' split after a digit; £ is not ASCII
    ("3.5 and 1,000", ["3.5", "and", "1,000"]),                     # . and , kept between digits
    ("family-friendly", ["family-friendly"]),                       # '-' kept between letters
    ("a&amp;b &quot;x&quot;", ["a", "&", "b", '"', "x", '"']),       # SGML entities unescaped, then split
    ("don't", ["don't"]),                                           # apostrophe is not split
    ("", [""]),                                                     # as the port: one empty token
])
def test_mteval_v13a_tokenisation(text, tokens):
    assert mteval_tokenize(text) == tokens


def test_bleu_hand_computed():
    # hyp 6 tokens vs ref 6 tokens; clipped matches: 1-grams 5/6 ("the" x2 clipped to 1), 2-grams 3/5,
    # 3-grams 2/4, 4-grams 1/3; c = r = 6 so BP = exp(0) = 1.
    bleu = corpus_bleu(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert bleu == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-12)


def test_bleu_case_insensitive_and_tokenised():
    assert corpus_bleu(["The Cat sat on the mat."], [["the cat sat on the mat ."]]) == pytest.approx(1.0)


def test_bleu_closest_reference_length_prefers_shorter_on_tie():
    # hyp has 4 tokens; references of 2 and 6 tokens are equally close -> r = 2 (shorter), so no brevity penalty
    refs = [["w x", "a b c d e f"]]
    stats = MtevalReferences(refs)
    assert stats.bleu(["a b c d"]) == pytest.approx(1.0)
    # with only the 6-token reference, BP = exp(1 - 6/4)
    assert corpus_bleu(["a b c d"], [["a b c d e f"]]) == pytest.approx(math.exp(1 - 6 / 4))


def test_bleu_zero_matches_is_tiny_not_error():
    assert 0.0 < corpus_bleu(["x y z w"], [["a b c d"]]) < 1e-6


def test_nist_hand_computed():
    # ref "a b c": info(a) = info(b) = log2(3 words / 1) ; info("a b") = log2(count(a) / count(a b)) = 0.
    # sum over n of hit_info / candidate n-grams = 2*log2(3)/2 + 0/1 (orders 3..5 have no candidate n-grams)
    # length penalty: L_sys / L_ref = 2/3 -> exp(-beta * ln(2/3)^2) = 0.5 exactly (that is how beta is defined)
    assert NIST_BETA == pytest.approx(-math.log(0.5) / math.log(1.5) ** 2)
    assert corpus_nist(["a b"], [["a b c"]]) == pytest.approx(0.5 * math.log2(3), abs=1e-12)


def test_nist_uses_average_reference_length_and_corpus_counts():
    # two references of 2 and 4 words: average 3 = hyp length -> no penalty; counts over both references:
    # total 6 words, a:2 b:2 c:1 d:1 -> info(a)=info(b)=log2(3), bigram "a b": log2(2/2)=0
    score = corpus_nist(["a b x"], [["a b", "a b c d"]])
    assert score == pytest.approx(2 * math.log2(3) / 3, abs=1e-12)


def test_reference_cache_gives_same_scores():
    refs = [["the cat sat on the mat", "a cat was on the mat"], ["hello world"]]
    hyps = ["a cat sat on the mat", "hello there world"]
    cached = MtevalReferences(refs)
    assert cached.bleu(hyps) == corpus_bleu(hyps, refs)
    assert cached.nist(hyps) == corpus_nist(hyps, refs)


def test_length_mismatch_and_missing_reference():
    with pytest.raises(ValueError):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError):
        corpus_bleu(["a"], [[]])
