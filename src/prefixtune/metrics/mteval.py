"""Corpus BLEU and NIST as the E2E challenge script computes them with `measure_scores.py -p`.

Definitions followed (our own implementation):

* Tokenisation: the "basic" (non-international) tokeniser of NIST `mteval-v13a.pl`: strip `<skipped>`,
  join hyphenated line breaks, unescape `&quot; &amp; &lt; &gt;`, pad, split off ASCII punctuation/symbols,
  split `.` and `,` unless they sit between digits, split `-` after a digit, collapse whitespace, split on
  single spaces. As in the E2E script's Python port (`metrics/pymteval.py`), an empty segment yields one empty
  token.
* Matching is case-insensitive (tokens lower-cased), n-gram counts are clipped by the maximum count in any
  single reference.
* BLEU (Papineni et al. 2002), n = 1..4, corpus level: geometric mean of clipped precisions; the reference
  length of a segment is that of the reference closest in length to the hypothesis (ties: the shorter one);
  brevity penalty `exp(1 - r/c)` when `c <= r`. As in the port, the candidate n-gram total is accumulated as
  `len(hyp) - (n - 1)` per segment (it can be negative for very short segments), and zero counts are floored
  at 1e-15 (matches) / 1e-9 (totals) so the score is always defined.
* NIST (Doddington 2002), n = 1..5: information weight `info(w_1..w_n) = log2(count(w_1..w_{n-1}) /
  count(w_1..w_n))` over all references of the corpus (the count of the empty prefix is the total number of
  reference words), summed over clipped matches and divided by the candidate n-gram total of that order;
  length penalty `exp(-beta * log(min(1, L_sys / L_ref))^2)` with `beta = -ln 0.5 / ln(1.5)^2` and `L_ref` the
  sum over segments of the segment's *average* reference length.

Scale: BLEU as a fraction (0.6593, not 65.93), NIST unbounded (~8.6 on E2E).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

# mteval-v13a.pl, sub tokenization (the non-international one), in application order.
_UNESCAPE = [("<skipped>", ""), ("-\n", ""), ("\n", " "), ("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"),
             ("&gt;", ">")]
_PUNCT = re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])")  # ASCII symbols/punctuation except . , ' and -
_PERIOD_COMMA_AFTER_NON_DIGIT = re.compile(r"([^0-9])([\.,])")
_PERIOD_COMMA_BEFORE_NON_DIGIT = re.compile(r"([\.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")
_SPACES = re.compile(r"\s+")

NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2
_TINY = 1e-15  # floor for matched n-gram counts
_SMALL = 1e-9  # floor for candidate n-gram totals


def mteval_tokenize(text: str) -> list[str]:
    """mteval-v13a basic tokenisation (case preserved)."""
    for old, new in _UNESCAPE:
        text = text.replace(old, new)
    text = f" {text} "
    text = _PUNCT.sub(r" \1 ", text)
    text = _PERIOD_COMMA_AFTER_NON_DIGIT.sub(r"\1 \2 ", text)
    text = _PERIOD_COMMA_BEFORE_NON_DIGIT.sub(r" \1 \2", text)
    text = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)
    text = _SPACES.sub(" ", text).strip()
    return text.split(" ")


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _max_ref_counts(refs: Sequence[Sequence[str]], n: int) -> Counter:
    merged: Counter = Counter()
    for ref in refs:
        for gram, cnt in _ngram_counts(ref, n).items():
            if cnt > merged[gram]:
                merged[gram] = cnt
    return merged


class MtevalReferences:
    """Tokenised references with their n-gram statistics, computed once and reused for any number of systems."""

    def __init__(self, refs: Sequence[Sequence[str]], case_sensitive: bool = False, max_n: int = 5):
        self.case_sensitive = case_sensitive
        self.max_n = max_n
        self.refs = []
        for i, rs in enumerate(refs):
            if not rs:
                raise ValueError(f"segment {i} has no reference")
            self.refs.append([self._tok(r) for r in rs])
        # per segment, per order n (index n-1): max count of each n-gram in any single reference
        self.max_counts = [[_max_ref_counts(rs, n) for n in range(1, max_n + 1)] for rs in self.refs]
        self.ref_lens = [[len(r) for r in rs] for rs in self.refs]
        # NIST: corpus-wide reference n-gram counts (order 0 = total reference words) -> information weights
        counts = [Counter() for _ in range(max_n + 1)]
        self.sum_avg_ref_len = 0.0
        for rs in self.refs:
            for r in rs:
                for n in range(1, max_n + 1):
                    counts[n].update(_ngram_counts(r, n))
            words = sum(len(r) for r in rs)
            counts[0][()] += words
            self.sum_avg_ref_len += words / float(len(rs))
        self._counts = counts
        self._info: dict[tuple, float] = {}

    def _tok(self, text: str) -> list[str]:
        toks = mteval_tokenize(text)
        return toks if self.case_sensitive else [w.lower() for w in toks]

    def info(self, gram: tuple) -> float:
        value = self._info.get(gram)
        if value is None:
            count = self._counts[len(gram)].get(gram, 0)
            value = math.log(self._counts[len(gram) - 1][gram[:-1]] / float(count), 2) if count else 0.0
            self._info[gram] = value
        return value

    def _hyps(self, hyps: Sequence[str]) -> list[list[str]]:
        if len(hyps) != len(self.refs):
            raise ValueError(f"{len(hyps)} hypotheses but {len(self.refs)} reference sets")
        return [self._tok(h) for h in hyps]

    def bleu_stats(self, hyps: Sequence[str], max_n: int = 4) -> list[list[float]]:
        """Per segment: matches_1..n, totals_1..n, closest reference length. BLEU is a function of their sums
        (:func:`bleu_from_stats`), so a bootstrap over segments resamples these rows (prefixtune.bootstrap)."""
        rows = []
        for hyp, ref_max, lens in zip(self._hyps(hyps), self.max_counts, self.ref_lens):
            matches = [sum(min(c, ref_max[n - 1].get(g, 0)) for g, c in _ngram_counts(hyp, n).items())
                       for n in range(1, max_n + 1)]
            totals = [len(hyp) - (n - 1) for n in range(1, max_n + 1)]
            rows.append(matches + totals + [min(lens, key=lambda length: (abs(length - len(hyp)), length))])
        return rows

    def bleu(self, hyps: Sequence[str], max_n: int = 4) -> float:
        rows = self.bleu_stats(hyps, max_n)
        return bleu_from_stats([sum(col) for col in zip(*rows)] if rows else [0] * (2 * max_n + 1), max_n)

    def nist(self, hyps: Sequence[str]) -> float:
        max_n = self.max_n
        hit_info = [0.0] * max_n
        totals = [0] * max_n
        for hyp, ref_max in zip(self._hyps(hyps), self.max_counts):
            for n in range(1, max_n + 1):
                totals[n - 1] += len(hyp) - (n - 1)
                best = ref_max[n - 1]
                for g, c in _ngram_counts(hyp, n).items():
                    hits = min(c, best.get(g, 0))
                    if hits:
                        hit_info[n - 1] += self.info(g) * hits
        # the port would divide by zero for an empty order; only reachable for all-empty outputs
        score = sum(h / t for h, t in zip(hit_info, totals) if t > 0)
        ratio = totals[0] / self.sum_avg_ref_len if self.sum_avg_ref_len else 0.0
        if ratio >= 1:
            penalty = 1.0
        elif ratio <= 0:
            penalty = 0.0
        else:
            penalty = math.exp(-NIST_BETA * math.log(ratio) ** 2)
        return penalty * score


def bleu_from_stats(sums: Sequence[float], max_n: int = 4) -> float:
    """mteval-v13a BLEU (a fraction) from summed :meth:`MtevalReferences.bleu_stats` rows."""
    matches, totals, ref_len = sums[:max_n], sums[max_n:2 * max_n], sums[2 * max_n]
    bp = 1.0
    if totals[0] <= ref_len:
        bp = math.exp(1.0 - ref_len / (float(totals[0]) if totals[0] else 1e-5))
    log_prec = sum(math.log(max(m, _TINY) / max(t, _SMALL)) for m, t in zip(matches, totals))
    return bp * math.exp(log_prec / max_n)


def corpus_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], case_sensitive: bool = False) -> float:
    """Corpus BLEU (fraction) with mteval-v13a tokenisation, as the script's `BLEUScore`."""
    return MtevalReferences(refs, case_sensitive, max_n=4).bleu(hyps)


def corpus_nist(hyps: Sequence[str], refs: Sequence[Sequence[str]], case_sensitive: bool = False) -> float:
    """Corpus NIST with mteval-v13a tokenisation, as the script's `NISTScore`."""
    return MtevalReferences(refs, case_sensitive, max_n=5).nist(hyps)
