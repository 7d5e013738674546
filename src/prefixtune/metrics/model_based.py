"""Model-based DART metrics (BERTScore, BLEURT, MoverScore), computed only when both the package and the model
are already on this machine. Nothing is downloaded: the Hugging Face hub is forced offline for the call.

Each function returns `(value, None)` or `(None, reason)`; a metric that cannot be computed is reported as null
with its reason, never as 0. Settings follow Yale-LILY/dart `run_eval_on_dart.sh`:

* BERTScore: `bert-score -r ref0 ref1 ref2 -c hyp --lang en` -> roberta-large, layer 17, no idf, no baseline
  rescaling, F1 = max over the three reference lines (empty lines included, as the CLI reads them), averaged.
  Model: `$PREFIXTUNE_BERTSCORE_MODEL` (a local directory) or `roberta-large` in the local HF cache.
* BLEURT: `python -m bleurt.score ... -reference_file=ref0 -bleurt_checkpoint=...`, mean over segments.
  Checkpoint: `$PREFIXTUNE_BLEURT_CHECKPOINT` (the DART script points at BLEURT's `test_checkpoint`).
* MoverScore: the DART script's `moverscore.py` (reference 0) is not in the repository; we use the
  `moverscore_v2` defaults (idf from the corpus, unigrams, stop words kept, subwords removed), mean over
  segments, with `distilbert-base-uncased` from the local HF cache.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence

Result = tuple[float | None, str | None]


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _missing_package(module: str, pip_name: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"package `{pip_name}` is not installed"
    return None


def _cached_hub_model(repo_id: str) -> str | None:
    """Local snapshot directory of `repo_id` if it is in the HF cache, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return os.path.dirname(found) if isinstance(found, str) else None


def bertscore_f1(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> Result:
    reason = _missing_package("bert_score", "bert-score")
    if reason:
        return None, reason
    model = os.environ.get("PREFIXTUNE_BERTSCORE_MODEL") or _cached_hub_model("roberta-large")
    if not model or not os.path.isdir(model):
        return None, "model roberta-large is not available locally (set PREFIXTUNE_BERTSCORE_MODEL or cache it)"
    try:
        with _hub_offline():
            import bert_score

            _, _, f1 = bert_score.score(list(hyps), [list(r) for r in refs], model_type=model, num_layers=17,
                                        lang="en", idf=False, rescale_with_baseline=False, verbose=False)
        return float(f1.mean()), None
    except Exception as err:  # report, never score 0
        return None, f"BERTScore failed: {type(err).__name__}: {err}"


def bleurt_mean(hyps: Sequence[str], refs0: Sequence[str]) -> Result:
    reason = _missing_package("bleurt", "bleurt (google-research/bleurt)")
    if reason:
        return None, reason
    checkpoint = os.environ.get("PREFIXTUNE_BLEURT_CHECKPOINT")
    if not checkpoint or not os.path.isdir(checkpoint):
        return None, "no BLEURT checkpoint available locally (set PREFIXTUNE_BLEURT_CHECKPOINT)"
    try:
        from bleurt import score as bleurt_score

        scores = bleurt_score.BleurtScorer(checkpoint).score(references=list(refs0), candidates=list(hyps))
        return float(sum(scores) / len(scores)), None
    except Exception as err:
        return None, f"BLEURT failed: {type(err).__name__}: {err}"


def moverscore_mean(hyps: Sequence[str], refs0: Sequence[str]) -> Result:
    reason = _missing_package("moverscore_v2", "moverscore")
    if reason:
        return None, reason
    if _cached_hub_model("distilbert-base-uncased") is None:
        return None, "model distilbert-base-uncased is not available locally"
    try:
        with _hub_offline():
            from moverscore_v2 import get_idf_dict, word_mover_score

            idf_ref = get_idf_dict(list(refs0))
            idf_hyp = get_idf_dict(list(hyps))
            scores = word_mover_score(list(refs0), list(hyps), idf_ref, idf_hyp, stop_words=[], n_gram=1,
                                      remove_subwords=True)
        return float(sum(scores) / len(scores)), None
    except Exception as err:
        return None, f"MoverScore failed: {type(err).__name__}: {err}"
