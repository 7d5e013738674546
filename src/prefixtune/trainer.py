"""The one shared training loop: the HF Trainer driven by conf/optim + conf/trainer, for any Method.

We build on `transformers.Trainer` rather than re-writing it: AdamW + linear schedule with warmup, gradient
accumulation, steps or epochs, clipping, seeding, bf16 autocast, evaluation with early stopping, progress bars,
W&B logging, checkpoints with exact resume (optimizer, scheduler, RNG states and data position are restored),
and multi-GPU through `accelerate launch`. The Trainer only sees the Method protocol (forward -> loss), and a
checkpoint holds only the method's trained tensors (Method.state_dict), so checkpoints of a prefix are small.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from . import speed
from .data.collate import Collator

log = logging.getLogger(__name__)


class Features(Dataset):
    def __init__(self, feats: Sequence[dict[str, Any]]) -> None:
        self.feats = list(feats)

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.feats[i]


def effective_lr(cfg: Any) -> float:
    """`optim.lr` (the paper's value for the cell) times `scale.lr_scale`: a small-budget scale trains ~100x fewer
    steps than the paper's epochs and compensates with a larger step size (experiments/table2/README.md)."""
    return float(cfg.optim.lr) * float(cfg.scale.get("lr_scale", 1.0))


def smallest_cap(*caps: int | None) -> int | None:
    """The smallest of the step caps that are set (None: none is, epochs decide)."""
    run = [int(c) for c in caps if c]
    return min(run) if run else None


def step_cap(cfg: Any) -> int | None:
    """The optimiser-step cap: the smaller of trainer.max_steps and the scale's cap -- scale.plateau_max_steps where
    the scale extends unconverged runs (see `plateau_from`), else scale.max_steps (None: epochs decide)."""
    sc = cfg.scale
    return smallest_cap(cfg.trainer.get("max_steps"), sc.get("plateau_max_steps") or sc.get("max_steps"))


STEP_FREE_SCHEDULES = ("reduce_lr_on_plateau", "constant")  # HF schedules whose rates ignore max_steps


def plateau_from(cfg: Any) -> int | None:
    """The step from which training stops at the first dev evaluation that meets the plateau rule
    (prefixtune.health.convergence, the rule a record is judged by), or None where no such rule applies.

    conf/scale/conv.yaml (issue #22): scale.max_steps is the step by which a run is expected to have converged and
    scale.plateau_max_steps the hard cap. A run on a plateau by scale.max_steps stops there, exactly as under a
    hard cap of scale.max_steps (the steps before it are the same computation); a run whose dev loss is still
    falling goes on and stops as soon as it is on a plateau, or at the hard cap, where it is a failed run. The rule
    names no method: every cell is trained to the same convergence criterion."""
    sc = cfg.scale
    hard, soft = sc.get("plateau_max_steps"), sc.get("max_steps")
    if not hard:
        return None
    patience = cfg.trainer.get("early_stopping_patience")
    if not patience or not soft:
        raise ValueError(f"scale.plateau_max_steps={hard} extends runs past scale.max_steps until the dev loss is on a "
                         "plateau: it needs scale.max_steps and trainer.early_stopping_patience "
                         f"(got {soft!r}, {patience!r})")
    if int(hard) < int(soft):
        raise ValueError(f"scale.plateau_max_steps={hard} must be >= scale.max_steps={soft} (it is the hard cap)")
    if cfg.trainer.get("max_steps") and int(cfg.trainer.max_steps) <= int(soft):
        return None  # the cell's own step count ends it first (low-data cells, ACL Table 8)
    if cfg.optim.scheduler not in STEP_FREE_SCHEDULES:
        # a schedule laid over the cap (linear decay) would run differently before scale.max_steps under the
        # higher cap: the runs made under the lower one would no longer be the same computation
        raise ValueError(f"scale.plateau_max_steps needs a schedule that does not depend on the step cap "
                         f"({', '.join(STEP_FREE_SCHEDULES)}); optim.scheduler={cfg.optim.scheduler}")
    return int(soft)


class PlateauStop(TrainerCallback):
    """From step `start` on, stop at the first evaluation whose dev-loss history meets the plateau rule of
    prefixtune.health.convergence (`patience` evaluations, conf/health.yaml's tolerance): see `plateau_from`."""

    def __init__(self, start: int, patience: int) -> None:
        self.start, self.patience = int(start), int(patience)

    def on_evaluate(self, args, state, control, **kwargs):
        from . import health

        if state.global_step < self.start:
            return control
        # the eval just run is already in the history (Trainer.evaluate logs before calling on_evaluate)
        dev = [[int(h["step"]), float(h["eval_loss"])] for h in state.log_history if "eval_loss" in h and "step" in h]
        if dev and health.convergence(dev, state.global_step, None, self.patience)["train/plateau"]:
            log.info("step %d: dev loss on a plateau (plateau rule, checked from step %d on): stopping",
                     state.global_step, self.start)
            control.should_training_stop = True
        return control


def warmup_within(steps: int, share: float | None, *caps: int | None) -> int:
    """`${warmup_within:100,share,trainer.max_steps,scale.max_steps}` (conf/optim/lowdata.yaml): the paper's warmup
    steps, but at most `share` of the run (the smallest cap), so a short run is never all warmup with its peak
    rate at its last step (ACL Table 8: low-data FT runs 100 steps after a 100-step warmup). `share` null: the
    steps as given (cpu and paper scales)."""
    run = smallest_cap(*caps)  # step_cap's rule: a resolver sees values, not the config step_cap reads
    if share is None or run is None:
        return int(steps)
    if not 0.0 < float(share) <= 1.0:
        raise ValueError(f"scale.lowdata_warmup_share must be in (0, 1], got {share}")
    return min(int(steps), int(float(share) * run))


def training_arguments(cfg: Any, out_dir: Path, report_to: list[str], n_train: int) -> TrainingArguments:
    t, o = cfg.trainer, cfg.optim
    if o.scheduler == "reduce_lr_on_plateau" and int(o.warmup_steps):
        # HF builds ReduceLROnPlateau without any warmup (transformers.optimization.get_scheduler): refuse rather
        # than train a cell whose record says it warmed up when it did not
        raise ValueError(f"optim.scheduler=reduce_lr_on_plateau ignores optim.warmup_steps={int(o.warmup_steps)} "
                         "(HF applies no warmup to it); set optim.warmup_steps=0 or another optim.scheduler")
    cap = step_cap(cfg)
    early = t.get("early_stopping_patience")
    eval_every = t.get("eval_every")
    eval_strategy = "steps" if eval_every else ("epoch" if early else "no")
    save_every = int(t.save_every)
    if save_every % int(t.log_every):
        # a log entry at every checkpoint step lets a resumed run recover the whole-run mean loss exactly
        raise ValueError(f"trainer.save_every={save_every} must be a multiple of trainer.log_every={t.log_every}")
    kw: dict[str, Any] = dict(
        output_dir=str(out_dir), seed=int(cfg.seed), data_seed=int(cfg.seed),
        per_device_train_batch_size=int(t.batch_size), per_device_eval_batch_size=int(t.batch_size),
        gradient_accumulation_steps=int(t.grad_accum), num_train_epochs=float(t.epochs),
        max_steps=cap if cap else -1,
        learning_rate=effective_lr(cfg), weight_decay=float(o.weight_decay), adam_epsilon=float(o.adam_epsilon),
        warmup_steps=int(o.warmup_steps), max_grad_norm=float(o.max_grad_norm), lr_scheduler_type=o.scheduler,
        lr_scheduler_kwargs=dict(o.get("scheduler_kwargs") or {}),  # conv: ReduceLROnPlateau's factor/patience
        optim="adamw_torch", bf16=bool(t.bf16), logging_steps=int(t.log_every), report_to=report_to,
        run_name=cfg.get("run_id"), eval_strategy=eval_strategy,
        save_strategy="steps" if eval_strategy != "epoch" else "epoch", save_steps=save_every,
        save_total_limit=2, load_best_model_at_end=bool(early), metric_for_best_model="eval_loss",
        greater_is_better=False, remove_unused_columns=False, prediction_loss_only=True,
        label_names=["labels"], dataloader_num_workers=0, disable_tqdm=False,
        use_cpu=not torch.cuda.is_available(), save_only_model=False,
    )
    if eval_every:
        kw["eval_steps"] = int(eval_every)
        kw["save_steps"] = int(eval_every) if early else save_every
    return TrainingArguments(**kw)


def checkpoint_step(path: str | None) -> int:
    """The optimiser step an HF checkpoint folder (`checkpoint-<step>`) was saved at; 0 for no checkpoint."""
    return int(Path(path).name.rsplit("-", 1)[-1]) if path else 0


def whole_run_loss(history: list[dict], global_step: int, resumed: str | None, tail_mean: float) -> float:
    """Mean training loss over the whole run. HF's `training_loss` averages only the steps run since the last
    restart; the logged history (restored from the checkpoint) covers all of them, so an interrupted run reports
    the same number as an uninterrupted one."""
    logged = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
    if not resumed or not logged:
        return tail_mean
    total, prev = 0.0, 0
    for step, loss in logged:
        total, prev = total + loss * (step - prev), step
    if global_step > prev:  # steps after the last logging point: their mean is the tail of training_loss
        resumed_at = checkpoint_step(resumed)
        run_since = global_step - resumed_at
        logged_since = sum(loss * (step - max(p, resumed_at)) for (p, _), (step, loss)
                           in zip([(0, 0.0)] + logged, logged) if step > resumed_at)
        total += tail_mean * run_since - logged_since
    return total / global_step


def final_loss(history: list[dict]) -> float | None:
    """The training loss at the end of the run: the last logged value, i.e. the mean over the last
    `trainer.log_every` optimiser steps (None if the run never reached a logging step). Figure 4 compares the
    loss prefixes of different lengths reach (§2.6), which the whole-run mean blurs with the early steps."""
    logged = [float(h["loss"]) for h in history if "loss" in h and "step" in h]
    return logged[-1] if logged else None


def fit(method, train_feats, dev_feats, cfg: Any, ckpt_dir: Path, report_to: list[str],
        callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train (resuming from the last checkpoint in `ckpt_dir` if there is one) and return a summary."""
    bb = method.backbone
    if cfg.trainer.get("grad_checkpointing"):
        bb.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        method.checkpoint_layers = True
    args = training_arguments(cfg, ckpt_dir, report_to, len(train_feats))
    collate = Collator(pad_id=bb.pad_id, left=False, with_infix=method.extra_source_tokens() > 0)
    cbs = list(callbacks)
    if cfg.trainer.get("early_stopping_patience"):
        cbs.append(EarlyStoppingCallback(early_stopping_patience=int(cfg.trainer.early_stopping_patience)))
    soft = plateau_from(cfg)
    if soft is not None:
        cbs.append(PlateauStop(soft, int(cfg.trainer.early_stopping_patience)))
    trainer = Trainer(model=method, args=args, train_dataset=Features(train_feats),
                      eval_dataset=Features(dev_feats) if dev_feats else None, data_collator=collate,
                      callbacks=cbs)
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.exists() else None
    if last:
        log.info("resuming from %s", last)
    start = time.time()
    with speed.training(method, cfg.trainer) as applied:
        result = trainer.train(resume_from_checkpoint=last)
    summary = {"train_s": time.time() - start, "global_step": int(result.global_step), "speed": applied,
               "train_loss": whole_run_loss(trainer.state.log_history, int(result.global_step), last,
                                            float(result.training_loss)),
               "final_loss": final_loss(trainer.state.log_history),
               "resumed_from": Path(last).name if last else None,
               # the steps this process ran, which train_s times (a resumed run's earlier steps ran in another one)
               "timed_steps": int(result.global_step) - checkpoint_step(last)}
    history = [h for h in trainer.state.log_history if "eval_loss" in h]
    if history:
        summary["dev_loss"] = min(h["eval_loss"] for h in history)
        summary["best_checkpoint"] = (Path(trainer.state.best_model_checkpoint).name
                                      if trainer.state.best_model_checkpoint else None)
    summary["log_history"] = [{k: v for k, v in h.items() if isinstance(v, (int, float))}
                              for h in trainer.state.log_history]
    return summary
