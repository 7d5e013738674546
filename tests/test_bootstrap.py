"""Claim intervals: per-source BLEU statistics, the paired bootstrap, Welch df and shared arms (issue #20)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from prefixtune import bootstrap, claims
from prefixtune.claims import Stat
from prefixtune.metrics.mteval import MtevalReferences
from prefixtune.metrics.multibleu import multi_bleu, multi_bleu_stats

VOCAB = "the a pub cafe near river city centre serves food cheap is it family friendly".split()


def _sent(rng: random.Random) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 12)))


def _corpus(seed: int, n: int = 40):
    rng = random.Random(seed)
    return [_sent(rng) for _ in range(n)], [[_sent(rng) for _ in range(rng.randint(1, 3))] for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_resampled_rows_give_the_scorers_bleu(seed):
    """BLEU from summed per-source rows equals the scorer's BLEU on the same (resampled) sources."""
    hyps, refs = _corpus(seed)
    idx = np.random.default_rng(seed).integers(0, len(hyps), len(hyps))
    w = np.bincount(idx, minlength=len(hyps))[None, :].astype(float)
    rows = np.asarray(multi_bleu_stats(hyps, refs), dtype=float)
    assert bootstrap._multibleu_reduce(w @ rows)[0] == pytest.approx(
        multi_bleu([hyps[i] for i in idx], [refs[i] for i in idx]).score, abs=1e-9)
    mt = MtevalReferences([refs[i] for i in idx])
    rows = np.asarray(MtevalReferences(refs).bleu_stats(hyps), dtype=float)
    assert bootstrap._mteval_reduce(w @ rows)[0] == pytest.approx(mt.bleu([hyps[i] for i in idx]), abs=1e-12)


class _Rec:
    """Stands in for a record: `source_stats` is monkeypatched to hand out its rows."""
    def __init__(self, rows, key=("e2e", "test", (0, 1, 2, 3))):
        self.stats = bootstrap.SourceStats(key, np.asarray(rows, dtype=float), bootstrap._mean_reduce, 0.0)


@pytest.fixture
def fake_stats(monkeypatch):
    monkeypatch.setattr(bootstrap, "source_stats", lambda rec, metric, root=None: rec.stats)


def test_paired_bootstrap_cancels_what_both_arms_share(fake_stats):
    # b = a + 1 on every source: the pairing leaves no test-sample variance, the difference is exactly -1
    a = _Rec([[1.0, 1], [5.0, 1], [2.0, 1], [9.0, 1]])
    b = _Rec([[2.0, 1], [6.0, 1], [3.0, 1], [10.0, 1]])
    boot = bootstrap.paired({"x": ([a], [b], "m", 1.0, 1.0)}, 500, 0, 0.95)
    assert boot.sd == pytest.approx(0.0, abs=1e-12) and boot.lo == pytest.approx(-1.0) == boot.hi
    # unpaired noise does show: a and b disagree source by source
    c = _Rec([[9.0, 1], [1.0, 1], [5.0, 1], [2.0, 1]])
    assert bootstrap.paired({"x": ([a], [c], "m", 1.0, 1.0)}, 500, 0, 0.95).sd > 1.0


def test_arms_on_different_sources_are_refused(fake_stats):
    a = _Rec([[1.0, 1]] * 4)
    b = _Rec([[1.0, 1]] * 4, key=("e2e", "test", (4, 5, 6, 7)))
    with pytest.raises(ValueError, match="different test sources"):
        bootstrap.paired({"x": ([a], [b], "m", 1.0, 1.0)}, 10, 0, 0.95)


def test_welch_df_and_t_quantile():
    d, _ = claims.diff({"x": (Stat.of([62.0, 63.0]), Stat.of([60.0, 60.5, 59.5]))})
    va, vb = 0.5 / 2, 0.25 / 3                       # s²/n of each arm
    assert d.se == pytest.approx((va + vb) ** 0.5)
    assert d.df == pytest.approx((va + vb) ** 2 / (va ** 2 / 1 + vb ** 2 / 2))
    assert claims.t_quantile(0.95, 1) == pytest.approx(12.706, abs=1e-3)
    assert claims.t_quantile(0.95, float("inf")) == pytest.approx(1.960, abs=1e-3)


def test_a_shared_arm_is_counted_once():
    """Figure 5: every word against ONE random arm. Counting the pairs as independent divided the random arm's
    variance by the number of words (the old se 0.94 for 8 words vs a correct ~1.29 in results/claims.md)."""
    rnd = Stat(44.0, 2.0, 2)                           # se 1.414
    words = {w: (Stat(50.0, 0.2, 2), rnd) for w in "abcdefgh"}
    d, _ = claims.diff(words)
    assert d.se == pytest.approx((8 * (0.2 / 2 ** 0.5) ** 2 / 64 + 2.0) ** 0.5)
    independent = (sum((0.2 / 2 ** 0.5) ** 2 + 2.0 for _ in words) / 64) ** 0.5
    assert d.se > 2 * independent


def test_bootstrap_widens_the_interval_and_a_failed_arm_is_not_testable():
    pairs = {"x": (Stat.of([62.0, 62.2, 61.8]), Stat.of([60.0, 60.2, 59.8]))}
    tight = claims.compare(pairs, 1.0)
    assert tight.verdict == claims.REPRODUCED
    wide = claims.compare(pairs, 1.0, boot=lambda: bootstrap.Boot(1.5, -1.0, 5.0, 100, {"e2e/test": 100}))
    assert wide.verdict == claims.INCONCLUSIVE and "paired bootstrap over test sources (100 e2e/test" in wide.reason
    bad = claims.compare(pairs, 1.0, failed={"Adapter": ["e2e s1 no EOS in 41%"], "Prefix": []})
    assert bad.verdict == "not testable: Adapter failed to train" and bad.category == claims.NOT_TESTABLE
    assert "e2e s1 no EOS in 41%" in bad.reason


def test_committed_records_rescore_from_their_predictions():
    """The per-source rows rebuilt from a committed record's predictions give its recorded BLEU exactly (source_stats
    raises otherwise): the bootstrap resamples the sources that were really scored."""
    from prefixtune.paths import REPO_ROOT
    from prefixtune.results import read_record

    path = REPO_ROOT / "results" / "runs" / "table2" / "table2-e2e_prefix__cpu__s1.json"
    if not path.exists() or not (REPO_ROOT / "data" / "e2e").exists():
        pytest.skip("needs the committed Table 2 records and `make setup` data")
    rec = read_record(path)
    st = bootstrap.source_stats(rec, "bleu")
    assert st.rows.shape[0] == rec.config["scale"]["max_decode_groups"]
    assert st.score(np.ones((1, st.rows.shape[0])))[0] == pytest.approx(rec.metrics["test/bleu"], abs=1e-12)
