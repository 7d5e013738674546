"""The paper's figures over one swept setting, as pure functions of the run records.

`python -m prefixtune.sweeps fig3|fig4|fig5 [--scale cpu] [--root results/] [--out results/]` reads the finished
records of the figure's group and writes results/<fig>.md, results/<fig>.csv and results/figures/<fig>_*.png:
per series (dataset or method) and x (training-set size, prefix length, initialisation), the test metrics as mean ±
sample std over the runs behind the point (seeds, and sampled subsets for low data), n shown.
  fig3: low-data E2E, prefix vs fine-tuning against the training-set size (ACL Figure 3);
  fig4: prefix length, with the training loss over the whole run and at its end, in the method's units (longer
        prefixes fit better but score worse: ACL Figure 4);
  fig5: initialisation words in low-data E2E (ACL Figure 5).
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
from pathlib import Path

from .claims import Stat, diff
from .paths import results_dir
from .results import RunRecord, iter_records, left_out_lines, left_out_reasons, newest_config
from .tables import code_version_lines, compute_lines, new_figure, output_stem, save_figure, write_atomic

def _init_label(cfg: dict) -> str:
    init = (cfg.get("method") or {}).get("init") or {}
    return str(init.get("words")) if init.get("kind") == "words" else str(init.get("kind", "random"))


# figure -> (group, x label, x getter, series getter, [(column, record key, display scale, digits, higher better)])
# display scale None = x100 for E2E (its scorer reports fractions), 1 elsewhere.
_QUALITY = [("BLEU", "test/bleu", None, 2, True), ("ROUGE-L", "test/rouge_l", None, 2, True)]
FIGURES = {
    "fig3": ("fig3", "training examples", lambda c: _get(c, "data.lowdata.size"), lambda c: c.get("row"), _QUALITY),
    # table-to-text (DART/E2E) plots BLEU and TER, summarisation (XSUM) ROUGE-2 and ROUGE-L (ACL Figure 4); a
    # series shows the columns its records have
    "fig4": ("fig4", "method.length", lambda c: _get(c, "method.length"), lambda c: c["data"]["name"],
             [("BLEU", "test/bleu", None, 2, True), ("TER", "test/ter", None, 3, False),
              ("ROUGE-2", "test/rouge2", None, 2, True), ("ROUGE-L", "test/rougeL", None, 2, True),
              ("train loss (run mean)", "train/loss", 1, 3, False),
              ("train loss (end)", "train/loss_final", 1, 3, False)]),
    "fig5": ("fig5", "initialisation", _init_label, lambda c: c["data"]["name"], _QUALITY),
}
# what differs between the runs averaged into one point: the seed and, for low data, the sampled subset
REPEAT_KEYS = ("seed", "data.lowdata.subset")
# figure -> (series a, series b): the report shows a - b at every x both have, and its mean over those x
# (Figure 3: the paper's "+2.9 BLEU on average" for prefix over fine-tuning, §2.5)
GAPS = {"fig3": ("prefix", "finetune")}
# what a training-loss column measures, by method.loss_reduction (methods/base.py `_reduce`)
LOSS_UNITS = {"sequence_sum": "each sentence's summed token NLL in nats, batch mean (the original code's "
                              "`--objective_mode 1`)",
              "token_mean": "mean token NLL in nats"}
E2E_SCALE = {"test/bleu": 100, "test/rouge_l": 100, "test/meteor": 100}  # E2E scorer: fractions


def _get(cfg: dict, dotted: str):
    node = cfg
    for k in dotted.split("."):
        node = node.get(k) if isinstance(node, dict) else None
    return node


def points(records: list[RunRecord], name: str, scale: str, group: str | None = None) -> list[dict]:
    """One point per (series, x) of figure `name` (records of its group, or of `group`): mean, std (None with
    one seed/subset) and n of every metric; the runs behind a point differ only in seed (and, for low data, the
    sampled subset)."""
    default_group, _, get_x, get_series, metrics = FIGURES[name]
    group = group or default_group
    recs = [r for r in records if r.group == group and r.status == "finished" and r.config["scale"]["name"] == scale]
    point = lambda r: (get_series(r.config), get_x(r.config))  # noqa: E731
    # a point averages its seeds (and sampled subsets) within the newest config only; older runs are listed
    recs, stale = newest_config(recs, point, REPEAT_KEYS)
    by: dict[tuple, list[RunRecord]] = {}
    for r in recs:
        by.setdefault(point(r), []).append(r)
    out = []
    for (series, x), recs in sorted(by.items(), key=lambda kv: (str(kv[0][0]), _order(kv[0][1]))):
        ds = recs[0].config["data"]["name"]
        why = left_out_reasons([r for r in stale if point(r) == (series, x)], recs, point, REPEAT_KEYS)
        p = {"series": series, "dataset": ds, "x": x, "n": len(recs),
             "seeds": sorted(r.config.get("seed") for r in recs), "run_ids": sorted(r.run_id for r in recs),
             "left_out": sorted(why), "left_out_why": why, "records": recs}
        for col, mkey, factor, _, _ in metrics:
            f = factor if factor is not None else (E2E_SCALE.get(mkey, 1) if ds == "e2e" else 1)
            vals = [r.metrics.get(mkey) * f for r in recs if r.metrics.get(mkey) is not None]
            p[col] = (statistics.fmean(vals) if vals else None,
                      statistics.stdev(vals) if len(vals) > 1 else None, len(vals))
        out.append(p)
    return out


def _order(x):
    """Numbers in numeric order, then words ("random" first: Figure 5's baseline)."""
    return (0, x, "") if isinstance(x, (int, float)) else (1, 0 if x == "random" else 1, str(x))


# figure -> (title, output stem of the PNG, what the paper shows; reference/paper.md)
TEXT = {
    "fig3": ("ACL Figure 3: low-data E2E, prefix (init \"table-to-text:\") vs fine-tuning", "fig3_lowdata",
             "Prefix-tuning beats fine-tuning by 2.9 BLEU on average over sizes 50-500, the gap narrowing as data "
             "grows (plots only; §2.5). Points: mean over sampled subsets x seeds (n)."),
    "fig4": ("ACL Figure 4: prefix length", "fig4_prefix_length",
             "Quality peaks at length 10 for table-to-text (DART) and 200 for summarisation, and longer prefixes "
             "reach a lower training loss (plots only; §2.6). Points: mean over seeds (n)."),
    "fig5": ("ACL Figure 5: initialisation, low-data E2E (100 examples)", "fig5_init",
             "Random initialisation is low and high-variance; real words are much better, task-relevant ones "
             "(\"summarize\", \"table-to-text:\") slightly better than irrelevant ones (plots only; §2.7). Points: "
             "mean over seeds (n)."),
}


def _shown(metrics: list[tuple], pts: list[dict]) -> list[tuple]:
    """The metric columns some point of `pts` has a value for (a summarisation series has no BLEU)."""
    return [m for m in metrics if any(p[m[0]][0] is not None for p in pts)]


def to_csv(name: str, pts: list[dict]) -> str:
    _, xlabel, _, _, metrics = FIGURES[name]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["series", "dataset", xlabel, "n_runs"] + [f"{c}_{s}" for c, *_ in metrics for s in ("mean", "std", "n")])
    g = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    for p in pts:
        w.writerow([p["series"], p["dataset"], p["x"], p["n"]] + [g(x) for c, *_ in metrics for x in p[c]])
    return buf.getvalue()


def gap_lines(name: str, pts: list[dict]) -> list[str]:
    """Series a - b (GAPS) per x and averaged over the x both series have; `± se` only where every point has
    a spread (claims.diff: independent runs)."""
    if name not in GAPS:
        return []
    a, b = GAPS[name]
    _, xlabel, _, _, metrics = FIGURES[name]
    by = {(p["series"], p["x"]): p for p in pts}
    xs = sorted({x for (ser, x) in by if ser == a and (b, x) in by}, key=_order)
    head = [f"## {a} − {b}", ""]
    if not xs:
        return head + [f"Nothing to compare yet: no {a} point has a {b} point at the same {xlabel}.", ""]
    diffs = []
    for col, _, _, digits, hib in metrics:
        pairs = {x: (Stat(*by[(a, x)][col]), Stat(*by[(b, x)][col])) for x in xs
                 if by[(a, x)][col][0] is not None and by[(b, x)][col][0] is not None}
        diffs.append((col, digits, diff(pairs, hib)[0]))
    lines = head + [f"Positive = {a} better (oriented by each metric's direction). Only the {xlabel} values with "
                    f"both points are compared: {', '.join(map(str, xs))}.", "",
                    f"| {xlabel} | " + " | ".join(c for c, _, _ in diffs) + " |", "|--:|" + "--:|" * len(diffs)]
    for x in xs:
        lines.append(f"| {x} | " + " | ".join("—" if d is None or x not in d.parts else f"{d.parts[x]:+.{g}f}"
                                               for _, g, d in diffs) + " |")
    lines.append("| **mean** | " + " | ".join(
        "—" if d is None else f"**{d.mean:+.{g}f}**" + (f" ± {d.se:.{g}f} (se)" if d.se is not None else "")
        for _, g, d in diffs) + " |")
    return lines + [""]


def setting_lines(name: str, recs: list[RunRecord], pts: list[dict]) -> list[str]:
    """What the shown runs are and where they deviate from the paper, read off the records: each distinct record
    note with the points it holds for, the seeds / subsets behind the points, and what the runs cost."""
    _, _, get_x, get_series, _ = FIGURES[name]
    shown = {rid for p in pts for rid in p["run_ids"]}
    recs = [r for r in recs if r.run_id in shown]
    where: dict[str, list[str]] = {}
    for r in recs:
        for note in dict.fromkeys(r.notes):
            where.setdefault(note, []).append(f"{get_series(r.config)} {get_x(r.config)}")
    if any(m[1].startswith("train/") for m in FIGURES[name][4]):
        for r in recs:
            unit = LOSS_UNITS[(r.config.get("method") or {}).get("loss_reduction", "token_mean")]
            every = _get(r.config, "trainer.log_every")
            where.setdefault(f"train loss = {unit}; \"run mean\" averages every optimiser step, \"end\" the last "
                             + (f"{every} steps" if every else "logging window")
                             + " (records written before `train/loss_final` existed have no end value)",
                             []).append(f"{get_series(r.config)} {get_x(r.config)}")
    out = [f"{note} ({'all runs' if len(at) == len(recs) else ', '.join(dict.fromkeys(at))})"
           for note, at in where.items()]
    for key in REPEAT_KEYS:
        vals = sorted({_get(r.config, key) for r in recs} - {None}, key=str)
        if vals:
            out.append(f"{key} over the runs: {', '.join(map(str, vals))} (each point's n says how many it has).")
    out += code_version_lines(recs, lambda r: (get_series(r.config), get_x(r.config)))
    return ["## Setting and deviations", ""] + [f"- {x}" for x in out + compute_lines(recs)] + [""]


def to_markdown(name: str, pts: list[dict], scale: str, models: str, recs: list[RunRecord] = ()) -> str:
    group, xlabel, _, _, metrics = FIGURES[name]
    title, png, paper = TEXT[name]
    lines = [f"# {title} ({scale} scale)", "",
             f"**Ours ({models}) — not the paper's numbers.** Generated by `python -m prefixtune.sweeps {name}` from "
             f"the records of `results/runs/{group}/`; plot: `results/figures/{png}.png`. The paper: {paper}", ""]
    for series in dict.fromkeys(p["series"] for p in pts):
        part = [p for p in pts if p["series"] == series]
        shown = _shown(metrics, part)
        lines += [f"## {series}", "", f"| {xlabel} | n | " + " | ".join(f"{c} {'↑' if hib else '↓'}"
                                                                      for c, _, _, _, hib in shown) + " |",
                  "|--:|--:|" + "--:|" * len(shown)]
        for p in part:
            cells = []
            for col, _, _, digits, _ in shown:
                mean, std, _ = p[col]
                cells.append("—" if mean is None else f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else ""))
            lines.append(f"| {p['x']} | {p['n']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += gap_lines(name, pts)
    for line in left_out_lines({rid: why for p in pts for rid, why in p.get("left_out_why", {}).items()}, "point"):
        lines += [f"{line}.", ""]
    if recs:
        lines += setting_lines(name, list(recs), pts)
    return "\n".join(lines)


def plot(name: str, pts: list[dict], path: Path) -> Path:
    _, xlabel, _, _, metrics = FIGURES[name]
    metrics = _shown(metrics, pts)
    numeric = all(isinstance(p["x"], (int, float)) for p in pts)
    cats = list(dict.fromkeys(p["x"] for p in pts))  # categorical x (Figure 5's init words), in table order
    fig, axes = new_figure(len(metrics), 4.4, 3.6)
    for ax, (col, _, _, _, hib) in zip(axes, metrics):
        for series in dict.fromkeys(p["series"] for p in pts):
            part = [p for p in pts if p["series"] == series and p[col][0] is not None]
            xs = [p["x"] if numeric else cats.index(p["x"]) for p in part]
            ax.errorbar(xs, [p[col][0] for p in part], yerr=[p[col][1] or 0 for p in part], marker="o", capsize=3,
                        label=str(series), ls="-" if numeric else "none")
        ax.set(xlabel=xlabel, ylabel=col, title=f"{col} {'↑' if hib else '↓'}")
        if numeric:
            ax.set_xscale("symlog", linthresh=1)
        else:
            ax.set_xticks(range(len(cats)), cats, rotation=45, ha="right", fontsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser("prefixtune.sweeps", description="writes <out>/<name>.md .csv + figures/<png>")
    ap.add_argument("name", choices=sorted(FIGURES))
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--root", type=Path, help="results folder with runs/ (default: paths.results_dir())")
    ap.add_argument("--out", type=Path, help="output folder (default: the results folder)")
    args = ap.parse_args(argv)
    group = FIGURES[args.name][0]
    recs = list(iter_records(args.root, group, strict=False))
    pts = points(recs, args.name, args.scale)
    if not pts:
        print(f"no finished {group} records at scale {args.scale} under {args.root or results_dir()}",
              file=sys.stderr)
        return 1
    out = args.out or args.root or results_dir()
    models = ", ".join(dict.fromkeys(r.config["model"]["label"] for r in recs if r.config["scale"]["name"] == args.scale))
    stem = output_stem(args.name, args.scale)
    print(write_atomic(out / f"{stem}.md", to_markdown(args.name, pts, args.scale, models, recs)))
    print(write_atomic(out / f"{stem}.csv", to_csv(args.name, pts)))
    png = TEXT[args.name][1] + ("" if stem == args.name else f"_{args.scale}")
    print(plot(args.name, pts, out / "figures" / f"{png}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
