"""Paper tables as pure functions of run records, a table spec (`conf/table/<name>.yaml`) and the paper's
numbers (a reference CSV); design.md "Results". Our cells are mean ± std over seeds on the paper's display
scale, beside the paper's; "—" = not run, "n/a" = metric unavailable (never 0). Deviations and claims follow.
`python -m prefixtune.tables table2 [--scale cpu] [--out results/]` writes table2.md/.csv/.tex atomically.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from typing import Any
from pathlib import Path

import yaml

from prefixtune import bootstrap, health
from prefixtune.claims import Claim, Interval, Stat, judge_claims
from prefixtune.paths import REPO_ROOT, results_dir
from prefixtune.results import RunRecord, iter_records, left_out_lines, left_out_reasons, newest_config

OURS, MISSING, UNAVAILABLE = "ok", "missing", "unavailable"


@dataclasses.dataclass
class Cell:
    ours: Stat | None       # display scale
    status: str             # OURS | MISSING | UNAVAILABLE
    paper: float | None     # ACL value; None where the paper prints none
    paper_v1: float | None  # v1 value where it differs from ACL


@dataclasses.dataclass
class Line:
    row: str
    label: str
    n: int                  # finished seeds of this row on this dataset
    trainable_pct: Stat | None
    stored_pct: Stat | None
    paper_stored_pct: float | None
    cells: list[Cell]
    health: str = ""        # decode health of the row's runs (prefixtune.health.cell)
    failed: list[str] = dataclasses.field(default_factory=list)   # its failed runs, with why


@dataclasses.dataclass
class Table:
    spec: dict
    heading: list[str]
    lines: dict[str, list[Line]]   # dataset id -> rows, in the order of spec["datasets"] / spec["rows"]
    deviations: list[str]
    claims: list[Claim]
    compute: list[str] = dataclasses.field(default_factory=list)
    records: list = dataclasses.field(default_factory=list)   # the runs shown (for the loss-curves figure)
    scale: str | None = None


def load_spec(name_or_path: str | Path) -> dict:
    path = Path(name_or_path)
    path = path if path.suffix else REPO_ROOT / "conf" / "table" / f"{name_or_path}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_paper(path: str | Path) -> dict:
    """The reference CSV (`#` lines are comments) as {(row, dataset, metric): (acl, v1 or None)}."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    return {(r["row"], r["dataset"], r["metric"]): (float(r["acl"]), float(r["v1"]) if r["v1"] else None)
            for r in csv.DictReader(lines)}


def groups(spec: dict) -> list[str]:
    """The record groups a table reads: `groups` when a table borrows rows from another (Table 5's Prefix row is
    the Table 2 E2E prefix cell), else its own `group`."""
    return list(spec.get("groups") or [spec["group"]])


def spec_records(spec: dict, root: Path | str | None = None) -> list[RunRecord]:
    """Every finished record of the table's groups (invalid files are warned about and skipped)."""
    return [r for g in groups(spec) for r in iter_records(root, g, strict=False)]


def _key(rec: RunRecord) -> tuple[str, str]:
    """(dataset, row); the row is `config.row`, or for older records the end of `table2-e2e_prefix`."""
    ds = rec.config["data"]["name"]
    return ds, rec.config.get("row") or rec.experiment.split("-", 1)[-1].removeprefix(ds + "_")


def _lookup(cfg: dict, dotted: str) -> str:
    node = cfg
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return "?" if node is None else str(node)


def _substitute(text: str, value) -> str:
    """Each `{dotted.key}` in `text` (whitespace collapsed) -> `value(dotted_key)`."""
    return re.sub(r"\{([\w.]+)\}", lambda m: value(m.group(1)), " ".join(text.split()))


def _fill(text: str, cfg: dict) -> str:
    """`{scale.max_steps}` -> that value of `cfg` (numbers stay in conf/, not in the spec); `?` if absent."""
    return _substitute(text, lambda key: _lookup(cfg, key))


def _fill_runs(text: str, recs: list[RunRecord]) -> str:
    """`_fill` over every record: a value the runs disagree on is written with the cells that hold it."""
    def value(key: str) -> str:
        where: dict[str, list[str]] = {}
        for r in recs:
            where.setdefault(_lookup(r.config, key), []).append("/".join(_key(r)))
        if len(where) <= 1:
            return next(iter(where), "?")
        return "; ".join(f"{v} for {', '.join(dict.fromkeys(cells))}" for v, cells in where.items())
    return _substitute(text, value)


def _deviations(spec: dict, scale: str, recs: list[RunRecord], order: list[tuple[str, str]]) -> list[str]:
    """The spec's fixed list (all scales + this scale), then each distinct record note and where it holds."""
    fixed = spec.get("deviations", {})
    out = [_fill_runs(t, recs) for t in fixed.get("all", []) + fixed.get(scale, [])]
    hits: dict[str, list[RunRecord]] = {}
    for r in recs:
        for note in dict.fromkeys(r.notes):
            if not note.startswith(tuple(spec.get("notes_ignore", []))):
                hits.setdefault(note, []).append(r)
    ran = [k for k in order if any(_key(r) == k for r in recs)]
    for note, got in hits.items():
        keys = {_key(r) for r in got}
        where = {ds: [row for d, row in ran if d == ds and (d, row) in keys] for ds, _ in ran}
        where = [f"{ds}: " + ("all rows" if all(k in keys for k in ran if k[0] == ds) else ", ".join(rows))
                 for ds, rows in where.items() if rows]
        out.append(f"{note} ({'all runs' if len(got) == len(recs) else '; '.join(where)})")
    return out


def build_table(spec: dict, records: Iterable[RunRecord], paper: dict, scale: str | None = None,
                root: Path | None = None) -> Table:
    """Table of `spec` from finished records of `spec['group']` at `scale` (inferred if only one is there);
    `root`: the results folder their predictions are found from (the claims' paired bootstrap)."""
    recs = [r for r in records if r.status == "finished" and r.group in groups(spec)]
    scales = sorted({r.config["scale"]["name"] for r in recs})
    if scale is None and len(scales) > 1:
        raise ValueError(f"records of several scales {scales}: choose one")
    scale = scale or (scales[0] if scales else "cpu")
    recs = [r for r in recs if r.config["scale"]["name"] == scale]
    variants = [r for r in recs if r.is_variant]
    rows = [row for row in spec["rows"] if scale in row.get("scales", [scale])
            or any(_key(r)[1] == row["id"] for r in recs)]
    order = [(ds["id"], row["id"]) for ds in spec["datasets"] for row in rows]
    recs = [r for r in recs if r not in variants and _key(r) in order]
    recs, stale = newest_config(recs, _key)
    recs = sorted(recs, key=lambda r: (order.index(_key(r)), r.config.get("seed", 0), r.run_id))
    ddof = int(spec.get("aggregation", {}).get("ddof", 1))

    by_ds = {}
    for ds in spec["datasets"]:
        lines = []
        for row in rows:
            got = [r for r in recs if _key(r) == (ds["id"], row["id"])]
            cells = []
            for col in ds["columns"]:  # our values scaled to the paper's display scale
                stat = Stat.of([r.metrics.get(f"test/{col['metric']}") for r in got], ddof)
                status = OURS if stat else UNAVAILABLE if got else MISSING
                acl_v1 = paper.get((row["paper_row"], ds["id"], col["metric"]), (None, None))
                cells.append(Cell(stat and stat.scaled(col["scale"]), status, *acl_v1))
            lines.append(Line(row["id"], row["label"], len(got),
                              Stat.of([r.params.get("trainable_pct") for r in got], ddof),
                              Stat.of([r.params.get("stored_pct") for r in got], ddof),
                              paper.get((row["paper_row"], "all", "stored_pct"), (None, None))[0], cells,
                              *health.cell(got)))
        by_ds[ds["id"]] = lines
    deviations = _deviations(spec, scale, recs, order) + (
        [f"{len(variants)} record(s) with extra command-line overrides were left out"] if variants else []) + (
        left_out_lines(left_out_reasons(stale, recs, _key))) + code_version_lines(recs, _key)

    models = ", ".join(dict.fromkeys(r.config["model"]["label"] for r in recs)) or "no finished runs"
    # the newest record's label: a label describes the scale, is volatile in the hash (results.VOLATILE_KEYS), and
    # an older record keeps the words it was written with
    newest = max(recs, key=lambda r: r.finished_at or "", default=None)
    labels = newest.config["scale"].get("label", scale) if newest else scale
    ctx = {"models": models, "scale": scale, "runs": len(recs), "spec": spec, "labels": labels}
    heading = [_fill(h, ctx) for h in spec["heading"]]
    runs = {k: [r for r in recs if _key(r) == k] for k in order}
    return Table(spec, heading, by_ds, deviations, _claims(spec, by_ds, paper, runs, root), compute_lines(recs),
                 recs, scale)


def code_version_lines(recs: list[RunRecord], key: Callable[[RunRecord], Any]) -> list[str]:
    """One line per cell whose seeds ran on more than one version of src/ (provenance.code_version): their config
    is the same, but a code change between seeds can move their spread, so a reader should know (issue #22)."""
    from .provenance import code_version

    cells: dict[Any, dict[str, list[str]]] = {}
    for r in recs:
        v = code_version(r.provenance.get("git"))
        if v is not None:
            cells.setdefault(key(r), {}).setdefault(v, []).append(r.run_id)
    return [f"{' / '.join(map(str, k))} -- its {sum(map(len, vs.values()))} runs ran on {len(vs)} versions of src/ "
            f"(same config; src/ trees " + "; ".join(f"{v[:10]}{'+dirty' if v.endswith('+dirty') else ''}: "
                                                   f"{', '.join(ids)}" for v, ids in vs.items()) + ")"
            for k, vs in cells.items() if len(vs) > 1]


def compute_lines(recs: list[RunRecord]) -> list[str]:
    """What the shown runs cost, from their records' `timing` and `provenance` (empty when none was timed)."""
    timed = [r for r in recs if r.timing.get("wall_s") is not None]
    if not timed:
        return []
    tot = {k: sum(float(r.timing.get(k) or 0.0) for r in timed) / 60 for k in ("wall_s", "train_s", "decode_s",
                                                                            "score_s")}
    hw = [r.provenance.get("hardware", {}) for r in timed]
    where = "; ".join(dict.fromkeys(f"{h.get('usable_cores', '?')} cores, {h.get('cpu_model', '?')}, "
                                    f"{len(h.get('cuda_devices') or [])} GPU" for h in hw))
    slow = max(timed, key=lambda r: r.timing["wall_s"])
    return [f"Sum of the {len(timed)} runs' wall time: {tot['wall_s']:.1f} min (training {tot['train_s']:.1f}, "
            f"decoding {tot['decode_s']:.1f}, scoring {tot['score_s']:.1f}); the longest run: {slow.run_id} "
            f"({slow.timing['wall_s'] / 60:.1f} min). Hardware: {where}.",
            "Each run's own timing, peak memory and provenance are in its record (results/runs/)."]


def _claims(spec: dict, lines: dict[str, list[Line]], paper: dict, runs: dict | None = None,
            root: Path | None = None) -> list[Claim]:
    ours = {(ds["id"], ln.row, c["metric"]): cell.ours
            for ds in spec["datasets"] for ln in lines[ds["id"]] for c, cell in zip(ds["columns"], ln.cells)}
    paper_row = {row["id"]: row["paper_row"] for row in spec["rows"]}
    label = {row["id"]: row["label"] for row in spec["rows"]}
    col = {(d["id"], c["metric"]): c for d in spec["datasets"] for c in d["columns"]}
    failed_of = {(ds, ln.row): ln.failed for ds, lns in lines.items() for ln in lns}
    runs = runs or {}

    def on_paper(v1: bool):  # a paper value as a one-seed Stat; v1 falls back to ACL where they agree
        vals = {(ds, row, m): alt if v1 and alt is not None else acl
                for (row, ds, m), (acl, alt) in paper.items()}
        return lambda ds, row, m: (Stat(vals[ds, paper_row[row], m], None, 1)
                                   if (ds, paper_row[row], m) in vals else None)

    iv = Interval.from_conf()

    def boot(item, hib: bool):
        """The claim's paired bootstrap over the test sources of its cells, or why there is none."""
        cells = {}
        for ds, m in item["cells"].items():
            a, b = runs.get((ds, item["a"]), []), runs.get((ds, item["b"]), [])
            cells[ds] = (a, b, m, float(col[(ds, m)]["scale"]), 1.0 if hib else -1.0)
        try:
            return bootstrap.paired(cells, iv.resamples, iv.seed, iv.level, root)
        except (FileNotFoundError, KeyError) as err:  # e.g. records without stored predictions
            return f"cannot rebuild the test outputs: {type(err).__name__} {err}"

    def failed(item) -> dict[str, list[str]]:
        return {label[arm]: [f"{ds} {w}" for ds in item["cells"] for w in failed_of.get((ds, arm), [])]
                for arm in (item["a"], item["b"])}

    cl = spec.get("claims", {})
    better = {k: c["better"] == "higher" for k, c in col.items()}
    return judge_claims(cl.get("items", []), lambda *key: ours.get(key), on_paper(False), on_paper(True),
                        level=iv.level, higher_is_better=lambda ds, m: better[(ds, m)], boot=boot, failed=failed)


def _num(x: float | None, digits: int) -> str:  # fixed decimals, as the paper prints them
    return "" if x is None else f"{x:.{digits}f}"


def _pct(s: Stat | float | None) -> str:
    x = s.mean if isinstance(s, Stat) else s
    return "" if x is None else f"{x:.3g}"


def ours_text(cell: Cell, col: dict, n: int, spec: dict) -> str:
    if cell.status != OURS:
        return spec["missing"] if cell.status == MISSING else spec["unavailable"]
    d = int(col["digits"])
    text = _num(cell.ours.mean, d) + (f" ± {_num(cell.ours.std, d)}" if cell.ours.std is not None else "")
    return text + (f" (n={cell.ours.n})" if cell.ours.n != n else "")


def paper_text(cell: Cell, col: dict) -> str:
    d = int(col["digits"])
    return _num(cell.paper, d) + (f" (v1 {_num(cell.paper_v1, d)})" if cell.paper_v1 is not None else "")


def _grid(table: Table, ds: dict) -> list[list[str]]:
    """Header + two lines per row (ours, paper): shared by the markdown and LaTeX renderers."""
    cols, spec = ds["columns"], table.spec
    grid = [["Method", "", "n", "train %", "stored %"]
            + [f"{c['label']} {'↑' if c['better'] == 'higher' else '↓'}" for c in cols] + ["decode health"]]
    for ln in table.lines[ds["id"]]:
        grid.append([ln.label, "ours", str(ln.n), _pct(ln.trainable_pct), _pct(ln.stored_pct)]
                    + [ours_text(c, col, ln.n, spec) for c, col in zip(ln.cells, cols)] + [ln.health])
        grid.append([ln.label, spec["paper_label"], "", "", _pct(ln.paper_stored_pct)]
                    + [paper_text(c, col) for c, col in zip(ln.cells, cols)] + [""])
    return grid


def _claim_lines(table: Table) -> list[str]:
    out = []
    for i, cl in enumerate(table.claims, 1):
        paper = "" if cl.paper is None else f" Paper's own numbers give {cl.paper:+.2f} (ACL)" + (
            f", {cl.paper_v1:+.2f} (v1)." if cl.paper_v1 is not None and cl.paper_v1 != cl.paper else ".")
        out.append(f"({i}) **{cl.ours.verdict}** — {cl.statement} Ours: {cl.ours.reason}.{paper}")
    return out


def to_markdown(table: Table) -> str:
    out = [f"# {table.spec['title']}", "", *[h for line in table.heading for h in (line, "")]]
    for ds in table.spec["datasets"]:
        grid = _grid(table, ds)
        out += [f"## {ds['label']}", "", "| " + " | ".join(grid[0]) + " |",
                "|" + "|".join(["---", "---"] + ["--:"] * (len(grid[0]) - 3) + ["---"]) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in grid[1:]] + [""]
    out += ["## Deviations from the paper", ""] + [f"- {d}" for d in table.deviations] + [""]
    out += ["## The paper's claims, judged on our numbers", ""] + [f"{c}\n" for c in _claim_lines(table)]
    out += (["## Compute", ""] + [f"- {c}" for c in table.compute] + [""]) if table.compute else []
    return "\n".join(out).rstrip() + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["dataset", "row", "label", "metric", "n", "mean", "std", "status", "paper_acl", "paper_v1",
                "trainable_pct", "stored_pct", "decode_health"])
    g = lambda x: "" if x is None else f"{x:.6g}"  # noqa: E731 - unrounded enough to recompute the table
    for ds in table.spec["datasets"]:
        for ln in table.lines[ds["id"]]:
            for c, col in zip(ln.cells, ds["columns"]):
                w.writerow([ds["id"], ln.row, ln.label, col["metric"], c.ours.n if c.ours else 0,
                            g(c.ours and c.ours.mean), g(c.ours and c.ours.std), c.status, g(c.paper),
                            g(c.paper_v1), g(ln.trainable_pct and ln.trainable_pct.mean),
                            g(ln.stored_pct and ln.stored_pct.mean), ln.health])
    return buf.getvalue()


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "±": r"$\pm$", "≤": r"$\leq$", "—": "---", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "≫": r"$\gg$"}


def _tex(text: str) -> str:  # markdown bold/code -> LaTeX, after escaping
    text = re.sub(r"`(.+?)`", r"\\texttt{\1}", "".join(_TEX.get(ch, ch) for ch in text))
    return re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", text)


def to_latex(table: Table) -> str:
    out = [f"% {table.spec['title']} -- generated by prefixtune.tables; needs booktabs, graphicx",
           *[_tex(h) + "\n" for h in table.heading]]
    for ds in table.spec["datasets"]:
        grid = _grid(table, ds)
        out += [r"\begin{table}[ht]\centering\small", r"\resizebox{\textwidth}{!}{%",
                r"\begin{tabular}{ll" + "r" * (len(grid[0]) - 3) + "l}", r"\toprule",
                " & ".join(_tex(x) for x in grid[0]) + r" \\", r"\midrule"]
        for i, r in enumerate(grid[1:]):  # a rule after each (ours, paper) pair
            rule = r" \midrule" if i % 2 and i < len(grid) - 2 else ""
            out.append(" & ".join(_tex(x) for x in r) + r" \\" + rule)
        caption = f"{_tex(table.spec['title'])}: {_tex(ds['label'])}"
        out += [r"\bottomrule", r"\end{tabular}}", rf"\caption{{{caption}}}", r"\end{table}", ""]
    for title, items in (("Deviations from the paper", table.deviations),
                         ("The paper's claims, judged on our numbers", _claim_lines(table))):
        out += [rf"\paragraph{{{title}}}", r"\begin{itemize}", *[rf"\item {_tex(x)}" for x in items],
                r"\end{itemize}", ""]
    return "\n".join(out)


def write_atomic(path: Path, text: str) -> Path:
    """Temp file in the same folder + rename, so a reader never sees half a table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def new_figure(ncols: int, width: float, height: float):
    """A matplotlib Figure with one row of `ncols` axes, built without pyplot: report code never switches the
    caller's backend or leaves figures open (a notebook that makes a report keeps its inline plots)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def save_figure(fig, path: Path) -> Path:
    """PNG through a temp file + rename, as write_atomic: a reader never sees half a figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def output_stem(name: str, scale: str | None) -> str:
    """results/<name>.* for the cpu default and the paper scale; results/<name>_<scale>.* for another scale (the
    converged protocol's table2_conv.md beside the 100-step table2.md: neither overwrites the other)."""
    return name if scale in (None, "cpu", "paper") else f"{name}_{scale}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("prefixtune.tables", description="writes <out>/<name>.md .csv .tex")
    parser.add_argument("name", help="table spec: conf/table/<name>.yaml (or a path to one)")
    parser.add_argument("--scale", help="cpu | conv | paper | smoke (default: the one scale present)")
    parser.add_argument("--root", type=Path, help="results folder with runs/ (default: paths.results_dir())")
    parser.add_argument("--out", type=Path, help="output folder (default: the results folder)")
    parser.add_argument("--paper", type=Path, help="paper CSV (default: the spec's paper_csv)")
    args = parser.parse_args(argv)
    spec = load_spec(args.name)
    paper = load_paper(args.paper or REPO_ROOT / spec["paper_csv"])
    table = build_table(spec, spec_records(spec, args.root), paper, args.scale, args.root)
    out = args.out or args.root or results_dir()
    stem = output_stem(spec["name"], args.scale)
    md = to_markdown(table)
    from .curveplot import plot as plot_curves  # the runs' loss curves, where their records have them (#22)

    png = plot_curves(table.records, out / "figures" / f"{stem}_curves.png",
                      f"{spec['name']} ({table.scale}): dev loss (solid, best marked) and train loss (dashed)",
                      args.root)
    if png is not None:
        md += (f"\nLoss curves of every run shown: [figures/{png.name}](figures/{png.name}) (dev loss per evaluation, "
               "train loss per logging window; each panel in its method's loss units).\n")
    print(write_atomic(out / f"{stem}.md", md))
    for ext, render in (("csv", to_csv), ("tex", to_latex)):
        print(write_atomic(out / f"{stem}.{ext}", render(table)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
