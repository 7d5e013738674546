"""ACL Figure 4 (prefix length) from records: points per (dataset, length), CSV/markdown/PNG, and a real Hydra
`--multirun` over `method.length` on the tiny GPT-2 whose records the figure is then built from."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from prefixtune import paths, sweeps
from prefixtune.results import RunRecord, iter_records, write_record


def _rec(length: int, seed: int, bleu: float, ds: str = "dart") -> RunRecord:
    cfg = {"group": "fig4", "seed": seed, "data": {"name": ds},
           "method": {"length": length, "loss_reduction": "sequence_sum"}, "trainer": {"log_every": 10},
           "scale": {"name": "cpu"}, "model": {"label": "SmolLM2-135M"}}
    rec = RunRecord(run_id=f"fig4-{ds}_prefix__cpu__s{seed}__o{length:08x}", group="fig4",
                    experiment=f"fig4-{ds}_prefix", config=cfg)
    return rec.finish({"test/bleu": bleu, "test/ter": 0.5 - bleu / 1000, "train/loss": 2.0 - length / 100,
                       "train/loss_final": 1.0 - length / 100})


def test_points_csv_markdown_and_plot(tmp_path):
    for length, vals in {1: [40.0, 41.0], 10: [45.0, 46.0], 40: [44.0]}.items():
        for seed, v in enumerate(vals, 1):
            write_record(_rec(length, seed, v), root=tmp_path)
    write_record(_rec(5, 1, 0.6, ds="e2e"), root=tmp_path)  # E2E BLEU is a fraction: shown x100
    assert sweeps.main(["fig4", "--scale", "cpu", "--root", str(tmp_path)]) == 0
    md = (tmp_path / "fig4.md").read_text()
    assert "| 10 | 2 | 45.50 ± 0.71 |" in md and "| 40 | 1 | 44.00 |" in md, md
    assert "| 5 | 1 | 60.00 |" in md and "not the paper's numbers" in md
    rows = (tmp_path / "fig4.csv").read_text().splitlines()
    assert rows[0].startswith("series,dataset,method.length,n_runs,BLEU_mean") and len(rows) == 5
    png = tmp_path / "figures" / "fig4_prefix_length.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sweeps.main(["fig4", "--scale", "paper", "--root", str(tmp_path)]) == 1  # nothing at that scale


@pytest.mark.integration
def test_fig4_from_a_real_length_multirun(tmp_path):
    if not (paths.data_dir() / "e2e").is_dir() or shutil.which("java") is None:
        pytest.skip("needs the prepared E2E data and Java (make setup)")
    group = f"fig4_test_{os.getpid()}"
    cmd = [sys.executable, "-m", "prefixtune.train", "--multirun", "experiment=fig4/e2e_prefix", "method.length=1,3",
           "scale=tiny", "logger.mode=disabled", f"group={group}", f"output_root={tmp_path}",
           "scale.max_steps=null", "trainer.max_steps=2", "trainer.log_every=1", "trainer.save_every=2",
           "scale.max_decode_groups=2", "scale.max_dev_decode_groups=1", "decode.max_new_tokens=8",
           f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    try:
        res = subprocess.run(cmd, cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"})
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    finally:
        shutil.rmtree(paths.REPO_ROOT / "checkpoints" / group, ignore_errors=True)
    recs = list(iter_records(tmp_path, group))
    pts = sweeps.points(recs, "fig4", "tiny", group=group)
    assert [(p["dataset"], p["x"], p["n"]) for p in pts] == [("e2e", 1, 1), ("e2e", 3, 1)]
    stored = {r.config["method"]["length"]: r.params["stored"] for r in recs}
    assert stored[3] == 3 * stored[1] > 0  # the stored prefix grows linearly with its length


def _low(row: str, size: int, subset: int, bleu: float) -> RunRecord:
    cfg = {"group": "fig3", "row": row, "seed": 1, "data": {"name": "e2e", "lowdata": {"size": size, "subset": subset}},
           "method": {"name": row}, "scale": {"name": "cpu"}, "model": {"label": "SmolLM2-135M"}}
    return RunRecord(run_id=f"fig3-e2e_{row}_{size}__cpu__s1__o{subset:08x}", group="fig3",
                     experiment=f"fig3-e2e_{row}_{size}", config=cfg).finish({"test/bleu": bleu, "test/rouge_l": 0.6})


def test_fig3_and_fig5_points(tmp_path):
    for row, base in (("prefix", 0.55), ("finetune", 0.50)):
        for size in (50, 500):
            for subset in (0, 1):
                write_record(_low(row, size, subset, base + size / 10000 + subset / 100), root=tmp_path)
    assert sweeps.main(["fig3", "--root", str(tmp_path)]) == 0
    md = (tmp_path / "fig3.md").read_text()
    assert "## prefix" in md and "## finetune" in md and "| 50 | 2 | 56.00 ± 0.71 |" in md, md
    # the gap the paper summarises (+2.9 BLEU on average): per size and averaged, se from the subsets' spread
    # (per point se 0.5; per size sqrt(0.5^2 + 0.5^2); the mean of 2 sizes halves it: 0.50)
    assert "## prefix − finetune" in md and "| 50 | +5.00 | +0.00 |" in md and "| 500 | +5.00 | +0.00 |" in md
    assert "| **mean** | **+5.00** ± 0.50 (se) |" in md, md
    assert (tmp_path / "figures" / "fig3_lowdata.png").is_file()
    for words in ("random", "table-to-text:", "banana"):
        init = {"kind": "random"} if words == "random" else {"kind": "words", "words": words}
        cfg = {"group": "fig5", "seed": 1, "data": {"name": "e2e"}, "method": {"init": init},
               "scale": {"name": "cpu"}, "model": {"label": "m"}}
        write_record(RunRecord(run_id=f"fig5-e2e_{abs(hash(words)) % 10**6}__cpu__s1", group="fig5",
                               experiment="fig5", config=cfg).finish({"test/bleu": 0.5, "test/rouge_l": 0.6}),
                     root=tmp_path)
    pts = sweeps.points(list(iter_records(tmp_path, "fig5")), "fig5", "cpu")
    assert [p["x"] for p in pts] == ["random", "banana", "table-to-text:"]  # random first, then by name
    assert sweeps.main(["fig5", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "figures" / "fig5_init.png").is_file()


def _lowdata(subset: int, seed: int, bleu: float, steps: int = 200, when: str = "2026-01-01",
             bf16: bool = False) -> RunRecord:
    cfg = {"group": "fig3", "seed": seed, "row": "prefix", "scale": {"name": "cpu"},
           "trainer": {"max_steps": steps, "bf16": bf16}, "decode": {"bf16": bf16},
           "data": {"name": "e2e", "lowdata": {"size": 100, "subset": subset}}, "model": {"label": "SmolLM2-135M"}}
    rec = RunRecord(run_id=f"fig3-e2e_prefix_100__cpu__s{seed}__o{subset:02d}{steps:05x}{int(bf16)}", group="fig3",
                    experiment="fig3-e2e_prefix_100", config=cfg).finish({"test/bleu": bleu, "test/rouge_l": bleu})
    rec.finished_at = f"{when}T00:00:00+00:00"
    return rec


def test_a_point_averages_subsets_and_seeds_of_its_newest_config_only():
    """Subsets and seeds are the repeats of a low-data point; a run of an earlier config of that point (here:
    other max_steps) is neither averaged in nor silently dropped: the markdown names it."""
    recs = [_lowdata(0, 1, 0.50), _lowdata(1, 1, 0.60), _lowdata(0, 2, 0.70),
            _lowdata(0, 1, 0.10, steps=100, when="2025-06-01")]
    pts = sweeps.points(recs, "fig3", "cpu")
    assert [(p["x"], p["n"], round(p["BLEU"][0], 6)) for p in pts] == [(100, 3, 60.0)]
    assert pts[0]["left_out"] == [recs[3].run_id]
    md = sweeps.to_markdown("fig3", pts, "cpu", "SmolLM2-135M")
    assert "1 run(s) of an earlier config of their point were left out" in md and recs[3].run_id in md
    # the newest config wins even when it is the one with fewer runs
    newer = _lowdata(0, 1, 0.20, steps=300, when="2026-06-01")
    pts = sweeps.points(recs + [newer], "fig3", "cpu")
    assert [(p["n"], round(p["BLEU"][0], 6)) for p in pts] == [(1, 20.0)] and len(pts[0]["left_out"]) == 4


def test_runs_in_the_other_precision_are_named_as_such_not_as_an_earlier_config():
    """The cpu scale resolves bf16 from the machine, so seed 1 may be fp32 (an AVX2 CPU) and seed 2 bf16 (an
    AVX512-BF16 one): they are not averaged, and the markdown says it is the precision, not a config change."""
    fp32 = [_lowdata(0, 1, 0.50), _lowdata(0, 1, 0.10, steps=100, when="2025-06-01")]
    bf16 = _lowdata(0, 2, 0.70, when="2026-02-01", bf16=True)
    pts = sweeps.points(fp32 + [bf16], "fig3", "cpu")
    assert [(p["n"], round(p["BLEU"][0], 6)) for p in pts] == [(1, 70.0)]
    assert pts[0]["left_out_why"] == {fp32[0].run_id: "fp32", fp32[1].run_id: None}
    md = sweeps.to_markdown("fig3", pts, "cpu", "SmolLM2-135M")
    assert "1 run(s) in another precision than the newest runs of their point were left out" in md
    assert f"{fp32[0].run_id} (fp32)" in md
    assert "1 run(s) of an earlier config of their point were left out" in md and fp32[1].run_id in md


def test_the_figure_report_states_each_deviation_next_to_its_points_and_a_missing_pair():
    """Record notes (the per-run deviations: model, steps, data subset, lr) are listed with the points they hold
    for; the gap is computed only over sizes both series have, and says so when there is none."""
    recs = []
    for row, size in (("prefix", 50), ("prefix", 500), ("finetune", 500)):
        r = _low(row, size, 0, 0.5)
        r.notes = ["model: SmolLM2-135M", f"trained 100 optimiser steps on {size} of 42061 training pairs"]
        recs.append(r)
    pts = sweeps.points(recs, "fig3", "cpu")
    md = sweeps.to_markdown("fig3", pts, "cpu", "SmolLM2-135M", recs)
    assert "- model: SmolLM2-135M (all runs)" in md, md
    assert "- trained 100 optimiser steps on 50 of 42061 training pairs (prefix 50)" in md
    assert "on 500 of 42061 training pairs (prefix 500, finetune 500)" in md
    assert "compared: 500." in md and "| 50 |" not in md.split("## prefix − finetune")[1]
    assert "- seed over the runs: 1" in md and "- data.lowdata.subset over the runs: 0" in md
    lone = sweeps.points(recs[:1], "fig3", "cpu")
    assert "no prefix point has a finetune point at the same training examples" in sweeps.to_markdown(
        "fig3", lone, "cpu", "m")


def test_fig4_shows_each_series_its_own_metrics(tmp_path):
    """ACL Figure 4 plots BLEU/TER for table-to-text and ROUGE-2/ROUGE-L for summarisation: a series' table has
    only the columns its records have, the CSV keeps every column (empty where absent), the plot gets one panel per
    metric that any series has."""
    write_record(_rec(10, 1, 45.0), root=tmp_path)
    for length, r2 in ((10, 5.0), (200, 6.0)):
        cfg = {"group": "fig4", "seed": 1, "data": {"name": "xsum"}, "method": {"length": length},
               "scale": {"name": "cpu"}, "model": {"label": "SmolLM2-135M"}}
        write_record(RunRecord(run_id=f"fig4-xsum_sample_prefix__cpu__s1__o{length:08x}", group="fig4",
                               experiment="fig4-xsum_sample_prefix", config=cfg).finish(
            {"test/rouge1": 20.0, "test/rouge2": r2, "test/rougeL": 15.0, "train/loss": 3.0}), root=tmp_path)
    assert sweeps.main(["fig4", "--root", str(tmp_path)]) == 0
    md = (tmp_path / "fig4.md").read_text()
    dart, xsum = md.split("## dart")[1].split("## xsum")
    assert "BLEU ↑ | TER ↓ | train loss (run mean) ↓ | train loss (end) ↓ |" in dart and "ROUGE" not in dart, dart
    assert "| 10 | 1 | 45.00 | 0.455 | 1.900 | 0.900 |" in dart, dart
    # the xsum records predate `train/loss_final`: no end column rather than a made-up one
    assert "| method.length | n | ROUGE-2 ↑ | ROUGE-L ↑ | train loss (run mean) ↓ |" in xsum
    assert "| 200 | 1 | 6.00 | 15.00 | 3.000 |" in xsum
    # the unit is read off each record's method.loss_reduction (xsum's records have none: the token mean)
    assert ("train loss = each sentence's summed token NLL in nats, batch mean (the original code's "
            "`--objective_mode 1`); \"run mean\" averages every optimiser step, \"end\" the last 10 steps") in md, md
    assert "train loss = mean token NLL in nats" in md and "(xsum 10, xsum 200)" in md, md
    header, *rows = (tmp_path / "fig4.csv").read_text().splitlines()
    assert "ROUGE-2_mean" in header and "BLEU_mean" in header and len(rows) == 3


def test_report_plots_leave_the_callers_matplotlib_alone(tmp_path):
    """A notebook that builds a report keeps its inline backend and open figures (the reports once called
    matplotlib.use("Agg"), and every later plot of the notebook came out blank)."""
    import matplotlib
    import matplotlib.pyplot as plt

    from prefixtune import pelt

    before = matplotlib.get_backend()
    plt.switch_backend("svg")  # a caller's backend that is not the Agg a report would pick
    try:
        mine = plt.figure()
        pts = sweeps.points([_rec(1, 1, 40.0), _rec(10, 1, 45.0)], "fig4", "cpu")
        sweeps.plot("fig4", pts, tmp_path / "f.png")
        pelt.plot([{"data": "e2e", "label": "Prefix", "stored_pct": 0.04, "trainable_pct": 4.6,
                    "metrics": [("BLEU", 60.0, 1.0, 2, 2)]}], tmp_path / "p.png", "t")
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == [mine.number]
    finally:
        plt.close("all")
        plt.switch_backend(before)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "p.png").is_file()
