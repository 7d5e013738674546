"""The CPU-contention measure behind the records' "shared the CPU" notes (pipeline: train and decode phases)."""
from __future__ import annotations

import os

import pytest

from prefixtune import provenance
from prefixtune.pipeline import CONTENTION, _contention_note


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def test_others_share_is_the_machines_busy_time_minus_our_own():
    n = _cores()
    start = (100.0, 50.0, 10.0, n)
    # 10 s of wall on n cores; the machine was busy 10 * n * 0.5 s of which we used 1 s
    end = (110.0, 50.0 + 5.0 * n, 11.0, n)
    assert provenance.others_cpu_share(start, end) == pytest.approx(round((5.0 * n - 1.0) / (10.0 * n), 3))
    alone = (110.0, 50.0 + 9.0, 19.0, n)  # all busy time was ours
    assert provenance.others_cpu_share(start, alone) == 0.0


def test_unmeasurable_shares_are_none_not_zero():
    n = _cores()
    assert provenance.others_cpu_share(None, (1.0, 1.0, 1.0, n)) is None
    assert provenance.others_cpu_share((1.0, 1.0, 1.0, n), (1.0, 2.0, 1.0, n)) is None  # no wall time
    # /proc/stat counts more CPUs than we may use (a container on a bigger host): other tenants would count
    assert provenance.others_cpu_share((0.0, 0.0, 0.0, n + 8), (10.0, 5.0, 1.0, n + 8)) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_a_snapshot_reads_this_machine():
    wall, busy, own, n_cpu = provenance.cpu_snapshot()
    assert wall > 0 and busy > 0 and own > 0 and n_cpu >= 1


def test_the_note_names_the_phase_and_share():
    assert 0 < CONTENTION < 1
    assert _contention_note("train", 0.42).startswith("train shared the CPU: other processes used 42% of its time")
