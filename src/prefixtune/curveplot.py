"""Loss curves of a table's runs (issue #22): is every cell trained to a plateau? A pure function of the records.

Each record links its curves (`outputs.curves`: train loss per logging window, dev loss per evaluation; written by
prefixtune.pipeline). One panel per (dataset, row) -- the methods' losses are in their own units (prefix: sum of
token NLL per sentence, ACL's objective; fine-tuning and adapters: token mean), so rows are not overlaid -- with
every seed: dev loss solid with its best evaluation marked, train loss dashed. `tables.main` writes it beside a
table as results/figures/<table stem>_curves.png when the table's records have curves.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .decoded import output_path
from .results import RunRecord
from .tables import save_figure


def load_curves(rec: RunRecord, root: Path | None = None) -> dict | None:
    path = output_path(rec, "curves", root)
    return None if path is None else json.loads(path.read_text(encoding="utf-8"))


def panels(records: Iterable[RunRecord], root: Path | None = None) -> dict[tuple[str, str], list[tuple[int, dict]]]:
    """(dataset, row) -> [(seed, curves)] for the records that have curves, in seed order."""
    out: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for r in records:
        c = load_curves(r, root)
        if c is not None:
            out.setdefault((r.config["data"]["name"], str(r.config.get("row"))), []).append((int(r.config["seed"]), c))
    return {k: sorted(v, key=lambda sc: sc[0]) for k, v in sorted(out.items())}


def plot(records: Iterable[RunRecord], path: Path, title: str, root: Path | None = None) -> Path | None:
    """The curves figure, or None when no record has curves."""
    p = panels(records, root)
    if not p:
        return None
    datasets = sorted({d for d, _ in p})
    rows = list(dict.fromkeys(r for _, r in p))
    from matplotlib.figure import Figure  # no pyplot: the caller's backend and open figures stay as they are

    fig = Figure(figsize=(3.2 * len(rows), 2.6 * len(datasets)))
    axes = fig.subplots(len(datasets), len(rows), squeeze=False)
    for i, d in enumerate(datasets):
        for j, row in enumerate(rows):
            ax = axes[i][j]
            ax.set_title(f"{d} / {row}", fontsize=9)
            for seed, c in p.get((d, row), []):
                line = None
                if c.get("dev"):
                    xs, ys = zip(*c["dev"])
                    (line,) = ax.plot(xs, ys, "-", lw=1.2, label=f"s{seed} dev")
                    k = min(range(len(ys)), key=ys.__getitem__)
                    ax.plot([xs[k]], [ys[k]], "o", ms=4, color=line.get_color())
                if c.get("train"):
                    xs, ys = zip(*[(s, v) for s, v, *_ in c["train"]])
                    ax.plot(xs, ys, "--", lw=0.8, alpha=0.7, color=line.get_color() if line else None,
                            label=f"s{seed} train")
            ax.tick_params(labelsize=7)
            if i == len(datasets) - 1:
                ax.set_xlabel("optimiser step", fontsize=8)
            if p.get((d, row)):
                ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
