"""XSUM ROUGE as the paper's `seq2seq/utils.py` (`calculate_rouge`) computes it [paper.md §5, ACL A.1].

Definition followed: Google `rouge-score` with `use_stemmer=True` (Porter stemmer, its default tokeniser:
lower-case, non-alphanumerics to spaces), ROUGE-1, ROUGE-2 and ROUGE-L (sentence-level LCS, *not* rougeLsum),
F1 per pair, aggregated with `BootstrapAggregator` (1,000 resamples) and reported as the `mid` F1 x 100.

The bootstrap `mid` is the median of resampled means, so it moves slightly with the random state; the paper's
code does not seed it. We seed a private NumPy generator state (default seed 0) and restore the global one, so
scores are reproducible and nothing else is affected. Keys: `rouge1 rouge2 rougeL` (0..100).
"""
from __future__ import annotations

from collections.abc import Sequence

from prefixtune.metrics.errors import MetricInputError

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def score_rouge(preds: Sequence[str], refs: Sequence[str], seed: int | None = 0) -> dict[str, float]:
    """ROUGE-1/2/L mid F1 x 100 of `preds` against single references `refs` (one per prediction)."""
    import numpy as np
    from rouge_score import rouge_scorer, scoring

    if len(preds) != len(refs):
        raise MetricInputError(f"{len(preds)} predictions but {len(refs)} references")
    if not refs:
        raise MetricInputError("nothing to score (0 segments)")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    aggregator = scoring.BootstrapAggregator()
    for ref, pred in zip(refs, preds):
        aggregator.add_scores(scorer.score(ref, pred))  # score(target, prediction)
    state = np.random.get_state()
    try:
        if seed is not None:
            np.random.seed(seed)
        result = aggregator.aggregate()
    finally:
        np.random.set_state(state)
    return {k: float(result[k].mid.fmeasure * 100) for k in ROUGE_KEYS}
