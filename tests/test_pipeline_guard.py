"""Finished work is never overwritten or resumed by accident (pipeline._guard_finished, _checkpoint_dir).

The case that motivated it: a clone at another path hashed every cell differently (the model path was part of
the hash), retrained the committed cells and overwrote their finished records.
"""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from prefixtune import paths, pipeline, results
from prefixtune.results import RunRecord

CFG = {"seed": 1, "group": "table2", "model": {"name": "tiny_gpt2", "path": "/a/models/tiny"},
       "optim": {"lr": 5e-5}, "scale": {"name": "cpu", "max_dev_decode_groups": 20}}
RID = "table2-e2e_prefix__cpu__s1"


def _cfg(force: bool = False):
    return OmegaConf.create({"group": "table2", "force": force})


def _write(tmp_path, config, status="finished"):
    rec = RunRecord(run_id=RID, group="table2", experiment="table2/e2e_prefix", config=config)
    rec = rec.finish({"test/bleu": 0.6}) if status == "finished" else rec.fail("oom") if status == "failed" else rec
    return results.write_record(rec, tmp_path)


def test_finished_record_of_another_config_is_not_overwritten(tmp_path):
    path = _write(tmp_path, CFG)
    before = path.read_text()
    new = {**CFG, "optim": {"lr": 1e-4}, "scale": {"name": "cpu", "max_dev_decode_groups": 0}}
    with pytest.raises(RuntimeError) as err:
        pipeline._guard_finished(_cfg(), RID, results.config_hash(new), new, tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "force=true" in msg
    assert "optim.lr: 5e-05 -> 0.0001" in msg and "scale.max_dev_decode_groups: 20 -> 0" in msg
    assert "model.path" not in msg
    assert path.read_text() == before


@pytest.mark.parametrize("config, status, force", [
    ({**CFG, "model": {"name": "tiny_gpt2", "path": "/elsewhere/models/tiny"}}, "finished", False),  # same cell
    ({**CFG, "optim": {"lr": 1e-4}}, "failed", False),   # nothing finished to lose
    ({**CFG, "optim": {"lr": 1e-4}}, "running", False),  # an interrupted run
    ({**CFG, "optim": {"lr": 1e-4}}, "finished", True),  # the user asked to replace it
])
def test_guard_lets_the_run_proceed(tmp_path, config, status, force):
    _write(tmp_path, CFG, status)
    pipeline._guard_finished(_cfg(force), RID, results.config_hash(config), config, tmp_path)


def test_checkpoints_of_another_config_are_removed_not_resumed(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)
    ckpt = pipeline._checkpoint_dir("g", RID, "aaaaaaaaaaaaaaaa")
    (ckpt / "checkpoint-4").mkdir()
    assert (pipeline._checkpoint_dir("g", RID, "aaaaaaaaaaaaaaaa") / "checkpoint-4").is_dir()  # same: resume
    again = pipeline._checkpoint_dir("g", RID, "bbbbbbbbbbbbbbbb")
    assert again == ckpt and not (ckpt / "checkpoint-4").exists()
    assert (ckpt / "config_hash").read_text().strip() == "bbbbbbbbbbbbbbbb"
    unmarked = tmp_path / "checkpoints" / "g" / "other"
    (unmarked / "checkpoint-2").mkdir(parents=True)  # written before the marker existed: provenance unknown
    assert not (pipeline._checkpoint_dir("g", "other", "cccccccccccccccc") / "checkpoint-2").exists()


def test_a_precision_difference_says_how_to_reproduce_the_record(tmp_path):
    """A bf16 record met on a machine without native bf16 (the cpu scale resolves ${native_bf16:} per machine),
    by a config that also changed otherwise (precision alone is reused: the next test)."""
    old = {**CFG, "trainer": {"bf16": True}, "decode": {"bf16": True}}
    _write(tmp_path, old)
    new = {**CFG, "trainer": {"bf16": False}, "decode": {"bf16": False}, "optim": {"lr": 1e-4}}
    with pytest.raises(RuntimeError, match="trainer.bf16: True -> False.*PREFIXTUNE_BF16=1"):
        pipeline._guard_finished(_cfg(), RID, results.config_hash(new), new, tmp_path)


def test_a_cell_finished_in_the_other_precision_is_reused_not_refused(tmp_path):
    old = {**CFG, "trainer": {"bf16": True}, "decode": {"bf16": True}}
    _write(tmp_path, old)
    cfg = OmegaConf.create({"group": "table2", "force": False})
    same_but_fp32 = {**CFG, "trainer": {"bf16": False}, "decode": {"bf16": False}}
    twin = pipeline._guard_finished(cfg, RID, results.config_hash(same_but_fp32), same_but_fp32, tmp_path)
    assert twin is not None and twin.config["trainer"]["bf16"] is True
    also_lr = {**same_but_fp32, "optim": {"lr": 1e-4}}
    with pytest.raises(RuntimeError, match="optim.lr"):  # a real config change is not a twin: refused
        pipeline._guard_finished(cfg, RID, results.config_hash(also_lr), also_lr, tmp_path)
    assert pipeline._guard_finished(cfg, RID, results.config_hash(old), old, tmp_path) is None  # identical


def test_run_skips_a_finished_twin_of_another_precision(compose_cfg, tmp_path, monkeypatch):
    """End to end through pipeline.run: a record that differs only in bf16 is returned, nothing is trained."""
    from omegaconf import OmegaConf as OC

    cfg = compose_cfg("experiment=table2/e2e_prefix", f"output_root={tmp_path}")
    resolved = OC.to_container(cfg, resolve=True)
    resolved.pop("output_root")
    resolved["trainer"]["bf16"] = not resolved["trainer"]["bf16"]
    rid = results.run_id(cfg.experiment_name, cfg.scale.name, int(cfg.seed))
    rec = RunRecord(run_id=rid, group=cfg.group, experiment=cfg.experiment_name, config=resolved,
                    config_hash=results.config_hash(resolved)).finish({"test/bleu": 0.123})
    results.write_record(rec, tmp_path)
    monkeypatch.setattr(pipeline, "_run_isolated", lambda *a, **k: pytest.fail("the twin must not be recomputed"))
    got = pipeline.run(cfg, [], isolate=True)
    assert got.metrics["test/bleu"] == 0.123
    cfg.force = True  # force recomputes (here: would launch the isolated child)
    with pytest.raises(pytest.fail.Exception):
        pipeline.run(cfg, [], isolate=True)
