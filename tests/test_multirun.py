"""`make table2` as a user runs it: one Hydra `--multirun` over an explicit experiment list (issue: table2 §5-6).

* submitit's local launcher (conf/hydra/launcher/local.yaml: the SLURM launcher's code path without a cluster)
  runs a 2-job smoke multirun, each cell in its own process, and both write finished records;
* `kill -9` in the middle of a multirun, then the same command again: the finished cell is skipped (its record
  is not rewritten), the interrupted cell resumes from its checkpoint and finishes, and no record is corrupt or
  half-written.
The cells are the real smoke experiments on the tiny random GPT-2 (`scale=tiny`) so the test takes seconds of
training; it needs the prepared E2E data and Java (the official E2E scorer's METEOR), like tests/test_pipeline.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefixtune import paths

pytestmark = pytest.mark.integration

CELLS = "experiment=smoke/e2e_prefix,smoke/e2e_finetune"


def _need_data_and_java():
    if not (paths.data_dir() / "e2e").is_dir():
        pytest.skip(f"E2E data not prepared in {paths.data_dir() / 'e2e'} (run `make setup`)")
    if shutil.which("java") is None:
        pytest.skip("Java is needed by the official E2E scorer (METEOR)")


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def _cmd(tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "prefixtune.train", "--multirun", CELLS, "scale=tiny", "logger.mode=disabled",
            f"output_root={tmp / 'results'}", f"hydra.sweep.dir={tmp / 'multirun'}", *extra]


def _records(tmp: Path) -> dict[str, dict]:
    """run id -> record; every file must parse (a half-written record would fail here)."""
    runs = tmp / "results" / "runs" / "smoke"
    return {p.stem: json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))} if runs.is_dir() else {}


def _cleanup(recs: dict[str, dict]) -> None:
    for rid in recs:
        shutil.rmtree(paths.REPO_ROOT / "checkpoints" / "smoke" / rid, ignore_errors=True)


def test_submitit_local_launcher_runs_a_two_job_multirun(tmp_path):
    _need_data_and_java()
    res = subprocess.run(_cmd(tmp_path, "hydra/launcher=local"), cwd=paths.REPO_ROOT, env=_env(),
                         capture_output=True, text=True, timeout=900)
    recs = _records(tmp_path)
    try:
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert sorted(r["experiment"] for r in recs.values()) == ["smoke-e2e_finetune", "smoke-e2e_prefix"]
        assert all(r["status"] == "finished" and r["metrics"].get("test/bleu") is not None for r in recs.values())
        # one submitit job folder per cell: the cells ran as separate jobs, as they would on SLURM
        jobs = [p for p in (tmp_path / "multirun" / ".submitit").iterdir() if p.is_dir() and p.name != "%j"]
        assert len(jobs) == 2, jobs
    finally:
        _cleanup(recs)


def test_killed_multirun_finishes_without_redoing_finished_cells(tmp_path):
    _need_data_and_java()
    # checkpoints every 2 steps; the kill comes at the second cell's first checkpoint, 10 steps before its end
    extra = ("scale.max_steps=null", "trainer.max_steps=12", "trainer.save_every=2", "trainer.log_every=2")
    recs: dict[str, dict] = {}
    try:
        with open(tmp_path / "killed.log", "w") as log:
            proc = subprocess.Popen(_cmd(tmp_path, *extra), cwd=paths.REPO_ROOT, env=_env(), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            deadline, victim = time.time() + 600, None
            while time.time() < deadline and proc.poll() is None:
                recs = _records(tmp_path)
                running = [rid for rid, r in recs.items() if r["status"] == "running"]
                if len(recs) == 2 and running:
                    ckpt = paths.REPO_ROOT / "checkpoints" / "smoke" / running[0]
                    if list(ckpt.glob("checkpoint-*/trainer_state.json")):  # written last in a checkpoint
                        victim = running[0]
                        break
                time.sleep(0.05)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole job, no clean-up handlers: a pre-emption
            proc.wait(timeout=60)
        assert victim is not None, (tmp_path / "killed.log").read_text()[-3000:]
        before = _records(tmp_path)
        (done,) = [rid for rid, r in before.items() if r["status"] == "finished"]
        done_bytes = (tmp_path / "results" / "runs" / "smoke" / f"{done}.json").read_bytes()

        res = subprocess.run(_cmd(tmp_path, *extra), cwd=paths.REPO_ROOT, env=_env(), capture_output=True,
                             text=True, timeout=900)
        out = res.stdout + res.stderr
        recs = _records(tmp_path)
        assert res.returncode == 0, out[-4000:]
        assert f"skip {done}" in out, "the finished cell ran again"
        assert "resuming from" in out, "the interrupted cell did not resume from its checkpoint"
        assert (tmp_path / "results" / "runs" / "smoke" / f"{done}.json").read_bytes() == done_bytes
        assert set(recs) == set(before) and all(r["status"] == "finished" for r in recs.values())
        assert recs[victim]["metrics"]["test/bleu"] is not None
        assert not list((tmp_path / "results").rglob("*.tmp")), "a temporary file was left behind"
    finally:
        _cleanup(recs)
