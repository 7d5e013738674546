"""The converged protocol (issue #22): learning rates chosen on dev, the plateau rule, the budget printout."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from conftest import _compose
from prefixtune import budget, health, lrselect, paths
from prefixtune.results import RunRecord, write_record

GRID = [1.0, 3.0, 10.0]


def _select_record(exp: str, factor: float, dev_loss: float | None, group: str = "table2",
                   finished_at: str = "2026-12-07T00:00:00Z") -> RunRecord:
    cfg = {"experiment_name": exp, "seed": 1, "optim": {"lr": 8e-5},
           "scale": {"name": "conv_select", "lr_scale": factor, "lr_grid": GRID}}
    rec = RunRecord(run_id=f"{exp}__conv_select__s1__o{int(factor * 10):04d}", group=group, experiment=exp,
                    config=cfg, status="finished", finished_at=finished_at,
                    notes=["trained 200 optimiser steps on 2000 of 42061 training pairs (batch 10 x accumulation 1)"])
    rec.metrics = {"dev/loss": dev_loss}
    return rec


def test_the_choice_is_the_lowest_dev_loss_and_an_edge_is_flagged():
    recs = [_select_record("a", 1, 3.0), _select_record("a", 3, 2.5), _select_record("a", 10, 2.7),
            _select_record("b", 1, 3.0), _select_record("b", 3, 2.9), _select_record("b", 10, 2.1)]
    got = lrselect.choose(recs, "conv_select", GRID)
    assert got["a"]["chosen"] == 3.0 and got["a"]["edge"] is None
    assert got["b"]["chosen"] == 10.0 and got["b"]["edge"] == "top"
    assert got["a"]["dev_loss"] == {"1": 3.0, "3": 2.5, "10": 2.7}
    md = lrselect.to_markdown(got, "conv_select")
    assert "| b | 8e-05 |" in md and "at the top of the grid" in md and "| x3 | 0.00024 |" in md


def test_ties_go_to_the_smaller_rate_and_diverged_runs_never_win():
    recs = [_select_record("a", 1, 2.0), _select_record("a", 3, 2.0), _select_record("a", 10, float("nan"))]
    got = lrselect.choose(recs, "conv_select", GRID)["a"]
    assert got["chosen"] == 1.0 and got["edge"] == "bottom"
    assert got["dev_loss"]["10"] is None
    assert "x10: diverged" in lrselect.to_markdown({"a": got}, "conv_select")


def test_an_incomplete_grid_has_no_choice_and_the_conv_cell_refuses_to_compose(tmp_path):
    recs = [_select_record("a", 1, 2.0), _select_record("a", 3, 1.5)]
    got = lrselect.choose(recs, "conv_select", GRID)["a"]
    assert got["chosen"] is None and got["missing"] == [10.0]
    path = lrselect.choice_path(tmp_path, "conv_select")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"a": got}))
    with pytest.raises(ValueError, match="has no choice for a .its grid is incomplete"):
        lrselect.chosen_factor(str(tmp_path), "conv_select", "a")
    with pytest.raises(ValueError, match="no learning-rate choice file"):
        lrselect.chosen_factor(str(tmp_path / "elsewhere"), "conv_select", "a")


def test_an_extended_grid_reuses_the_runs_made_and_asks_only_for_the_new_factor():
    recs = [_select_record("a", f, loss) for f, loss in zip(GRID, (3.0, 2.5, 2.0))]  # choice on the top edge
    got = lrselect.choose(recs, "conv_select", GRID + [30.0])["a"]
    assert got["chosen"] is None and got["missing"] == [30.0]
    got = lrselect.choose(recs + [_select_record("a", 30, 2.2)], "conv_select", GRID + [30.0])["a"]
    assert got["chosen"] == 10.0 and got["edge"] is None
    # the grid a run was launched with does not enter its identity: the old runs are found, not rerun
    old, new = recs[0], _select_record("a", 1.0, 3.0)
    new.config["scale"]["lr_grid"] = GRID + [30.0]
    assert old.identity == new.identity


def test_the_newest_record_of_a_factor_counts_and_other_scales_are_ignored():
    old = _select_record("a", 3, 1.0, finished_at="2026-12-01T00:00:00Z")
    new = _select_record("a", 3, 2.2, finished_at="2026-12-07T00:00:00Z")
    other = _select_record("a", 10, 0.1)
    other.config["scale"]["name"] = "cpu"
    got = lrselect.choose([old, new, _select_record("a", 1, 2.0), _select_record("a", 10, 2.5), other],
                          "conv_select", GRID)["a"]
    assert got["dev_loss"]["3"] == 2.2 and got["chosen"] == 1.0


def test_the_conv_scale_reads_the_choice_written_from_records(tmp_path):
    for f, loss in zip(GRID, (2.0, 1.5, 1.7)):
        write_record(_select_record("table2-e2e_prefix", f, loss), root=tmp_path)
    lrselect.write(tmp_path, "conv_select", GRID)
    assert "x3" in (tmp_path / "lr_choice" / "conv_select.md").read_text()
    cfg = _compose("experiment=table2/e2e_prefix", "scale=conv", f"output_root={tmp_path}", base=())
    from prefixtune.trainer import effective_lr

    assert cfg.scale.lr_scale == 3.0
    assert math.isclose(effective_lr(cfg), 8e-5 * 3)
    assert cfg.trainer.early_stopping_patience and cfg.trainer.eval_every
    assert "x3 chosen on dev loss" in lrselect.note(tmp_path, "conv_select", "table2-e2e_prefix")


def test_the_grid_lives_once_in_conf_and_the_makefile_sweeps_it():
    conf_grid = lrselect.grid("conv_select")
    assert conf_grid == sorted(conf_grid) and 1.0 in conf_grid
    import subprocess

    out = subprocess.run(["make", "-n", "table2", "SCALE=conv", "TABLE2_DATA=e2e", "TABLE2_ROWS=prefix"],
                         cwd=paths.REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert "prefixtune.lrselect conv_select --run table2/e2e_prefix" in out and "'seed=choice(1,2,3)'" in out
    assert out.index("prefixtune.budget") < out.index("lrselect conv_select --run") < out.index("scale=conv ")
    ratio, most = lrselect.extension("conv_select")
    assert ratio > 1 and most >= 1


def test_make_fig3_and_fig5_under_conv_run_their_stage_one_first_and_three_runs_per_point():
    import subprocess

    def dry(*args):
        return subprocess.run(["make", "-n", *args], cwd=paths.REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout

    fig3, fig5, cpu = dry("fig3", "SCALE=conv"), dry("fig5", "SCALE=conv"), dry("fig3")
    assert "lrselect conv_select --run fig3/e2e_prefix_50 " in fig3 and "fig3/e2e_finetune_500" in fig3
    assert fig3.index("lrselect conv_select") < fig3.index("prefixtune.train --multirun")
    assert "'data.lowdata.subset=choice(0,1,2)'" in fig3 and "'seed=choice(1,2,3)'" in fig5
    assert "lrselect conv_select --run fig5/e2e_random fig5/e2e_words" in fig5
    assert "lrselect" not in cpu and "'data.lowdata.subset=choice(0,1)'" in cpu


def test_a_choice_on_an_edge_extends_that_cells_grid_until_it_is_interior():
    recs = [_select_record("a", f, loss) for f, loss in zip(GRID, (3.0, 2.5, 2.0))]  # top edge
    recs += [_select_record("b", f, loss) for f, loss in zip(GRID, (2.0, 2.5, 3.0))]  # bottom edge
    recs += [_select_record("c", f, loss) for f, loss in zip(GRID, (3.0, 2.0, 3.0))]  # interior
    got = lrselect.choose(recs, "conv_select", GRID, extend=(3.0, 2))
    assert got["a"]["chosen"] is None and got["a"]["missing"] == [30.0] and got["a"]["extended"] == [30.0]
    assert got["b"]["missing"] == [pytest.approx(1 / 3, rel=1e-5)] and got["c"]["chosen"] == 3.0
    assert "extension past the edge" in lrselect.to_markdown(got, "conv_select")
    # x30 still best: one more extension (x90); x90 worse: x30 is interior, the grid says it was extended
    got = lrselect.choose(recs + [_select_record("a", 30, 1.9)], "conv_select", GRID, extend=(3.0, 2))["a"]
    assert got["missing"] == [90.0]
    got = lrselect.choose(recs + [_select_record("a", 30, 1.9), _select_record("a", 90, 2.4)], "conv_select", GRID,
                          extend=(3.0, 2))["a"]
    assert got["chosen"] == 30.0 and got["edge"] is None and got["grid"] == GRID + [30.0, 90.0]
    assert "grid extended past its edge by x30, x90" in lrselect.to_markdown({"a": got}, "conv_select")
    # the extensions run out: the edge is flagged, not extended further
    got = lrselect.choose(recs + [_select_record("a", 30, 1.9), _select_record("a", 90, 1.8)], "conv_select", GRID,
                          extend=(3.0, 2))["a"]
    assert got["chosen"] == 90.0 and got["edge"] == "top" and got["missing"] == []


def _fake_stage_one(monkeypatch, root, loss, group="table2"):
    """(calls, runner): a stand-in for lrselect's multirun over GRID (extensions x3, at most 2) that writes the
    records a real one would, with dev loss `loss(experiment name, factor)`, and logs (cells, factors) per call."""
    monkeypatch.setattr(lrselect, "grid", lambda select="conv_select": list(GRID))
    monkeypatch.setattr(lrselect, "extension", lambda select="conv_select": (3.0, 2))
    calls = []

    def runner(cells, factors, select, extra):
        calls.append((tuple(cells), tuple(factors)))
        for cell in cells:
            exp = cell.replace("/", "-")
            for f in factors:
                write_record(_select_record(exp, f, float(loss(exp, f)), group=group), root=root)

    return calls, runner


def test_the_stage_one_driver_runs_the_base_grid_then_each_extension_and_stops(tmp_path, monkeypatch):
    """`lrselect --run` with a fake runner that writes the records a real multirun would: the dev loss falls
    with the rate up to x30, so the driver must run the base grid, then x90 for the top-edge cell, then stop."""
    calls, runner = _fake_stage_one(
        monkeypatch, tmp_path, lambda exp, f: {"table2-e2e_prefix": {1: 3, 3: 2, 10: 2.5}}.get(exp, {}).get(f, abs(f - 30) + 1))
    got = lrselect.run(["table2/e2e_prefix", "table2/e2e_adapter01"], "conv_select", tmp_path, runner=runner)
    assert calls == [(("table2/e2e_prefix", "table2/e2e_adapter01"), tuple(GRID)),
                     (("table2/e2e_adapter01",), (30.0,)), (("table2/e2e_adapter01",), (90.0,))]
    assert got["table2-e2e_prefix"]["chosen"] == 3.0 and got["table2-e2e_adapter01"]["chosen"] == 30.0
    assert (tmp_path / "lr_choice" / "conv_select.json").exists()
    calls.clear()
    lrselect.run(["table2/e2e_prefix", "table2/e2e_adapter01"], "conv_select", tmp_path, runner=runner)
    assert calls == []  # everything run: nothing is rerun


def test_low_data_cells_share_one_rate_per_method_chosen_on_the_100_example_cell(tmp_path, monkeypatch):
    """The paper trains every low-data size at one rate (ACL A.2; Table 8 tunes only the steps): under conv each
    low-data method's rate is the choice of its 100-example cell (scale.lr_share), Fig 5's inits share the prefix's,
    the stage-1 driver runs only those cells, and the record's note says whose choice it used."""
    share = _compose("scale=conv_select", base=()).scale.lr_share
    assert lrselect.source("fig3-e2e_prefix_500", share) == "fig3-e2e_prefix_100"
    assert lrselect.source("fig3-e2e_finetune_50", share) == "fig3-e2e_finetune_100"
    assert lrselect.source("fig5-e2e_random", share) == lrselect.source("fig5-e2e_words", share) == "fig3-e2e_prefix_100"
    assert lrselect.source("table2-e2e_prefix", share) == "table2-e2e_prefix"
    calls, runner = _fake_stage_one(monkeypatch, tmp_path, lambda exp, f: abs(f - 3) + 1.0, group="fig3")
    cells = [f"fig3/e2e_{m}_{s}" for m in ("prefix", "finetune") for s in (50, 100, 200, 500)]
    lrselect.run(cells + ["fig5/e2e_random"], "conv_select", tmp_path, runner=runner)
    assert calls == [(("fig3/e2e_prefix_100", "fig3/e2e_finetune_100"), tuple(GRID))]
    for exp in ("fig3/e2e_prefix_500", "fig5/e2e_words", "fig3/e2e_finetune_50"):
        cfg = _compose(f"experiment={exp}", "scale=conv", f"output_root={tmp_path}", base=())
        assert cfg.scale.lr_scale == 3.0 and cfg.optim.scheduler == "linear", exp
    note = lrselect.note(tmp_path, "conv_select", "fig3-e2e_prefix_500", share)
    assert "x3 chosen on dev loss of fig3-e2e_prefix_100, whose rate this cell shares" in note
    (tmp_path / "lr_choice" / "conv_select.json").write_text("{}")
    with pytest.raises(ValueError, match="no choice for fig3-e2e_prefix_100 .whose choice fig3-e2e_prefix_200 shares"):
        _compose("experiment=fig3/e2e_prefix_200", "scale=conv", f"output_root={tmp_path}", base=()).scale.lr_scale
    # which cell's choice is shared is volatile (hashed as the rate it resolves to): the E2E conv identities stand
    from prefixtune.results import VOLATILE_KEYS
    assert "scale.lr_share" in VOLATILE_KEYS


# --- the plateau rule (prefixtune.health.convergence) ------------------------------------------------------

def test_early_stopping_is_a_plateau_and_names_the_decoded_checkpoint():
    dev = [[50, 3.0], [100, 2.5], [150, 2.6], [200, 2.55]]
    m = health.convergence(dev, steps=200, cap=1200, patience=2)
    assert m == {"train/plateau": 1.0, "train/best_step": 100.0, "train/steps": 200.0, "train/stopped_early": 1.0}
    assert "stopped at step 200 of the 1200-step cap" in health.convergence_note(m, 1200, 50, 2)


def test_a_run_at_the_cap_with_the_dev_loss_still_falling_is_failed():
    dev = [[s, 3.0 - s / 1000] for s in range(50, 1250, 50)]
    m = health.convergence(dev, steps=1200, cap=1200, patience=4)
    assert m["train/plateau"] == 0.0 and m["train/stopped_early"] == 0.0
    assert "not converged" in health.convergence_note(m, 1200, 50, 4)
    metrics = {**m, "test/health/no_eos": 0.0, "test/health/len_ratio": 1.0, "test/health/copy": 0.0}
    assert health.failures(metrics) == ["no dev-loss plateau by step 1200"]


def test_a_run_at_the_cap_on_a_flat_dev_loss_is_a_plateau():
    dev = [[50, 3.0], [100, 2.0]] + [[s, 2.0 - (s - 100) * 1e-6] for s in range(150, 400, 50)]
    m = health.convergence(dev, steps=350, cap=350, patience=4)
    assert m["train/plateau"] == 1.0
    assert health.failures({**m, "test/health/no_eos": 0.0, "test/health/len_ratio": 1.0,
                            "test/health/copy": 0.0}) == []


def test_too_few_evaluations_is_not_a_plateau():
    assert health.convergence([[50, 3.0], [100, 2.9]], steps=100, cap=100, patience=4)["train/plateau"] == 0.0
    with pytest.raises(ValueError, match="eval_every"):
        health.convergence([], steps=100, cap=100, patience=4)


# --- budget ----------------------------------------------------------------------------------------------

def test_budget_counts_missing_runs_and_times_them_from_records(tmp_path):
    done = RunRecord(run_id="table2-e2e_prefix__conv__s1", group="table2", experiment="table2-e2e_prefix",
                     config={"model": {"name": "smollm2_135m"}, "method": {"name": "prefix"}, "seed": 1},
                     status="finished", finished_at="2026-12-07T00:00:00Z",
                     notes=["trained 100 optimiser steps on 2000 of 42061 training pairs (batch 10 x accumulation 1)",
                            "scored 100 of 630 test sources and 0 of 547 dev sources"],
                     timing={"train_s": 120.0, "decode_s": 60.0})
    write_record(done, root=tmp_path)
    missing = budget.plan(["table2/e2e_prefix"], "conv", [1, 2, 3], tmp_path)
    assert [m["seed"] for m in missing] == [2, 3] and missing[0]["method"] == "prefix"
    secs, unknown = budget.estimate(missing, "conv", tmp_path)
    # the cap x 1.2 s plus one evaluation of 20 batches (200 dev pairs) per 50 steps at a third of a step, plus
    # 630 sources x 0.6 s; the cap is read from conf/scale/conv.yaml (it moves as the protocol learns): the hard
    # cap scale.plateau_max_steps, an upper bound (a run on a plateau by scale.max_steps stops there)
    cap = int(budget.scale_keys("conv")["plateau_max_steps"])
    assert unknown == [] and math.isclose(secs, 2 * ((cap + cap // 50 * 20 / 3) * 1.2 + 630 * 0.6))
    sel = budget.plan(["table2/e2e_prefix"], "conv_select", [1], tmp_path, ["scale.lr_scale=3"])
    assert sel[0]["run_id"].startswith("table2-e2e_prefix__conv_select__s1__o")
    # a finished record that reached scale.max_steps without a dev-loss plateau is missing under the higher cap
    done.metrics = {"train/plateau": 0.0, "train/steps": 3000.0}
    write_record(done, root=tmp_path)
    assert [m["seed"] for m in budget.plan(["table2/e2e_prefix"], "conv", [1, 2, 3], tmp_path)] == [1, 2, 3]
    done.metrics = {"train/plateau": 1.0, "train/steps": 3000.0}
    # a resumed run: train_s timed only the last process's steps (timing.train_timed_steps), so s/step uses those
    done.timing = {"train_s": 120.0, "decode_s": 60.0, "train_timed_steps": 50}
    write_record(done, root=tmp_path)
    assert math.isclose(budget.rates(tmp_path)[("smollm2_135m", "prefix")]["step"], 120.0 / 50)


# --- end to end on a tiny model: a conv-like cell reads its chosen rate and records its plateau -----------

@pytest.mark.integration
def test_a_cell_under_the_protocol_records_its_rate_choice_and_its_plateau(tmp_path):
    if not (paths.data_dir() / "e2e").is_dir() or shutil.which("java") is None:
        pytest.skip("needs the prepared E2E data (`make setup`) and Java")
    import prefixtune.train

    root = tmp_path / "results"
    for f, loss in zip(GRID, (2.0, 1.5, 1.7)):
        write_record(_select_record("table2-e2e_prefix", f, loss, group="conv_test"), root=root)
    lrselect.write(root, "conv_select", GRID)
    group = f"test_conv_{id(root)}"
    overrides = ["scale=tiny", "logger.mode=disabled", "experiment=table2/e2e_prefix", f"group={group}",
                 f"output_root={root}", "+scale.select=conv_select",
                 "scale.lr_scale='${lr_choice:${output_root},${scale.select},${experiment_name}}'",
                 "scale.max_steps=12", "trainer.eval_every=2", "trainer.save_every=2", "trainer.log_every=2",
                 "trainer.early_stopping_patience=2", "decode.max_new_tokens=12", "decode.num_beams=2",
                 "optim.scheduler=reduce_lr_on_plateau", "+optim.scheduler_kwargs={factor:0.5,patience:0}"]
    cfg = _compose(*overrides, base=())
    try:
        rec = prefixtune.train.run(cfg, overrides)
    finally:
        shutil.rmtree(paths.REPO_ROOT / "checkpoints" / group, ignore_errors=True)
    assert rec.status == "finished" and rec.config["scale"]["lr_scale"] == 3.0
    assert any("x3 chosen on dev loss (x1 2.0000, x3 1.5000, x10 1.7000)" in n for n in rec.notes), "\n".join(rec.notes)
    assert any(n.startswith("early stopping on the dev loss (evaluated every 2 steps, patience 2)") for n in rec.notes)
    assert {"train/plateau", "train/best_step", "train/steps", "train/stopped_early"} <= set(rec.metrics)
    assert rec.metrics["train/steps"] <= 12
    # conv's schedule (conf/scale/conv.yaml): the rate starts constant (a linear decay over 12 steps would be at
    # 5/6 of it by step 2) and only ever halves, at dev evaluations
    from prefixtune import curveplot, trainer

    assert any("ReduceLROnPlateau" in n for n in rec.notes), "\n".join(rec.notes)
    lr0 = trainer.effective_lr(cfg)
    lrs = [lr for _, _, lr in curveplot.load_curves(rec, root)["train"]]
    assert lrs[0] == pytest.approx(lr0)
    assert all(any(lr == pytest.approx(lr0 * 0.5 ** k) for k in range(8)) for lr in lrs)
    assert lrs == sorted(lrs, reverse=True)


# --- the tables of another scale and their loss curves ----------------------------------------------------

def test_a_table_of_another_scale_gets_its_own_files_and_a_curves_figure(tmp_path):
    from prefixtune import tables

    assert tables.output_stem("table2", "cpu") == "table2" and tables.output_stem("table2", None) == "table2"
    assert tables.output_stem("table2", "conv") == "table2_conv"
    root = tmp_path / "results"
    for seed in (1, 2):
        rid = f"table2-e2e_prefix__conv__s{seed}"
        curves = root / "predictions" / "table2" / rid / "curves.json"
        curves.parent.mkdir(parents=True)
        curves.write_text(json.dumps({"train": [[10, 5.0, 1e-3], [20, 4.0, 1e-3]], "dev": [[10, 4.5], [20, 4.2]]}))
        rec = RunRecord(run_id=rid, group="table2", experiment="table2-e2e_prefix", status="finished",
                        finished_at="2026-12-07T00:00:00Z",
                        config={"experiment_name": "table2-e2e_prefix", "seed": seed, "row": "prefix",
                                "data": {"name": "e2e"}, "method": {"name": "prefix"},
                                "model": {"name": "smollm2_135m", "label": "SmolLM2-135M"},
                                "scale": {"name": "conv", "label": "conv"}},
                        outputs={"curves": str(curves.relative_to(root))}, metrics={"test/bleu": 0.6 + seed / 100})
        write_record(rec, root=root)
    assert tables.main(["table2", "--scale", "conv", "--root", str(root), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert {"table2_conv.md", "table2_conv.csv", "table2_conv.tex"} <= {p.name for p in out.iterdir()}
    assert (out / "figures" / "table2_conv_curves.png").stat().st_size > 1000
    assert "figures/table2_conv_curves.png" in (out / "table2_conv.md").read_text()
    assert not (out / "table2.md").exists()
