"""Training past scale.max_steps until the dev loss is on a plateau (scale.plateau_max_steps, conf/scale/conv.yaml).

The rule must (1) change nothing before scale.max_steps -- the runs made under a hard cap there stand only if the
extended config is the same computation up to it -- (2) stop at the first evaluation from scale.max_steps on that
meets conf/health.yaml's plateau rule, and (3) train a failed (unconverged) record again instead of skipping it.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from conftest import _compose, _tiny_method
from prefixtune import health
from prefixtune.results import RunRecord, extendable
from prefixtune.trainer import PlateauStop, plateau_from, step_cap

SOURCES = ["name : Aromi | food : Chinese", "name : Blue Spice | area : riverside", "name : Zizzi | eatType : pub",
           "name : Alimentum | area : city centre", "name : Cotto | food : Italian", "name : The Punter | eatType : pub"]
TARGETS = ["Aromi serves Chinese food .", "Blue Spice is by the riverside .", "Zizzi is a pub .",
           "Alimentum is in the city centre .", "Cotto serves Italian food .", "The Punter is a pub ."]


def _fit(tmp_path, name: str, *extra: str) -> dict:
    from prefixtune.data.collate import Encoder
    from prefixtune.trainer import fit

    bb, m, cfg = _tiny_method("gpt2", "method=prefix", "optim=plateau", "optim.lr=0.01",
                              "optim.warmup_steps=0",
                              "trainer.max_steps=null", "scale.max_steps=6", "trainer.log_every=2",
                              "trainer.save_every=2", "trainer.eval_every=2", "trainer.batch_size=2",
                              "trainer.early_stopping_patience=2", *extra)
    enc = Encoder(bb, m.extra_source_tokens(), 64, 64)
    feats = enc.train_features(SOURCES, TARGETS)
    summary = fit(m, feats, feats[:4], cfg, tmp_path / name, report_to=[])
    summary["cfg"] = cfg
    return summary


def test_the_extension_is_the_same_computation_up_to_the_soft_cap_and_trains_on_while_the_loss_falls(tmp_path):
    capped = _fit(tmp_path, "capped")
    extended = _fit(tmp_path, "extended", "+scale.plateau_max_steps=12")
    assert (step_cap(capped["cfg"]), plateau_from(capped["cfg"])) == (6, None)
    assert (step_cap(extended["cfg"]), plateau_from(extended["cfg"])) == (12, 6)

    def upto(summary, n):
        return [(h["step"], h.get("loss"), h.get("eval_loss")) for h in summary["log_history"]
                if h.get("step", 0) <= n and ("loss" in h or "eval_loss" in h)]
    assert capped["global_step"] == 6
    assert upto(extended, 6) == upto(capped, 6)  # bit for bit: same data order, same schedule, same dev losses
    dev = [[h["step"], h["eval_loss"]] for h in extended["log_history"] if "eval_loss" in h]
    # the tiny model's dev loss falls fast at this rate: no plateau, so it trains on to the hard cap
    assert health.convergence(dev[:3], 6, None, 2)["train/plateau"] == 0.0
    assert extended["global_step"] == 12


def _state(step: int, losses: list[float]) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, log_history=[{"step": 50 * (i + 1), "eval_loss": v}
                                                          for i, v in enumerate(losses)])


def test_plateau_stop_waits_for_the_soft_cap_then_stops_at_the_first_plateau():
    cb = PlateauStop(start=200, patience=2)
    flat = [3.0, 2.0, 2.0, 2.0]  # on a plateau from the 4th evaluation (step 200) on
    control = SimpleNamespace(should_training_stop=False)
    cb.on_evaluate(None, _state(150, flat[:3]), control)
    assert not control.should_training_stop  # a plateau before the soft cap is early stopping's business
    cb.on_evaluate(None, _state(200, flat), control)
    assert control.should_training_stop
    falling = [3.0, 2.5, 2.0, 1.5]
    control = SimpleNamespace(should_training_stop=False)
    cb.on_evaluate(None, _state(200, falling), control)
    assert not control.should_training_stop


def test_plateau_max_steps_needs_a_soft_cap_below_it_and_early_stopping():
    base = ["experiment=table2/e2e_prefix", "scale=conv", "scale.lr_scale=1.0"]
    with pytest.raises(ValueError, match="scale.plateau_max_steps=2000 must be >= scale.max_steps=3000"):
        plateau_from(_compose(*base, "scale.plateau_max_steps=2000"))
    with pytest.raises(ValueError, match="optim.scheduler=linear"):
        plateau_from(_compose(*base, "optim=adamw"))
    with pytest.raises(ValueError, match="trainer.early_stopping_patience"):
        plateau_from(_compose(*base, "trainer.early_stopping_patience=null"))
    # a low-data cell's own step count ends it before the soft cap: no extension
    assert plateau_from(_compose("experiment=fig3/e2e_prefix_100", "scale=conv", "scale.lr_scale=1.0")) is None
    assert plateau_from(_compose(*base)) == 3000 and step_cap(_compose(*base)) == 4500


def _rec(plateau: float, steps: float) -> RunRecord:
    return RunRecord(run_id="table2-e2e_finetune__conv__s1", group="table2", experiment="table2-e2e_finetune",
                     status="finished", config={}, metrics={"train/plateau": plateau, "train/steps": steps})


def test_a_failed_unconverged_record_is_trained_again_under_a_higher_cap_and_nothing_else_is():
    assert extendable(_rec(0.0, 3000), 4500)       # failed at the old cap: train it again
    assert not extendable(_rec(1.0, 3000), 4500)   # on a plateau at 3,000: the same computation, done
    assert not extendable(_rec(0.0, 4500), 4500)   # failed at the hard cap itself: stays failed
    assert not extendable(_rec(0.0, 3000), None)   # no extension configured
    assert not extendable(RunRecord(run_id="x", group="g", experiment="x", status="finished", config={}), 4500)


@pytest.mark.integration
def test_a_failed_record_is_trained_again_past_the_soft_cap_and_a_converged_one_is_not(tmp_path):
    """Through the entry point: a tiny cell that reaches scale.max_steps still improving is a failed record; the
    same cell with scale.plateau_max_steps above it is the same config hash, yet is run again and trains on."""
    import shutil

    import prefixtune.train
    from prefixtune import paths

    if not (paths.data_dir() / "e2e").is_dir() or shutil.which("java") is None:
        pytest.skip("needs the prepared E2E data (`make setup`) and Java")
    root, group = tmp_path / "results", f"test_plateau_{id(tmp_path)}"
    base = ["scale=tiny", "logger.mode=disabled", "experiment=table2/e2e_prefix", f"group={group}",
            f"output_root={root}", "scale.lr_scale=30", "scale.max_steps=6", "trainer.eval_every=2",
            "trainer.save_every=2", "trainer.log_every=2", "trainer.early_stopping_patience=2",
            "decode.max_new_tokens=8", "decode.num_beams=1", "optim=plateau", "isolate=false"]
    try:
        first = prefixtune.train.run(_compose(*base, base=()), base)
        assert first.metrics["train/steps"] == 6 and first.metrics["train/plateau"] == 0.0  # failed at the cap
        again = base + ["+scale.plateau_max_steps=10"]
        second = prefixtune.train.run(_compose(*again, base=()), again)
        assert second.config_hash == first.config_hash  # the key is outside the hash (results.VOLATILE_KEYS)
        assert second.finished_at != first.finished_at and second.metrics["train/steps"] > 6
        assert any("from step 6 on at the first evaluation on a plateau" in n for n in second.notes), second.notes
        # done now: trained to the hard cap (failed there) or stopped on a plateau -- either way not run a third time
        third = prefixtune.train.run(_compose(*again, base=()), again)
        assert third.finished_at == second.finished_at
    finally:
        shutil.rmtree(paths.REPO_ROOT / "checkpoints" / group, ignore_errors=True)
