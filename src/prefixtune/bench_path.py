"""`make bench`, training path: the stock step against each speed setting of prefixtune.speed, and where the time
of a step goes (conf/bench/default.yaml `train_path`).

Every variant runs in a fresh process (the malloc setting is process-wide and a process's heap only grows), from
the same seed, on the same real E2E batch, under bf16 autocast where the CPU has native bf16. The variants are
cumulative (stock, + math SDPA, + frozen bf16 weights, + mallopt, + torch.compile) and the stock path runs once more
at the end, so drift of the machine during the bench shows as the gap between the two stock rows. The profile
splits the fastest eager variant's step into matmuls, attention, norms/elementwise, optimizer and collation.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

# aten op -> profile category (first match); the optimizer and collation are timed around their own calls
CATEGORIES = (
    ("attention", re.compile(r"scaled_dot_product|_flash_attention|_efficient_attention|softmax|_safe_softmax")),
    ("matmuls", re.compile(r"aten::(mm|addmm|bmm|matmul|linear|baddbmm|addmv|mv|dot)$")),
    ("loss", re.compile(r"cross_entropy|nll_loss|log_softmax")),
    ("norms/elementwise", re.compile(r"aten::(mul|add|sub|div|pow|rsqrt|mean|sum|neg|cat|silu|silu_backward|"
                                     r"sigmoid|tanh|exp|where|fill_|zero_|copy_|to|_to_copy|clone|"
                                     r"native_layer_norm.*|rms_norm.*|_fused_rms_norm.*|embedding.*|gelu.*|"
                                     r"threshold_backward|masked_fill.*|index.*|mul_|add_|addcmul_|addcdiv_|"
                                     r"sqrt|lerp_|_foreach.*|empty_like|empty|contiguous|reshape|view|"
                                     r"transpose|permute|expand|slice|select|unsqueeze|t)$")),
)


def _category(name: str) -> str:
    for cat, pat in CATEGORIES:
        if pat.search(name):
            return cat
    return "other"


def _settings(variant: dict) -> dict:
    return {"bf16": bool(variant.get("bf16", True)),
            "speed": {"sdpa_backend": variant.get("sdpa_backend"), "frozen_bf16": bool(variant.get("frozen_bf16")),
                      "malloc_tune": bool(variant.get("malloc_tune")), "compile": bool(variant.get("compile"))}}


def probe(model: str, variant: dict, batch_size: int, n_warm: int, n_timed: int, lr: float,
          profile_steps: int) -> dict:
    """One variant in this process: warm-up and timed steps (forward, backward, AdamW) of ours prefix."""
    from omegaconf import OmegaConf

    from . import speed
    from .bench import _batch, _features, _loss, build
    from .data.collate import Collator

    torch.manual_seed(0)
    m = build(model, "prefix", {"length": int(variant.get("length", 5))})
    batch = _batch(m.backbone, batch_size)
    t = OmegaConf.create(_settings(variant))
    params = m.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=lr)
    m.train()
    times, losses, opt_s = [], [], []
    out: dict[str, Any] = {}
    with speed.training(m, t) as applied:
        def step() -> float:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=t.bf16):
                loss = _loss(m, batch)
            loss.backward()
            t0 = time.perf_counter()
            opt.step()
            opt.zero_grad(set_to_none=True)
            opt_s.append(time.perf_counter() - t0)
            return float(loss.detach())

        t0 = time.perf_counter()
        for i in range(n_warm + n_timed):
            s = time.perf_counter()
            losses.append(step())
            if i == 0:
                out["first_step_s"] = time.perf_counter() - s  # includes torch.compile's compilation
            if i >= n_warm:
                times.append(time.perf_counter() - s)
        out["total_s"] = time.perf_counter() - t0
        if profile_steps:
            out["profile"] = _profile(step, profile_steps)
            feats = _features(m.backbone, batch_size)
            c0 = time.perf_counter()
            Collator(m.backbone.pad_id)(feats)
            out["profile"]["collation_ms"] = 1e3 * (time.perf_counter() - c0)
    med = statistics.median(times)
    out.update(step_s=med, step_s_min=min(times), step_s_max=max(times), losses=losses, applied=applied,
               optimizer_ms=1e3 * statistics.median(opt_s[n_warm:]),
               tokens=int(batch["attention_mask"].sum()), padded_tokens=int(batch["attention_mask"].numel()))
    return out


def _profile(step, n: int) -> dict:
    """Self CPU time per category over `n` steps (ms per step); the optimizer's own ops fall in
    norms/elementwise (_foreach_*), which is why its wall time is reported beside, not added."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    cats: dict[str, float] = {}
    ops: dict[str, float] = {}
    for ev in prof.key_averages():
        ms = ev.self_cpu_time_total / 1e3 / n
        cats[_category(ev.key)] = cats.get(_category(ev.key), 0.0) + ms
        ops[ev.key] = ms
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:12]
    return {"ms_per_step": cats, "total_ms": sum(cats.values()), "top_ops": top}


def run_variants(cfg, model: str) -> dict:
    """Each variant of cfg.train_path.variants (then stock again) in a fresh process; results by name."""
    tp = cfg.train_path
    names = [k for k, v in tp.variants.items() if v is not None] + ["stock (again)"]
    out: dict[str, Any] = {}
    from . import provenance

    for name in names:
        variant = dict(tp.variants["stock" if name == "stock (again)" else name] or {})
        variant["bf16"] = provenance.native_bf16()  # as the cpu scale: bf16 autocast only where it is native
        profile_steps = int(tp.profile_steps) if name == tp.profile_variant else 0
        arg = json.dumps({"model": model, "variant": variant, "batch_size": int(cfg.batch_size),
                          "n_warm": int(tp.warmup_steps) + (int(tp.compile_warmup_steps) if variant.get("compile")
                                                            else 0),
                          "n_timed": int(tp.timed_steps), "lr": float(cfg.lr), "profile_steps": profile_steps})
        res = subprocess.run([sys.executable, "-m", "prefixtune.bench", "--probe-train", arg], capture_output=True,
                             text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if res.returncode != 0:
            raise RuntimeError(f"training-path probe {model}/{name} failed:\n{res.stderr[-3000:]}")
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"[bench] {model} train path {name}: {out[name]['step_s']:.3f} s/step, losses "
              f"{[round(x, 3) for x in out[name]['losses']]}", flush=True)
    stock = out["stock"]
    for name, r in out.items():
        r["speedup_vs_stock"] = stock["step_s"] / r["step_s"]
        n = min(len(r["losses"]), len(stock["losses"]), 6)
        r["first_losses_max_rel_diff"] = max(abs(a - b) / abs(b) for a, b in zip(r["losses"][:n], stock["losses"][:n]))
    return out


def floor_share(path: dict, body_params: int, head_params: int, head_tokens: int, rate: dict) -> dict:
    """The frozen-LM prefix step's matmul FLOPs (4 N per padded token for the body, forward + backward to the
    activations; 4 x head for each labelled position) at the measured bf16 matmul rate, over each variant's step."""
    any_run = next(iter(path.values()))
    flops = 4 * body_params * any_run["padded_tokens"] + 4 * head_params * head_tokens
    floor_s = flops / (rate["bf16_gflops"] * 1e9)
    return {"gflop_per_step": flops / 1e9, "floor_s": floor_s,
            "share": {name: floor_s / r["step_s"] for name, r in path.items()}}


def markdown(path: dict, floor: dict, cfg_tp: dict) -> list[str]:
    lines = ["### Training path: the stock step and each speed setting (prefix, bf16 autocast)", "",
             "Each row is a fresh process from the same seed on the same batch; the settings are cumulative "
             "(prefixtune.speed, conf/trainer `speed`). `stock (again)` reruns the first row last: its gap to "
             "`stock` is the machine's drift during the bench.", "",
             "| variant | s/step | speed-up vs stock | of the bf16 floor | first 6 losses, max rel. diff vs stock "
             "| first step s |", "|---|---|---|---|---|---|"]
    for name, r in path.items():
        label = name if name.startswith("stock") else f"+ {name}"
        lines.append(f"| {label} | {r['step_s']:.3f} ({r['step_s_min']:.3f}–{r['step_s_max']:.3f}) | "
                     f"{r['speedup_vs_stock']:.2f}x | {100 * floor['share'][name]:.0f}% | "
                     f"{r['first_losses_max_rel_diff']:.1e} | {r['first_step_s']:.1f} |")
    lines += ["", f"bf16 floor: {floor['gflop_per_step']:.0f} GFLOP per step at the measured bf16 matmul rate = "
              f"{floor['floor_s']:.3f} s (body 4N per padded token, LM head 4 x V x d per labelled position; "
              "attention scores left out)."]
    prof_name = cfg_tp["profile_variant"]
    prof = path.get(prof_name, {}).get("profile")
    if prof:
        step_ms = 1e3 * path[prof_name]["step_s"]
        lines += ["", f"Where a `{prof_name}` step goes (torch.profiler self CPU time, ms per step; step wall "
                  f"{step_ms:.0f} ms):", "", "| category | ms/step | share |", "|---|---|---|"]
        for cat, ms in sorted(prof["ms_per_step"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {cat} | {ms:.0f} | {100 * ms / prof['total_ms']:.0f}% |")
        lines += [f"| optimizer (AdamW step, wall; its ops are inside the rows above) | "
                  f"{path[prof_name]['optimizer_ms']:.1f} | — |",
                  f"| collation/padding (Collator, wall, once per step) | {prof['collation_ms']:.1f} | — |", "",
                  "Top ops: " + ", ".join(f"{k} {v:.0f} ms" for k, v in prof["top_ops"][:8]) + "."]
    return lines
