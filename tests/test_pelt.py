"""`make pelt` on the tiny random GPT-2: a real two-method multirun writes records, and the report (markdown,
CSV, figure) is generated from them alone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from prefixtune import paths

pytestmark = pytest.mark.integration


def test_pelt_report_from_a_real_multirun(tmp_path):
    if not (paths.data_dir() / "e2e").is_dir() or shutil.which("java") is None:
        pytest.skip("needs the prepared E2E data (make setup) and Java (METEOR)")
    from prefixtune import pelt

    root = tmp_path / "results"
    cmd = [sys.executable, "-m", "prefixtune.train", "--multirun", "experiment=pelt/e2e_lora,pelt/e2e_mam",
           "scale=tiny", "logger.mode=disabled", f"output_root={root}", f"hydra.sweep.dir={tmp_path / 'mr'}"]
    res = subprocess.run(cmd, cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"})
    try:
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        assert pelt.main(["--scale", "tiny", "--root", str(root), "--out", str(tmp_path / "out")]) == 0
    finally:
        for d in (paths.REPO_ROOT / "checkpoints" / "pelt").glob("*__tiny__*"):  # this test's runs only
            shutil.rmtree(d, ignore_errors=True)
    md = (tmp_path / "out" / "pelt.md").read_text()
    assert "| LoRA | 1 |" in md and "| MAM adapter | 1 |" in md
    rows = (tmp_path / "out" / "pelt.csv").read_text().splitlines()
    assert rows[0].startswith("method,n,trainable_pct") and len(rows) == 3
    png = tmp_path / "out" / "figures" / "pelt_quality_vs_params.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # ordered by trainable share: LoRA (r=4 on c_attn) trains less than MAM (prefix MLP + parallel adapters)
    assert [r.split(",")[0] for r in rows[1:]] == ["lora", "mam"]


def test_rows_average_seeds_within_a_methods_newest_config():
    from prefixtune import pelt
    from prefixtune.results import RunRecord

    def rec(seed, bleu, steps, when):
        cfg = {"group": "pelt", "seed": seed, "row": "lora", "scale": {"name": "cpu"}, "trainer": {"max_steps": steps},
               "method": {"label": "LoRA"}}
        r = RunRecord(run_id=f"pelt-e2e_lora__cpu__s{seed}", group="pelt", experiment="pelt-e2e_lora", config=cfg,
                      params={"trainable_pct": 0.2, "stored_pct": 0.2, "stored": 10}).finish({"test/bleu": bleu})
        r.finished_at = when
        return r

    rows = pelt.rows([rec(1, 0.5, 100, "2026-01-01"), rec(2, 0.7, 100, "2026-01-02"), rec(3, 0.1, 50, "2025-01-01")],
                     "cpu")
    assert len(rows) == 1 and rows[0]["n"] == 2
