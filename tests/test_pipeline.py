"""End to end on tiny random GPT-2 + real E2E data: record, predictions, artefact, skip-if-done, kill-and-resume.

Needs the prepared E2E data (`make setup`) and Java (the official E2E scorer's METEOR); skipped cleanly without.
Every run writes under a temporary `output_root`; checkpoints go to REPO_ROOT/checkpoints/<group>/<run_id>/, so
each test uses its own group name (with the process id, as other sessions may share the checkout) and removes it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import _compose
from prefixtune import paths

pytestmark = pytest.mark.integration

TAG = os.getpid()
# a short run that still saves checkpoints before it ends: 16 pairs, batch 5 -> 4 steps/epoch, 12 steps
RUN_OVERRIDES = ["scale=tiny", "logger.mode=disabled", "data=e2e", "method=prefix", "method.length=5",
                 "scale.max_steps=null", "trainer.max_steps=12", "trainer.save_every=2", "trainer.log_every=2",
                 "optim.lr=1e-3", "decode.max_new_tokens=20", "decode.num_beams=3"]
METRICS = ("test/bleu", "test/nist", "test/meteor", "test/rouge_l", "test/cider", "dev/bleu", "train/loss")


def _need_data_and_java():
    if not (paths.data_dir() / "e2e").is_dir():
        pytest.skip(f"E2E data not prepared in {paths.data_dir() / 'e2e'} (run `make setup`)")
    if shutil.which("java") is None:
        pytest.skip("Java is needed by the official E2E scorer (METEOR)")


def _overrides(group: str, root: Path) -> list[str]:
    return [*RUN_OVERRIDES, f"group={group}", f"output_root={root}"]


def _ckpt_group(group: str) -> Path:
    return paths.REPO_ROOT / "checkpoints" / group


def _resolve(root: Path, rel: str) -> Path:
    for base in (paths.REPO_ROOT, root.parent, root):
        if (base / rel).exists():
            return base / rel
    raise FileNotFoundError(rel)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One uninterrupted in-process run (the reference for the other tests)."""
    _need_data_and_java()
    import prefixtune.train

    group = f"test_pipeline_a_{TAG}"
    root = tmp_path_factory.mktemp("run_a") / "results"
    overrides = _overrides(group, root)
    cfg = _compose(*overrides, base=())
    try:
        rec = prefixtune.train.run(cfg, overrides)
        yield rec, cfg, overrides, root
    finally:
        shutil.rmtree(_ckpt_group(group), ignore_errors=True)


def test_run_writes_a_finished_record(first_run):
    from prefixtune.results import read_record, record_path

    rec, cfg, _, root = first_run
    assert rec.status == "finished"
    for m in METRICS:
        assert m in rec.metrics and rec.metrics[m] is not None, m
    on_disk = read_record(record_path(rec.group, rec.run_id, root=root))
    assert on_disk.status == "finished" and on_disk.config_hash == rec.config_hash
    assert on_disk.metrics == rec.metrics
    assert rec.params["stored"] == 5 * 2 * 2 * 64  # tiny GPT-2: L x n_layer x 2 x d
    n_test = int(cfg.scale.max_decode_groups)
    for split in ("dev", "test"):
        lines = _resolve(root, rec.outputs[f"{split}_predictions"]).read_text().splitlines()
        assert len(lines) == n_test and all(line.strip() for line in lines)
        # decode health, measured at decode time from the generated ids (prefixtune.health)
        for key in ("no_eos", "len_ratio", "copy", "empty"):
            value = rec.metrics[f"{split}/health/{key}"]
            assert value >= 0.0 and (key == "len_ratio" or value <= 1.0), (split, key, value)
    assert not (_ckpt_group(rec.group) / rec.run_id).exists(), "checkpoints are removed once the run finished"


def test_the_record_keeps_its_loss_curves(first_run):
    """Every logging window's train loss (12 steps, logging every 2) and its learning rate: convergence is read
    from the record's curves file, and the last window is the record's train/loss_final."""
    rec, *_ , root = first_run
    curves = json.loads(_resolve(root, rec.outputs["curves"]).read_text())
    assert [c[0] for c in curves["train"]] == [2, 4, 6, 8, 10, 12]
    assert curves["train"][-1][1] == pytest.approx(rec.metrics["train/loss_final"])
    assert all(c[2] >= 0 for c in curves["train"]) and isinstance(curves["dev"], list)


def test_resumed_run_keeps_the_whole_curve(first_run, killed_and_resumed):
    ref, _, _, ref_root = first_run
    rec, root = killed_and_resumed
    a = json.loads(_resolve(root, rec["outputs"]["curves"]).read_text())
    b = json.loads(_resolve(ref_root, ref.outputs["curves"]).read_text())
    assert [c[0] for c in a["train"]] == [c[0] for c in b["train"]]
    assert [c[1] for c in a["train"]] == pytest.approx([c[1] for c in b["train"]], rel=1e-6)


def test_artifact_reloads_and_decodes_identically(first_run):
    from safetensors.torch import load_file

    from prefixtune import pipeline
    from prefixtune.data.collate import Encoder
    from prefixtune.decode import decode

    rec, cfg, _, root = first_run
    art = _resolve(root, rec.outputs["artifact"])
    tensors = load_file(str(art / "weights.safetensors"))
    assert set(tensors) == {"prefix.self"} and tensors["prefix.self"].shape == (2, 2, 4, 5, 16)
    bb, method = pipeline.load_artifact(art)
    test_groups = pipeline._load_data(cfg)[3]  # (train, dev, dev_groups, test_groups, ...)
    enc = Encoder(bb, method.extra_source_tokens(), int(cfg.data.max_source_tokens), int(cfg.data.max_target_tokens))
    again = decode(method, enc, [g.source for _, g in test_groups], cfg.decode)
    written = _resolve(root, rec.outputs["test_predictions"]).read_text().splitlines()
    assert again == written


def test_second_run_is_skipped(first_run, monkeypatch):
    import prefixtune.train
    from prefixtune import trainer

    rec, cfg, overrides, root = first_run

    def no_training(*a, **k):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(trainer, "fit", no_training)
    again = prefixtune.train.run(cfg, overrides)
    assert again.run_id == rec.run_id and again.status == "finished"
    assert again.finished_at == rec.finished_at and again.metrics == rec.metrics
    assert len(list((root / "runs" / rec.group).glob("*.json"))) == 1


# ---- kill and resume ----------------------------------------------------------------------------------------

def _cli(group: str, root: Path, hydra_dir: Path) -> list[str]:
    return [sys.executable, "-m", "prefixtune.train", *_overrides(group, root), f"hydra.run.dir={hydra_dir}"]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def _record(root: Path, group: str) -> dict:
    files = list((root / "runs" / group).glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


@pytest.fixture(scope="module")
def killed_and_resumed(first_run, tmp_path_factory):
    """The same command as `first_run`, SIGKILLed after checkpoint-4 is complete, then rerun to the end."""
    group = f"test_resume_b_{TAG}"
    tmp = tmp_path_factory.mktemp("run_b")
    root = tmp / "results"
    log = tmp / "killed.log"
    try:
        with open(log, "w") as out:
            proc = subprocess.Popen(_cli(group, root, tmp / "hydra1"), cwd=paths.REPO_ROOT, env=_env(),
                                    stdout=out, stderr=subprocess.STDOUT)
            deadline = time.time() + 300
            ckpt = None
            while time.time() < deadline and proc.poll() is None:
                found = list(_ckpt_group(group).glob("*/checkpoint-4/trainer_state.json"))  # written last
                if found:
                    ckpt = found[0].parent
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no clean-up handlers run, like a pre-empted job
            proc.wait(timeout=60)
        assert ckpt is not None, f"never saw checkpoint-4 (rc={proc.returncode}):\n{log.read_text()[-3000:]}"
        killed = _record(root, group)
        assert killed["status"] == "running", "the run finished before it could be killed; the test is void"
        assert not killed.get("metrics")

        resumed = subprocess.run(_cli(group, root, tmp / "hydra2"), cwd=paths.REPO_ROOT, env=_env(),
                                 capture_output=True, text=True, timeout=600)
        output = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, f"the rerun after the kill failed:\n{output[-4000:]}"
        assert "resuming from" in output, "the rerun did not resume from a checkpoint"
        yield _record(root, group), root
    finally:
        shutil.rmtree(_ckpt_group(group), ignore_errors=True)


def test_resumed_run_gives_identical_predictions_scores_and_prefix(first_run, killed_and_resumed):
    from safetensors.torch import load_file

    ref, _, _, ref_root = first_run
    rec, root = killed_and_resumed
    assert rec["status"] == "finished"
    for split in ("dev", "test"):
        ours = _resolve(root, rec["outputs"][f"{split}_predictions"]).read_text()
        theirs = _resolve(ref_root, ref.outputs[f"{split}_predictions"]).read_text()
        assert ours == theirs, split
    a = load_file(str(_resolve(root, rec["outputs"]["artifact"]) / "weights.safetensors"))
    b = load_file(str(_resolve(ref_root, ref.outputs["artifact"]) / "weights.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), "the resumed prefix differs"
    scores = {k: v for k, v in ref.metrics.items() if k.startswith(("dev/", "test/"))}
    assert {k: rec["metrics"].get(k) for k in scores} == scores


def test_resumed_run_reports_the_same_train_loss(first_run, killed_and_resumed):
    """`train/loss` must describe the whole run, not only the steps after the last restart."""
    ref, *_ = first_run
    rec, _ = killed_and_resumed
    assert rec["metrics"]["train/loss"] == pytest.approx(ref.metrics["train/loss"], rel=1e-6)
    assert rec["metrics"]["train/loss_final"] == pytest.approx(ref.metrics["train/loss_final"], rel=1e-6)


def test_the_record_says_when_the_warmup_covers_the_whole_capped_run():
    """Low-data cells warm up for 100 steps (§2.5); the cpu scale caps them at 100 steps, so the record must say
    the rate peaks only at the end. Table 2 cells have no warmup and get no such note."""
    from prefixtune.pipeline import _warmup_note

    low = _compose("experiment=fig3/e2e_prefix_100", "scale=cpu")
    assert int(low.optim.warmup_steps) == 100
    assert _warmup_note(low, 100) == (", linear schedule after 100 warmup steps (warmup covers all 100 steps run: "
                                      "the peak rate is reached only at the end)")
    assert _warmup_note(low, 400) == ", linear schedule after 100 warmup steps"
    assert _warmup_note(_compose("experiment=table2/e2e_prefix", "scale=cpu"), 100) == ""


def test_the_conv_scale_caps_the_low_data_warmup_at_half_the_run_and_leaves_other_cells_alone(tmp_path):
    """Issue #22: under conv, ACL Table 8's 100-step FT runs (sizes 50/100) would be all warmup; the warmup is
    the paper's 100 steps but at most scale.lowdata_warmup_share of the run. The cpu scale's configs, and so its
    records' identities, do not change."""
    from prefixtune.pipeline import _warmup_note
    from prefixtune.results import config_hash
    from omegaconf import OmegaConf

    def conv(exp, *extra):
        return _compose(f"experiment={exp}", "scale=conv", "scale.lr_scale=1.0", f"output_root={tmp_path}", *extra,
                        base=())

    ft, prefix, big = conv("fig3/e2e_finetune_100"), conv("fig3/e2e_prefix_100"), conv("fig3/e2e_finetune_500")
    assert (int(ft.optim.warmup_steps), int(prefix.optim.warmup_steps), int(big.optim.warmup_steps)) == (50, 100, 100)
    # the low-data cells keep the paper's linear schedule under conv (their optim group beats the scale's); the
    # note names the capped warmup
    assert _warmup_note(ft, 100) == (
        ", linear schedule after 50 warmup steps, at most 0.5 of the run: scale.lowdata_warmup_share")
    assert int(conv("table2/e2e_prefix").optim.warmup_steps) == 0
    cpu = _compose("experiment=fig3/e2e_finetune_100", "scale=cpu")
    assert int(cpu.optim.warmup_steps) == 100 and "lowdata_warmup_share" not in cpu.scale
    # the share is volatile in the hash: the value that matters is hashed where it lands (optim.warmup_steps)
    a, b = (OmegaConf.to_container(c, resolve=True) for c in (ft, conv("fig3/e2e_finetune_100")))
    b["scale"]["lowdata_warmup_share"] = 0.25
    assert config_hash(a) == config_hash(b)
    with pytest.raises(ValueError, match="lowdata_warmup_share must be in"):
        from prefixtune.trainer import warmup_within
        warmup_within(100, 1.5, 100)
    # the plateau schedule forced onto a low-data cell would drop that warmup silently (HF's ReduceLROnPlateau has
    # none): refused, by key
    from prefixtune.trainer import training_arguments
    with pytest.raises(ValueError, match="optim.scheduler=reduce_lr_on_plateau ignores optim.warmup_steps=50"):
        training_arguments(conv("fig3/e2e_finetune_100", "optim.scheduler=reduce_lr_on_plateau"), tmp_path / "out",
                           [], 100)
    assert training_arguments(conv("table2/e2e_prefix"), tmp_path / "out", [], 100).lr_scheduler_type.value == \
        "reduce_lr_on_plateau"


def test_low_data_cells_keep_the_papers_schedule_and_cadence_under_the_conv_scales(tmp_path):
    """Issue #22: conv's full-data settings (plateau schedule, dev loss every 50 steps, patience 6) are trainer and
    optim *groups*, so the low-data experiments' own groups (ACL Table 8's protocol: linear decay after a warmup,
    dev loss every 20 steps, patience 3) win under conv and conv_select; full-data cells get conv's."""
    def compose(exp, scale):
        return _compose(f"experiment={exp}", f"scale={scale}", "scale.lr_scale=1.0", f"output_root={tmp_path}",
                        base=())

    for scale in ("conv", "conv_select"):
        low = compose("fig3/e2e_prefix_100", scale)
        assert (low.optim.scheduler, int(low.trainer.eval_every), int(low.trainer.save_every),
                low.trainer.early_stopping_patience, int(low.optim.warmup_steps)) == ("linear", 20, 20, 3, 100), scale
        assert "scheduler_kwargs" not in low.optim
    full = compose("table2/e2e_prefix", "conv")
    assert (full.optim.scheduler, dict(full.optim.scheduler_kwargs), int(full.trainer.eval_every),
            int(full.trainer.save_every), full.trainer.early_stopping_patience) == (
        "reduce_lr_on_plateau", {"factor": 0.5, "patience": 1}, 50, 50, 6)
    sel = compose("table2/e2e_prefix", "conv_select")
    assert (sel.optim.scheduler, int(sel.trainer.eval_every), sel.trainer.early_stopping_patience) == (
        "linear", 50, None)


def test_a_low_data_record_names_its_subset_and_the_split_it_was_drawn_from():
    from prefixtune.pipeline import _training_note

    low = _compose("experiment=fig3/e2e_prefix_50", "scale=cpu", "data.lowdata.subset=3")
    assert _training_note(low, 100, 50, 15, 42061) == (
        "trained 100 optimiser steps on 50 of 42061 training pairs (batch 10 x accumulation 1); low-data subset 3 "
        "of size 50, 15 dev pairs for early stopping (results/lowdata_splits/)")
    full = _compose("experiment=table2/e2e_prefix", "scale=cpu")
    assert _training_note(full, 100, 2000, 200, 42061) == ("trained 100 optimiser steps on 2000 of 42061 training "
                                                           "pairs (batch 10 x accumulation 1)")
