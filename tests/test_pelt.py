"""`make pelt` on the tiny random GPT-2: a real multirun (two methods on E2E, one on the offline XSUM split) writes
records, and the report (markdown, CSV, figure) is generated from them alone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from prefixtune import paths

pytestmark = pytest.mark.integration


def test_pelt_report_from_a_real_multirun(tmp_path):
    if not all((paths.data_dir() / d).is_dir() for d in ("e2e", "xsum")) or shutil.which("java") is None:
        pytest.skip("needs the prepared E2E and XSUM data (make setup) and Java (METEOR)")
    from prefixtune import pelt

    root = tmp_path / "results"
    cmd = [sys.executable, "-m", "prefixtune.train", "--multirun", "experiment=pelt/e2e_lora,pelt/e2e_mam,pelt/xsum_sample_lora",
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
    e2e, xsum = md.split("## XSUM offline split")
    assert "## E2E" in e2e and "| LoRA | 1 |" in e2e and "| MAM adapter | 1 |" in e2e and "| BLEU |" in e2e
    assert "NOT the XSUM test set" in xsum and "| LoRA | 1 |" in xsum and "| R-1 | R-2 | R-L |" in xsum
    rows = (tmp_path / "out" / "pelt.csv").read_text().splitlines()
    assert rows[0].startswith("data,method,n,trainable_pct") and len(rows) == 1 + 3 * 3  # 3 cells x 3 metrics
    png = tmp_path / "out" / "figures" / "pelt_quality_vs_params.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # per dataset, ordered by trainable share: LoRA (r=4 on c_attn) trains less than MAM (prefix MLP + adapters)
    cells = list(dict.fromkeys(tuple(r.split(",")[:2]) for r in rows[1:]))
    assert cells == [("e2e", "lora"), ("e2e", "mam"), ("xsum", "lora")]

def test_the_report_shows_each_cells_rate_precision_and_machine():
    from prefixtune import pelt
    from prefixtune.results import RunRecord

    cfg = {"group": "pelt", "seed": 1, "row": "lora", "method": {"label": "LoRA"}, "optim": {"lr": 2e-4},
           "trainer": {"bf16": False}, "scale": {"name": "cpu", "label": "cpu: 100 steps", "lr_scale": 10.0}}
    r = RunRecord(run_id="pelt-e2e_lora__cpu__s1", group="pelt", experiment="pelt-e2e_lora", config=cfg,
                  params={"trainable_pct": 0.2, "stored_pct": 0.2, "stored": 10},
                  provenance={"hardware": {"cpu_model": "AMD EPYC", "usable_cores": 2}}).finish({"test/bleu": 0.5})
    md = pelt.to_markdown(pelt.rows([r], "cpu"), "cpu", "SmolLM2")
    assert md.count("| 2e-03 |") == 1  # conf lr x the scale's multiplier, not the conf lr
    assert "Scale: cpu: 100 steps" in md and "Training precision: fp32" in md and "AMD EPYC, 2 cores" in md


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


def test_each_dataset_gets_its_own_metrics_and_unknown_data_is_named():
    from prefixtune import pelt
    from prefixtune.results import RunRecord

    def rec(data, row, pct, metrics):
        cfg = {"group": "pelt", "seed": 1, "row": row, "scale": {"name": "cpu"}, "data": {"name": data},
               "method": {"label": row.upper()}}
        return RunRecord(run_id=f"pelt-{data}_{row}__cpu__s1", group="pelt", experiment=f"pelt-{data}_{row}",
                         config=cfg, params={"trainable_pct": pct, "stored_pct": pct, "stored": 10}).finish(metrics)

    table = pelt.rows([rec("xsum", "prefix", 0.5, {"test/rouge1": 20.5, "test/rouge2": 4.0, "test/rougeL": 15.0}),
                       rec("e2e", "lora", 0.2, {"test/bleu": 0.61, "test/rouge_l": 0.66, "test/meteor": 0.4}),
                       rec("e2e", "prefix", 0.1, {"test/bleu": 0.58})], "cpu")
    assert [(d["data"], d["method"]) for d in table] == [("e2e", "prefix"), ("e2e", "lora"), ("xsum", "prefix")]
    md = pelt.to_markdown(table, "cpu", "SmolLM2")
    assert "| PREFIX | 1 | 0.100 | 0.100 | 0.00 | 58.0 | — | — |" in md  # E2E fractions shown x100, absent = —
    assert "| PREFIX | 1 | 0.500 | 0.500 | 0.00 | 20.50 | 4.00 | 15.00 |" in md  # XSUM ROUGE already in percent
    assert "## Setting and deviations" in md and "Backbone: SmolLM2" in md and "No per-method lr search" in md
    with pytest.raises(ValueError, match="data.name='dart'"):
        pelt.rows([rec("dart", "lora", 0.2, {"test/bleu": 40.0})], "cpu")
