"""`make bench`: training and decoding speed, memory, precision and the FLOP floor, measured in one run.

`python -m prefixtune.bench [key=value ...]` (settings: conf/bench/default.yaml) writes results/bench.json and
results/bench.md. Everything is measured on the same model, batch (real E2E training pairs) and data within one
process, with warm-up steps and a median over timed steps (spread = min..max); peak memory needs a fresh
process per method (a process's peak RSS only grows), so each memory probe re-runs this module in a subprocess.
Speed targets live here and in the report, never in timed unit tests.

* training: tokens/s of ours (prefix inside attention) vs PEFT's PrefixTuning with the same length and MLP
  reparametrisation, fine-tuning, adapter and LoRA; the two prefix implementations start from the same weights
  where their shapes allow it (GPT-2 geometry) and must then follow the same loss curve;
* decoding: our batched beam search vs one source at a time vs PEFT's `generate`, outputs compared;
* fp32 vs bf16 autocast on this CPU; and the floor: FLOPs per step / the measured matmul rate.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from . import paths, provenance
from .tables import write_atomic

CONF = paths.REPO_ROOT / "conf"
NO_NATIVE_BF16 = ("this machine has no native bf16 (no AVX512-BF16 / AMX-BF16, no bf16 GPU), where bf16 autocast is "
                  "~80x slower and the cpu scale runs fp32 (prefixtune.provenance.native_bf16); PREFIXTUNE_BF16=1 "
                  "measures it anyway")


def _compose(*overrides: str):
    from hydra import compose, initialize_config_dir

    import prefixtune.train  # noqa: F401  (registers the pt_path resolver)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["logger.mode=disabled", *overrides])


def _features(bb, n: int) -> list[dict]:
    """The first `n` real E2E training pairs, encoded."""
    from .data import load_split
    from .data.collate import Encoder

    pairs = load_split("e2e", "train").pairs[:n]
    return Encoder(bb, 0, 128, 128).train_features([p.source for p in pairs], [p.target for p in pairs])


def _batch(bb, n: int) -> dict[str, torch.Tensor]:
    from .data.collate import Collator

    return Collator(bb.pad_id)(_features(bb, n))


class PeftPrefix(torch.nn.Module):
    """PEFT's PrefixTuning on a fresh copy of the backbone (prefix_projection=True, hidden k = ours)."""

    def __init__(self, bb, length: int, hidden: int) -> None:
        super().__init__()
        from peft import PrefixTuningConfig, get_peft_model

        self.backbone = bb
        conf = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=length, prefix_projection=True,
                                  encoder_hidden_size=hidden)
        self.peft = get_peft_model(bb.model, conf)
        self.peft.base_model.eval()  # frozen LM without dropout, as ours

    def trainable_parameters(self):
        return [p for p in self.peft.parameters() if p.requires_grad]

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.peft(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss

    def encoder(self):
        return self.peft.prompt_encoder["default"]


def build(model: str, name: str, extra: dict) -> Any:
    """A fresh backbone with method `name` (or PEFT's prefix) on it; prefix losses are token means, like PEFT's."""
    from .backbone import load_backbone
    from .methods.base import build_method

    if name == "peft_prefix":
        cfg = _compose(f"model={model}", "method=prefix")
        return PeftPrefix(load_backbone(cfg.model), int(extra["length"]), int(cfg.method.mlp_hidden))
    over = [f"method.{k}={v}" for k, v in extra.items()]
    if name == "prefix":
        over.append("method.loss_reduction=token_mean")
    cfg = _compose(f"model={model}", f"method={name}", *over)
    return build_method(load_backbone(cfg.model), cfg.method)


def _loss(m, batch) -> torch.Tensor:
    if isinstance(m, PeftPrefix):
        return m.loss(batch)
    return m(**dict(batch)).loss


class _Stepper:
    """One method's optimiser and its timed training steps (forward, backward, AdamW step)."""

    def __init__(self, m, batch, lr: float, bf16: bool = False) -> None:
        self.m, self.batch, self.bf16 = m, batch, bf16
        self.params = m.trainable_parameters()
        self.opt = torch.optim.AdamW(self.params, lr=lr)
        if not isinstance(m, PeftPrefix):
            m.train()
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, timed: bool) -> None:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = _loss(self.m, self.batch)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t
        self.losses.append(float(loss.detach()))
        if timed:
            self.times.append(dt)

    def head_tokens(self) -> int:
        """Positions the LM head projects: ours only the labelled ones (methods/base.py `_labelled_loss`), PEFT
        and the full path every position, padding included."""
        padded = int(self.batch["attention_mask"].numel())
        if isinstance(self.m, PeftPrefix) or self.m._labelled_head() is None:
            return padded
        return int((self.batch["labels"][:, 1:] != -100).sum())

    def summary(self) -> dict:
        tokens = int(self.batch["attention_mask"].sum())
        med = statistics.median(self.times)
        return {"step_s": med, "step_s_min": min(self.times), "step_s_max": max(self.times),
                "tokens_per_s": tokens / med, "tokens": tokens,
                "padded_tokens": int(self.batch["attention_mask"].numel()), "head_tokens": self.head_tokens(),
                "losses": self.losses, "trainable": sum(p.numel() for p in self.params)}


def train_steps(m, batch, n_warm: int, n_timed: int, lr: float, bf16: bool = False) -> dict:
    s = _Stepper(m, batch, lr, bf16)
    for i in range(n_warm + n_timed):
        s.step(timed=i >= n_warm)
    return s.summary()


def train_interleaved(models: dict, batch, n_warm: int, n_timed: int, lr: float,
                      bf16: dict[str, bool] | None = None) -> dict:
    """Round-robin: step i of every method before step i + 1 of any, so that drift of the machine (other load,
    thermal state, allocator growth) falls on all methods alike instead of on whichever runs last."""
    bf16 = bf16 or {}
    steppers = {name: _Stepper(m, batch, lr, bf16.get(name, False)) for name, m in models.items()}
    for i in range(n_warm + n_timed):
        for s in steppers.values():
            s.step(timed=i >= n_warm)
    return {name: s.summary() for name, s in steppers.items()}


def _copy_peft_into_ours(peft: PeftPrefix, ours) -> bool:
    """Start ours from PEFT's weights (same MLP shapes: GPT-2 geometry); False where the shapes differ (GQA:
    PEFT's embedding is kv-dim wide, ours d_model wide)."""
    enc, pool = peft.encoder(), ours.pools["self"]
    pairs = [(pool.embed, enc.embedding.weight), (pool.mlp[0].weight, enc.transform[0].weight),
             (pool.mlp[0].bias, enc.transform[0].bias), (pool.mlp[2].weight, enc.transform[2].weight),
             (pool.mlp[2].bias, enc.transform[2].bias)]
    if any(a.shape != b.shape for a, b in pairs):
        return False
    with torch.no_grad():
        for a, b in pairs:
            a.copy_(b)
    return True


def bench_training(cfg, model: str) -> dict:
    out: dict[str, Any] = {}
    methods = {k: dict(v or {}) for k, v in cfg.methods.items()}
    built = {name: build(model, name, extra) for name, extra in methods.items()}
    batch = _batch(next(iter(built.values())).backbone, int(cfg.batch_size))
    same_start = ("prefix" in built and "peft_prefix" in built
                  and _copy_peft_into_ours(built["peft_prefix"], built["prefix"]))
    out.update(train_interleaved(built, batch, int(cfg.warmup_steps), int(cfg.timed_steps), float(cfg.lr)))
    for name in built:
        print(f"[bench] {model} train {name}: {out[name]['tokens_per_s']:.0f} tok/s "
              f"(median {out[name]['step_s']:.2f} s/step), losses {[round(x, 4) for x in out[name]['losses']]}",
              flush=True)
    if "prefix" in out and "peft_prefix" in out:
        a, b = out["prefix"]["losses"], out["peft_prefix"]["losses"]
        out["prefix_vs_peft"] = {"same_start": same_start, "speedup": out["prefix"]["tokens_per_s"]
                                 / out["peft_prefix"]["tokens_per_s"],
                                 "max_loss_diff": max(abs(x - y) for x, y in zip(a, b)) if same_start else None}
    return out


def bench_bf16(cfg, model: str) -> dict:
    """fp32 vs bf16 autocast, the two runs interleaved step by step from the same start weights."""
    out = {}
    for name in cfg.bf16_methods:
        built = {}
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            built[precision] = build(model, name, dict(cfg.methods.get(name) or {}))
        batch = _batch(built["fp32"].backbone, int(cfg.batch_size))
        res = train_interleaved(built, batch, int(cfg.warmup_steps), int(cfg.timed_steps), float(cfg.lr),
                                bf16={"bf16": True})
        res["speedup"] = res["fp32"]["step_s"] / res["bf16"]["step_s"]
        res["first_loss_rel_diff"] = abs(res["bf16"]["losses"][0] - res["fp32"]["losses"][0]) / res["fp32"]["losses"][0]
        out[name] = res
        print(f"[bench] {model} {name} bf16 speed-up {res['speedup']:.2f}x, first-step loss rel. diff "
              f"{res['first_loss_rel_diff']:.2e}", flush=True)
    return out


def _trained_prefix(cfg):
    """Our prefix after `decode.train_steps` steps on E2E training pairs (bf16 where native, the speed settings
    on): an untrained prefix never emits EOS, so every beam runs to max_new_tokens and early exit is never tried."""
    from omegaconf import OmegaConf

    from . import speed
    from .data.collate import Collator

    d = cfg.decode
    torch.manual_seed(0)
    ours = build(d.model, "prefix", {"length": 5})
    bb = ours.backbone
    size, steps = int(cfg.batch_size), int(d.train_steps)
    feats = _features(bb, size * steps)
    collate = Collator(bb.pad_id)
    opt = torch.optim.AdamW(ours.trainable_parameters(), lr=float(d.train_lr))
    ours.train()
    t = OmegaConf.create({"bf16": provenance.native_bf16(), "speed": {"sdpa_backend": "math", "frozen_bf16": True,
                                                                       "malloc_tune": False}})
    losses = []
    with speed.training(ours, t):
        for i in range(steps):
            batch = collate(feats[i * size:(i + 1) * size])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=t.bf16):
                loss = _loss(ours, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    ours.eval()
    return ours, losses


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_decoding(cfg) -> dict:
    from peft import PrefixTuningConfig, get_peft_model

    from .backbone import load_backbone
    from .data import load_split
    from .data.collate import Collator, Encoder
    from .decode import clean, decode, generation_kwargs

    d = cfg.decode
    # fp32 on every path: this compares implementations (PEFT's generate runs without autocast); bf16 is
    # measured on its own (bench_bf16), and the cpu scale's decode.bf16 would otherwise apply to ours only
    run = _compose(f"model={d.model}", "method=prefix", "method.length=5", f"decode.max_new_tokens={d.max_new_tokens}",
                   "decode.bf16=false")
    ours, train_losses = _trained_prefix(cfg)
    bb = ours.backbone
    sources = [g.source for g in load_split("e2e", "dev").groups[: int(d.sources)]]
    enc = Encoder(bb, 0, 128, 128)
    res: dict[str, Any] = {"train_steps": int(d.train_steps), "train_losses": train_losses}
    ended: list[bool] = []
    batched, res["batched_s"] = _timed(lambda: decode(ours, enc, sources, run.decode, eos=ended))
    res["eos_share"] = sum(ended) / len(ended)
    hf, res["hf_engine_s"] = _timed(lambda: decode(ours, enc, sources, run.decode, engine="hf"))
    # bf16 autocast while decoding (the cpu scale's decode.bf16): speed and how many outputs stay the same --
    # only where the hardware has native bf16, as the cpu scale itself (emulated bf16 is ~80x slower)
    if provenance.native_bf16():
        in_bf16, res["batched_bf16_s"] = _timed(
            lambda: decode(ours, enc, sources, OmegaConf.merge(run.decode, {"bf16": True})))
        res["bf16_same_outputs"] = sum(a == b for a, b in zip(batched, in_bf16))
    single = OmegaConf.create(dict(OmegaConf.to_container(run.decode, resolve=True), batch_size=1))
    one, res["one_at_a_time_s"] = _timed(lambda: decode(ours, enc, sources, single))
    # PEFT with our materialised prefix (no projection: the stored form), same prompts and generation settings
    plain = load_backbone(run.model)  # plain weights, untouched by our hooks
    peft = get_peft_model(plain.model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5)).eval()
    kv = ours.export()["prefix.self"]
    with torch.no_grad():
        peft.prompt_encoder["default"].embedding.weight.copy_(kv.permute(3, 0, 1, 2, 4).reshape(5, -1))
    kwargs = generation_kwargs(ours, run.decode)
    feats = enc.prompt_features(sources)
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i]["input_ids"]))
    peft_out = [""] * len(feats)
    size = int(run.decode.batch_size)

    def peft_decode():
        for s in range(0, len(order), size):
            chunk = order[s:s + size]
            b = Collator(pad_id=bb.pad_id, left=True)([feats[i] for i in chunk])
            with torch.no_grad():
                gen = peft.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], **kwargs)
            for row, i in enumerate(chunk):
                peft_out[i] = clean(bb.tokenizer, gen[row, b["input_ids"].shape[1]:].tolist(), bb.eos_id,
                                    str(run.decode.empty_output))

    _, res["peft_batched_s"] = _timed(peft_decode)
    res.update(sources=len(sources), num_beams=int(run.decode.num_beams), max_new_tokens=int(d.max_new_tokens),
               batch_size=size, batched_equals_one_at_a_time=batched == one, batched_equals_peft=batched == peft_out,
               batched_equals_hf_engine=batched == hf,
               speedup_vs_one_at_a_time=res["one_at_a_time_s"] / res["batched_s"],
               speedup_vs_hf_engine=res["hf_engine_s"] / res["batched_s"],
               speedup_vs_peft=res["peft_batched_s"] / res["batched_s"])
    print(f"[bench] decode (EOS in {100 * res['eos_share']:.0f}%): ours {res['batched_s']:.1f}s, HF engine "
          f"{res['hf_engine_s']:.1f}s, one-at-a-time {res['one_at_a_time_s']:.1f}s, PEFT {res['peft_batched_s']:.1f}s; "
          f"identical: {res['batched_equals_hf_engine']}/{res['batched_equals_one_at_a_time']}/"
          f"{res['batched_equals_peft']}", flush=True)
    return res


def matmul_rate(cfg) -> dict:
    n, reps = int(cfg.matmul.size), int(cfg.matmul.repeats)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        out[f"{name}_gflops"] = 2 * n**3 * reps / (time.perf_counter() - t) / 1e9
    return out


def flop_floor(train: dict, body_params: int, head_params: int, rate: dict) -> dict:
    """Matmul FLOPs of the step as each implementation computes it, over the measured fp32 matmul rate.

    Per token: 2 N forward + 2 N backward to the activations (+ 2 N for the weight gradients when every weight
    trains), N = the body's weights (`body_params`, embeddings left out: a lookup) for each of the T padded
    tokens (padding is computed too), and the LM head's (V x d, `head_params`) for each position it projects
    (`head_tokens`: ours the labelled positions only, PEFT all T). Attention scores are ignored (T ~ 70 here)."""
    out = {}
    for name, r in train.items():
        if not isinstance(r, dict) or "step_s" not in r:
            continue
        k = 6 if name == "finetune" else 4
        head_tokens = r.get("head_tokens", r["padded_tokens"])
        flops = k * body_params * r["padded_tokens"] + k * head_params * head_tokens
        floor_s = flops / (rate["fp32_gflops"] * 1e9)
        out[name] = {"gflop_per_step": flops / 1e9, "floor_s": floor_s, "efficiency": floor_s / r["step_s"]}
    return out


def probe_memory(model: str, name: str, extra: dict, batch_size: int, steps: int, lr: float) -> dict:
    provenance.reset_peak_memory()
    m = build(model, name, extra)
    loaded = provenance.peak_memory(run_window=True)["peak_rss_mb"]
    batch = _batch(m.backbone, batch_size)
    train_steps(m, batch, 0, steps, lr)
    return {"after_load_mb": loaded, "peak_mb": provenance.peak_memory(run_window=True)["peak_rss_mb"]}


def bench_memory(cfg, model: str) -> dict:
    out = {}
    for name in cfg.memory_methods:
        extra = json.dumps(dict(cfg.methods.get(name) or {}))
        cmd = [sys.executable, "-m", "prefixtune.bench", "--probe-memory", model, name, extra,
               str(cfg.batch_size), str(cfg.memory_steps), str(cfg.lr)]
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if res.returncode != 0:
            raise RuntimeError(f"memory probe {model}/{name} failed:\n{res.stderr[-3000:]}")
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"[bench] {model} memory {name}: peak {out[name]['peak_mb']:.0f} MB", flush=True)
    return out


def run(cfg) -> dict:
    torch.manual_seed(0)
    report: dict[str, Any] = {"settings": OmegaConf.to_container(cfg, resolve=True),
                              "provenance": provenance.collect(), "threads": torch.get_num_threads()}
    report["matmul"] = matmul_rate(cfg)
    from .backbone import load_backbone

    for model in cfg.models:
        bb = load_backbone(_compose(f"model={model}").model)
        head, embed = bb.model.get_output_embeddings().weight, bb.model.get_input_embeddings().weight
        n_params, head_params = bb.num_parameters(), head.numel()
        # the input embedding is a lookup (no FLOPs); tied to the head (GPT-2, SmolLM2) it is counted once
        body_params = n_params - head_params - (0 if embed.data_ptr() == head.data_ptr() else embed.numel())
        del bb, head, embed
        entry: dict[str, Any] = {"n_params": n_params, "head_params": head_params, "body_params": body_params}
        entry["train"] = bench_training(cfg, model)
        entry["floor"] = flop_floor(entry["train"], body_params, head_params, report["matmul"])
        if model in cfg.train_path.models:
            from . import bench_path

            entry["train_path"] = bench_path.run_variants(cfg, model)
            entry["train_path_floor"] = bench_path.floor_share(entry["train_path"], body_params, head_params,
                                                               entry["train"]["prefix"]["head_tokens"],
                                                               report["matmul"])
        entry["memory"] = bench_memory(cfg, model)
        if model == cfg.decode.model and provenance.native_bf16():
            entry["bf16"] = bench_bf16(cfg, model)
        elif model == cfg.decode.model:
            entry["bf16_skipped"] = NO_NATIVE_BF16
        report[model] = entry
    report["decode"] = bench_decoding(cfg)
    report["targets"] = judge(cfg, report)
    return report


def judge(cfg, rep: dict) -> list[dict]:
    t = cfg.targets
    rows = []
    for model in cfg.models:
        pv = rep[model]["train"].get("prefix_vs_peft")
        if pv:
            rows.append({"target": f"training throughput ours / PEFT prefix ({model})", "want": f">= {t.train_vs_peft_prefix}",
                         "got": pv["speedup"], "met": pv["speedup"] >= t.train_vs_peft_prefix})
        mem = rep[model]["memory"]
        if "prefix" in mem and "finetune" in mem:
            r = mem["prefix"]["peak_mb"] / mem["finetune"]["peak_mb"]
            rows.append({"target": f"peak memory prefix / fine-tuning ({model})",
                         "want": f"<= {t.memory_prefix_vs_finetune}", "got": r, "met": r <= t.memory_prefix_vs_finetune})
        path = rep[model].get("train_path")
        if path:
            fast = path[cfg.train_path.target_variant]
            ok = fast["first_losses_max_rel_diff"] <= t.train_path_loss_rel_tol
            rows.append({"target": f"prefix s/step stock / {cfg.train_path.target_variant} ({model}), first 6 losses "
                                   f"within {t.train_path_loss_rel_tol:g} rel.", "want": f">= {t.train_path_speedup}",
                         "got": fast["speedup_vs_stock"], "met": fast["speedup_vs_stock"] >= t.train_path_speedup and ok})
    d = rep["decode"]
    rows.append({"target": "ours batched / PEFT generate decoding speed, outputs identical (fp32)",
                 "want": f">= {t.decode_vs_peft}", "got": d["speedup_vs_peft"],
                 "met": d["speedup_vs_peft"] >= t.decode_vs_peft and d["batched_equals_peft"]})
    rows.append({"target": "batched / one-at-a-time decoding speed", "want": f">= {t.batched_vs_one_at_a_time}",
                 "got": d["speedup_vs_one_at_a_time"],
                 "met": d["speedup_vs_one_at_a_time"] >= t.batched_vs_one_at_a_time and d["batched_equals_one_at_a_time"]})
    return rows


def to_markdown(rep: dict) -> str:
    hw = rep["provenance"]["hardware"]
    lines = ["# Benchmarks (`make bench`)", "",
             f"Generated by `python -m prefixtune.bench` from `results/bench.json`. CPU: {hw.get('cpu_model')}, "
             f"{rep['threads']} threads; git {rep['provenance']['git'].get('sha', '?')[:10]}"
             f"{' (dirty)' if rep['provenance']['git'].get('dirty') else ''}. Batch: {rep['settings']['batch_size']} "
             f"real E2E training pairs; median of {rep['settings']['timed_steps']} timed steps after "
             f"{rep['settings']['warmup_steps']} warm-up (min–max in brackets).", "",
             "## Targets", "", "| target | wanted | measured | met |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['want']} | {r['got']:.2f} | {'yes' if r['met'] else 'no'} |" for r in rep["targets"]]
    lines += ["", f"Matmul rate (2048², this CPU): fp32 {rep['matmul']['fp32_gflops']:.0f} GFLOP/s, "
              f"bf16 {rep['matmul']['bf16_gflops']:.0f} GFLOP/s.", ""]
    for model in rep["settings"]["models"]:
        e = rep[model]
        lines += [f"## Training: {model} ({e['n_params'] / 1e6:.1f}M parameters)", "",
                  "| method | trainable | tokens/s | s/step | floor s/step | of floor | peak RSS (MB) | losses |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in e["train"].items():
            if name == "prefix_vs_peft":
                continue
            fl, mem = e["floor"].get(name, {}), e["memory"].get(name, {})
            lines.append(f"| {name} | {r['trainable']:,} | {r['tokens_per_s']:.0f} | {r['step_s']:.2f} "
                         f"({r['step_s_min']:.2f}–{r['step_s_max']:.2f}) | {fl.get('floor_s', float('nan')):.2f} | "
                         f"{100 * fl.get('efficiency', float('nan')):.0f}% | "
                         f"{mem.get('peak_mb', float('nan')):.0f} | {', '.join(f'{x:.4f}' for x in r['losses'])} |")
        lines += ["", "Floor: the step's matmul FLOPs as each implementation computes them (the LM head over the "
                  "positions it projects: ours the labelled ones only, PEFT every position) at the measured fp32 "
                  "matmul rate; attention scores left out."]
        pv = e["train"].get("prefix_vs_peft")
        if pv:
            same = (f"same start weights, largest loss difference {pv['max_loss_diff']:.2e}" if pv["same_start"]
                    else "different start weights (PEFT's GQA prefix embedding is kv-dim wide, ours d_model wide)")
            lines += ["", f"Ours vs PEFT prefix: {pv['speedup']:.2f}x tokens/s; {same}."]
        if "train_path" in e:
            from . import bench_path

            lines += [""] + bench_path.markdown(e["train_path"], e["train_path_floor"], rep["settings"]["train_path"])
        if "bf16_skipped" in e:
            lines += ["", f"bf16 autocast: not measured -- {e['bf16_skipped']}"]
        if "bf16" in e:
            lines += ["", "| method | fp32 s/step | bf16 s/step | speed-up | first-step loss rel. diff |",
                      "|---|---|---|---|---|"]
            lines += [f"| {n} | {r['fp32']['step_s']:.2f} | {r['bf16']['step_s']:.2f} | {r['speedup']:.2f}x | "
                      f"{r['first_loss_rel_diff']:.1e} |" for n, r in e["bf16"].items()]
        lines.append("")
    d = rep["decode"]
    lines += ["## Decoding (prefix, beam %d, %d E2E dev sources, up to %d new tokens, batch %d)" % (
              d["num_beams"], d["sources"], d["max_new_tokens"], d["batch_size"]), "",
              f"The prefix was trained {d['train_steps']} steps first (loss {d['train_losses'][0]:.2f} -> "
              f"{d['train_losses'][-1]:.2f}) so that beams end: {100 * d['eos_share']:.0f}% of the outputs end with "
              "EOS. Every path in fp32 except the bf16 row; sources sorted by length, batched.", "",
              "| path | seconds | speed-up of ours | outputs identical to ours batched |", "|---|---|---|---|",
              f"| ours, batched (prefixtune.beam: finished sources leave the batch) | {d['batched_s']:.1f} | — | — |",
              f"| ours, HF `generate` engine, batched | {d['hf_engine_s']:.1f} | {d['speedup_vs_hf_engine']:.2f}x | "
              f"{d['batched_equals_hf_engine']} |",
              f"| ours, one source at a time | {d['one_at_a_time_s']:.1f} | {d['speedup_vs_one_at_a_time']:.2f}x | "
              f"{d['batched_equals_one_at_a_time']} |",
              f"| PEFT `generate`, batched | {d['peft_batched_s']:.1f} | {d['speedup_vs_peft']:.2f}x | "
              f"{d['batched_equals_peft']} |"]
    if "batched_bf16_s" in d:
        lines.append(f"| ours, batched, bf16 autocast | {d['batched_bf16_s']:.1f} | "
                     f"{d['batched_s'] / d['batched_bf16_s']:.2f}x faster than ours fp32 | "
                     f"{d['bf16_same_outputs']}/{d['sources']} the same |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--probe-train":
        from .bench_path import probe

        a = json.loads(argv[1])
        print(json.dumps(probe(a["model"], a["variant"], a["batch_size"], a["n_warm"], a["n_timed"], a["lr"],
                               a["profile_steps"]), default=float))
        return 0
    if argv and argv[0] == "--probe-memory":
        model, name, extra, bs, steps, lr = argv[1:7]
        print(json.dumps(probe_memory(model, name, json.loads(extra), int(bs), int(steps), float(lr))))
        return 0
    cfg = OmegaConf.merge(OmegaConf.load(CONF / "bench" / "default.yaml"), OmegaConf.from_dotlist(argv))
    rep = run(cfg)
    out = paths.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "bench.json", json.dumps(rep, indent=1, default=float) + "\n")
    write_atomic(out / "bench.md", to_markdown(rep) + "\n")
    print(out / "bench.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
