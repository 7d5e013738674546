"""Every method trains through the one shared trainer on tiny random models (design.md "Methods").

Per (method variant, tiny model) one short `prefixtune.trainer.fit` run on a tiny repeated set (4 pairs, batch 4:
every step sees the same examples, so the loss curve is free of sampling noise) is cached and checked for:
  * learning: mean of the first 3 logged losses vs the last 3 drops by at least the variant's bound;
  * parameter efficiency: every backbone weight and buffer is bit-for-bit unchanged (torch.equal), and exactly
    the method's trainable parameters changed;
  * checkpoints: the saved `model.safetensors` holds only the trained tensors and restores the method exactly;
    a fit that dies after checkpoint-4 and is rerun resumes through the HF Trainer to the same final tensors.
A control with lr=0 shows the loss does not fall without learning: for the frozen-LM methods (eval mode, no
dropout) every logged loss is identical up to float32 rounding (~1e-7 relative; the shuffled order changes the
summation order), so the noise floor is ~0; for fine-tuning (dropout on) the first-3/last-3 noise is ~0.13%.

Measured drops (first-3 mean vs last-3 mean, 8 steps, torch 2.13 CPU; bounds are about half of these):
    variant               gpt2    llama   bart      lr
    prefix                3.0%    2.2%    1.3%      3e-2
    prefix_reparam_none   1.4%    1.3%    1.6%      1e-1 (bart: 1.0; at 1e-1 it drops 0.3%)
    prefix_init_words     2.3%    2.0%    n/a       3e-2
    infix                 3.1%    2.2%    n/a       3e-2
    embedding_only        0.4%    0.6%    n/a       3e-2   (least expressive, as in the paper §7.2)
    finetune             29.3%   26.0%   35.0%      1e-2
    finetune_top2        29.3%    5.1%   35.1%      1e-2   (tiny llama's untied LM head stays frozen)
    adapter_3pct          5.9%    6.1%   23.2%      1e-2
    adapter_0.1pct        4.2%    5.2%    1.7%      1e-2
A frozen random 2-layer model can only be steered so far by a prefix, hence the small but exactly reproducible
drops of the prefix family; the lr=0 control is what shows they are learning and not noise (each bound is >= 10^3
times the frozen-LM noise floor, and the fine-tuning bounds are ~20 times or more their dropout noise).
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from conftest import _tiny_method

STEPS = 8
SOURCES = ["name[Eagle], food[French]", "name[Cotto], area[riverside]", "name[Zizzi], price[cheap]",
           "name[Wok], type[pub]"]
TARGETS = ["Eagle serves French food.", "Cotto is by the river.", "Zizzi is cheap.", "Wok is a pub."]


@dataclass(frozen=True)
class Variant:
    overrides: tuple[str, ...]
    lr: float | dict  # a float, or model -> lr
    min_drop: dict  # model -> minimum relative drop (first-3 mean vs last-3 mean); a model absent = unsupported
    peft: bool = True  # parameter-efficient: the backbone must not change


VARIANTS = {
    "prefix": Variant(("method=prefix",), 3e-2, {"gpt2": 0.015, "llama": 0.01, "bart": 0.006}),
    "prefix_reparam_none": Variant(("method=prefix", "method.reparam=none"), {"gpt2": 1e-1, "llama": 1e-1, "bart": 1.0},
                                   {"gpt2": 0.006, "llama": 0.006, "bart": 0.006}),
    "prefix_init_words": Variant(("method=prefix", "method.init.kind=words", "method.init.words=table-to-text:"),
                                 3e-2, {"gpt2": 0.01, "llama": 0.01}),
    "infix": Variant(("method=infix",), 3e-2, {"gpt2": 0.015, "llama": 0.01}),
    "embedding_only": Variant(("method=embedding_only",), 3e-2, {"gpt2": 0.002, "llama": 0.002}),
    "finetune": Variant(("method=finetune",), 1e-2, {"gpt2": 0.10, "llama": 0.10, "bart": 0.10}, peft=False),
    "finetune_top2": Variant(("method=finetune_top2",), 1e-2, {"gpt2": 0.10, "llama": 0.025, "bart": 0.10},
                             peft=False),
    "adapter_3pct": Variant(("method=adapter", "method.target_pct=3.0"), 1e-2,
                            {"gpt2": 0.025, "llama": 0.025, "bart": 0.10}),
    "adapter_0.1pct": Variant(("method=adapter", "method.target_pct=0.1"), 1e-2,
                              {"gpt2": 0.02, "llama": 0.02, "bart": 0.008}),
    # the unified-view siblings (methods/lora.py, parallel_adapter.py, combo.py); bounds ~half the measured drops
    # (lora 2.2/1.9/0.96%, prompt_tuning 0.35/0.63%, parallel 5.0/4.8/2.8%, mam 4.6/3.4/2.2%, unipelt 2.1/2.2/2.2%)
    "lora": Variant(("method=lora",), 1e-2, {"gpt2": 0.01, "llama": 0.01, "bart": 0.005}),
    "prompt_tuning": Variant(("method=prompt_tuning",), 1e-1, {"gpt2": 0.0015, "llama": 0.003}),
    "parallel_adapter": Variant(("method=parallel_adapter", "method.bottleneck=16"), 1e-2,
                                {"gpt2": 0.025, "llama": 0.025, "bart": 0.015}),
    "mam": Variant(("method=mam", "method.parts.prefix.length=5", "method.parts.parallel_adapter.bottleneck=16"),
                   1e-2, {"gpt2": 0.02, "llama": 0.015, "bart": 0.01}),
    "unipelt": Variant(("method=unipelt",), 1e-2, {"gpt2": 0.01, "llama": 0.01, "bart": 0.01}),
}

CELLS = [pytest.param(v, m, id=f"{v}-{m}") for v, spec in VARIANTS.items() for m in ("gpt2", "llama", "bart")
         if m in spec.min_drop]
PEFT_CELLS = [c for c in CELLS if VARIANTS[c.values[0]].peft]


def _overrides(variant: str, lr: float) -> list[str]:
    return [*VARIANTS[variant].overrides, f"optim.lr={lr}", f"trainer.max_steps={STEPS}",
            "scale.max_steps=null", "trainer.log_every=1", "trainer.batch_size=4", f"trainer.save_every={STEPS}",
            "optim.warmup_steps=0", "trainer.early_stopping_patience=null"]


def _build(variant: str, model: str, lr: float, *extra: str):
    return _tiny_method(model, *_overrides(variant, lr), *extra)


def lr_for(variant: str, model: str) -> float:
    lr = VARIANTS[variant].lr
    return lr[model] if isinstance(lr, dict) else lr


@dataclass
class Trained:
    losses: list[float]
    trainable: set[str]
    changed: set[str]
    frozen_changed: list[str]
    backbone_changed: list[str]
    ckpt_keys: set[str]
    ckpt_numel: int
    ckpt_matches_state: bool
    state_keys: set[str]
    n_trainable: int
    inside_model: tuple[str, ...] = ()
    reload_export_equal: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def drop(self) -> float:
        first, last = sum(self.losses[:3]) / 3, sum(self.losses[-3:]) / 3
        return (first - last) / first


@functools.lru_cache(maxsize=None)
def trained(variant: str, model: str, lr: float | None = None) -> Trained:
    from safetensors.torch import load_file

    from prefixtune.data.collate import Encoder
    from prefixtune.trainer import fit

    lr = lr_for(variant, model) if lr is None else lr
    bb, method, cfg = _build(variant, model, lr)
    named = dict(method.named_parameters())  # de-duplicated (tied weights appear once)
    before = {n: p.detach().clone() for n, p in named.items()}
    buffers = {n: b.detach().clone() for n, b in method.model.named_buffers()}
    trainable = {n for n, p in named.items() if p.requires_grad}

    enc = Encoder(bb, method.extra_source_tokens(), 64, 64)
    feats = enc.train_features(SOURCES, TARGETS)
    with tempfile.TemporaryDirectory() as tmp:
        summary = fit(method, feats, [], cfg, Path(tmp) / "ckpt", report_to=[])
        ckpt = Path(tmp) / "ckpt" / f"checkpoint-{STEPS}" / "model.safetensors"
        assert ckpt.exists(), f"no checkpoint written at step {STEPS}: {list(ckpt.parent.parent.glob('*'))}"
        saved = load_file(str(ckpt))
    assert summary["global_step"] == STEPS
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert len(losses) == STEPS, summary["log_history"]

    after = dict(method.named_parameters())
    changed = {n for n in named if not torch.equal(before[n], after[n].detach())}
    backbone_changed = [n for n in named if n.startswith("model.") and n not in trainable and n in changed]
    backbone_changed += [f"buffer {n}" for n, b in method.model.named_buffers() if not torch.equal(buffers[n], b)]
    state = method.state_dict()
    res = Trained(
        losses=losses, trainable=trainable, changed=changed,
        frozen_changed=sorted(n for n in changed if n not in trainable),
        backbone_changed=backbone_changed, ckpt_keys=set(saved), ckpt_numel=sum(t.numel() for t in saved.values()),
        ckpt_matches_state=set(saved) == set(state) and all(torch.equal(saved[k], state[k]) for k in saved),
        state_keys=set(state), n_trainable=method.param_counts()["trainable"], inside_model=method.inside_model)
    if lr != 0.0:
        # a fresh method (new random init) restored from the checkpoint reproduces the trained method exactly
        fast_init = ("method.init.fit_steps=1",) if "method.init.kind=words" in VARIANTS[variant].overrides else ()
        _, fresh, _ = _build(variant, model, lr, *fast_init)
        fresh.load_state_dict(saved)
        a, b = method.export(), fresh.export()
        res.reload_export_equal = set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    return res


def _registry_name(method_file: str) -> str:
    """`name:` of conf/method/<file>.yaml, following its `defaults:` parent (infix -> prefix)."""
    from omegaconf import OmegaConf

    from prefixtune.paths import REPO_ROOT

    cfg = OmegaConf.load(REPO_ROOT / "conf" / "method" / f"{method_file}.yaml")
    if cfg.get("name"):
        return cfg.name
    return _registry_name(next(d for d in cfg.defaults if isinstance(d, str) and d != "_self_"))


def test_every_registered_method_is_exercised():
    from prefixtune.methods import adapter, combo, finetune, lora, parallel_adapter, prefix  # noqa: F401
    from prefixtune.methods.base import REGISTRY

    covered = {_registry_name(o.split("=", 1)[1]) for v in VARIANTS.values() for o in v.overrides
               if o.startswith("method=")}
    assert set(REGISTRY) <= covered, f"add a Variant for {sorted(set(REGISTRY) - covered)}"


@pytest.mark.parametrize(("variant", "model"), CELLS)
def test_loss_falls(variant, model):
    res = trained(variant, model)
    bound = VARIANTS[variant].min_drop[model]
    print(f"\n[loss-drop] {variant:20s} {model:6s} lr={lr_for(variant, model):g} first3={sum(res.losses[:3]) / 3:.4f} "
          f"last3={sum(res.losses[-3:]) / 3:.4f} drop={100 * res.drop:.2f}% (bound {100 * bound:.2f}%)")
    assert all(torch.isfinite(torch.tensor(res.losses)))
    assert res.drop >= bound, f"{variant} on {model}: losses {res.losses} dropped {res.drop:.2%} < {bound:.2%}"


@pytest.mark.parametrize(("variant", "model"), [
    pytest.param("prefix", "gpt2"), pytest.param("prefix", "llama"), pytest.param("prefix", "bart"),
    pytest.param("adapter_3pct", "gpt2"), pytest.param("finetune", "gpt2"), pytest.param("lora", "gpt2"),
    pytest.param("unipelt", "llama")])
def test_loss_does_not_fall_with_lr_zero(variant, model):
    res = trained(variant, model, 0.0)
    print(f"\n[lr=0 control] {variant:14s} {model:6s} drop={100 * res.drop:.3f}% losses={res.losses}")
    assert not res.changed, f"lr=0 changed {sorted(res.changed)[:5]}"
    if VARIANTS[variant].peft:
        # frozen LM in eval mode, the same 4 examples every step: only the summation order changes with the
        # shuffled order, so the loss is constant to float32 rounding (~1e-7 relative)
        spread = (max(res.losses) - min(res.losses)) / res.losses[0]
        assert spread < 1e-6, res.losses
    else:
        # dropout is on for fine-tuning: tiny noise, far below the 10% bound of test_loss_falls
        assert abs(res.drop) < 0.01, res.losses


@pytest.mark.parametrize(("variant", "model"), PEFT_CELLS)
def test_backbone_bit_for_bit_unchanged(variant, model):
    res = trained(variant, model)
    assert not res.backbone_changed, f"backbone tensors changed: {res.backbone_changed[:10]}"
    # trained tensors live outside the backbone, except the ones a method injects into it (PEFT's LoRA layers)
    inside = [n for n in res.trainable if n.startswith("model.") and not any(f in n for f in res.inside_model)]
    assert not inside, inside[:5]


@pytest.mark.parametrize(("variant", "model"), CELLS)
def test_only_trainable_parameters_change(variant, model):
    res = trained(variant, model)
    assert not res.frozen_changed, f"frozen parameters changed: {res.frozen_changed[:10]}"
    unchanged = sorted(res.trainable - res.changed)
    assert not unchanged, f"trainable parameters that never moved (no gradient?): {unchanged[:10]}"


@pytest.mark.parametrize(("variant", "model"), CELLS)
def test_checkpoint_holds_only_trained_tensors(variant, model):
    res = trained(variant, model)
    assert res.ckpt_matches_state, "checkpoint differs from Method.state_dict()"
    # every checkpoint tensor is a trainable parameter (or a method-owned buffer), never a frozen backbone weight
    assert res.ckpt_keys <= res.trainable | {k for k in res.ckpt_keys if not k.startswith("model.")}
    assert res.ckpt_numel == res.n_trainable, (res.ckpt_numel, res.n_trainable)
    if VARIANTS[variant].peft:
        inside = [k for k in res.ckpt_keys if k.startswith("model.") and not any(f in k for f in res.inside_model)]
        assert not inside, inside[:5]
    assert res.reload_export_equal, "a fresh method loaded from the checkpoint exports different tensors"


def test_unsupported_variants_on_bart_refuse_clearly(tiny_method):
    """The ablations the paper ran on GPT-2 only (n/a above) raise instead of silently doing something else."""
    for variant in ("prefix_init_words", "infix", "embedding_only"):
        with pytest.raises(ValueError, match="decoder-only"):
            tiny_method("bart", *VARIANTS[variant].overrides)


def test_finetune_top2_trains_exactly_the_top_blocks(tiny_method):
    """With 4 blocks (the tiny default has 2, where 'top 2' is everything) blocks 0-1 and positions stay frozen."""
    _, m, _ = tiny_method("gpt2", "method=finetune_top2", "model.tiny.n_layer=4")
    top = ("model.transformer.h.2.", "model.transformer.h.3.", "model.transformer.ln_f.", "model.transformer.wte.")
    for name, p in m.named_parameters():
        assert p.requires_grad == name.startswith(top), name


# ---- resuming through the trainer -------------------------------------------------------------------------

class _Crash(RuntimeError):
    pass


@functools.lru_cache(maxsize=None)
def crashed_and_resumed(variant: str, model: str):
    """fit 8 steps straight through vs. fit that dies right after checkpoint-4 and is rerun with a fresh method
    (the trainer finds checkpoint-4 in the same folder and resumes: optimizer, schedule, RNG, data position)."""
    from transformers import TrainerCallback

    from prefixtune.data.collate import Encoder
    from prefixtune.trainer import fit

    extra = ("trainer.save_every=4",)

    class CrashAfterCheckpoint(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 4:  # checkpoint-4 has been written at the end of step 4
                raise _Crash

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("straight", "crash", "resume"):
            bb, method, cfg = _build(variant, model, lr_for(variant, model), *extra)
            feats = Encoder(bb, method.extra_source_tokens(), 64, 64).train_features(SOURCES, TARGETS)
            ckpt = Path(tmp) / ("a" if name == "straight" else "b")
            callbacks = [CrashAfterCheckpoint()] if name == "crash" else []
            try:
                summary = fit(method, feats, [], cfg, ckpt, report_to=[], callbacks=callbacks)
            except _Crash:
                assert (ckpt / "checkpoint-4").is_dir()
                continue
            out[name] = (summary, method.export())
    return out


@pytest.mark.parametrize(("variant", "model"), [("prefix", "gpt2"), ("adapter_3pct", "llama")])
def test_fit_resumes_after_a_crash_to_the_same_result(variant, model):
    runs = crashed_and_resumed(variant, model)
    (straight, a), (resumed, b) = runs["straight"], runs["resume"]
    assert resumed["resumed_from"] == "checkpoint-4" and straight["resumed_from"] is None
    assert resumed["global_step"] == straight["global_step"] == STEPS
    # train_s of the resumed process times only the steps it ran (prefixtune.budget divides by these)
    assert (straight["timed_steps"], resumed["timed_steps"]) == (STEPS, STEPS - 4)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), "resumed training ended elsewhere"


@pytest.mark.parametrize(("variant", "model"), [("prefix", "gpt2")])
def test_resumed_fit_reports_the_whole_run_train_loss(variant, model):
    runs = crashed_and_resumed(variant, model)
    assert runs["resume"][0]["train_loss"] == pytest.approx(runs["straight"][0]["train_loss"], rel=1e-6), \
        "train_loss after a resume covers only the steps run after the restart"
