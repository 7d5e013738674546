"""Each cell runs in a fresh child process (`isolate: true`, prefixtune/isolate.py).

* a cell's failure inside the child surfaces in the parent as an error naming the run and the child's own error,
  and leaves a failed record (never a finished or half-written one);
* the child dies with its parent: `kill -9` of the Hydra process alone (not its process group) leaves no orphan
  that keeps training and writing records;
* in-process and isolated runs of one cell give identical predictions (isolation changes where, not what).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import _compose
from prefixtune import paths

pytestmark = pytest.mark.integration

TAG = os.getpid()
CELL = ["scale=tiny", "logger.mode=disabled", "data=e2e", "method=prefix", "method.length=5",
        "scale.max_steps=null", "trainer.max_steps=4", "trainer.log_every=2", "trainer.save_every=2",
        "optim.lr=1e-3", "decode.max_new_tokens=12", "decode.num_beams=2", "scale.max_decode_groups=4",
        "scale.max_dev_decode_groups=2"]


def _need_data():
    if not (paths.data_dir() / "e2e").is_dir():
        pytest.skip(f"E2E data not prepared in {paths.data_dir() / 'e2e'} (run `make setup`)")
    import shutil

    if shutil.which("java") is None:
        pytest.skip("Java is needed by the official E2E scorer (METEOR)")


def _cleanup(group: str) -> None:
    import shutil

    shutil.rmtree(paths.REPO_ROOT / "checkpoints" / group, ignore_errors=True)


def test_a_failure_in_the_child_is_reported_with_its_record(tmp_path):
    _need_data()
    from prefixtune import pipeline

    group = f"test_isolate_fail_{TAG}"
    # a learning-rate schedule that does not exist fails inside the child (in `fit`), after the record is opened
    ov = [*CELL, f"group={group}", f"output_root={tmp_path}", "optim.scheduler=no_such_schedule"]
    try:
        with pytest.raises(RuntimeError) as err:
            pipeline.run(_compose(*ov, base=()), ov, isolate=True)
        msg = str(err.value)
        assert "failed in its child process" in msg and "exit code 1" in msg and "status 'failed'" in msg, msg
        (path,) = (tmp_path / "runs" / group).glob("*.json")
        rec = json.loads(path.read_text())
        assert rec["status"] == "failed" and "no_such_schedule" in rec["error"], rec["error"]
    finally:
        _cleanup(group)


def test_isolated_and_in_process_runs_give_the_same_predictions(tmp_path):
    _need_data()
    from prefixtune import pipeline

    texts = {}
    for mode in (False, True):
        group = f"test_isolate_same_{int(mode)}_{TAG}"
        ov = [*CELL, f"group={group}", f"output_root={tmp_path / str(mode)}"]
        try:
            rec = pipeline.run(_compose(*ov, base=()), ov, isolate=mode)
            assert rec.status == "finished"
            texts[mode] = (tmp_path / str(mode) / "predictions" / group / rec.run_id / "test.txt").read_text()
        finally:
            _cleanup(group)
    assert texts[False] == texts[True] and texts[True].strip()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_child_dies_with_its_parent(tmp_path):
    _need_data()
    group = f"test_isolate_kill_{TAG}"
    cmd = [sys.executable, "-m", "prefixtune.train", *CELL, "trainer.max_steps=400", f"group={group}",
           f"output_root={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    try:
        proc = subprocess.Popen(cmd, cwd=paths.REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline, kids = time.time() + 300, []
        while time.time() < deadline and proc.poll() is None:
            ckpts = list((paths.REPO_ROOT / "checkpoints" / group).glob("*/checkpoint-*/trainer_state.json"))
            if ckpts:  # the child is training
                kids = [k for k in _children(proc.pid)
                        if "prefixtune-cell" in _cmdline(k) or "multiprocessing" in _cmdline(k)]
                break
            time.sleep(0.1)
        assert proc.poll() is None and kids, "no training child process found"
        os.kill(proc.pid, signal.SIGKILL)  # the parent only: the child must not survive it
        proc.wait(timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline and any(Path(f"/proc/{k}").exists() and _state(k) != "Z" for k in kids):
            time.sleep(0.1)
        alive = [k for k in kids if Path(f"/proc/{k}").exists() and _state(k) != "Z"]
        assert not alive, f"orphaned cell processes still running: {alive}"
        (path,) = (tmp_path / "runs" / group).glob("*.json")
        assert json.loads(path.read_text())["status"] == "running"  # resumable, not finished, not corrupt
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, UnboundLocalError):
            pass
        _cleanup(group)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"
