"""DART metrics as the paper computes them [paper.md §5, iss #12]: `python dart-eval2/tolower.py <pred>` then
Yale-LILY/dart `evaluation/run_eval_on_dart.sh <pred>.lt2`.

What the scripts do, and what we do the same way (our own code):

* Predictions are lower-cased (`tolower.py`; the DART references are lower-cased and tokenised) and stripped;
  they are not tokenised.
* References: `references/all-delex-reference{0,1,2}.lex` (5,097 lines each for the 2021 test grouping):
  line i of file k = k-th annotation of entry i, or empty. Read as they are.
* BLEU: `multi-bleu.perl ref0 ref1 ref2 < pred` (no `-lc`; empty reference lines take part in the
  closest-length choice). 0..100 scale.
* METEOR 1.5: `prepare_files.py` writes reference 0 followed by seven empty lines per entry and runs
  `meteor-1.5.jar pred refs -l en -norm -r 8`, i.e. METEOR against reference 0 only (the multi-reference code
  in `prepare_files.py` is commented out). Fraction.
* TER: tercom 0.7.25 against reference 0 only (same `prepare_files.py`). Fraction.
* MoverScore (ref 0), BERTScore (3 refs), BLEURT (ref 0): see :mod:`prefixtune.metrics.model_based`; null with
  a reason in `unavailable` when the package or model is not on this machine.

The paper used the July-2020 test grouping (6,959 entries); only the 2021 grouping (5,097) and its references
are available, so multi-reference scores are not strictly comparable with the paper's (see DATA.md).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from prefixtune.metrics.errors import MetricInputError
from prefixtune.metrics.meteor import shared_meteor
from prefixtune.metrics.model_based import bertscore_f1, bleurt_mean, moverscore_mean
from prefixtune.metrics.multibleu import multi_bleu
from prefixtune.metrics.ter import corpus_ter
from prefixtune.metrics.webnlg import read_lex_files

N_BLEU_REFS = 3  # all-delex-reference0..2
METEOR_REF_LINES = 8  # prepare_files.py pads reference 0 with 7 empty lines and runs `-r 8`
MODEL_METRICS = ("moverscore", "bertscore", "bleurt")


def dart_references(data_dir: str | Path) -> list[list[str]]:
    """References of the DART test entries (2021 grouping, file order) from `all-delex-reference{0,1,2}.lex`;
    `data_dir` is the DART data folder (with `references/`) or the references folder itself."""
    data_dir = Path(data_dir)
    for cand in (data_dir, data_dir / "references", data_dir / "dart" / "references"):
        if (cand / "all-delex-reference0.lex").is_file():
            return read_lex_files(cand, "all-delex-reference")
    raise MetricInputError("no all-delex-reference0.lex (expected it there or in references/)", data_dir)


def dart_preprocess(text: str) -> str:
    """A prediction as scored: `tolower.py` + the scripts' line stripping (no tokenisation)."""
    return text.strip().lower()


_NON_WORD = re.compile(r"(\W)")


def dart_reference_preprocess(text: str) -> str:
    """A reference in the form of the official `.lex` files: lower-cased, split around every non-word character,
    whitespace collapsed (reproduces all 5,097 lines of `all-delex-reference0.lex` from the test XML) -- for
    references that are not already in that form, e.g. dev annotations."""
    return " ".join(" ".join(_NON_WORD.split(text.lower())).split())


def score_dart(preds: Sequence[str], refs: Sequence[Sequence[str]], model_metrics: bool = True,
               raw_references: bool = False) -> dict:
    """`bleu` (0..100), `meteor`, `ter` (fractions), `moverscore`, `bertscore`, `bleurt` (or null) and
    `unavailable` ({metric: reason} for every null).

    `refs` are used as given (the official `.lex` references, :func:`dart_references`) unless
    `raw_references=True` (e.g. dev annotations), which applies :func:`dart_reference_preprocess` first.
    """
    if len(preds) != len(refs):
        raise MetricInputError(f"{len(preds)} predictions but {len(refs)} reference sets")
    if not refs:
        raise MetricInputError("nothing to score (0 segments)")
    if raw_references:
        refs = [[dart_reference_preprocess(r) for r in rs if r.strip()] for rs in refs]
    clean = [[r for r in rs if r.strip()] for rs in refs]
    if any(not rs for rs in clean):
        raise MetricInputError("every entry needs at least one non-empty reference")
    hyps = [dart_preprocess(p) for p in preds]
    bleu_refs = [rs[:N_BLEU_REFS] + [""] * (N_BLEU_REFS - len(rs[:N_BLEU_REFS])) for rs in clean]
    refs0 = [rs[0] for rs in clean]
    meteor = shared_meteor()
    stats = [meteor.segment_stats(h, [r0] + [""] * (METEOR_REF_LINES - 1)) for h, r0 in zip(hyps, refs0)]
    out: dict = {
        "bleu": multi_bleu(hyps, bleu_refs, lowercase=False).score,
        "meteor": meteor.corpus_score(stats),
        "ter": corpus_ter(hyps, [[r0] for r0 in refs0]).score,
    }
    unavailable: dict[str, str] = {}
    if model_metrics:
        results = {"moverscore": moverscore_mean(hyps, refs0), "bertscore": bertscore_f1(hyps, bleu_refs),
                   "bleurt": bleurt_mean(hyps, refs0)}
    else:
        results = {m: (None, "not requested (model_metrics=False)") for m in MODEL_METRICS}
    for name in MODEL_METRICS:
        value, reason = results[name]
        out[name] = value
        if value is None:
            unavailable[name] = reason
    out["unavailable"] = unavailable
    return out
