"""One experiment cell, end to end: data -> method -> fit -> decode -> score -> artefact -> record.

Resumability: the record is written as "running" first; checkpoints live in checkpoints/<group>/<run_id>/ until
the run finishes, so the same command after a kill resumes training from the last checkpoint; a finished record
with the same config hash is skipped unless `force=true`. Every write is atomic (temp file + rename).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import health, paths, provenance
from .tables import write_atomic
from .results import (PRECISION_KEYS, RunRecord, config_diff, config_hash, extendable, find_finished,
                      overrides_digest, read_record, record_path, run_id, write_record)

log = logging.getLogger("prefixtune.pipeline")

# top-level keys kept out of the config *stored* in a record: `output_root` says where the records go, not what
# they are (it is also in results.VOLATILE_KEYS, so it never reaches the hash either way).
_IDENTITY_DROP = ("output_root",)


def _subset(items: list, cap: int | None, seed: int = 0) -> list:
    """A deterministic subset, in original order, identical for every method and seed of a table (the subset
    seed is fixed so that methods are compared on the same examples)."""
    if cap is None or cap >= len(items):  # null: all of them; 0: none (e.g. no dev decoding at cpu scale)
        return list(items)
    idx = np.sort(np.random.default_rng(seed).permutation(len(items))[:cap])
    return [items[i] for i in idx]


def _training_note(cfg, steps: int, n_train: int, n_dev: int, n_source: int) -> str:
    """How much the cell trained on; a low-data cell names its sampled subset (released ids, §2.5)."""
    low = cfg.data.get("lowdata")
    return (f"trained {steps} optimiser steps on {n_train} of {n_source} training pairs (batch "
            f"{cfg.trainer.batch_size} x accumulation {cfg.trainer.grad_accum})" + (
                f"; low-data subset {low.subset} of size {low.size}, {n_dev} dev pairs for early stopping "
                "(results/lowdata_splits/)" if low else ""))


# above this share of the CPU used by other processes a run's times are flagged (a unit-test run beside a 2-core
# training run took 1.0 of a core and slowed it from 3 to 11 s per step)
CONTENTION = 0.10


def _contention_note(phase: str, share: float) -> str:
    return (f"{phase} shared the CPU: other processes used {share:.0%} of its time, so {phase}_s is an upper "
            "bound (compare times only between runs without this note)")


def _warmup_note(cfg, steps: int) -> str:
    """The warmup, when there is one: a step cap (cpu scale: 100) can leave the low-data 100-step warmup (§2.5)
    covering the whole run, so the rate peaks only at its last step -- a deviation the record must say."""
    w = int(cfg.optim.get("warmup_steps") or 0)
    if cfg.optim.scheduler == "reduce_lr_on_plateau":  # conf/scale/conv.yaml: not the paper's linear decay
        kw = dict(cfg.optim.get("scheduler_kwargs") or {})
        return (f", constant, x{kw.get('factor', 0.1):g} whenever the dev loss has not improved for "
                f"{int(kw.get('patience', 10)) + 1} evaluations (ReduceLROnPlateau; the paper decays it linearly)")
    if not w:
        return ""
    share = cfg.scale.get("lowdata_warmup_share")  # only low-data cells warm up (conf/optim/lowdata.yaml)
    capped = f", at most {float(share):g} of the run: scale.lowdata_warmup_share" if share else ""
    return f", {cfg.optim.scheduler} schedule after {w} warmup steps{capped}" + (
        f" (warmup covers all {steps} steps run: the peak rate is reached only at the end)" if w >= steps else "")


def curves(log_history: list[dict]) -> dict[str, list]:
    """HF log history -> {"train": [[step, loss, lr], ...], "dev": [[step, eval_loss], ...]}."""
    train = [[int(h["step"]), float(h["loss"]), float(h.get("learning_rate", float("nan")))]
             for h in log_history if "loss" in h and "step" in h]
    dev = [[int(h["step"]), float(h["eval_loss"])] for h in log_history if "eval_loss" in h and "step" in h]
    return {"train": train, "dev": dev}


def _load_data(cfg: DictConfig):
    from .data import load_split
    from .data.lowdata import lowdata_subset

    d = cfg.data
    full = load_split(d.name, d.train_split).pairs
    dev_split = load_split(d.name, d.dev_split)
    if d.get("lowdata"):  # the released subset, drawn from the split loaded above (data/lowdata.py)
        train, dev = lowdata_subset(full, int(d.lowdata.size), int(d.lowdata.subset))
    else:
        train, dev = full, dev_split.pairs
    test = load_split(d.name, d.test_split)
    dev_groups = dev_split.groups
    sc = cfg.scale
    # "train": the pairs the cell draws from (a low-data subset is drawn from the full training split)
    sizes = {"train": len(full), "dev": len(dev), "dev_groups": len(dev_groups), "test_groups": len(test.groups)}
    return (_subset(train, sc.get("max_train_examples")), _subset(dev, sc.get("max_dev_examples")),
            _subset(list(enumerate(dev_groups)), sc.get("max_dev_decode_groups")),
            _subset(list(enumerate(test.groups)), sc.get("max_decode_groups")), sizes)


def _wandb(cfg: DictConfig, rid: str, cfg_dict: dict) -> tuple[list[str], Any]:
    mode = cfg.logger.mode
    if mode == "disabled":
        return [], None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=cfg.logger.project, entity=cfg.logger.entity, dir=cfg.logger.dir, mode=mode,
                     group=cfg.group, job_type=cfg.method.name, name=rid, id=f"{rid}-{cfg_dict['_hash']}",
                     config=cfg_dict, resume="allow", reinit="finish_previous")
    return ["wandb"], run


def run(cfg: DictConfig, overrides: list[str], isolate: bool | None = None) -> RunRecord:
    """One cell; `isolate` (default: the config's `isolate`) runs it in a fresh child process."""
    from .backbone import load_backbone
    from .data.collate import Encoder
    from .decode import decode
    from .evaluate import score_split
    from .methods.base import build_method
    from .trainer import effective_lr, fit, plateau_from, step_cap
    from transformers import set_seed

    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    for k in _IDENTITY_DROP:
        cfg_dict.pop(k, None)
    chash = config_hash(cfg_dict)
    rid = run_id(cfg.experiment_name, cfg.scale.name, int(cfg.seed), overrides_digest(overrides))
    root = Path(cfg.output_root)
    done = find_finished(chash, root=root, group=cfg.group)
    hard = step_cap(cfg) if plateau_from(cfg) is not None else None
    if done is not None and not cfg.force and extendable(done, hard):
        log.warning("%s: the finished record ended at step %d without a dev-loss plateau (a failed run); "
                    "scale.plateau_max_steps=%d trains on past scale.max_steps: running it again (the record it "
                    "replaces stays in git history)", rid, int(done.metrics["train/steps"]), hard)
        done = None
    if done is not None and not cfg.force:
        log.info("skip %s: finished record with config hash %s exists", rid, chash)
        return done
    twin = _guard_finished(cfg, rid, chash, cfg_dict, root)
    if twin is not None:
        return twin
    if cfg.get("isolate", False) if isolate is None else isolate:
        return _run_isolated(cfg, overrides, chash, rid, root)

    t0 = time.time()
    rec = RunRecord(run_id=rid, group=cfg.group, experiment=cfg.experiment_name, status="running",
                    config=cfg_dict, config_hash=chash, provenance=provenance.collect())
    rec.notes = list(cfg.get("notes") or [])
    write_record(rec, root=root)
    ckpt = _checkpoint_dir(cfg.group, rid, chash)
    run_window = provenance.reset_peak_memory()  # this cell's peak, not an earlier cell's of the same multirun
    try:
        set_seed(int(cfg.seed))
        bb = load_backbone(cfg.model)
        method = build_method(bb, cfg.method)
        rec.params = method.param_counts()
        log.info("%s on %s: trainable %d (%.4f%%), stored %d (%.4f%%)", cfg.method.name, bb.name,
                 rec.params["trainable"], rec.params["trainable_pct"], rec.params["stored"],
                 rec.params["stored_pct"])
        train, dev, dev_groups, test_groups, sizes = _load_data(cfg)
        enc = Encoder(bb, method.extra_source_tokens(), int(cfg.data.max_source_tokens),
                      int(cfg.data.max_target_tokens))
        train_f = enc.train_features([p.source for p in train], [p.target for p in train])
        dev_f = enc.train_features([p.source for p in dev], [p.target for p in dev])
        cfg_dict["_hash"] = chash
        report_to, wb = _wandb(cfg, rid, cfg_dict)
        rec.wandb = {"mode": cfg.logger.mode, "run_path": wb.path if wb is not None else None}
        cpu0 = provenance.cpu_snapshot()
        summary = fit(method, train_f, dev_f, cfg, ckpt, report_to)
        rec.timing["train_s"] = summary.pop("train_s")
        rec.timing["train_timed_steps"] = summary.pop("timed_steps")  # the steps train_s covers (prefixtune.budget)
        if summary.get("resumed_from"):
            rec.notes.append(f"resumed from {summary['resumed_from']}: timing.train_s covers the last "
                             f"{rec.timing['train_timed_steps']} of {summary['global_step']} steps")
        rec.timing["train_speed"] = summary.pop("speed")  # prefixtune.speed settings applied (throughput only)
        cpu1 = provenance.cpu_snapshot()
        rec.notes += [f"model: {cfg.model.label}" + (" with bf16 autocast" if cfg.trainer.bf16 else ""),
                      _training_note(cfg, summary["global_step"], len(train), len(dev), sizes["train"]),
                      f"scored {len(test_groups)} of {sizes['test_groups']} test sources and {len(dev_groups)} of "
                      f"{sizes['dev_groups']} dev sources",
                      f"learning rate {effective_lr(cfg):.3g} (optim.lr {float(cfg.optim.lr):.3g} x scale.lr_scale "
                      f"{float(cfg.scale.get('lr_scale', 1.0)):g})" + _warmup_note(cfg, summary["global_step"])]

        rec.notes += _protocol_notes(cfg, root)
        t1 = time.time()
        out_dir = root / "predictions" / cfg.group / rid
        # the loss curves (train loss per logging window, dev loss per evaluation, learning rate): convergence is
        # auditable from the record, not only its end point (issue #22); resumed runs keep the restored history
        curve = curves(summary.pop("log_history"))
        write_atomic(out_dir / "curves.json", json.dumps(curve, indent=0) + "\n")
        rec.outputs["curves"] = _rel(out_dir / "curves.json", root)
        metrics: dict[str, float | None] = {"train/loss": summary["train_loss"],
                                            "train/loss_final": summary["final_loss"]}
        if cfg.trainer.get("early_stopping_patience"):  # did it reach a dev-loss plateau (prefixtune.health)?
            cap, patience = step_cap(cfg), int(cfg.trainer.early_stopping_patience)
            conv = health.convergence(curve["dev"], summary["global_step"], cap, patience)
            metrics.update(conv)
            rec.notes.append(health.convergence_note(conv, cap, int(cfg.trainer.eval_every or 0), patience,
                                                     plateau_from(cfg)))
        if "dev_loss" in summary:
            metrics["dev/loss"] = summary["dev_loss"]
        scored: dict[str, Any] = {}
        for split, groups in (("dev", dev_groups), ("test", test_groups)):
            if not groups:
                continue
            ended: list[bool] = []
            preds = decode(method, enc, [g.source for _, g in groups], cfg.decode, progress=True, eos=ended)
            # decode health (prefixtune.health): exact EOS flags from the generated ids
            metrics.update(health.as_metrics(health.measure(preds, [g.source for _, g in groups],
                                                            [g.references for _, g in groups], ended,
                                                            str(cfg.decode.empty_output)), split))
            write_atomic(out_dir / f"{split}.txt", "".join(p.replace("\n", " ") + "\n" for p in preds))
            rec.outputs[f"{split}_predictions"] = _rel(out_dir / f"{split}.txt", root)
            scored[split] = (preds, groups)
        rec.timing["decode_s"] = time.time() - t1
        for phase, share in (("train", provenance.others_cpu_share(cpu0, cpu1)),
                             ("decode", provenance.others_cpu_share(cpu1, provenance.cpu_snapshot()))):
            rec.timing[f"{phase}_cpu_others"] = share
            rec.notes += [_contention_note(phase, share)] if share is not None and share > CONTENTION else []
        t2 = time.time()
        for split, (preds, groups) in scored.items():
            split_name = cfg.data.dev_split if split == "dev" else cfg.data.test_split
            res = score_split(cfg.data.name, split_name, preds, [i for i, _ in groups], [g for _, g in groups])
            for k, v in res.items():
                if isinstance(v, dict):  # e.g. DART's model-based metrics: null + the reason, never 0
                    rec.notes += [f"{split}/{name}: unavailable ({why})" for name, why in v.items()]
                else:
                    metrics[f"{split}/{k}"] = v
        rec.timing["score_s"] = time.time() - t2
        if cfg.scale.get("lr_grid") is None:  # a learning-rate selection run is not a result: no artefact kept
            rec.outputs.update(_save_artifact(method, cfg, root, rid))
        rec.timing["wall_s"] = time.time() - t0
        rec.memory = provenance.peak_memory(run_window)
        rec.metrics = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}
        if wb is not None:
            wb.summary.update({k: v for k, v in rec.metrics.items() if v is not None})
            wb.finish()
        rec.finish()
        path = write_record(rec, root=root)
        log.info("wrote %s", path)
        if not cfg.get("keep_checkpoints", False):
            shutil.rmtree(ckpt, ignore_errors=True)
            if ckpt.parent.exists() and not any(ckpt.parent.iterdir()):
                ckpt.parent.rmdir()
        return rec
    except BaseException as err:  # a failed run leaves a failed record, never a half-written one
        rec.fail(err if isinstance(err, Exception) else RuntimeError(repr(err)))
        write_record(rec, root=root)
        raise


def _protocol_notes(cfg, root: Path) -> list[str]:
    """Where the learning rate came from under the converged protocol (prefixtune.lrselect, issue #22)."""
    from . import lrselect

    sc = cfg.scale
    if sc.get("lr_grid") is not None:
        return [f"learning-rate selection run (factor x{float(sc.lr_scale):g} of the grid "
                f"{[float(x) for x in sc.lr_grid]}): dev loss only, nothing decoded; not a result"]
    if sc.get("select"):
        return [lrselect.note(root, str(sc.select), str(cfg.experiment_name), sc.get("lr_share"))]
    return []


def _guard_finished(cfg: DictConfig, rid: str, chash: str, cfg_dict: dict, root: Path) -> RunRecord | None:
    """Never overwrite finished work by accident: the record file of this run id holding a finished run of a
    *different* config (the experiment or scale changed since) is replaced only with `force=true`.

    One difference is not a change of the cell: PRECISION_KEYS alone. The cpu scale asks for bf16 only where the
    hardware computes it natively, so one command resolves to bf16 on one machine and fp32 on another. A cell
    finished in the other precision is returned to be reused (it says its precision), not recomputed ~80x slower
    or refused. Its hash still differs, so it is never averaged with repeats of the other precision
    (results.newest_config)."""
    path = record_path(cfg.group, rid, root=root)
    if cfg.force or not path.exists():
        return None
    old = read_record(path)
    if old.status != "finished" or old.identity == chash:
        return None
    every = config_diff(old.config, cfg_dict, limit=10**6)
    if every and all(line.split(":", 1)[0] in PRECISION_KEYS for line in every):
        log.info("skip %s: finished record of this cell in the other precision (%s); force=true recomputes it here",
                 rid, "; ".join(every))
        return old
    lines = config_diff(old.config, cfg_dict)  # at most 8 keys, for the message
    diff = "; ".join(lines) or "no key differs (only the hash scheme)"
    hint = ""
    if any(line.split(":", 1)[0] in PRECISION_KEYS for line in every):
        # the cpu scale resolves bf16 from the hardware (${native_bf16:}, conf/scale/cpu.yaml)
        hint = (" The precision follows the hardware (prefixtune.provenance.native_bf16): PREFIXTUNE_BF16=1 or =0 "
                "reproduces the record's precision here (bf16 autocast on a CPU without AVX512-BF16/AMX is ~80x "
                "slower).")
    raise RuntimeError(f"{path} holds a finished run of another config (hash {old.identity}, now {chash}): "
                       f"{diff}. Rerun with force=true to replace it, or move the file away to keep it.{hint}")


def _checkpoint_dir(group: str, rid: str, chash: str) -> Path:
    """checkpoints/<group>/<run_id>, emptied when it holds checkpoints of another config: resuming those would
    silently continue a different run (the marker file names the config hash that wrote them)."""
    ckpt = paths.REPO_ROOT / "checkpoints" / group / rid
    marker = ckpt / "config_hash"
    if ckpt.exists() and (not marker.exists() or marker.read_text().strip() != chash):
        log.warning("removing checkpoints of another config in %s", ckpt)
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    marker.write_text(chash + "\n")
    return ckpt


def _run_isolated(cfg: DictConfig, overrides: list[str], chash: str, rid: str, root: Path) -> RunRecord:
    """The cell in a fresh child process (`isolate: true`, the default; see prefixtune.isolate for why)."""
    from .isolate import run_in_child

    code = run_in_child(cfg, overrides)
    done = find_finished(chash, root=root, group=cfg.group)
    if code == 0 and done is not None:
        return done
    path = record_path(cfg.group, rid, root=root)
    why = "no record written"
    if path.exists():
        rec = read_record(path)
        why = f"record status {rec.status!r}" + (f": {rec.error}" if rec.error else "")
    how = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
    raise RuntimeError(f"cell {rid} failed in its child process ({how}; {why}; record {path})")


def _save_artifact(method, cfg: DictConfig, root: Path, rid: str) -> dict[str, str]:
    """The stored artefact: materialised prefix (kilobytes to a few MB) next to the records; large artefacts
    (fine-tuning) go to the git-ignored checkpoints folder."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous().cpu() for k, v in method.export().items()}
    n = sum(t.numel() for t in tensors.values())
    small = n <= int(cfg.get("artifact_max_params", 5_000_000))
    # large ones live beside, not inside, the run's checkpoint folder, which is removed when the run finishes
    base = (root / "artifacts" / cfg.group / rid) if small else (paths.REPO_ROOT / "checkpoints" / "_artifacts"
                                                                 / cfg.group / rid)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / ".weights.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, base / "weights.safetensors")
    meta = {"model": OmegaConf.to_container(cfg.model, resolve=True),
            "method": OmegaConf.to_container(cfg.method, resolve=True), "run_id": rid}
    (base / ".config.tmp").write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(base / ".config.tmp", base / "config.json")
    return {"artifact" if small else "artifact_local": _rel(base, root)}


def _rel(path: Path, root: Path) -> str:
    """Paths in records are relative (to the repo, or to the results root when that lives elsewhere)."""
    for base in (paths.REPO_ROOT, root.parent, root):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return path.name


def load_artifact(path: str | Path):
    """Backbone + method with a stored artefact loaded, ready for `decode` (prefix-only artefacts)."""
    from safetensors.torch import load_file

    from .backbone import load_backbone
    from .methods.base import build_method

    path = Path(path)
    meta = json.loads((path / "config.json").read_text())
    model = dict(meta["model"])
    if model.get("path") and not Path(model["path"]).exists():
        # artefacts record the absolute model path of the machine that trained them; local caches live in
        # paths.models_dir() under the same folder name on every machine (conf/model/*.yaml)
        model["path"] = str(paths.models_dir() / Path(model["path"]).name)
    bb = load_backbone(OmegaConf.create(model))
    method = build_method(bb, OmegaConf.create(meta["method"]))
    method.load_export(load_file(str(path / "weights.safetensors")))
    method.eval()
    return bb, method
