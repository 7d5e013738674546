"""METEOR, ROUGE-L and CIDEr(-D) exactly as the MS-COCO caption evaluation computes them for E2E.

The E2E script (`measure_scores.py`) hands references and outputs to `COCOEvalCap.evaluate()`, which
PTB-tokenises everything (Stanford PTBTokenizer, `-preserveLines -lowerCase`, punctuation tokens removed) and
then runs each scorer on the tokenised text. We call the same pycocoevalcap classes (`PTBTokenizer`, `Meteor`,
`Rouge`, `Cider`) directly instead of `COCOEvalCap.evaluate()`, which would also run SPICE (a model download)
and COCO BLEU (unused by E2E):

* METEOR 1.5, `-l en -norm` via the wrapper's `-stdio` protocol (corpus score from summed statistics);
* ROUGE-L: sentence-level LCS F-measure with beta = 1.2 against the best reference precision/recall, averaged;
* CIDEr-D: n = 1..4, sigma = 6, tf-idf with document frequencies from the references of the scored corpus,
  Gaussian length penalty, x10.

One METEOR JVM is kept for the whole process (`coco_meteor()`), and any number of systems can be tokenised in
one PTB call (`ptb_tokenize` takes a dict of arbitrary keys).
"""
from __future__ import annotations

import atexit
import functools
from collections.abc import Hashable, Mapping, Sequence

from prefixtune.metrics.java import ptb_tokenizer_jar, require_java

# The PTB tokenizer runs with -preserveLines, one caption per line. Characters that Java/PTB treat as a line
# break inside a caption would shift every following caption; the official wrapper only replaces "\n". We
# replace all of them (str.splitlines boundaries) by a space -- a no-op for any input the official script reads.
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def ptb_tokenize(texts: Mapping[Hashable, Sequence[str]]) -> dict[Hashable, list[str]]:
    """PTB-tokenise (lower-case, punctuation removed) every string, in ONE Java call.

    `texts` maps any hashable key to a list of strings; the result has the same keys and list lengths.
    """
    require_java()
    ptb_tokenizer_jar()
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = {k: [{"caption": s.translate(_LINE_BREAKS)} for s in v] for k, v in texts.items()}
    n_in = sum(len(v) for v in captions.values())
    if n_in == 0:
        return {k: [] for k in texts}
    out = PTBTokenizer().tokenize(captions)
    n_out = sum(len(v) for v in out.values())
    if n_out != n_in or any(len(out.get(k, [])) != len(v) for k, v in texts.items()):
        raise RuntimeError(f"PTB tokenizer returned {n_out} lines for {n_in} inputs; refusing to mis-align")
    return out


@functools.lru_cache(maxsize=1)
def coco_meteor():
    """pycocoevalcap's METEOR wrapper; one JVM for the whole process (the paraphrase table loads once)."""
    require_java()
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    atexit.register(_close_meteor, meteor)
    return meteor


def _close_meteor(meteor) -> None:
    proc = getattr(meteor, "meteor_p", None)
    if proc is not None and proc.poll() is None:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def coco_scores(gts: Mapping[Hashable, list[str]], res: Mapping[Hashable, list[str]]) -> dict[str, float]:
    """METEOR / ROUGE_L / CIDEr on already PTB-tokenised references `gts` and outputs `res` (one each)."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if list(gts.keys()) != list(res.keys()):
        raise ValueError("references and outputs must have the same keys in the same order")
    gts = {k: list(v) for k, v in gts.items()}
    res = {k: list(v) for k, v in res.items()}
    meteor, _ = coco_meteor().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {"meteor": float(meteor), "rouge_l": float(rouge), "cider": float(cider)}
