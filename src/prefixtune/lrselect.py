"""Learning rates chosen on dev (issue #22): the converged protocol's stage 1, as a pure function of the records.

The paper tuned each method's learning rate on dev (reference/paper.md §4.1, ACL Table 6). At the cpu scale one
factor (x10) was chosen on 16 *test* MRs for prefix only; here every cell gets its own choice, on dev:

* `conv_select` runs (conf/scale/conv_select.yaml) train each cell briefly at every factor of `scale.lr_grid`
  (times the cell's paper rate, optim.lr) and record the lowest dev loss (`dev/loss`, the mean per-sentence /
  per-token NLL the method trains on, over the fixed dev subset);
* `python -m prefixtune.lrselect conv_select` reads them and writes results/lr_choice/conv_select.json (what the
  `conv` scale reads through `${lr_choice:...}`) and .md (the grid, every dev loss, the choice, edge flags);
* a cell whose grid is not complete, or whose every run diverged, has no choice: the `conv` cell then refuses to
  compose, naming the cell and the command, rather than fall back to a rate nobody chose.

The choice is the factor with the lowest dev loss; ties (within 1e-6) go to the smaller rate. A choice on an
edge of the grid extends *that cell's* grid one factor further (`scale.lr_grid_extend`: x ratio beyond the top,
/ ratio below the bottom, at most `max` times), so no cell is left on an edge it could have left at the price of
one short run; after the last extension an edge choice is flagged: the best rate may lie outside it.
`python -m prefixtune.lrselect conv_select --run table2/e2e_prefix ...` runs what the choices still miss (the
base grid, then each extension) as Hydra multiruns and writes the choices (`make lrselect`).
A cell may use another cell's choice (`scale.lr_share`, experiment-name pattern -> cell): the low-data cells of one
method share the choice of its 100-example cell, as the paper trains every low-data size at one rate (ACL A.2).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import subprocess
import sys
from pathlib import Path

import yaml

from .paths import REPO_ROOT, results_dir
from .results import RunRecord, iter_records, steps_trained
from .tables import write_atomic

CHOICE_DIR = "lr_choice"


def _scale_conf(select: str) -> tuple[Path, dict]:
    """conf/scale/<select>.yaml and its `scale:` keys, its parent scales' merged under them."""
    from .budget import scale_keys

    return REPO_ROOT / "conf" / "scale" / f"{select}.yaml", scale_keys(select)


def grid(select: str = "conv_select") -> list[float]:
    """The factors of conf/scale/<select>.yaml `scale.lr_grid` (the base grid every cell runs)."""
    path, sc = _scale_conf(select)
    values = sc.get("lr_grid")
    if not values:
        raise ValueError(f"{path}: scale.lr_grid is missing or empty")
    return [float(v) for v in values]


def extension(select: str = "conv_select") -> tuple[float, int]:
    """(ratio, max extensions) of conf/scale/<select>.yaml `scale.lr_grid_extend`; (1, 0) when it has none."""
    path, sc = _scale_conf(select)
    ext = sc.get("lr_grid_extend") or {}
    ratio, most = float(ext.get("ratio", 1.0)), int(ext.get("max", 0))
    if most and ratio <= 1.0:
        raise ValueError(f"{path}: scale.lr_grid_extend.ratio must be > 1 (got {ratio})")
    return ratio, most


def _round(f: float) -> float:
    """A factor as the runs record it (6 significant digits, the `:g` the Hydra override is written with)."""
    return float(f"{f:g}")


def _dev_loss(rec: RunRecord) -> float | None:
    v = rec.metrics.get("dev/loss")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _pick(g: list[float], runs: dict[float, RunRecord]) -> tuple[float | None, str | None, list[float]]:
    """(choice, edge, missing factors) over the grid `g`."""
    missing = [f for f in g if f not in runs]
    finite = [(loss, f) for f in g if f in runs and (loss := _dev_loss(runs[f])) is not None]
    if missing or not finite:
        return None, None, missing
    best = min(loss for loss, _ in finite)
    chosen = min(f for loss, f in finite if loss <= best + 1e-6)
    return chosen, ("top" if chosen == g[-1] else ("bottom" if chosen == g[0] else None)), []


def choose(records: list[RunRecord], select: str, factors: list[float] | None = None,
           extend: tuple[float, int] | None = None) -> dict[str, dict]:
    """experiment name -> {grid, extended, dev_loss {factor: loss | None}, runs {factor: run id}, chosen, edge,
    missing, steps, paper_lr, group}. The base grid and its edge extension are today's conf (`factors` default:
    `grid(select)`; `extend` default: `extension(select)` when `factors` is not given, else none), so a grid
    extended after a choice at its edge reuses the runs already made (scale.lr_grid and scale.lr_grid_extend are
    volatile: they do not change what a run computes). A cell's grid grows one factor past the edge its choice lies
    on, while extensions are left; the new factor is `missing` (no choice) until it is run. Records of other
    scales are ignored; for a factor run twice the newest record counts."""
    base = sorted(_round(float(x)) for x in (factors if factors is not None else grid(select)))
    ratio, most = extend if extend is not None else (extension(select) if factors is None else (1.0, 0))
    by_exp: dict[str, dict[float, RunRecord]] = {}
    for r in records:
        sc = r.config.get("scale") or {}
        if sc.get("name") != select or r.status != "finished":
            continue
        f = _round(float(sc["lr_scale"]))
        cur = by_exp.setdefault(r.config["experiment_name"], {}).get(f)
        if cur is None or (r.finished_at or "") > (cur.finished_at or ""):
            by_exp[r.config["experiment_name"]][f] = r
    out: dict[str, dict] = {}
    for exp, runs in sorted(by_exp.items()):
        g, added = list(base), []
        chosen, edge, missing = _pick(g, runs)
        while edge and len(added) < most:
            new = _round(g[-1] * ratio) if edge == "top" else _round(g[0] / ratio)
            g = sorted(g + [new])
            added.append(new)
            chosen, edge, missing = _pick(g, runs)
        any_rec = next(iter(runs.values()))
        out[exp] = {"grid": g, "extended": added,
                    "dev_loss": {_key(f): (_dev_loss(runs[f]) if f in runs else None) for f in g},
                    "runs": {_key(f): runs[f].run_id for f in g if f in runs},
                    "chosen": chosen, "edge": edge, "missing": missing,
                    "steps": {_key(f): steps_trained(runs[f]) for f in g if f in runs},
                    "paper_lr": float(any_rec.config["optim"]["lr"]), "group": any_rec.group}
    return out


def _key(f: float) -> str:
    return f"{f:g}"


def _by_factor(d: dict) -> list[tuple[str, object]]:
    """A factor-keyed dict in ascending factor order (JSON sorts "10" before "3")."""
    return sorted(d.items(), key=lambda kv: float(kv[0]))


def to_markdown(choices: dict[str, dict], select: str) -> str:
    lines = [f"# Learning rates chosen on dev (`{select}` runs)", "",
             "Generated by `python -m prefixtune.lrselect` from the records (results/runs/*/); read by the `conv` "
             "scale. Each factor multiplies the cell's paper rate (optim.lr, ACL Table 6); each run trains "
             "briefly at that rate (conf/scale/" + select + ".yaml) and reports its lowest dev loss (the training "
             "objective on the fixed dev subset). The choice is the lowest dev loss; ties go to the smaller rate; "
             "a choice on an edge of the grid extends that cell's grid one factor past it (scale.lr_grid_extend). "
             "No test data is read.", "",
             "| cell | paper lr | dev loss per factor | chosen | lr used | note |", "|---|---|---|---|---|---|"]
    for exp, c in choices.items():
        cells = ", ".join(f"x{k}: " + ("diverged" if v is None and k in c["runs"] else "—" if v is None
                                         else f"{v:.4f}") for k, v in _by_factor(c["dev_loss"]))
        if c["chosen"] is None:
            note = ("grid incomplete: " + ", ".join(f"x{_key(f)}" for f in c["missing"]) + " not run"
                    + (" (an extension past the edge of the choice before it)" if c.get("extended") else "")
                    if c["missing"] else "every run diverged")
            lines.append(f"| {exp} | {c['paper_lr']:.3g} | {cells} | — | — | {note} |")
            continue
        note = {"top": "at the top of the grid: a larger rate might be better",
                "bottom": "at the bottom of the grid: a smaller rate might be better"}.get(c["edge"] or "", "")
        if c.get("extended"):
            note = "; ".join(x for x in ("grid extended past its edge by " + ", ".join(
                f"x{_key(f)}" for f in c["extended"]), note) if x)
        lines.append(f"| {exp} | {c['paper_lr']:.3g} | {cells} | x{_key(c['chosen'])} | "
                     f"{c['paper_lr'] * c['chosen']:.3g} | {note} |")
    return "\n".join(lines) + "\n"


def choice_path(root: Path | str | None, select: str) -> Path:
    return Path(root or results_dir()) / CHOICE_DIR / f"{select}.json"


def write(root: Path | str | None, select: str, factors: list[float] | None = None) -> dict[str, dict]:
    root = Path(root or results_dir())
    choices = choose(list(iter_records(root, None, "finished", strict=False)), select, factors)
    write_atomic(choice_path(root, select), json.dumps(choices, indent=1, sort_keys=True) + "\n")
    write_atomic(choice_path(root, select).with_suffix(".md"), to_markdown(choices, select))
    return choices


def source(experiment: str, share=None) -> str:
    """The cell whose choice `experiment` uses: the value of the first pattern of `share` (scale.lr_share,
    experiment-name glob -> experiment name) that matches it, else the cell itself."""
    for pattern, cell in dict(share or {}).items():
        if fnmatch.fnmatchcase(experiment, str(pattern)):
            return str(cell)
    return experiment


def entry(root: Path | str | None, select: str, experiment: str, share=None) -> dict:
    """The choice of one cell (or of the cell it shares one with); a clear error when there is none (never a
    default rate)."""
    path = choice_path(root, select)
    src = source(experiment, share)
    whose = src if src == experiment else f"{src} (whose choice {experiment} shares: scale.lr_share)"
    how = (f"run its `{select}` learning-rate runs and `python -m prefixtune.lrselect {select}` "
           f"(`make table2 SCALE=conv` does both)")
    if not path.exists():
        raise ValueError(f"scale.lr_scale: no learning-rate choice file {path}; {how}")
    choices = json.loads(path.read_text(encoding="utf-8"))
    c = choices.get(src)
    if c is None or c.get("chosen") is None:
        why = "not in it" if c is None else ("its grid is incomplete" if c.get("missing") else "every run diverged")
        raise ValueError(f"scale.lr_scale: {path} has no choice for {whose} ({why}); {how}")
    return c


def chosen_factor(root: str, select: str, experiment: str, share=None) -> float:
    """`${lr_choice:${output_root},${scale.select},${experiment_name},${scale.lr_share}}` (conf/scale/conv_base.yaml)."""
    return float(entry(root, select, experiment, share)["chosen"])


def note(root: Path | str | None, select: str, experiment: str, share=None) -> str:
    """The record note saying where the cell's rate came from."""
    c = entry(root, select, experiment, share)
    losses = ", ".join(f"x{k} {v:.4f}" if v is not None else f"x{k} diverged" for k, v in _by_factor(c["dev_loss"]))
    edge = f"; the choice is at the {c['edge']} of the grid" if c.get("edge") else ""
    src = source(experiment, share)
    of = "" if src == experiment else f" of {src}, whose rate this cell shares (scale.lr_share)"
    return (f"learning-rate factor x{_key(c['chosen'])} chosen on dev loss{of} ({losses}) of short `{select}` runs "
            f"(results/{CHOICE_DIR}/{select}.md){edge}")


def pending(cells: list[str], select: str, root: Path | str | None = None) -> dict[str, list[float]]:
    """experiment path (conf/experiment/<path>.yaml) -> the factors its choice still needs run: the base grid for a
    cell with no selection run yet, else what `choose` lists as missing (an incomplete grid or a new extension).
    A cell that shares another's choice (scale.lr_share) stands for that cell: the runs go to the cell whose
    choice it uses, once however many of `cells` share it."""
    from .budget import cell_info

    choices = choose(list(iter_records(Path(root or results_dir()), None, "finished", strict=False)), select)
    share, base = _scale_conf(select)[1].get("lr_share"), grid(select)
    out = {}
    for cell in cells:
        name = cell_info(cell)["experiment_name"]
        src = source(name, share)
        if src != name:
            cell = experiment_path(src)
        c = choices.get(src)
        todo = base if c is None else list(c["missing"])
        if todo:
            out[cell] = todo
    return out


def experiment_path(name: str) -> str:
    """conf/experiment/<path>.yaml (as `<path>`) whose experiment_name is `name`; a clear error if none is."""
    base = REPO_ROOT / "conf" / "experiment"
    for p in sorted(base.rglob("*.yaml")):
        path = p.relative_to(base).with_suffix("").as_posix()
        if (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("experiment_name") == name:
            return path
    raise ValueError(f"scale.lr_share names {name}, which no conf/experiment/*.yaml sets as experiment_name")


def _multirun(cells: list[str], factors: list[float], select: str, extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "prefixtune.train", "--multirun", "experiment=" + ",".join(cells),
           f"scale={select}", f"scale.lr_scale=choice({','.join(_key(f) for f in factors)})", *extra]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def run(cells: list[str], select: str, root: Path | str | None = None, extra: list[str] = (),
        runner=_multirun) -> dict[str, dict]:
    """Stage 1 to its end: run every missing factor (one multirun per set of cells missing the same factors,
    experiment slowest, so a cell's grid completes first), choose, and repeat while a choice on an edge asked for
    an extension; then write the choices. `runner(cells, factors, select, extra)` runs one multirun (a test
    passes a fake). Hydra skips finished runs, so an interrupted stage 1 resumes."""
    _, most = extension(select)
    for _ in range(most + 2):  # the base grid, then at most `most` extensions; one more round proves nothing is left
        todo = pending(cells, select, root)
        if not todo:
            break
        groups: dict[tuple[float, ...], list[str]] = {}
        for cell, factors in todo.items():
            groups.setdefault(tuple(factors), []).append(cell)
        for factors, group in groups.items():
            runner(group, list(factors), select, list(extra))
    else:
        raise RuntimeError(f"lr selection for {sorted(todo)} still misses {todo} after every allowed extension "
                           "(a selection run that does not finish?)")
    return write(root, select)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser("prefixtune.lrselect", description=__doc__.split("\n\n")[0])
    p.add_argument("select", nargs="?", default="conv_select", help="the selection scale (default conv_select)")
    p.add_argument("--root", type=Path, help="results folder (default results/)")
    p.add_argument("--grid", action="store_true", help="print the scale's lr_grid as a Hydra list and exit")
    p.add_argument("--run", nargs="+", metavar="EXPERIMENT", help="first run the selection runs these cells "
                   "(conf/experiment paths) still miss, edge extensions included")
    p.add_argument("--override", action="append", default=[], help="an extra Hydra override for --run's runs")
    args = p.parse_args(argv)
    if args.grid:
        print(",".join(_key(f) for f in grid(args.select)))
        return 0
    choices = run(args.run, args.select, args.root, args.override) if args.run else write(args.root, args.select)
    print(to_markdown(choices, args.select), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
