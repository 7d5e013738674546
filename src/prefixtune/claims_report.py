"""`results/claims.md`: every claim of the paper with the paper's evidence, our measurement and a verdict.

A pure function of the records (and of `results/bench.json` for the speed/memory claims) and of conf/claims.yaml.
Claims that a results table judges are delegated to that table (`prefixtune.tables` + `prefixtune.claims`), so the
rule and its threshold live once, in conf/table/<name>.yaml. A claim without records is "inconclusive (not run)"
and names the target that would judge it. `python -m prefixtune.claims_report [--scale cpu] [--root R] [--out O]`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import yaml

from . import tables
from .claims import INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, NOT_TESTABLE_SCALE, REPRODUCED, Interval
from .paths import REPO_ROOT, results_dir
from .results import iter_records


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    source: str
    statement: str
    paper: str
    ours: str
    verdict: str
    why: str


def load_spec(path: Path | None = None) -> dict:
    return yaml.safe_load((path or REPO_ROOT / "conf" / "claims.yaml").read_text(encoding="utf-8"))


def _table_claim(item: dict, root: Path | None, scale: str | None, cache: dict) -> Row:
    name, cid = item["judge"]["table"], item["judge"]["claim"]
    if name not in cache:
        spec = tables.load_spec(name)
        cache[name] = tables.build_table(spec, tables.spec_records(spec, root),
                                         tables.load_paper(REPO_ROOT / spec["paper_csv"]), scale, root)
    table = cache[name]
    found = [c for c in table.claims if c.id == cid]
    if not found:
        raise KeyError(f"conf/claims.yaml: claim {cid!r} is not in conf/table/{name}.yaml (claims.items)")
    cl = found[0]
    ours = _ours(cl.ours)
    d = cl.ours.diff
    paper = item["paper"] + ("" if cl.paper is None else f"; the rule on the paper's numbers: {cl.paper:+.2f}")
    why = cl.ours.reason + ("" if d is not None else f" (run `make {name}`)")
    return Row(item["id"], item["source"], cl.statement, paper, f"{ours} [{name}]", cl.ours.verdict, why)


def _ours(v) -> str:
    """The measured difference with its interval (t on seeds + paired bootstrap), as the `ours` column shows it."""
    from .claims import interval
    d = v.diff
    if d is None:
        return "incomplete"
    if d.se is None:
        return f"diff {d.mean:+.2f} (one seed somewhere)"
    lo, hi, _, df = interval(d, Interval.from_conf().level)
    how = "t + paired bootstrap" if d.boot is not None else "t on seeds only"
    return f"diff {d.mean:+.2f}, {Interval.from_conf().level:.0%} [{lo:+.2f}, {hi:+.2f}] ({how}, df {df:.1f})"


def _stored_claim(item: dict, root: Path | None, scale: str | None) -> Row:
    j = item["judge"]["stored_pct"]
    recs = [r for r in iter_records(root, j["group"]) if r.config.get("row") == j["row"]
            and (scale is None or r.config["scale"]["name"] == scale) and not r.is_variant]
    if not recs:
        return Row(item["id"], item["source"], _one_line(item["statement"]), item["paper"], "not run", INCONCLUSIVE,
                   f"no finished {j['group']} {j['row']} records (run `make {j['group']}`)")
    parts = {r.config["data"]["name"]: r.params for r in recs}
    ours = "; ".join(f"{ds} {p['stored']:,} stored = {p['stored_pct']:.3f}%" for ds, p in parts.items())
    worst = max(p["stored_pct"] for p in parts.values())
    ok = worst <= float(j["max"])
    why = (f"largest stored share {worst:.3f}% {'<=' if ok else '>'} {float(j['max']):g}% (a parameter count: "
           f"no seed spread); the share depends on the backbone ({recs[0].config['model']['label']}: "
           f"grouped-query attention stores fewer key/value numbers per layer than GPT-2)")
    return Row(item["id"], item["source"], _one_line(item["statement"]), item["paper"], ours,
               REPRODUCED if ok else NOT_REPRODUCED, why)


def _bench_claim(item: dict, root: Path | None) -> Row:
    j = item["judge"]["bench"]
    path = (root or results_dir()) / "bench.json"
    statement = _one_line(item["statement"])
    if not path.exists():
        return Row(item["id"], item["source"], statement, item["paper"], "not run", INCONCLUSIVE,
                   f"{path.name} not found (run `make bench`)")
    rep = json.loads(path.read_text(encoding="utf-8"))
    ratios = {}
    for model in rep["settings"]["models"]:
        part = rep[model][j["what"]]
        if j["a"] in part and j["b"] in part:
            ratios[model] = float(part[j["a"]][j["key"]]) / float(part[j["b"]][j["key"]])
    if not ratios:
        return Row(item["id"], item["source"], statement, item["paper"], "not measured", INCONCLUSIVE,
                   f"bench.json has no {j['what']} results for both {j['a']} and {j['b']}")
    ours = "; ".join(f"{m}: {j['a']}/{j['b']} {j['key']} = {r:.2f}" for m, r in ratios.items())
    if "above" in j:
        ok, rule = all(r > float(j["above"]) for r in ratios.values()), f"> {float(j['above']):g}"
    else:
        ok, rule = all(r < float(j["below"]) for r in ratios.values()), f"< {float(j['below']):g}"
    how = (f"median over {rep['settings'].get('timed_steps', '?')} timed steps" if j["what"] == "train" else
           "peak RSS of a fresh process per method")
    why = (f"every ratio {rule}" if ok else f"not every ratio {rule}") + f" (bench.json: {how}; CPU, not the paper's GPU)"
    return Row(item["id"], item["source"], statement, item["paper"], ours, REPRODUCED if ok else NOT_REPRODUCED,
               why)


def _figure_points(figure: str, root: Path | None, scale: str | None) -> list[dict]:
    from . import sweeps

    group = sweeps.FIGURES[figure][0]
    return sweeps.points(list(iter_records(root, group, strict=False)), figure, scale or "cpu")


def _sweep_part(series: str, metric: str, paper_peak, tolerance: float, key: str, figure: str,
                pts: list[dict], run: str | None = None) -> tuple[str, str, str]:
    """(verdict, ours, why) of "quality rises with x up to a threshold, then drops" on one series: the best x must
    be an interior point whose mean beats the smallest x by more than `tolerance`; judged only with >= 2 seeds at
    every point."""
    pts = [p for p in pts if p["series"] == series and p[metric][0] is not None]
    if len(pts) < 3:
        return (INCONCLUSIVE, f"{series}: not run" if not pts else f"{series}: {len(pts)} point(s)",
                f"{series}: fewer than 3 {key} values (run `{run or f'make {figure}'}`)")
    means = {p["x"]: p[metric][0] for p in pts}
    best = max(means, key=means.get)
    ours = f"{series} {metric}: " + ", ".join(f"{x}: {m:.2f}" for x, m in means.items())
    interior = min(means) < best < max(means)
    gain = means[best] - means[min(means)]
    lean = REPRODUCED if interior and gain > tolerance else NOT_REPRODUCED
    shape = (f"{series}: peak at {key}={best} (paper: {paper_peak}), {'+' if gain >= 0 else ''}{gain:.2f} over "
             f"{key}={min(means)}, {'an interior' if interior else 'an end'} point")
    singles = [p["x"] for p in pts if p[metric][2] < 2]
    if singles:
        return INCONCLUSIVE, ours, f"{shape}; one seed at {key}={singles} (no spread estimate): points to '{lean}'"
    return lean, ours, shape


def _sweep_claim(item: dict, root: Path | None, scale: str | None) -> Row:
    """The claim holds for every series it names (ACL Figure 4: DART BLEU peaking at 10 and XSUM ROUGE-2 at 200):
    one series not reproduced (with spread) makes it not reproduced; a series missing or without spread makes it
    inconclusive."""
    from . import sweeps

    j = item["judge"]["sweep"]
    key = sweeps.FIGURES[j["figure"]][1]
    columns = [c for c, *_ in sweeps.FIGURES[j["figure"]][4]]
    for series, s in j["series"].items():  # a typo here would otherwise surface as a bare KeyError
        if not isinstance(s, dict) or "paper_peak" not in s or s.get("metric") not in columns:
            raise ValueError(f"conf/claims.yaml: claim {item['id']!r}, judge.sweep.series.{series} needs `metric` "
                             f"(one of {columns}) and `paper_peak`; got {s!r}")
    pts = _figure_points(j["figure"], root, scale)
    parts = [_sweep_part(series, s["metric"], s["paper_peak"], float(j["tolerance"]), key, j["figure"], pts,
                         s.get("run")) for series, s in j["series"].items()]
    verdicts = [v for v, _, _ in parts]
    verdict = (NOT_REPRODUCED if NOT_REPRODUCED in verdicts else
               REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE)
    return Row(item["id"], item["source"], _one_line(item["statement"]), item["paper"],
               "; ".join(o for _, o, _ in parts), verdict, "; ".join(w for _, _, w in parts))


def _gap_claim(item: dict, root: Path | None, scale: str | None) -> Row:
    """"a beats b" on a figure, cell by cell, with the rule of prefixtune.claims.compare: Figure 3 compares the
    prefix and fine-tuning series at each training-set size; Figure 5 compares each initialisation word with
    random initialisation (`b_x`: one shared arm, whose variance enters once), or a group of words with another
    (`a_xs` vs `b_xs`: the mean of one group minus the mean of the other). The spread of a point is over its runs
    (seeds, sampled subsets); the paired bootstrap resamples the test sources they share."""
    from . import bootstrap, health, sweeps
    from .claims import Stat, compare

    j = item["judge"]["gap"]
    group = sweeps.FIGURES[j["figure"]][0]
    pts = _figure_points(j["figure"], root, scale)
    stat = {(p["series"], p["x"]): Stat(*p[j["metric"]]) for p in pts if p[j["metric"]][0] is not None}
    recs = {(p["series"], p["x"]): p["records"] for p in pts}
    if "a_xs" in j:  # group against group: every (a, b) combination, so the mean is mean(a) - mean(b)
        keys = [((j["series"], xa), (j["series"], xb)) for xa in j["a_xs"] for xb in j["b_xs"]]
    elif "b_x" in j:  # every other x of the series against x = b_x
        keys = [((ser, x), (ser, j["b_x"])) for (ser, x) in stat if ser == j["series"] and x != j["b_x"]]
    else:
        xs = sorted({x for (ser, x) in stat if ser in (j["a"], j["b"])})
        keys = [((j["a"], x), (j["b"], x)) for x in xs]
    cell_name = lambda ka, kb: f"{ka[1]} vs {kb[1]}" if "a_xs" in j else str(ka[1])  # noqa: E731
    arm_label = lambda k: f"{k[0]} at {k[1]}" if "a" in j else f"init {k[1]}"  # noqa: E731
    pairs = {cell_name(ka, kb): (stat.get(ka), stat.get(kb)) for ka, kb in keys}
    statement = _one_line(item["statement"])
    if not pairs:
        return Row(item["id"], item["source"], statement, item["paper"], "not run", INCONCLUSIVE,
                   f"no {group} records (run `make {j['figure']}`)")
    col = next(c for c in sweeps.FIGURES[j["figure"]][4] if c[0] == j["metric"])
    metric = col[1].removeprefix("test/")
    iv = Interval.from_conf()

    def boot():
        cells = {}
        for (ka, kb), cell in zip(keys, pairs):
            ra, rb = recs.get(ka, []), recs.get(kb, [])
            ds = (ra or rb)[0].config["data"]["name"]
            factor = col[2] if col[2] is not None else sweeps.E2E_SCALE.get(col[1], 1) if ds == "e2e" else 1
            cells[cell] = (ra, rb, metric, float(factor), 1.0)
        try:
            return bootstrap.paired(cells, iv.resamples, iv.seed, iv.level, root)
        except (FileNotFoundError, KeyError) as err:  # e.g. records without stored predictions
            return f"cannot rebuild the test outputs: {type(err).__name__} {err}"
    arms = dict.fromkeys(k for pair in keys for k in pair)
    failed = {arm_label(k): health.cell(recs.get(k, []))[1] for k in arms}
    v = compare(pairs, float(j["threshold"]), iv.level, boot=boot, failed=failed)
    return Row(item["id"], item["source"], statement, item["paper"], f"{_ours(v)} [{j['figure']}]", v.verdict,
               v.reason)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def build(spec: dict, root: Path | None = None, scale: str | None = None) -> list[Row]:
    cache: dict = {}
    rows = []
    for item in spec["items"]:
        judge = item["judge"]
        if "table" in judge:
            rows.append(_table_claim(item, root, scale, cache))
        elif "stored_pct" in judge:
            rows.append(_stored_claim(item, root, scale))
        elif "gap" in judge:
            rows.append(_gap_claim(item, root, scale))
        elif "sweep" in judge:
            rows.append(_sweep_claim(item, root, scale))
        elif "bench" in judge:
            rows.append(_bench_claim(item, root))
        elif "pending" in judge:
            rows.append(Row(item["id"], item["source"], _one_line(item["statement"]), item["paper"], "not run",
                            INCONCLUSIVE, f"not run yet: `{judge['pending']}`"
                            + (f"; {_one_line(judge['note'])}" if judge.get("note") else "")))
        else:
            raise ValueError(f"conf/claims.yaml: claim {item['id']!r} has an unknown judge {sorted(judge)}")
        why_not = (item.get("not_testable") or {}).get(scale or "cpu")
        if why_not:  # the scale cannot express the claim's setting: what we measured is shown, not judged
            r = rows[-1]
            rows[-1] = dataclasses.replace(r, verdict=NOT_TESTABLE_SCALE, why=f"{_one_line(why_not)} (measured "
                                           f"anyway, not judged: {r.verdict}: {r.why})")
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(rows: list[Row], scale: str | None) -> str:
    cat = lambda v: NOT_TESTABLE if v.startswith(NOT_TESTABLE + ":") else v  # noqa: E731
    counts = {v: sum(cat(r.verdict) == v for r in rows)
              for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE, NOT_TESTABLE_SCALE)}
    out = ["# The paper's claims, judged on our records", "",
           f"Generated by `make claims` (`python -m prefixtune.claims_report`) from `results/runs/` and "
           f"`results/bench.json`; claim list: `conf/claims.yaml`, rules: `conf/table/*.yaml`. Scale: "
           f"{scale or 'as recorded'}. **Our measurements at this scale, not the paper's numbers**; the paper's "
           f"evidence is quoted from `reference/paper.md`.", "",
           "Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "",
           "Every interval is a t interval on the seed means (Welch-Satterthwaite df) widened by a paired bootstrap "
           "over the test sources (conf/claims.yaml `interval`); a claim whose arm failed to train (decode health, "
           "conf/health.yaml) is \"not testable\", and one whose setting this scale cannot express is \"not testable "
           "at this scale\" -- neither is ever counted as reproduced or not reproduced.", "",
           "| # | claim | source | paper's evidence | ours | verdict | why |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        out.append("| " + " | ".join(_cell(x) for x in (str(i), r.statement, r.source, r.paper, r.ours,
                                                            f"**{r.verdict}**", r.why)) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser("prefixtune.claims_report", description="writes <out>/claims.md")
    p.add_argument("--scale", help="cpu | paper | smoke (default: the one scale present in each table)")
    p.add_argument("--root", type=Path, help="results folder with runs/ and bench.json (default: results/)")
    p.add_argument("--out", type=Path, help="output folder (default: the results folder)")
    p.add_argument("--spec", type=Path, help="claims list (default: conf/claims.yaml)")
    args = p.parse_args(argv)
    rows = build(load_spec(args.spec), args.root, args.scale)
    out = args.out or args.root or results_dir()
    print(tables.write_atomic(out / f"{tables.output_stem('claims', args.scale)}.md", to_markdown(rows, args.scale)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
