"""Judging a paper's claim on our numbers: compare two rows on a metric, with honest intervals.

A claim reads "row a beats row b by more than `threshold`" on one metric per cell (e.g. per dataset),
averaged over the cells: `diff = mean_c(a_c - b_c)` on the display scale, oriented so that positive means a is
better (lower-is-better metrics are flipped). When every cell has n >= 2 seeds a 95% interval decides (above the
threshold: reproduced; below: not reproduced; across it: inconclusive): the seed variance with Welch-Satterthwaite
df (an arm shared by several cells counted once), plus the test-sample variance of a paired bootstrap over the
test sources (prefixtune.bootstrap), with a t quantile. One seed somewhere or a missing cell: "inconclusive", and
the reason says why. An arm with a run that failed to train (prefixtune.health) makes the claim "not testable:
<arm> failed to train", whatever the numbers. Pure functions, so the tables (`tables.py`) and `results/claims.md`
share one rule.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
NOT_TESTABLE = "not testable"                          # an arm failed to train (prefixtune.health)
NOT_TESTABLE_SCALE = "not testable at this scale"      # the scale cannot express the claim's setting
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE, NOT_TESTABLE_SCALE)


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
    """`mean` over cells of (a - b), positive = a better; `se` of that mean over seeds with its Welch-Satterthwaite
    `df` (None when a cell has one seed); `boot`: the paired bootstrap over test sources, when it was run."""
    mean: float
    se: float | None
    parts: dict[str, float]            # cell -> a - b (oriented)
    single_seed: tuple[str, ...] = ()  # cells without a spread estimate
    df: float | None = None
    boot: Any = None                   # prefixtune.bootstrap.Boot | None
    boot_missing: str | None = None    # why there is no bootstrap


@dataclasses.dataclass(frozen=True)
class Verdict:
    verdict: str                       # one of VERDICTS, or "not testable: <arm> failed to train"
    reason: str
    diff: Diff | None

    @property
    def category(self) -> str:
        return NOT_TESTABLE if self.verdict.startswith(NOT_TESTABLE + ":") else self.verdict


Pairs = Mapping[str, "tuple[Stat | None, Stat | None]"]   # cell -> (a, b)


@dataclasses.dataclass(frozen=True)
class Interval:
    """How a verdict's interval is made (conf/claims.yaml `interval`): its level, and the paired bootstrap."""
    level: float = 0.95
    resamples: int = 2000
    seed: int = 0

    @classmethod
    def from_conf(cls, path=None) -> Interval:
        import yaml

        from .paths import REPO_ROOT
        spec = yaml.safe_load((path or REPO_ROOT / "conf" / "claims.yaml").read_text(encoding="utf-8"))
        iv = spec["interval"]
        return cls(float(iv["level"]), int(iv["bootstrap"]["resamples"]), int(iv["bootstrap"]["seed"]))


def diff(pairs: Pairs, higher_is_better: bool = True) -> tuple[Diff | None, list[str]]:
    """Mean oriented difference over the cells, or (None, missing cells) when a cell lacks a or b.

    The difference is a linear combination sum_i w_i * mean_i of arm means (w = +-1/C per cell), and its seed
    variance is sum_i w_i^2 se_i^2 over *distinct* arms: an arm that appears in several cells (the same Stat
    object: Figure 5's one random-init arm against every word, or a group of words against another group) has
    its weights added first, so it is never counted as independent of itself. Degrees of freedom:
    Welch-Satterthwaite over those components (n_i - 1 each), so two seeds per arm give about 1-3 df."""
    missing = [f"{cell} ({'/'.join(w for w, s in zip('ab', pair) if s is None)})"
               for cell, pair in pairs.items() if pair[0] is None or pair[1] is None]
    if missing or not pairs:
        return None, missing
    sign = 1.0 if higher_is_better else -1.0
    parts = {cell: sign * (a.mean - b.mean) for cell, (a, b) in pairs.items()}
    single = tuple(cell for cell, (a, b) in pairs.items() if a.se is None or b.se is None)
    mean = sum(parts.values()) / len(parts)
    if single:
        return Diff(mean, None, parts, single), []
    weights: dict[int, list] = {}
    for a, b in pairs.values():
        for st, w in ((a, 1.0), (b, -1.0)):
            weights.setdefault(id(st), [st, 0.0])[1] += w / len(pairs)
    comps = [((w * st.se) ** 2, st.n) for st, w in weights.values() if w]
    var = sum(v for v, _ in comps)
    denom = sum(v ** 2 / (n - 1) for v, n in comps)
    df = var ** 2 / denom if denom > 0 else float("inf")
    return Diff(mean, math.sqrt(var), parts, single, df), []


def t_quantile(level: float, df: float) -> float:
    from scipy import stats
    return float(stats.t.ppf(1 - (1 - level) / 2, df)) if math.isfinite(df) else float(stats.norm.ppf(
        1 - (1 - level) / 2))


def interval(d: Diff, level: float) -> tuple[float, float, float, float]:
    """(lo, hi, combined se, df): seed variance (Welch) plus the bootstrap's test-source variance, with a t
    quantile whose df treats the bootstrap part as known (Satterthwaite with df = inf for it)."""
    vb = d.boot.sd ** 2 if d.boot is not None else 0.0
    var = d.se ** 2 + vb
    df = var ** 2 / (d.se ** 4 / d.df) if d.se > 0 and math.isfinite(d.df) else float("inf")
    half = t_quantile(level, df) * math.sqrt(var)
    return d.mean - half, d.mean + half, math.sqrt(var), df


def method_text(d: Diff, level: float) -> str:
    """What the interval is made of, written with every verdict."""
    seeds = f"seed se {d.se:.2f} (Welch, df {d.df:.1f})"
    if d.boot is not None:
        src = " + ".join(f"{n} {k}" for k, n in d.boot.sources.items())
        boot = (f"paired bootstrap over test sources ({src}; {d.boot.resamples} resamples): sd {d.boot.sd:.2f}, "
                f"{level:.0%} percentile [{d.boot.lo:+.2f}, {d.boot.hi:+.2f}]")
    else:
        boot = f"no paired bootstrap ({d.boot_missing or 'not run'}): the interval misses test-sample variance"
    return f"{seeds}; {boot}"


def judge(d: Diff, threshold: float, level: float = 0.95) -> tuple[str, str]:
    """Verdict and reason for "the true diff is above `threshold`"."""
    if d.se is None:
        lean = REPRODUCED if d.mean > threshold else NOT_REPRODUCED
        return INCONCLUSIVE, (f"only one seed in {', '.join(d.single_seed)} (no spread estimate); "
                              f"diff {d.mean:+.2f} vs threshold {threshold:+.2f} points to '{lean}'")
    lo, hi, se, df = interval(d, level)
    text = (f"diff {d.mean:+.2f}, {level:.0%} interval [{lo:+.2f}, {hi:+.2f}] (t, df {df:.1f}, combined se "
            f"{se:.2f}: {method_text(d, level)})")
    if lo > threshold:
        return REPRODUCED, f"{text} lies above the threshold {threshold:+.2f}"
    if hi <= threshold:
        return NOT_REPRODUCED, f"{text} lies below the threshold {threshold:+.2f}"
    return INCONCLUSIVE, f"{text} contains the threshold {threshold:+.2f}"


def compare(pairs: Pairs, threshold: float, level: float = 0.95, higher_is_better: bool = True,
            boot: Callable[[], Any] | None = None, failed: Mapping[str, list[str]] | None = None) -> Verdict:
    """Claim "a beats b by more than `threshold`" over `pairs`; a missing cell makes it inconclusive.

    `boot()` runs the paired bootstrap (a Boot, or a string saying why there is none); `failed` maps an arm's
    label to why its runs failed to train (prefixtune.health): any such arm makes the claim "not testable"."""
    d, missing = diff(pairs, higher_is_better)
    if d is None:
        why = f"missing cells: {', '.join(missing)}" if missing else "no cells to compare"
        return Verdict(INCONCLUSIVE, why, None)
    if boot is not None and d.se is not None:
        b = boot()
        d = dataclasses.replace(d, **({"boot_missing": b} if isinstance(b, str) else {"boot": b}))
    verdict, reason = judge(d, threshold, level)
    if len(d.parts) > 1:
        reason += "; per cell " + ", ".join(f"{c} {v:+.2f}" for c, v in d.parts.items())
    bad = {arm: why for arm, why in (failed or {}).items() if why}
    if bad:
        arms = " and ".join(bad)
        reason = (f"{arms} failed to train ({'; '.join(f'{a}: ' + ', '.join(w) for a, w in bad.items())}), so the "
                  f"difference is not evidence about the method. Measured anyway: {reason}")
        verdict = f"{NOT_TESTABLE}: {arms} failed to train"
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
                 paper_v1: Lookup | None = None, level: float = 0.95,
                 higher_is_better: Callable[[str, str], bool] = lambda cell, metric: True,
                 boot: Callable[[Mapping, bool], Any] | None = None,
                 failed: Callable[[Mapping], Mapping[str, list[str]]] | None = None) -> list[Claim]:
    """Claims as a table spec writes them: {id, statement, a, b (row ids), cells: {cell: metric}, threshold}.

    `boot(item, higher_is_better)` runs the claim's paired bootstrap (a Boot or why not); `failed(item)` names
    the arms whose runs failed to train. The paper's own difference comes from the same rule, to show that the
    claim reads off the paper's table.
    """
    out = []
    for it in items:
        hib = higher_is_better(*next(iter(it["cells"].items())))  # one direction per claim: its first metric

        def pairs(get: Lookup) -> dict:
            return {c: (get(c, it["a"], m), get(c, it["b"], m)) for c, m in it["cells"].items()}
        on_paper = [diff(pairs(get), hib)[0] if get else None for get in (paper, paper_v1)]
        v = compare(pairs(ours), float(it["threshold"]), level, hib,
                    boot=(lambda it=it, hib=hib: boot(it, hib)) if boot else None,
                    failed=failed(it) if failed else None)
        out.append(Claim(it["id"], " ".join(it["statement"].split()), v, *(d.mean if d else None for d in on_paper)))
    return out
