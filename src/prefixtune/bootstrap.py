"""Paired bootstrap over test sources (Koehn 2004): how much a difference between two arms moves when the test
sources are resampled, the variance that the seed spread does not see (issue #20).

Every corpus metric a claim reads is a function of per-source sufficient statistics -- BLEU of summed n-gram
matches/totals/lengths (mteval for E2E, multi-bleu.perl for WebNLG/DART), ROUGE of the mean per-summary F1 -- so a
resample is a weighted sum of per-source rows, exact and cheap. "Paired": one resample of a test set serves every
run that was scored on it (both arms, all their seeds, every cell on that test set), so differences keep their
correlation. The per-source rows are rebuilt from the record's stored predictions (prefixtune.decoded), and the
full-sample score must equal the recorded one: a misaligned prediction file fails loudly instead of scoring
wrong sources.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

# metric of a record -> (its per-source rows, reduce: summed rows (B x k) -> scores on the record's scale)
Reduce = Callable[[np.ndarray], np.ndarray]
_TINY, _SMALL = 1e-15, 1e-9  # mteval's floors (prefixtune.metrics.mteval)


def _mteval_reduce(s: np.ndarray, max_n: int = 4) -> np.ndarray:
    m, t, r = s[:, :max_n], s[:, max_n:2 * max_n], s[:, 2 * max_n]
    t0 = np.where(t[:, 0] == 0, 1e-5, t[:, 0])
    bp = np.where(t[:, 0] <= r, np.exp(1.0 - r / t0), 1.0)
    logp = np.log(np.maximum(m, _TINY) / np.maximum(t, _SMALL)).sum(axis=1)
    return bp * np.exp(logp / max_n)


def _multibleu_reduce(s: np.ndarray, max_n: int = 4) -> np.ndarray:
    c, t = s[:, :max_n], s[:, max_n:2 * max_n]
    h, r = s[:, 2 * max_n], s[:, 2 * max_n + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(t > 0, c / np.where(t > 0, t, 1), 0.0)
        bp = np.where(h < r, np.where(h > 0, np.exp(1 - r / np.where(h > 0, h, 1)), 0.0), 1.0)
        score = 100 * bp * np.exp(np.log(np.where(p > 0, p, 1)).mean(axis=1))
    return np.where((r == 0) | (p.min(axis=1) == 0), 0.0, score)


def _mean_reduce(s: np.ndarray) -> np.ndarray:
    return s[:, 0] / s[:, 1]


@dataclasses.dataclass(frozen=True)
class SourceStats:
    key: tuple            # the test sample: (dataset, split, positions of the sources in the full split)
    rows: np.ndarray      # n_sources x k
    reduce: Reduce
    tolerance: float      # |full-sample score - recorded score| allowed (ROUGE: the recorded one is a bootstrap mid)

    def score(self, weights: np.ndarray) -> np.ndarray:
        """Scores of the resamples `weights` (B x n_sources counts)."""
        return self.reduce(weights @ self.rows)


def _rows(dataset: str, metric: str, preds: Sequence[str], decoded) -> tuple[list[int], list[list[float]], Reduce,
                                                                            float]:
    """(positions used, per-source rows, reduce, tolerance) of one metric, preprocessed as its scorer does."""
    from . import metrics as M
    from .evaluate import _data_root
    from .metrics.multibleu import multi_bleu_stats
    from .metrics.mteval import MtevalReferences

    n = len(preds)
    if dataset == "e2e" and metric == "bleu":
        return list(range(n)), MtevalReferences(decoded.references).bleu_stats(preds), _mteval_reduce, 1e-9
    if dataset == "webnlg" and metric.startswith("bleu_"):
        from .metrics.webnlg import _pad
        all_refs, seen = M.webnlg_references(_data_root() / "webnlg")
        refs = [_pad(all_refs[i]) for i in decoded.indices]
        flags = [seen[i] for i in decoded.indices]
        part = metric.removeprefix("bleu_")
        keep = [i for i in range(n) if part == "all" or flags[i] == (part == "seen")]
        rows = multi_bleu_stats([M.webnlg_preprocess(preds[i]) for i in keep], [refs[i] for i in keep],
                                lowercase=True)
        return keep, rows, _multibleu_reduce, 1e-9
    if dataset == "dart" and metric == "bleu":
        from .metrics.dart import N_BLEU_REFS, dart_preprocess
        all_refs = M.dart_references(_data_root() / "dart")
        clean = [[r for r in all_refs[i] if r.strip()] for i in decoded.indices]
        refs = [rs[:N_BLEU_REFS] + [""] * (N_BLEU_REFS - len(rs[:N_BLEU_REFS])) for rs in clean]
        return list(range(n)), multi_bleu_stats([dart_preprocess(p) for p in preds], refs), _multibleu_reduce, 1e-9
    if dataset == "xsum" and metric in ("rouge1", "rouge2", "rougeL"):
        from rouge_score import rouge_scorer
        scorer = rouge_scorer.RougeScorer([metric], use_stemmer=True)
        rows = [[100 * scorer.score(g.references[0], p)[metric].fmeasure, 1.0] for p, g in zip(preds,
                                                                                             decoded.groups)]
        return list(range(n)), rows, _mean_reduce, 0.5
    raise KeyError(f"no paired bootstrap for {dataset}/{metric} (prefixtune.bootstrap._rows)")


_CACHE: dict = {}


def source_stats(rec, metric: str, root: Path | None = None) -> SourceStats:
    """Per-source rows of `test/<metric>` of a finished record, checked against the recorded score."""
    from .decoded import decoded_split

    ck = (rec.run_id, rec.config_hash, metric, str(root))
    if ck not in _CACHE:
        d = decoded_split(rec, root)
        keep, rows, reduce, tol = _rows(d.dataset, metric, list(d.predictions), d)
        st = SourceStats((d.dataset, d.split, tuple(d.indices[i] for i in keep)), np.asarray(rows, dtype=float),
                         reduce, tol)
        full = float(st.score(np.ones((1, len(keep))))[0])
        recorded = rec.metrics.get(f"test/{metric}")
        if recorded is None or abs(full - float(recorded)) > tol * max(1.0, abs(float(recorded))):
            raise ValueError(f"{rec.run_id}: test/{metric} from its stored predictions is {full:.6g}, the record "
                             f"says {recorded}: predictions and sources are misaligned or the scorer changed")
        _CACHE[ck] = st
    return _CACHE[ck]


@dataclasses.dataclass(frozen=True)
class Boot:
    sd: float                    # bootstrap sd of the oriented mean difference (display scale)
    lo: float                    # percentile interval of the difference at the configured level
    hi: float
    resamples: int
    sources: dict[str, int]      # dataset/split -> sources resampled


Arm = Sequence  # records of one arm in one cell (its seeds)


def paired(cells: Mapping[str, tuple[Arm, Arm, str, float, float]], resamples: int, seed: int, level: float,
           root: Path | None = None) -> Boot:
    """Bootstrap of mean_c sign_c * scale_c * (mean over a's runs - mean over b's runs) of metric_c.

    `cells`: cell -> (records of a, records of b, metric, display scale, +1/-1). Cells scored on the same test
    sample (e.g. Figure 3's sizes, or Figure 5's words against one random-init arm) share its resamples."""
    rng = np.random.default_rng(seed)
    stats = {c: ([source_stats(r, m, root) for r in a], [source_stats(r, m, root) for r in b])
             for c, (a, b, m, _, _) in cells.items()}
    keys: dict[tuple, int] = {}
    for c, (sa, sb) in stats.items():
        ks = {s.key for s in sa + sb}
        if len(ks) != 1:
            raise ValueError(f"cell {c}: the arms were scored on different test sources ({len(ks)} samples)")
        keys.setdefault(ks.pop(), len(sa[0].key[2]))
    weights = {k: rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float) for k, n in keys.items()}
    total = np.zeros(resamples)
    for c, (sa, sb) in stats.items():
        _, _, _, scale, sign = cells[c]
        w = weights[sa[0].key]
        arm = lambda ss: np.mean([s.score(w) for s in ss], axis=0)  # noqa: E731
        total += sign * scale * (arm(sa) - arm(sb))
    total /= len(cells)
    alpha = (1 - level) / 2
    return Boot(float(np.std(total, ddof=1)), float(np.quantile(total, alpha)), float(np.quantile(total, 1 - alpha)),
                resamples, {f"{k[0]}/{k[1]}": n for k, n in keys.items()})
