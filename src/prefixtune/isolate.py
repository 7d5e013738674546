"""Run one experiment cell in a fresh child process.

Why: a long in-process Hydra multirun degrades. Measured here (cpu-scale `make table2`, 2 cores): after 9 cells
the process held 8.8 GB RSS and spent ~100% of its time in the kernel; an optimiser step went from 2.3 s to
30 s, while the same cell in a fresh process ran at 2.3 s/step. A child per cell returns every page to the OS,
gives each record a peak memory that is the cell's alone, and keeps one cell's crash from poisoning the next.

The child is *spawned* (a fresh interpreter), never forked: forking after torch has used its OpenMP pool hangs
the child (libgomp), which is exactly the state of a process that has already trained a cell. The child dies
with its parent (PR_SET_PDEATHSIG), so `kill -9` of `make table2` leaves no orphan writing records; the next
run resumes the killed cell from its checkpoint as before.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("prefixtune.isolate")

_PR_SET_PDEATHSIG = 1
_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child may outlive a killed parent (documented)
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _log_files() -> list[str]:
    """The parent's log files (Hydra's per-job `<job>.log`), so the child's messages land in the same file."""
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def _child(container: dict, overrides: list[str], log_files: list[str], level: int, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    root = logging.getLogger()
    root.setLevel(level)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers += [logging.FileHandler(f, mode="a") for f in log_files]
    for h in handlers:
        h.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(h)
    from . import pipeline, train  # noqa: F401  (train registers the `pt_path` resolver)

    pipeline.run(OmegaConf.create(container), overrides, isolate=False)


def run_in_child(cfg: DictConfig, overrides: list[str]) -> int:
    """Run `pipeline.run(cfg, overrides)` in a spawned child and return its exit code (0: finished record
    written; otherwise the child wrote a failed record, or was killed). The config is resolved here, in the
    parent, where Hydra's resolvers are live; the child rebuilds it from plain containers."""
    container: Any = OmegaConf.to_container(cfg, resolve=True)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_child, name="prefixtune-cell",
                       args=(container, list(overrides), _log_files(), logging.getLogger().level, os.getpid()))
    proc.start()
    try:
        proc.join()
    except BaseException:  # Ctrl-C reaches the child too (same process group); let it write its failed record
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
        raise
    return int(proc.exitcode if proc.exitcode is not None else -1)
