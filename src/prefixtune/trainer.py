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
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
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
    """The optimiser-step cap: the smaller of trainer.max_steps and scale.max_steps (None: epochs decide)."""
    return smallest_cap(cfg.trainer.get("max_steps"), cfg.scale.get("max_steps"))


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
