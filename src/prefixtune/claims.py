"""Judging a paper's claim on our numbers: compare two rows on a metric, with the seed spread.

A claim reads "row a beats row b by more than `threshold`" on one metric per cell (e.g. per dataset),
averaged over the cells: `diff = mean_c(a_c - b_c)` on the display scale, oriented so that positive means a is
better (lower-is-better metrics are flipped). When every cell has n >= 2 seeds, the interval `diff ± k·se`
decides (above the threshold: reproduced; below: not reproduced; across it: inconclusive, within seed spread);
with one seed somewhere or a missing cell the verdict is "inconclusive" and the reason says why. Pure
functions, so Table 2 (`tables.py`) and the later `results/claims.md` share one rule.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)


@dataclasses.dataclass(frozen=True)
class Stat:
    """Mean and sample std (ddof 1) over seeds; `std` is None with one seed (no spread estimate)."""
    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None], ddof: int = 1) -> Stat | None:
        """None when no value is present (nulls are skipped: an unavailable metric is not a zero)."""
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return None
        mean = sum(vals) / len(vals)
        if len(vals) <= ddof:
            return cls(mean, None, len(vals))
        return cls(mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - ddof)), len(vals))

    @property
    def se(self) -> float | None:
        return None if self.std is None else self.std / math.sqrt(self.n)

    def scaled(self, factor: float) -> Stat:
        return Stat(self.mean * factor, None if self.std is None else self.std * factor, self.n)


@dataclasses.dataclass(frozen=True)
class Diff:
    """`mean` over cells of (a - b), positive = a better; `se` of that mean, None when a cell has one seed."""
    mean: float
    se: float | None
    parts: dict[str, float]            # cell -> a - b (oriented)
    single_seed: tuple[str, ...] = ()  # cells without a spread estimate


@dataclasses.dataclass(frozen=True)
class Verdict:
    verdict: str                       # one of VERDICTS
    reason: str
    diff: Diff | None


Pairs = Mapping[str, "tuple[Stat | None, Stat | None]"]   # cell -> (a, b)


def diff(pairs: Pairs, higher_is_better: bool = True) -> tuple[Diff | None, list[str]]:
    """Mean oriented difference over the cells, or (None, missing cells) when a cell lacks a or b."""
    missing = [f"{cell} ({'/'.join(w for w, s in zip('ab', pair) if s is None)})"
               for cell, pair in pairs.items() if pair[0] is None or pair[1] is None]
    if missing or not pairs:
        return None, missing
    sign = 1.0 if higher_is_better else -1.0
    parts = {cell: sign * (a.mean - b.mean) for cell, (a, b) in pairs.items()}
    single = tuple(cell for cell, (a, b) in pairs.items() if a.se is None or b.se is None)
    # Independent runs: var(a - b) = se_a² + se_b² per cell; the mean over C cells divides the sd by C.
    se = None if single else math.sqrt(sum(a.se ** 2 + b.se ** 2 for a, b in pairs.values())) / len(pairs)
    return Diff(sum(parts.values()) / len(parts), se, parts, single), []


def judge(d: Diff, threshold: float, k: float = 2.0) -> tuple[str, str]:
    """Verdict and reason for "the true diff is above `threshold`"."""
    if d.se is None:
        lean = REPRODUCED if d.mean > threshold else NOT_REPRODUCED
        return INCONCLUSIVE, (f"only one seed in {', '.join(d.single_seed)} (no spread estimate); "
                              f"diff {d.mean:+.2f} vs threshold {threshold:+.2f} points to '{lean}'")
    lo, hi = d.mean - k * d.se, d.mean + k * d.se
    interval = f"diff {d.mean:+.2f} ± {k * d.se:.2f} ({k:g} se) = [{lo:+.2f}, {hi:+.2f}]"
    if lo > threshold:
        return REPRODUCED, f"{interval} lies above the threshold {threshold:+.2f}"
    if hi <= threshold:
        return NOT_REPRODUCED, f"{interval} lies below the threshold {threshold:+.2f}"
    return INCONCLUSIVE, f"{interval} contains the threshold {threshold:+.2f}: within seed spread"


def compare(pairs: Pairs, threshold: float, k: float = 2.0, higher_is_better: bool = True) -> Verdict:
    """Claim "a beats b by more than `threshold`" over `pairs`; a missing cell makes it inconclusive."""
    d, missing = diff(pairs, higher_is_better)
    if d is None:
        why = f"missing cells: {', '.join(missing)}" if missing else "no cells to compare"
        return Verdict(INCONCLUSIVE, why, None)
    verdict, reason = judge(d, threshold, k)
    if len(d.parts) > 1:
        reason += "; per cell " + ", ".join(f"{c} {v:+.2f}" for c, v in d.parts.items())
    return Verdict(verdict, reason, d)


Lookup = Callable[[str, str, str], "Stat | None"]   # (cell e.g. dataset, row id, metric) -> Stat or None


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    ours: Verdict
    paper: float | None      # the same diff on the paper's numbers (ACL), None where it prints none
    paper_v1: float | None   # ... on its arXiv v1 numbers


def judge_claims(items: Iterable[Mapping], ours: Lookup, paper: Lookup | None = None,
                 paper_v1: Lookup | None = None, k: float = 2.0,
                 higher_is_better: Callable[[str, str], bool] = lambda cell, metric: True) -> list[Claim]:
    """Claims as a table spec writes them: {id, statement, a, b (row ids), cells: {cell: metric}, threshold}.

    The paper's own difference comes from the same rule, to show that the claim reads off the paper's table.
    """
    out = []
    for it in items:
        hib = higher_is_better(*next(iter(it["cells"].items())))  # one direction per claim: its first metric

        def pairs(get: Lookup) -> dict:
            return {c: (get(c, it["a"], m), get(c, it["b"], m)) for c, m in it["cells"].items()}
        on_paper = [diff(pairs(get), hib)[0] if get else None for get in (paper, paper_v1)]
        out.append(Claim(it["id"], " ".join(it["statement"].split()),
                         compare(pairs(ours), float(it["threshold"]), k, hib),
                         *(d.mean if d else None for d in on_paper)))
    return out
