"""Score a prediction file with the paper's official metric definitions.

    python -m prefixtune.score e2e    --pred PRED --gold testset_w_refs.csv|src1_test.txt|refs.txt
    python -m prefixtune.score webnlg --pred PRED [--gold WEBNLG_DIR|REFERENCES_DIR]
    python -m prefixtune.score dart   --pred PRED [--gold DART_DIR|REFERENCES_DIR] [--no-model-metrics]
    python -m prefixtune.score xsum   --pred PRED --gold REFERENCES.txt

Prints ONE JSON object on stdout: `{"dataset", "pred", "gold", "n_segments", "metrics": {...}}` (metric keys and
scales as in :mod:`prefixtune.metrics`); everything else goes to stderr. Input formats:

* e2e: `--pred` is the challenge TSV (`MR`, `output` columns; MRs are checked against the gold) or plain text
  with one output per unique gold MR in gold order; `--gold` is a `testset_w_refs.csv`-style CSV/TSV, the paper's
  `src1_*.txt` (`MR||REF` lines) or a blank-line separated multi-reference text file.
* webnlg: `--pred` has one output per test entry in `testdata_with_lex.xml` order (1,862 lines); `--gold` is the
  folder with the official `gold-{all,old,new}-cat-reference*.lex` files (or its parent).
* dart: `--pred` has one output per test entry of the 2021 grouping (5,097 lines); `--gold` is the folder with
  `all-delex-reference{0,1,2}.lex` (or its parent).
* xsum: one summary per line in `--pred` and one reference per line in `--gold`.
`--gold` defaults to the prepared data folder (`$PREFIXTUNE_DATA`, else `data/`, else `../shared/data`).

Exit codes: 0 ok; 2 bad input (the message on stderr names the file and line); 3 a required tool (Java) missing.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from prefixtune import paths
from prefixtune.metrics.errors import MetricInputError, ToolUnavailable

log = logging.getLogger("prefixtune.score")

DATASETS = ("e2e", "webnlg", "dart", "xsum")
_DEFAULT_GOLD = {"webnlg": "webnlg/references", "dart": "dart/references"}


def default_gold(dataset: str) -> Path | None:
    """The dataset's reference folder under the prepared data dir, else under `../shared/data`."""
    rel = _DEFAULT_GOLD.get(dataset)
    if rel is None:
        return None
    for root in (paths.data_dir(), paths.shared_dir() / "data"):
        if (root / rel).is_dir():
            return root / rel
    return None


def read_prediction_lines(path: str | Path) -> list[str]:
    """One prediction per line (universal newlines, as the WebNLG/DART scripts' `open(f)` iteration)."""
    path = Path(path)
    if not path.is_file():
        raise MetricInputError("file not found" if not path.exists() else "not a regular file", path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MetricInputError(f"not valid UTF-8 ({err.reason})", path, data[: err.start].count(b"\n") + 1) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _check_count(preds: list[str], n_gold: int, pred_path: str, gold_desc: str, hint: str = "") -> None:
    if len(preds) != n_gold:
        raise MetricInputError(
            f"{len(preds)} prediction lines but {gold_desc} has {n_gold} entries{hint}", pred_path,
            min(len(preds), n_gold) + 1)


def score_files(dataset: str, pred: str, gold: str | None, model_metrics: bool = True) -> dict:
    """Read, check and score; returns the JSON-ready result."""
    if dataset == "e2e":
        from prefixtune.metrics.e2e import read_e2e_gold, read_e2e_predictions, score_e2e

        if gold is None:
            raise MetricInputError("--gold is required for e2e (testset_w_refs.csv or src1_test.txt)")
        gold_data = read_e2e_gold(gold)
        preds = read_e2e_predictions(pred, gold_data)
        metrics = score_e2e(preds, gold_data.refs)
        n = len(preds)
    elif dataset == "webnlg":
        from prefixtune.metrics.webnlg import score_webnlg, webnlg_references

        gold = gold or _require_default("webnlg")
        refs, seen = webnlg_references(gold)
        preds = read_prediction_lines(pred)
        _check_count(preds, len(refs), pred, f"the WebNLG references in {gold}",
                     " (one output per test entry, in testdata_with_lex.xml order)")
        metrics = score_webnlg(preds, refs, seen)
        n = len(preds)
    elif dataset == "dart":
        from prefixtune.metrics.dart import dart_references, score_dart

        gold = gold or _require_default("dart")
        refs = dart_references(gold)
        preds = read_prediction_lines(pred)
        hint = " (the paper's 2020 test grouping had 6,959 entries; only the 2021 grouping can be scored)" \
            if len(preds) == 6959 else ""
        _check_count(preds, len(refs), pred, f"the DART references in {gold}", hint)
        metrics = score_dart(preds, refs, model_metrics=model_metrics)
        n = len(preds)
    elif dataset == "xsum":
        from prefixtune.metrics.rouge import score_rouge

        if gold is None:
            raise MetricInputError("--gold is required for xsum (one reference summary per line)")
        preds = read_prediction_lines(pred)
        refs = read_prediction_lines(gold)
        _check_count(preds, len(refs), pred, f"the reference file {gold}")
        metrics = score_rouge(preds, refs)
        n = len(preds)
    else:  # argparse prevents this
        raise ValueError(dataset)
    return {"dataset": dataset, "pred": str(pred), "gold": str(gold), "n_segments": n, "metrics": metrics}


def _require_default(dataset: str) -> str:
    found = default_gold(dataset)
    if found is None:
        raise MetricInputError(f"no --gold given and no {_DEFAULT_GOLD[dataset]} under the data folders "
                               f"({paths.data_dir()}, {paths.shared_dir() / 'data'})")
    return str(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prefixtune.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("--pred", required=True, help="prediction file")
    parser.add_argument("--gold", help="references (file or folder, see the module docstring)")
    parser.add_argument("--no-model-metrics", action="store_true",
                        help="dart: skip MoverScore/BERTScore/BLEURT (reported null with a reason)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON only
            result = score_files(args.dataset, args.pred, args.gold, model_metrics=not args.no_model_metrics)
    except MetricInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ToolUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
