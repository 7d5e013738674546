"""WebNLG 2017 metrics as the paper computes them: the challenge scripts run by Yale-LILY/dart
`evaluation/run_eval_on_webnlg.sh` (webnlg-automatic-evaluation: `evaluation.py`, `bleu_eval_3ref.sh`,
`meteor_eval.sh`, `ter_eval.sh`), reported for ALL / SEEN ("old-cat") / UNSEEN ("new-cat") categories.

What the scripts do, and what we do the same way (our own code):

* Predictions (`evaluation.py`, `read_participant` + `write_to_file`): each line is stripped and transliterated
  to ASCII with `unidecode`, lower-cased, transliterated again, split around every non-word character
  (`re.split(r'(\\W)', ...)` joined with spaces) and whitespace-collapsed. -> :func:`webnlg_preprocess`.
* References: the official `gold-{all,old,new}-cat-reference{k}.lex` files (lower-cased, tokenised, ASCII; line
  i of file k = k-th lexicalisation of entry i, or empty). Only the first THREE references are used by every
  metric. We read them as they are (they are not re-tokenised).
* BLEU: `multi-bleu.perl -lc` with reference0..2 (an empty line where an entry has fewer than 3 references
  takes part in the closest-length choice, as in the script). 0..100 scale.
* METEOR 1.5: `meteor-1.5.jar hyp refs -l en -norm -r 3` with the first three references, padded with empty
  lines to three. Fraction.
* TER: tercom 0.7.25, default options, against the (up to) three references. Fraction.
* SEEN/UNSEEN scores are computed on the seen/unseen subsets in test-file order (the scripts score the
  `old-cat`/`new-cat` files, which are exactly those subsets).

`unidecode` is an optional dependency here: without it the predictions are transliterated by Unicode NFKD
decomposition plus a table of common punctuation; a character neither covers raises an error instead of being
scored differently from the official script.
"""
from __future__ import annotations

import functools
import logging
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from prefixtune.metrics.errors import MetricInputError, ToolUnavailable
from prefixtune.metrics.meteor import shared_meteor
from prefixtune.metrics.multibleu import multi_bleu
from prefixtune.metrics.ter import segment_ter_stats, sum_stats

log = logging.getLogger(__name__)

N_REFS = 3  # the challenge scripts use reference0..2 for BLEU, METEOR and TER
SPLITS = ("all", "seen", "unseen")
SEEN_CATEGORIES = frozenset({"Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food", "Monument",
                             "SportsTeam", "University", "WrittenWork"})

# -- transliteration ----------------------------------------------------------------------------------------
# Used only when `unidecode` is not installed: characters whose unidecode output is not their NFKD skeleton.
_FALLBACK = {
    "ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L", "đ": "d",
    "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ı": "i", "ħ": "h", "Ħ": "H", "ŋ": "ng", "Ŋ": "NG",
    "–": "-", "—": "--", "‐": "-", "‑": "-", "‒": "-", "−": "-", "‘": "'", "’": "'", "‚": ",", "‛": "'",
    "“": '"', "”": '"', "„": ",,", "«": "<<", "»": ">>", "‹": "<", "›": ">", "…": "...", "•": "*", "·": "*",
    "°": "deg", "×": "x", "÷": "/", "€": "EUR", "£": "PS", "¥": "Y=", "©": "(c)", "®": "(r)", "™": "(tm)",
    "\u00a0": " ", "\u2009": " ", "\u200b": " ", "\u2032": "'", "\u2033": "''", "¡": "!", "¿": "?",
    "ə": "@", "Ə": "@", "±": "+-", "µ": "u", "§": "SS", "¼": " 1/4", "½": " 1/2", "¾": " 3/4",
}


def _fallback_ascii(text: str) -> str:
    out = []
    for ch in text:
        if ord(ch) < 128:
            out.append(ch)
        elif ch in _FALLBACK:
            out.append(_FALLBACK[ch])
        elif "\u0300" <= ch <= "\u0362":  # a lone combining diacritic: dropped, as unidecode does
            continue
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            if not (base.isascii() and base.isalnum()):  # only letters/digits with diacritics are safe
                raise ToolUnavailable(
                    f"cannot transliterate {ch!r} (U+{ord(ch):04X}) like the official WebNLG script without the "
                    "`unidecode` package; install it (`pip install Unidecode`)")
            out.append(base)
    return "".join(out)


@functools.lru_cache(maxsize=1)
def _transliterator():
    try:
        from unidecode import unidecode
    except ImportError:
        log.warning("`unidecode` not installed: using an NFKD-based transliteration for WebNLG predictions")
        return _fallback_ascii
    return unidecode


_NON_WORD = re.compile(r"(\W)")


def webnlg_preprocess(text: str) -> str:
    """A prediction as the challenge's `evaluation.py` writes it for scoring (ASCII, lower-cased, tokenised)."""
    ascii_ = _transliterator()
    text = ascii_(text.strip())
    return " ".join(" ".join(_NON_WORD.split(ascii_(text.lower()))).split())


def webnlg_reference_preprocess(text: str) -> str:
    """A reference as the challenge's `evaluation.py` writes the gold `.lex` files (note the order: split around
    non-word characters first, then lower-case and transliterate) -- for references that are not already in
    that form, e.g. dev-set lexicalisations read from the XML/JSON."""
    tokenised = " ".join(" ".join(_NON_WORD.split(text)).split())
    return _transliterator()(tokenised.lower())


# -- references ---------------------------------------------------------------------------------------------
def _references_dir(data_dir: str | Path, probe: str) -> Path:
    data_dir = Path(data_dir)
    for cand in (data_dir, data_dir / "references", data_dir / "webnlg" / "references"):
        if (cand / probe).is_file():
            return cand
    raise MetricInputError(f"no {probe} under {data_dir} (expected it there or in references/)", data_dir)


def read_lex_files(ref_dir: Path, stem: str) -> list[list[str]]:
    """Entries of `{stem}{k}.lex` (k = 0, 1, ...): line i of file k is reference k of entry i; empty lines are
    dropped per entry (they only mark a missing reference and are always at the end)."""
    files = []
    k = 0
    while (ref_dir / f"{stem}{k}.lex").is_file():
        files.append(ref_dir / f"{stem}{k}.lex")
        k += 1
    if not files:
        raise MetricInputError(f"no {stem}0.lex", ref_dir)
    columns = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise MetricInputError(f"not valid UTF-8 ({err.reason})", f) from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        columns.append([line.strip() for line in lines])
    n = len(columns[0])
    for f, col in zip(files, columns):
        if len(col) != n:
            raise MetricInputError(f"{len(col)} lines but {files[0].name} has {n}", f)
    entries = []
    for i in range(n):
        refs = [col[i] for col in columns]
        kept = [r for r in refs if r]
        if refs[: len(kept)] != kept:
            k = refs.index("")
            raise MetricInputError(f"reference {k} of entry {i + 1} is empty but a later one is not", files[k], i + 1)
        if not kept:
            raise MetricInputError(f"entry {i + 1} has no reference", files[0], i + 1)
        entries.append(kept)
    return entries


def webnlg_references(data_dir: str | Path) -> tuple[list[list[str]], list[bool]]:
    """(references, seen) for the 1,862 WebNLG 2017 test entries in XML order, from the official .lex files.

    `data_dir` is the WebNLG data folder (with `references/`) or the references folder itself. SEEN/UNSEEN is
    recovered by merging the `old-cat` (seen) and `new-cat` (unseen) files back into the `all-cat` order; if the
    test XML is beside them, its categories are used to confirm it.
    """
    ref_dir = _references_dir(data_dir, "gold-all-cat-reference0.lex")
    all_ = read_lex_files(ref_dir, "gold-all-cat-reference")
    old = read_lex_files(ref_dir, "gold-old-cat-reference")
    new = read_lex_files(ref_dir, "gold-new-cat-reference")
    xml_seen = _xml_seen(ref_dir)
    seen: list[bool] = []
    j = k = 0
    for i, entry in enumerate(all_):
        in_old = j < len(old) and old[j] == entry
        in_new = k < len(new) and new[k] == entry
        if in_old and in_new:
            if xml_seen is None:
                raise MetricInputError(f"entry {i + 1} matches both old-cat and new-cat references and no test XML "
                                       "is available to tell", ref_dir)
            in_old, in_new = xml_seen[i], not xml_seen[i]
        if in_old:
            seen.append(True)
            j += 1
        elif in_new:
            seen.append(False)
            k += 1
        else:
            raise MetricInputError(f"entry {i + 1} of gold-all-cat is in neither gold-old-cat nor gold-new-cat", ref_dir)
    if j != len(old) or k != len(new):
        raise MetricInputError("gold-old-cat/gold-new-cat do not partition gold-all-cat", ref_dir)
    if xml_seen is not None and xml_seen != seen:
        raise MetricInputError("seen/unseen from the .lex files disagrees with the test XML categories", ref_dir)
    return all_, seen


def _xml_seen(ref_dir: Path) -> list[bool] | None:
    for xml in (ref_dir.parent / "webnlg_challenge_2017" / "test" / "testdata_with_lex.xml",
                ref_dir / "testdata_with_lex.xml"):
        if xml.is_file():
            entries = ET.parse(xml).getroot().iter("entry")
            return [e.get("category") in SEEN_CATEGORIES for e in entries]
    return None


def webnlg_test_seen(xml_path: str | Path) -> list[bool]:
    """SEEN flag of every entry of a WebNLG 2017 test XML (category among the 10 training categories)."""
    return [e.get("category") in SEEN_CATEGORIES for e in ET.parse(xml_path).getroot().iter("entry")]


# -- scoring ------------------------------------------------------------------------------------------------
def _pad(refs: Sequence[str]) -> list[str]:
    kept = [r for r in refs if r.strip()][:N_REFS]
    return kept + [""] * (N_REFS - len(kept))


def score_webnlg(preds: Sequence[str], refs: Sequence[Sequence[str]], seen: Sequence[bool],
                 raw_references: bool = False) -> dict:
    """`bleu_{all,seen,unseen}` (0..100), `meteor_*` and `ter_*` (fractions); a split with no entry is None.

    `preds` are raw model outputs, pre-processed here as the challenge script does. `refs` are used as given,
    i.e. they must be the official lower-cased tokenised references (:func:`webnlg_references`), unless
    `raw_references=True` (e.g. dev lexicalisations), which applies :func:`webnlg_reference_preprocess` first.
    """
    if not (len(preds) == len(refs) == len(seen)):
        raise MetricInputError(f"{len(preds)} predictions, {len(refs)} reference sets, {len(seen)} seen flags")
    if not refs:
        raise MetricInputError("nothing to score (0 segments)")
    if raw_references:
        refs = [[webnlg_reference_preprocess(r) for r in rs if r.strip()] for rs in refs]
    if any(not any(r.strip() for r in rs) for rs in refs):
        raise MetricInputError("every entry needs at least one non-empty reference")
    hyps = [webnlg_preprocess(p) for p in preds]
    padded = [_pad(rs) for rs in refs]
    meteor = shared_meteor()
    stats = [meteor.segment_stats(h, r) for h, r in zip(hyps, padded)]
    ter_stats = segment_ter_stats(hyps, [[r for r in rs if r] for rs in padded])
    subsets = {"all": list(range(len(hyps))), "seen": [i for i, s in enumerate(seen) if s],
               "unseen": [i for i, s in enumerate(seen) if not s]}
    out: dict = {}
    for split in SPLITS:
        idx = subsets[split]
        if not idx:
            out.update({f"bleu_{split}": None, f"meteor_{split}": None, f"ter_{split}": None})
            continue
        h = [hyps[i] for i in idx]
        out[f"bleu_{split}"] = multi_bleu(h, [padded[i] for i in idx], lowercase=True).score
        out[f"meteor_{split}"] = meteor.corpus_score([stats[i] for i in idx])
        out[f"ter_{split}"] = sum_stats([ter_stats[i] for i in idx]).score
    return {f"{m}_{s}": out[f"{m}_{s}"] for m in ("bleu", "meteor", "ter") for s in SPLITS}
