"""DART v1.1.1 (open-domain triple sets), linearised as the paper's code does, and the rebuild of train/test.

Linearisation (``LineByLineTriplesTextDataset`` / ``read_triples_files`` in the paper's code): the relation is
lower-cased, subject and object are verbatim, ``" : "`` inside a triple and ``" | "`` *only between*
triples (no leading separator, unlike WebNLG). Literal example (first dev entry)::

    [["Mars Hill College", "JOINED", "1973"], ["Mars Hill College", "LOCATION", "Mars Hill, North Carolina"]]
    -> "Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill, North Carolina"

Pairs: one per non-empty annotation, file order (62,659 train / 6,980 dev / 12,551 test; the one test
annotation with empty text is skipped). Targets are whitespace-stripped (changes one dev text). Groups for
train/dev: unique sources in first-appearance order, as the paper's decoding reader builds them.

**Test grouping, 2021 vs 2020.** Yale-LILY/dart has two releases labelled v1.1.1. The paper used the July-2020
test JSON (6,959 entries; the repo's sample DART test output has 6,959 lines). Only the 2021-04-20 update is
available: the same 12,552 annotations regrouped into **5,097** entries, with the official references
``references/all-delex-reference{0,1,2}.lex`` in that entry order. Our test groups are therefore **one per
2021 entry, in XML order (5,097)**, not one per unique source (there are only 4,159 distinct linearised
sources; 938 entries repeat an earlier triple set with other annotations). Group *i* lines up with line *i* of
the reference files. Multi-reference scores on this grouping are not strictly comparable with the paper's
(paper.md §5).

**Rebuild.** The original train JSON and the 2020/2021 test JSONs are over 4 MB and unavailable;
:func:`rebuild_dart_train` and :func:`rebuild_dart_test` rebuild them from ConvLab-3's flattened copy
(``convlab3-unified-dart-data.zip``) and, for test, the official 2021 test XML (rules in
``shared/data/dart/DATA.md``). Both reproduce the committed ``*.reconstructed.json`` sha256 exactly (tested).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from .types import DataError, Group, Pair, Split, group_pairs, read_bytes, require_file

__all__ = [
    "load_dart",
    "linearise_dart",
    "read_dart_json",
    "read_convlab_records",
    "rebuild_dart_train",
    "rebuild_dart_test",
    "dumps_dart",
    "SPLIT_FILES",
]

SPLIT_FILES: dict[str, tuple[str, ...]] = {
    # the original 2020 train file (same annotations), if a user has it, beats the rebuild
    "train": ("dart-v1.1.1-full-train.json", "dart-v1.1.1-full-train.reconstructed.json.xz"),
    "dev": ("dart-v1.1.1-full-dev.json",),
    # never the 2020 test JSON: its grouping does not match references/ (see module docstring)
    "test": ("dart-v1.1.1-full-test.reconstructed.json.xz",),
}


def linearise_dart(tripleset: list[list[str]]) -> str:
    """``[[s, REL, o], [s2, REL2, o2]]`` -> ``"s : rel : o | s2 : rel2 : o2"``."""
    return " | ".join(f"{s} : {rel.lower()} : {o}" for s, rel, o in tripleset)


def read_dart_json(path: Path) -> list[dict]:
    """Load a DART JSON list and check its shape; errors name the file and the entry index."""
    require_file(path, "DART JSON")
    try:
        entries = json.loads(read_bytes(path).decode("utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}:{err.colno}: malformed JSON ({err.msg})") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of entries, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        triples = entry.get("tripleset") if isinstance(entry, dict) else None
        if not triples or not all(isinstance(t, list) and len(t) == 3 for t in triples):
            raise DataError(f"{path}: entry {i}: 'tripleset' must be a non-empty list of [s, rel, o] triples")
        annotations = entry.get("annotations")
        if not isinstance(annotations, list) or not all(
            isinstance(a, dict) and "text" in a for a in annotations
        ):
            raise DataError(f"{path}: entry {i}: 'annotations' must be a list of objects with a 'text'")
    return entries


def load_dart(split: str, data_dir: Path) -> Split:
    if split not in SPLIT_FILES:
        raise DataError(f"dart has no split {split!r}; choose one of {sorted(SPLIT_FILES)}")
    folder = Path(data_dir) / "dart"
    path = next(
        (folder / n for n in SPLIT_FILES[split] if (folder / n).is_file()), folder / SPLIT_FILES[split][-1]
    )
    entries = read_dart_json(path)
    pairs: list[Pair] = []
    items = []
    groups: list[Group] = []
    for i, entry in enumerate(entries):
        source = linearise_dart(entry["tripleset"])
        texts = [(a.get("text") or "").strip() for a in entry["annotations"]]
        meta = {"index": i, "annotation_sources": [a.get("source", "") for a in entry["annotations"]]}
        if "subtree_was_extended" in entry:
            meta["subtree_was_extended"] = entry["subtree_was_extended"]
        pairs.extend(Pair(source, t) for t in texts if t)
        if split == "test":
            groups.append(Group(source, [t for t in texts if t], meta))
        else:
            items.extend((source, t, meta) for t in texts)
    if split != "test":
        groups = group_pairs(items)
    return Split("dart", split, pairs, groups, files=(str(path),))


# --- rebuild from ConvLab-3's flattening --------------------------------------------------------------------


def read_convlab_records(zip_path: Path) -> list[dict]:
    """ConvLab's ``data/dialogues.json`` as flat records: split, source, text, tripleset,
    subtree_was_extended."""
    require_file(zip_path, "ConvLab-3 DART data.zip")
    with zipfile.ZipFile(zip_path) as archive:
        dialogues = json.loads(archive.read("data/dialogues.json"))
    records = []
    for d in dialogues:
        turn = d["turns"][0]
        records.append(
            {
                "split": d["data_split"],
                "source": d["domains"][0],
                "text": turn["utterance"],
                "tripleset": turn["tripleset"],
                "subtree_was_extended": turn.get("subtree_was_extended"),
            }
        )
    return records


def _entry(tripleset: list, subtree_was_extended, annotations: list[dict]) -> dict:
    entry: dict = {"tripleset": tripleset}
    if subtree_was_extended is not None:  # the key is absent in about half of the original entries
        entry["subtree_was_extended"] = subtree_was_extended
    entry["annotations"] = annotations
    return entry


def dumps_dart(entries: list[dict]) -> bytes:
    """Serialise like the original files: ``json.dumps(indent=2)``, ASCII escapes, no final newline."""
    return json.dumps(entries, indent=2, ensure_ascii=True).encode("ascii")


def flatten_split(records: list[dict], split: str) -> list[dict]:
    """Group *consecutive* records with equal (tripleset, subtree_was_extended) into entries (lossless for
    pairs)."""
    entries: list[dict] = []
    last_key = None
    for r in records:
        if r["split"] != split:
            continue
        key = (r["tripleset"], r["subtree_was_extended"])
        annotation = {"source": r["source"], "text": r["text"]}
        if entries and key == last_key:
            entries[-1]["annotations"].append(annotation)
        else:
            entries.append(_entry(r["tripleset"], r["subtree_was_extended"], [annotation]))
            last_key = key
    return entries


def rebuild_dart_train(zip_path: Path, records: list[dict] | None = None) -> bytes:
    """``dart-v1.1.1-full-train.reconstructed.json`` (bytes): 30,438 entries / 62,659 annotations."""
    records = read_convlab_records(zip_path) if records is None else records
    return dumps_dart(flatten_split(records, "train"))


def rebuild_dart_test(zip_path: Path, xml_path: Path, records: list[dict] | None = None) -> bytes:
    """``dart-v1.1.1-full-test.reconstructed.json`` (bytes): the 2021 XML's 5,097 entries in order; for each
    entry take as many ConvLab test records as it has ``<lex>``; texts/grouping from the XML, the
    ``subtree_was_extended`` flag from ConvLab. Triples, texts and sources are cross-checked."""
    records = read_convlab_records(zip_path) if records is None else records
    test = [r for r in records if r["split"] == "test"]
    require_file(xml_path, "DART test XML")
    root = ET.parse(xml_path).getroot()
    entries, k = [], 0
    for n, element in enumerate(root.iter("entry"), start=1):
        triples = [(m.text or "").split(" | ") for m in element.find("modifiedtripleset").findall("mtriple")]
        lexes = element.findall("lex")
        chunk = test[k : k + len(lexes)]
        k += len(lexes)
        where = f"{xml_path}: entry {n} (eid={element.get('eid')})"
        if len(chunk) != len(lexes):
            raise DataError(f"{where}: ConvLab has too few test records ({k} needed, {len(test)} available)")
        flags = {r["subtree_was_extended"] for r in chunk}
        if len(flags) != 1:
            raise DataError(f"{where}: ConvLab records disagree on subtree_was_extended: {flags}")
        for record, lex in zip(chunk, lexes, strict=True):
            if (
                record["tripleset"] != triples
                or record["source"] != lex.get("comment")
                or record["text"] != (lex.text or "")
            ):
                raise DataError(
                    f"{where}: ConvLab test record does not match the XML ({record['text'][:60]!r})"
                )
        annotations = [{"source": lex.get("comment"), "text": lex.text or ""} for lex in lexes]
        entries.append(_entry(chunk[0]["tripleset"], flags.pop(), annotations))
    if k != len(test):
        raise DataError(f"{xml_path}: the XML uses {k} annotations but ConvLab has {len(test)} test records")
    return dumps_dart(entries)
