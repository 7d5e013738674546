"""WebNLG Challenge 2017, read from the challenge XML and linearised as the paper's code does.

Linearisation (``LineByLineWebNLGTextDataset`` in the paper's ``language_modeling.py``): every triple of the
``modifiedtripleset``, *including the first*, is preceded by ``" | "``; subject, property and object are kept
verbatim (camelCase properties, underscores in entities) and joined by ``" : "``. So the source string
starts with a space. Literal example (dev entry Id1 of ``1triple_allSolutions_Airport_dev_challenge.xml``)::

    [("Aarhus", "leaderName", "Jacob_Bundsgaard")]  ->  " | Aarhus : leaderName : Jacob_Bundsgaard"

and a two-triple input gives ``" | A : p : B | A : q : C"``. The training string is then
``' {source} <|endoftext|> {target} <|endoftext|>'`` (two spaces before the first ``|``), as in the original.

Quirk we do *not* copy: the decoding reader ``read_webnlg_files`` (``gpt2/run_generation.py``) tests ``if i >
0`` with the *entry* index instead of the triple index, so only the first entry of the evaluated file loses
all its separators (``"A : p : BA : q : C"``); every other entry gets the training format above, which we use
everywhere.

Pairs: only lexicalisations with ``comment == "good"`` (18,025 train / 2,258 dev; the test set has only
"good"). Groups: unique sources in first-appearance order with *all* lexicalisations as references (the
decoding reader keeps ``toFix`` ones as references too); meta ``eid``, ``category``, ``seen``, ``size``,
``file``. Test (``test/testdata_with_lex.xml``): 1,862 groups in XML order = the line order of the official
``gold-*-cat-reference*.lex`` files; 971 seen (entries 1-971) and 891 unseen.

Entry order for train/dev: triple-size folders 1..7, files by name within a folder -- the order of the paper
repo's ``dev.json`` (checked entry by entry in the tests).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .types import DataError, Pair, Split, group_pairs, require_file

__all__ = [
    "load_webnlg",
    "linearise_webnlg",
    "read_webnlg_xml",
    "webnlg_files",
    "WebNLGEntry",
    "SEEN_CATEGORIES",
    "UNSEEN_CATEGORIES",
]

ROOT = "webnlg_challenge_2017"
TEST_FILE = f"{ROOT}/test/testdata_with_lex.xml"
# The 10 train/dev categories (= "old-cat" in the official references); the other 5 test categories are
# unseen.
SEEN_CATEGORIES = frozenset(
    {
        "Airport",
        "Astronaut",
        "Building",
        "City",
        "ComicsCharacter",
        "Food",
        "Monument",
        "SportsTeam",
        "University",
        "WrittenWork",
    }
)
UNSEEN_CATEGORIES = frozenset({"Artist", "Athlete", "CelestialBody", "MeanOfTransportation", "Politician"})


@dataclass
class WebNLGEntry:
    eid: str
    category: str
    size: int
    triples: list[tuple[str, str, str]]
    lexes: list[tuple[str, str]]  # (comment, text)
    file: str


def linearise_webnlg(triples: list[tuple[str, str, str]]) -> str:
    """``[(s, p, o), (s2, p2, o2)]`` -> ``" | s : p : o | s2 : p2 : o2"`` (note the leading space)."""
    return "".join(f" | {s} : {p} : {o}" for s, p, o in triples)


def read_webnlg_xml(path: Path, rel: str | None = None) -> list[WebNLGEntry]:
    """All ``<entry>`` elements of one WebNLG benchmark XML file, in file order."""
    require_file(path, "WebNLG XML")
    rel = rel or Path(path).name
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        line, col = err.position
        raise DataError(f"{path}:{line}:{col}: malformed XML ({err})") from None
    entries = []
    for element in root.iter("entry"):
        eid = element.get("eid", "?")
        tripleset = element.find("modifiedtripleset")
        if tripleset is None:
            raise DataError(f"{path}: entry eid={eid} has no <modifiedtripleset>")
        triples = []
        for mtriple in tripleset.findall("mtriple"):
            parts = (mtriple.text or "").split(" | ")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise DataError(f"{path}: entry eid={eid}: <mtriple> is not 'S | P | O': {mtriple.text!r}")
            triples.append((parts[0], parts[1], parts[2]))
        if not triples:
            raise DataError(f"{path}: entry eid={eid} has an empty <modifiedtripleset>")
        lexes = [(lex.get("comment", ""), (lex.text or "").strip()) for lex in element.findall("lex")]
        entries.append(
            WebNLGEntry(
                eid=eid,
                category=element.get("category", ""),
                size=int(element.get("size", len(triples))),
                triples=triples,
                lexes=lexes,
                file=rel,
            )
        )
    return entries


def _size_key(path: Path) -> tuple[int, str]:
    match = re.match(r"(\d+)", path.parent.name)
    return (int(match.group(1)) if match else 0, path.name)


def webnlg_files(data_dir: Path, split: str) -> list[Path]:
    """The XML files of a split, in the order the paper repo's JSON lists their entries."""
    folder = Path(data_dir) / "webnlg"
    if split == "test":
        return [folder / TEST_FILE]
    if split not in ("train", "dev"):
        raise DataError(f"webnlg has no split {split!r}; choose one of ['dev', 'test', 'train']")
    files = sorted((folder / ROOT / split).glob("*triples/*.xml"), key=_size_key)
    if not files:
        require_file(
            folder / ROOT / split / "1triples" / f"1triple_allSolutions_Airport_{split}_challenge.xml",
            f"WebNLG {split} XML",
        )
    return files


def load_webnlg(split: str, data_dir: Path) -> Split:
    files = webnlg_files(data_dir, split)
    folder = Path(data_dir) / "webnlg"
    entries = [e for f in files for e in read_webnlg_xml(f, str(f.relative_to(folder)))]
    pairs: list[Pair] = []
    items = []
    for entry in entries:
        source = linearise_webnlg(entry.triples)
        meta = {
            "eid": entry.eid,
            "category": entry.category,
            "seen": entry.category in SEEN_CATEGORIES,
            "size": entry.size,
            "file": entry.file,
        }
        if not entry.lexes:
            items.append((source, "", meta))
        for comment, text in entry.lexes:
            items.append((source, text, meta))
            if comment == "good" and text:
                pairs.append(Pair(source, text))
    return Split("webnlg", split, pairs, group_pairs(items), files=tuple(str(f) for f in files))
