"""What a `make` target still has to run, and about how long it takes, printed before it starts (issue #22).

`python -m prefixtune.budget --scale conv --seeds 1,2,3 [--select conv_select] table2/e2e_prefix ...` counts the
runs without a finished record (by run id, as the Makefile's multirun would name them) and estimates their time
from the finished records on disk: per (model, method) the median seconds per optimiser step and per decoded
source, times the steps the scale allows (its cap: an upper bound when early stopping ends runs sooner) and the
sources it decodes. Nothing is trained; an estimate without any record to go by says so instead of guessing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import yaml

from .paths import REPO_ROOT, results_dir
from .results import extendable, iter_records, overrides_digest, read_record, record_path, run_id, steps_trained

_DATA_SOURCES = {"e2e": 630, "webnlg": 1862, "dart": 5097}  # unique test sources (data/*/DATA.md)


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def scale_keys(name: str) -> dict:
    """conf/scale/<name>.yaml with its scale parents merged (only `scale:` keys matter here)."""
    cfg = _yaml(REPO_ROOT / "conf" / "scale" / f"{name}.yaml")
    out: dict = {}
    for d in cfg.get("defaults", []):
        if isinstance(d, str) and d != "_self_":
            out.update(scale_keys(d))
    out.update(cfg.get("scale") or {})
    return out


def cell_info(exp: str) -> dict:
    """experiment name, group, method, dataset of conf/experiment/<exp>.yaml."""
    cfg = _yaml(REPO_ROOT / "conf" / "experiment" / f"{exp}.yaml")
    over = {k.split("/")[-1]: v for d in cfg.get("defaults", []) if isinstance(d, dict)
            for k, v in d.items() if k.startswith("override")}
    return {"experiment_name": cfg["experiment_name"], "group": cfg["group"], "method": over.get("method"),
            "data": over.get("data")}


def _decoded(rec) -> int | None:
    for note in rec.notes:
        if note.startswith("scored "):
            w = note.split()
            return int(w[1]) + int(w[w.index("and") + 1])
    return None


def rates(root: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(model name, method name) -> median s/step and s/decoded source over the finished records."""
    per: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in iter_records(root, None, "finished", strict=False):
        key = (r.config["model"]["name"], r.config["method"]["name"])
        d = per.setdefault(key, {"step": [], "source": []})
        # a resumed run's train_s times only the steps of its last process (timing.train_timed_steps)
        n, m = r.timing.get("train_timed_steps") or steps_trained(r), _decoded(r)
        if n and r.timing.get("train_s"):
            d["step"].append(r.timing["train_s"] / n)
        if m and r.timing.get("decode_s"):
            d["source"].append(r.timing["decode_s"] / m)
    return {k: {name: statistics.median(v) for name, v in d.items() if v} for k, d in per.items()}


def plan(cells: list[str], scale: str, seeds: list[int], root: Path, overrides: list[str] = ()) -> list[dict]:
    """The runs of `cells` x `seeds` at `scale` with no finished record (override digests as the multirun's)."""
    out = []
    digest = overrides_digest(list(overrides))
    hard = scale_keys(scale).get("plateau_max_steps")  # a failed run below this cap is trained again (pipeline)
    for exp in cells:
        c = cell_info(exp)
        for seed in seeds:
            rid = run_id(c["experiment_name"], scale, seed, digest)
            path = record_path(c["group"], rid, root=root)
            rec = read_record(path) if path.exists() else None
            done = rec is not None and rec.status == "finished" and not extendable(rec, hard)
            if not done:
                out.append({**c, "exp": exp, "seed": seed, "run_id": rid})
    return out


def estimate(missing: list[dict], scale: str, root: Path, model: str = "smollm2_135m") -> tuple[float, list[str]]:
    """Seconds for the missing runs (upper bound at the step cap) and the (model, method) pairs with no rate."""
    sc, r = scale_keys(scale), rates(root)
    total, unknown = 0.0, []
    for m in missing:
        rate = r.get((model, m["method"]), {})
        if "step" not in rate:
            unknown.append(m["method"])
            continue
        cap = sc.get("max_decode_groups")
        n_src = _DATA_SOURCES.get(m["data"], 0) if cap is None else min(int(cap), _DATA_SOURCES.get(m["data"], 0))
        steps = int(sc.get("plateau_max_steps") or sc.get("max_steps") or 0)  # the hard cap: an upper bound
        # dev-loss evaluations every 50 steps (conf/scale/conv.yaml) over max_dev_examples in batches of 10, a
        # forward pass costing about a third of a training step
        eval_batches = steps // 50 * -(-int(sc.get("max_dev_examples") or 0) // 10)
        total += (steps + eval_batches / 3) * rate["step"] + n_src * rate.get("source", 1.0)
    return total, sorted(set(unknown))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser("prefixtune.budget", description=__doc__.split("\n\n")[0])
    p.add_argument("cells", nargs="+", help="experiment names, e.g. table2/e2e_prefix")
    p.add_argument("--scale", required=True)
    p.add_argument("--seeds", default="1")
    p.add_argument("--select", help="the learning-rate selection scale run first (conv_select)")
    p.add_argument("--root", type=Path)
    args = p.parse_args(argv)
    root = Path(args.root or results_dir())
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = []
    if args.select:
        from .lrselect import grid

        sel = [m for f in grid(args.select) for m in
               plan(args.cells, args.select, [1], root, [f"scale.lr_scale={f:g}"])]
        secs, unknown = estimate(sel, args.select, root)
        lines.append(f"  stage 1, {args.select}: {len(sel)} learning-rate runs missing, ~{secs / 3600:.1f} h"
                     + (f" (+ {', '.join(unknown)}: no finished record to time)" if unknown else ""))
    miss = plan(args.cells, args.scale, seeds, root)
    secs, unknown = estimate(miss, args.scale, root)
    cap = scale_keys(args.scale).get("plateau_max_steps") or scale_keys(args.scale).get("max_steps")
    lines.append(f"  {args.scale}: {len(miss)} of {len(args.cells) * len(seeds)} runs missing, at most ~"
                 f"{secs / 3600:.1f} h at the {cap}-step cap (early stopping usually ends sooner)"
                 + (f" (+ {', '.join(unknown)}: no finished record to time)" if unknown else ""))
    print(f"budget (median s/step and s/source of the finished records in {root}):\n" + "\n".join(lines),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
