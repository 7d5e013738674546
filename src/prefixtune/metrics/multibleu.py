"""Corpus BLEU as Moses `multi-bleu.perl` computes it (the BLEU of the WebNLG challenge and DART scripts).

Definition followed (our own implementation of multi-bleu.perl's arithmetic):

* hypotheses and references are already tokenised; tokens are runs of non-whitespace (Perl `split`, ASCII
  whitespace); `-lc` lower-cases ASCII letters only (Perl `lc` on byte strings);
* reference set of segment i = line i of every reference file, *including empty lines*: an empty reference has
  length 0 and takes part in the closest-length choice, exactly as in the script (the WebNLG/DART `.lex` files
  hold an empty line where an entry has fewer references);
* clipped n-gram matches for n = 1..4 (clip = max count in any single reference);
* reference length of a segment = length of the reference closest to the hypothesis length (ties: shorter);
* BLEU = BP * exp(mean_n log p_n), p_n = matches_n / total_n, BP = exp(1 - r/c) if c < r else 1; a zero
  precision makes BLEU 0 (the script's `my_log(0) = -9999999999`).

The score is on the 0-100 scale of the script's `BLEU = xx.xx` line (the printout rounds to 2 decimals; we do
not). Deviations: the script dies on an empty hypothesis corpus shorter than the references (division by zero)
-- we return 0; `chop` would eat the last character of a final line without newline -- we take strings as given.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PERL_SPACE = re.compile(r"[ \t\n\r\f\v]+")


def perl_split(text: str) -> list[str]:
    """Perl's `split(' ', $s)` on a byte string: ASCII-whitespace separated, no empty fields."""
    return [t for t in _PERL_SPACE.split(text) if t]


@dataclass(frozen=True)
class MultiBleu:
    score: float  # 0..100
    precisions: tuple[float, ...]  # 0..100, n = 1..4
    bp: float
    hyp_len: int
    ref_len: int

    @property
    def ratio(self) -> float:
        return self.hyp_len / self.ref_len if self.ref_len else 0.0

    def __str__(self) -> str:  # the script's output line
        p = "/".join(f"{x:.1f}" for x in self.precisions)
        return (f"BLEU = {self.score:.2f}, {p} (BP={self.bp:.3f}, ratio={self.ratio:.3f}, "
                f"hyp_len={self.hyp_len}, ref_len={self.ref_len})")


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def multi_bleu_stats(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lowercase: bool = False,
                     max_n: int = 4) -> list[list[int]]:
    """Per segment: correct_1..n, total_1..n, hypothesis length, closest reference length. The script's BLEU
    is a function of their sums (:func:`bleu_from_stats`), so a bootstrap over segments resamples these rows."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    prep = (lambda s: perl_split(s.translate(_ASCII_LOWER))) if lowercase else perl_split
    rows = []
    for hyp, refs in zip(hypotheses, references):
        words = prep(hyp)
        closest_diff = closest_len = 9999  # the script's initial values (kept if a segment has no reference)
        ref_max: dict[int, Counter] = {n: Counter() for n in range(1, max_n + 1)}
        for ref in refs:
            rw = prep(ref)
            diff = abs(len(words) - len(rw))
            if diff < closest_diff or (diff == closest_diff and len(rw) < closest_len):
                closest_diff, closest_len = diff, len(rw)
            for n in range(1, max_n + 1):
                for gram, cnt in _ngrams(rw, n).items():
                    if cnt > ref_max[n][gram]:
                        ref_max[n][gram] = cnt
        correct, total = [0] * max_n, [0] * max_n
        for n in range(1, max_n + 1):
            for gram, cnt in _ngrams(words, n).items():
                total[n - 1] += cnt
                correct[n - 1] += min(cnt, ref_max[n].get(gram, 0))
        rows.append(correct + total + [len(words), closest_len])
    return rows


def bleu_from_stats(sums: Sequence[float], max_n: int = 4) -> MultiBleu:
    """The script's BLEU from summed :func:`multi_bleu_stats` rows."""
    correct, total = sums[:max_n], sums[max_n:2 * max_n]
    hyp_len, ref_len = sums[2 * max_n], sums[2 * max_n + 1]
    precisions = tuple(c / t if t else 0.0 for c, t in zip(correct, total))
    if hyp_len < ref_len:
        bp = math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0
    else:
        bp = 1.0
    if ref_len == 0 or min(precisions) == 0.0:
        score = 0.0
    else:
        score = 100 * bp * math.exp(sum(math.log(p) for p in precisions) / max_n)
    return MultiBleu(score, tuple(100 * p for p in precisions), bp, int(hyp_len), int(ref_len))


def multi_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lowercase: bool = False,
               max_n: int = 4) -> MultiBleu:
    """`multi-bleu.perl [-lc] ref0 ref1 ... < hyp`, with `references[i]` = line i of every reference file."""
    rows = multi_bleu_stats(hypotheses, references, lowercase, max_n)
    return bleu_from_stats([sum(col) for col in zip(*rows)] if rows else [0] * (2 * max_n + 2), max_n)
