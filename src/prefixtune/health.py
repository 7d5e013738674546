"""Decode health: did a run learn the task, judged on its test outputs alone (issue #20).

A run that never learned to stop (outputs running to `decode.max_new_tokens` without an end-of-sequence token),
that writes outputs far shorter or longer than the references, or that copies its linearised input has not
trained, and a number from it is not evidence: its table cell says "failed: ..." and a claim that reads it is
"not testable" (prefixtune.claims). The thresholds live in conf/health.yaml.

Each record stores, per decoded split, `<split>/health/no_eos` (share of outputs without EOS, i.e. that reached
the token cap), `len_ratio` (mean output words / mean reference words), `copy` (share of outputs whose word
trigrams lie >= `copy_overlap` in the source) and `empty`. The pipeline measures them exactly at decode time;
`python -m prefixtune.health backfill` measures them for records decoded before, from the stored predictions
re-tokenised with the run's tokenizer (and says so in a note: the record's other numbers are untouched).
"""
from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from .paths import REPO_ROOT

KEYS = ("no_eos", "len_ratio", "copy", "empty")
_WORD = re.compile(r"\w+", re.UNICODE)
BACKFILL_NOTE = ("decode health (test/health/*) backfilled from the stored predictions, re-tokenised with the "
                 "run's tokenizer (prefixtune.health backfill); no other number of the record changed")


@functools.lru_cache(maxsize=4)
def thresholds(path: str | None = None) -> dict:
    return yaml.safe_load(Path(path or REPO_ROOT / "conf" / "health.yaml").read_text(encoding="utf-8"))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _trigrams(ws: list[str]) -> list[tuple[str, ...]]:
    n = min(3, len(ws))
    return [tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)] if n else []


def copy_overlap(pred: str, source: str) -> float:
    """Share of the output's word trigrams (shorter outputs: its n-grams of its own length) found in the source."""
    grams = _trigrams(words(pred))
    if not grams:
        return 0.0
    src = words(source)
    have = {tuple(src[i:i + len(grams[0])]) for i in range(len(src) - len(grams[0]) + 1)}
    return sum(g in have for g in grams) / len(grams)


def measure(preds: Sequence[str], sources: Sequence[str], references: Sequence[Sequence[str]],
            eos: Sequence[bool], empty_output: str, th: dict | None = None) -> dict[str, float]:
    """The health numbers of one decoded split; `eos[i]`: output i ended with an end-of-sequence token."""
    th = th or thresholds()
    n = len(preds)
    if not (n == len(sources) == len(references) == len(eos)) or not n:
        raise ValueError(f"decode health needs aligned, non-empty outputs: {n} predictions, {len(sources)} sources, "
                         f"{len(references)} reference sets, {len(eos)} EOS flags")
    out_len = sum(len(words(p)) for p in preds) / n
    ref_lens = [sum(len(words(r)) for r in refs) / len(refs) for refs in references if refs]
    ref_len = sum(ref_lens) / len(ref_lens) if ref_lens else 0.0
    copies = sum(copy_overlap(p, s) >= float(th["copy_overlap"]) for p, s in zip(preds, sources))
    return {"no_eos": sum(not e for e in eos) / n, "len_ratio": out_len / ref_len if ref_len else float("nan"),
            "copy": copies / n, "empty": sum(p == empty_output for p in preds) / n}


def as_metrics(health: dict[str, float], split: str = "test") -> dict[str, float]:
    return {f"{split}/health/{k}": float(v) for k, v in health.items()}


def convergence(dev: Sequence[Sequence[float]], steps: int, cap: int | None, patience: int,
                th: dict | None = None) -> dict[str, float]:
    """Did training reach a dev-loss plateau? `dev`: [[step, eval_loss], ...] in order (prefixtune.pipeline.curves).

    `train/plateau` is 1 when the best dev loss of the last `patience` evaluations is less than
    `plateau_rel_tol` below the best before them (early stopping fired: not below at all), else 0; with fewer
    than patience + 1 evaluations nothing can be said and it is 0. `train/best_step` is the step of the lowest
    dev loss (the checkpoint that is decoded), `train/stopped_early` 1 when training ended before the cap."""
    th = th or thresholds()
    if not dev:
        raise ValueError("convergence needs dev-loss evaluations (trainer.eval_every)")
    best_step, best = min(((int(s), float(v)) for s, v in dev), key=lambda sv: (sv[1], sv[0]))
    plateau = 0.0
    if len(dev) > patience:
        before = min(float(v) for _, v in dev[:-patience])
        last = min(float(v) for _, v in dev[-patience:])
        plateau = float((before - last) < float(th["plateau_rel_tol"]) * abs(before))
    return {"train/plateau": plateau, "train/best_step": float(best_step), "train/steps": float(steps),
            "train/stopped_early": float(cap is not None and steps < cap)}


def convergence_note(m: dict[str, float], cap: int | None, every: int, patience: int,
                     soft: int | None = None) -> str:
    """The record's note on how training ended; `soft`: the step from which the plateau rule itself stops a run
    (prefixtune.trainer.plateau_from), `cap` the hard cap."""
    head = f"early stopping on the dev loss (evaluated every {every} steps, patience {patience})"
    if soft is not None:
        head += (f", and from step {soft} on at the first evaluation on a plateau (conf/health.yaml's rule), "
                 f"hard cap {cap}")
    if m["train/stopped_early"]:
        why = ("on a plateau" if soft is not None and m["train/steps"] >= soft and m["train/plateau"]
               else "without a lower dev loss for the patience")
        return (f"{head}: stopped at step {m['train/steps']:.0f} of the {cap}-step cap ({why}); the best dev loss "
                f"(step {m['train/best_step']:.0f}) is the checkpoint decoded")
    if m["train/plateau"]:
        return (f"{head}: reached the {cap}-step cap on a plateau (dev loss within the tolerance of conf/health.yaml "
                f"over the last {patience} evaluations); best at step {m['train/best_step']:.0f}, decoded")
    return (f"{head}: reached the {cap}-step cap with the dev loss still falling (best at step "
            f"{m['train/best_step']:.0f}): not converged, a failed run")


def failures(metrics: dict, split: str = "test", th: dict | None = None) -> list[str] | None:
    """Why a run failed to train (empty: healthy); None when its record has no decode health. A run of a scale
    with early stopping that ended without a dev-loss plateau (`train/plateau` 0, see `convergence`) fails too."""
    th = th or thresholds()
    get = {k: metrics.get(f"{split}/health/{k}") for k in KEYS}
    if get["no_eos"] is None:
        return None
    out = []
    if metrics.get("train/plateau") == 0.0:
        out.append(f"no dev-loss plateau by step {metrics.get('train/steps', float('nan')):.0f}")
    if get["no_eos"] > float(th["max_no_eos_share"]):
        out.append(f"no EOS in {get['no_eos']:.0%}")
    lo, hi = (float(x) for x in th["length_ratio"])
    if get["len_ratio"] is not None and not lo <= get["len_ratio"] <= hi:
        out.append(f"length {get['len_ratio']:.2f}x the references")
    if get["copy"] is not None and get["copy"] > float(th["max_copy_share"]):
        out.append(f"copies the source in {get['copy']:.0%}")
    return out


def summary(metrics: dict, split: str = "test") -> str:
    """One table cell: "ok (no EOS 0%, len 1.02x)", "failed: no EOS in 41%" or "not measured"."""
    why = failures(metrics, split)
    if why is None:
        return "not measured"
    if why:
        return "failed: " + "; ".join(why)
    return f"ok (no EOS {metrics[f'{split}/health/no_eos']:.0%}, len {metrics[f'{split}/health/len_ratio']:.2f}x)"


# --- records decoded before decode health was recorded -------------------------------------------------------

def retokenized_eos(tokenizer, preds: Sequence[str], max_new_tokens: int, empty_output: str,
                    slack: int) -> list[bool]:
    """An output "ended with EOS" unless its re-tokenised length is within `slack` of the cap. Beam search stops a
    row only at EOS or at max_new_tokens, so an output that is much shorter than the cap ended with EOS."""
    out = []
    for p in preds:
        n = 0 if p == empty_output else len(tokenizer(p, add_special_tokens=False)["input_ids"])
        out.append(n < max_new_tokens - slack)
    return out


def backfill(root: Path | None = None, groups: Sequence[str] | None = None, dry_run: bool = False) -> list[str]:
    """Add test/health/* to every finished record that lacks it (from its predictions); returns what it did."""
    from transformers import AutoTokenizer

    from .decoded import decoded_split
    from .results import iter_records, write_record
    from .paths import models_dir, results_dir

    th = thresholds()
    done, toks = [], {}
    for group in groups or sorted(p.name for p in (Path(root or results_dir()) / "runs").iterdir() if p.is_dir()):
        for rec in iter_records(root, group, strict=False):
            if rec.status != "finished" or "test/health/no_eos" in rec.metrics:
                continue
            try:
                d = decoded_split(rec, root)
            except FileNotFoundError as err:
                done.append(f"{rec.run_id}: skipped ({err})")
                continue
            m = rec.config["model"]
            path = Path(m.get("path") or "")
            path = path if path.exists() else models_dir() / path.name
            key = str(path if m.get("path") else m.get("hub_id") or m["name"])
            if key not in toks:
                toks[key] = AutoTokenizer.from_pretrained(key)
            dc = rec.config["decode"]
            eos = retokenized_eos(toks[key], d.predictions, int(dc["max_new_tokens"]), str(dc["empty_output"]),
                                  int(th["retokenize_slack"]))
            h = measure(d.predictions, d.sources, d.references, eos, str(dc["empty_output"]), th)
            rec.metrics.update(as_metrics(h))
            rec.notes.append(BACKFILL_NOTE)
            if not dry_run:
                write_record(rec, root=root)
            done.append(f"{rec.run_id}: " + ", ".join(f"{k} {v:.3f}" for k, v in h.items()))
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser("prefixtune.health", description="decode health of finished records")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backfill", help="add test/health/* to records that lack it (from their predictions)")
    b.add_argument("--root", type=Path, help="results folder (default: results/)")
    b.add_argument("--group", action="append", help="only these groups (repeatable)")
    b.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    for line in backfill(args.root, args.group, args.dry_run):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def cell(recs: Sequence, split: str = "test") -> tuple[str, list[str]]:
    """(table text, failures) of a table cell's runs: every failed seed is named ("failed: s1 no EOS in 41%");
    a healthy cell shows its worst no-EOS share and mean length ratio; runs without health: "not measured"."""
    failed, ok, unmeasured = [], [], 0
    for r in recs:
        why = failures(r.metrics, split)
        if why is None:
            unmeasured += 1
        elif why:
            failed.append(f"s{r.config.get('seed', '?')} " + " + ".join(why))
        else:
            ok.append(r.metrics)
    if failed:
        return "failed: " + ", ".join(failed), failed
    if not ok:
        return ("not measured" if unmeasured else ""), []
    worst = max(m[f"{split}/health/no_eos"] for m in ok)
    ratio = sum(m[f"{split}/health/len_ratio"] for m in ok) / len(ok)
    return f"ok (no EOS ≤ {worst:.0%}, len {ratio:.2f}x)" + (f", {unmeasured} not measured" if unmeasured else ""), []
