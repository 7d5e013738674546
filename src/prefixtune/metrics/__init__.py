"""Evaluation metrics of the paper, each reproducing the official script it names (see each module).

| dataset | function | keys (scale) |
|---|---|---|
| E2E | `score_e2e(preds, refs)` | `bleu nist meteor rouge_l cider` (fractions; NIST unbounded) |
| WebNLG | `score_webnlg(preds, refs, seen)` | `bleu_{all,seen,unseen}` (0-100), `meteor_*`, `ter_*` (fractions) |
| DART | `score_dart(preds, refs)` | `bleu` (0-100), `meteor`, `ter`, `moverscore`, `bertscore`, `bleurt`, `unavailable` |
| XSUM | `score_rouge(preds, refs)` | `rouge1 rouge2 rougeL` (0-100) |

Reference loaders: `read_e2e_gold(path)`, `webnlg_references(data_dir)`, `dart_references(data_dir)` (official,
already tokenised); for raw references (dev sets) pass `raw_references=True` to `score_webnlg`/`score_dart`.
CLI: `python -m prefixtune.score e2e|webnlg|dart|xsum --pred PRED --gold GOLD`.
METEOR and the PTB tokenizer need Java (`java_available()`); the jars ship with `pycocoevalcap`.
"""
from prefixtune.metrics.dart import dart_reference_preprocess, dart_references, score_dart
from prefixtune.metrics.e2e import read_e2e_gold, read_e2e_predictions, score_e2e, score_e2e_many
from prefixtune.metrics.errors import MetricInputError, ToolUnavailable
from prefixtune.metrics.java import java_available
from prefixtune.metrics.rouge import score_rouge
from prefixtune.metrics.webnlg import (score_webnlg, webnlg_preprocess, webnlg_reference_preprocess,
                                       webnlg_references)

__all__ = [
    "MetricInputError", "ToolUnavailable", "dart_reference_preprocess", "dart_references", "java_available",
    "read_e2e_gold", "read_e2e_predictions", "score_dart", "score_e2e", "score_e2e_many", "score_rouge",
    "score_webnlg", "webnlg_preprocess", "webnlg_reference_preprocess", "webnlg_references",
]
