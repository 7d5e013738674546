"""E2E NLG Challenge metrics, as `measure_scores.py -p` of tuetschek/e2e-metrics computes them.

The paper scores E2E with `measure_scores.py gold out -p -t -H` [paper.md §5]:

* BLEU and NIST: the script's Python MT-eval port (`-p`) -- see :mod:`prefixtune.metrics.mteval`;
* METEOR, ROUGE-L, CIDEr: the MS-COCO caption evaluation on PTB-tokenised text -- see
  :mod:`prefixtune.metrics.coco`.

Scales are the script's table output: BLEU/METEOR/ROUGE-L/CIDEr as fractions (BLEU 0.6593, not 65.93), NIST
unbounded. Calibration: TGen's challenge output scores BLEU 0.6593, NIST 8.5923, METEOR 0.4483, ROUGE-L 0.6850,
CIDEr 2.2338 (`tests/test_metrics_e2e.py`).

File reading follows the script's `read_lines` / `read_tsv` / `read_and_group_tsv` rules (our own code):
UTF-8, lines split at every Unicode line boundary and stripped; in TSV/CSV files the BOM is removed from the
first line, mis-encoded `Ł`, `Â£` -> `£` and `Ã©`, `ã©` -> `é` are repaired, empty lines dropped, fields split
on tabs (or on `","` when no line has a tab), a first row starting with `mr` (optionally quoted) is a header,
every row must have two fields, one optional quote plus surrounding spaces is stripped from both ends of each
field, and an output/reference still containing `"` is rejected. References are grouped by consecutive equal
MRs. Additions, so that a bad input is never scored silently: every error names the file and line; the MRs of a
prediction TSV are checked against the gold MRs (unknown MR, duplicate, missing -> error; the same MRs in
another order are re-ordered to gold order with a note on stderr). The official script ignores those MRs.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prefixtune.metrics.coco import coco_scores, ptb_tokenize
from prefixtune.metrics.errors import MetricInputError, describe_lines
from prefixtune.metrics.mteval import MtevalReferences

log = logging.getLogger(__name__)

METRIC_KEYS = ("bleu", "nist", "meteor", "rouge_l", "cider")

_ENCODING_FIXES = [("Ł", "£"), ("Â£", "£"), ("Ã©", "é"), ("ã©", "é")]
_HEADER = re.compile(r'^"?mr', re.IGNORECASE)
_LEAD_QUOTE = re.compile(r"^\s*['\"]?\s*")
_TRAIL_QUOTE = re.compile(r"\s*['\"]?\s*$")
_TABULAR = re.compile(r"\.[ct]sv$", re.IGNORECASE)


# -- reading ----------------------------------------------------------------------------------------------
def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise MetricInputError("file not found" if not path.exists() else "not a regular file", path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise MetricInputError(f"not valid UTF-8 ({err.reason})", path, line) from None


def read_lines(path: str | Path) -> list[str]:
    """One stripped string per line (empty lines kept), split at every Unicode line boundary."""
    return [line.strip() for line in _read_text(path).splitlines()]


def read_multiref_lines(path: str | Path) -> list[list[str]]:
    """Blank-line separated reference blocks; a file without blank lines is one reference per line."""
    blocks: list[list[str]] = [[]]
    for line in read_lines(path):
        if line:
            blocks[-1].append(line)
        else:
            blocks.append([])
    blocks = [b for b in blocks if b]
    if len(blocks) == 1:
        blocks = [[line] for line in blocks[0]]
    return blocks


@dataclass
class TsvRows:
    srcs: list[str]
    outs: list[str]
    lines: list[int]  # 1-based physical line of each row


def read_tsv(path: str | Path) -> TsvRows:
    """The official `read_tsv`: two columns (MR, text), header optional, quotes stripped and then rejected."""
    raw = read_lines(path)
    if not raw:
        raise MetricInputError("empty file", path)
    raw[0] = raw[0].replace("\ufeff", "")
    for old, new in _ENCODING_FIXES:
        raw = [line.replace(old, new) for line in raw]
    numbered = [(no, line) for no, line in enumerate(raw, start=1) if line]
    if not numbered:
        raise MetricInputError("empty file", path)
    rows = [(no, line.split("\t")) for no, line in numbered]
    if all(len(fields) == 1 for _, fields in rows):
        rows = [(no, fields[0].split('","')) for no, fields in rows]
    if _HEADER.match(rows[0][1][0]):
        rows = rows[1:]
    bad = [no for no, fields in rows if len(fields) != 2]
    if bad:
        raise MetricInputError(
            f"expected 2 columns (MR and text, tab-separated or a quoted CSV) on line(s) {describe_lines(bad)}",
            path, bad[0])
    srcs, outs, lines = [], [], []
    for no, (src, out) in rows:
        srcs.append(_TRAIL_QUOTE.sub("", _LEAD_QUOTE.sub("", src, count=1), count=1))
        outs.append(_TRAIL_QUOTE.sub("", _LEAD_QUOTE.sub("", out, count=1), count=1))
        lines.append(no)
    quoted = [no for no, out in zip(lines, outs) if '"' in out]
    if quoted:
        raise MetricInputError(
            f'text contains a double quote (") on line(s) {describe_lines(quoted)}; the official E2E script '
            "rejects quotes in outputs/references", path, quoted[0])
    if not outs:
        raise MetricInputError("no data rows", path)
    return TsvRows(srcs, outs, lines)


@dataclass
class E2EGold:
    refs: list[list[str]]
    mrs: list[str] | None  # None for a blank-line separated reference file (no MRs)
    path: str


def _group_consecutive(mrs: Sequence[str], texts: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    group_mrs: list[str] = []
    refs: list[list[str]] = []
    for mr, text in zip(mrs, texts):
        if group_mrs and mr == group_mrs[-1]:
            refs[-1].append(text)
        else:
            group_mrs.append(mr)
            refs.append([text])
    return group_mrs, refs


def read_e2e_gold(path: str | Path) -> E2EGold:
    """E2E references: a `testset_w_refs.csv`-style CSV/TSV, the paper's `src1_*.txt` (`MR||REF` lines), or a
    blank-line separated multi-reference text file. MRs are grouped on consecutive equal lines."""
    if _TABULAR.search(str(path)):
        rows = read_tsv(path)
        mrs, refs = _group_consecutive(rows.srcs, rows.outs)
        return E2EGold(refs, mrs, str(path))
    lines = read_lines(path)
    numbered = [(no, line) for no, line in enumerate(lines, start=1) if line]
    if not numbered:
        raise MetricInputError("empty reference file", path)
    if "||" in numbered[0][1]:  # the paper's src1_*.txt format
        bad = [no for no, line in numbered if "||" not in line]
        if bad:
            raise MetricInputError(f"expected `MR||REF` on line(s) {describe_lines(bad)}", path, bad[0])
        pairs = [line.split("||", 1) for _, line in numbered]
        empty = [no for (no, _), (_, ref) in zip(numbered, pairs) if not ref.strip()]
        if empty:
            raise MetricInputError(f"empty reference on line(s) {describe_lines(empty)}", path, empty[0])
        mrs, refs = _group_consecutive([m.strip() for m, _ in pairs], [r.strip() for _, r in pairs])
        return E2EGold(refs, mrs, str(path))
    return E2EGold(read_multiref_lines(path), None, str(path))


# -- MR matching --------------------------------------------------------------------------------------------
_RAW_SLOT = re.compile(r"([^\[\],]+)\[([^\]]*)\]")
_KEY_ALIASES = {"eattype": "type", "pricerange": "price"}  # raw E2E slot -> the paper's src1 name


def mr_key(mr: str) -> tuple:
    """Canonical form of an E2E MR, equal for `name[X], eatType[pub]` and the paper's `name : X | Type : pub`
    (slot names mapped, values compared without whitespace and case, slot order ignored)."""
    slots = _RAW_SLOT.findall(mr)
    if not slots or _RAW_SLOT.sub("", mr).strip(" ,"):
        slots = [tuple(part.split(" : ", 1)) for part in mr.split(" | ") if " : " in part]
    if not slots:
        return (("", re.sub(r"\s+", "", mr).lower()),)
    canon = []
    for key, value in slots:
        k = re.sub(r"\s+", "", key).lower()
        canon.append((_KEY_ALIASES.get(k, k), re.sub(r"\s+", "", value).lower()))
    return tuple(sorted(canon))


def align_to_gold(rows: TsvRows, gold: E2EGold, path: str | Path) -> list[str]:
    """Outputs of a prediction TSV in gold order, after checking its MRs against the gold MRs."""
    n_gold = len(gold.refs)
    if gold.mrs is None:
        if len(rows.outs) != n_gold:
            raise MetricInputError(
                f"{len(rows.outs)} predictions but the gold file {gold.path} has {n_gold} MRs", path)
        log.warning("%s: gold file has no MRs; prediction MRs not checked", path)
        return list(rows.outs)
    gold_keys = [mr_key(m) for m in gold.mrs]
    pred_keys = [mr_key(m) for m in rows.srcs]
    if pred_keys == gold_keys:
        return list(rows.outs)
    known = set(gold_keys)
    for key, mr, line in zip(pred_keys, rows.srcs, rows.lines):
        if key not in known:
            raise MetricInputError(f"unknown MR (not in the gold file {gold.path}): {mr!r}", path, line)
    seen: dict[tuple, int] = {}
    for key, line in zip(pred_keys, rows.lines):
        if key in seen:
            raise MetricInputError(f"duplicate MR (first given on line {seen[key]})", path, line)
        seen[key] = line
    missing = [m for m, k in zip(gold.mrs, gold_keys) if k not in seen]
    if missing:
        raise MetricInputError(
            f"{len(rows.outs)} predictions but the gold file {gold.path} has {n_gold} MRs; {len(missing)} MR(s) "
            f"have no prediction, e.g. {missing[0]!r}", path)
    if len(set(gold_keys)) != n_gold:
        raise MetricInputError(
            f"predictions are not in gold order and the gold file {gold.path} repeats MRs, so they cannot be "
            "re-ordered unambiguously", path)
    position = {k: i for i, k in enumerate(pred_keys)}
    log.warning("%s: predictions re-ordered to the MR order of %s", path, gold.path)
    return [rows.outs[position[k]] for k in gold_keys]


def _looks_tabular(path: str | Path, first_line: str) -> bool:
    if _TABULAR.search(str(path)):
        return True
    fields = first_line.replace("\ufeff", "").split("\t")
    return len(fields) == 2 and bool(_HEADER.match(fields[0]))


def read_e2e_predictions(path: str | Path, gold: E2EGold) -> list[str]:
    """Predictions in gold order: a TSV with MR and output columns (MRs checked), or plain text with one output
    per unique gold MR (the official `read_lines`: stripped lines, empty lines kept as empty outputs)."""
    lines = read_lines(path)
    if not lines:
        raise MetricInputError("empty prediction file", path)
    if _looks_tabular(path, lines[0]):
        return align_to_gold(read_tsv(path), gold, path)
    if len(lines) != len(gold.refs):
        trailing = len(lines) - max((i for i, text in enumerate(lines, start=1) if text), default=0)
        extra = f" ({trailing} of them empty at the end of the file)" if trailing else ""
        raise MetricInputError(
            f"{len(lines)} prediction lines{extra} but the gold file {gold.path} has {len(gold.refs)} MRs "
            "(one output per line, in gold MR order)", path, min(len(lines), len(gold.refs)) + 1)
    return lines


# -- scoring ------------------------------------------------------------------------------------------------
def _check(preds: Sequence[str], refs: Sequence[Sequence[str]], name: str = "predictions") -> None:
    if len(preds) != len(refs):
        raise MetricInputError(f"{len(preds)} {name} but {len(refs)} reference sets")
    if not refs:
        raise MetricInputError("nothing to score (0 segments)")
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise MetricInputError(f"reference set {empty[0]} is empty")


def score_e2e_many(systems: Mapping[str, Sequence[str]], refs: Sequence[Sequence[str]]) -> dict[str, dict]:
    """Score several systems against the same references: one PTB tokenizer call and one METEOR JVM."""
    for name, preds in systems.items():
        _check(preds, refs, f"predictions of {name!r}")
    texts: dict = {("ref", i): list(r) for i, r in enumerate(refs)}
    for name, preds in systems.items():
        texts.update({("sys", name, i): [p] for i, p in enumerate(preds)})
    tok = ptb_tokenize(texts)
    gts = {i: tok[("ref", i)] for i in range(len(refs))}
    mteval_refs = MtevalReferences(refs)  # BLEU/NIST on the raw text (mteval tokenisation), refs processed once
    results = {}
    for name, preds in systems.items():
        res = {i: tok[("sys", name, i)] for i in range(len(refs))}
        scores = {"bleu": mteval_refs.bleu(preds), "nist": mteval_refs.nist(preds)}
        scores.update(coco_scores(gts, res))
        results[name] = {k: float(scores[k]) for k in METRIC_KEYS}
    return results


def score_e2e(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """E2E metrics of one system: `bleu nist meteor rouge_l cider` on the official script's scale."""
    return score_e2e_many({"system": preds}, refs)["system"]
