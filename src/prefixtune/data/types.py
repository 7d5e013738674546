"""The three record types every loader returns, the one error they raise, and small file helpers.

A dataset split is read into two views of the same data:

* ``Split.pairs``: every (input, reference) pair in file order -- what training iterates over.
* ``Split.groups``: one entry per model input with all its references -- what decoding and multi-reference
  evaluation iterate over (the paper decodes once per unique source, paper.md §4.3).
"""

from __future__ import annotations

import gzip
import io
import lzma
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DataError", "Pair", "Group", "Split", "open_text", "require_file", "group_pairs"]


class DataError(ValueError):
    """Malformed or missing input data. The message names the file (and line, where there is one)."""


@dataclass(frozen=True)
class Pair:
    """One training example: the linearised input and one reference, exactly as the paper's code builds
    them."""

    source: str
    target: str


@dataclass
class Group:
    """One unique input with all of its references (in file order) and dataset-specific metadata."""

    source: str
    references: list[str]
    meta: dict = field(default_factory=dict)


@dataclass
class Split:
    """A loaded split. ``files`` lists the files it was read from (provenance for run records)."""

    dataset: str
    split: str
    pairs: list[Pair]
    groups: list[Group]
    files: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the default repr would print 40k pairs
        return (
            f"Split(dataset={self.dataset!r}, split={self.split!r}, pairs={len(self.pairs)}, "
            f"groups={len(self.groups)})"
        )


def require_file(path: Path, what: str = "") -> Path:
    """Return ``path`` if it is a file, else raise a DataError that says how to get it."""
    path = Path(path)
    if not path.is_file():
        label = f" ({what})" if what else ""
        raise DataError(
            f"{path}: file not found{label}. Run `make setup` (or `python -m prefixtune.setup_data`) to "
            "prepare the datasets, or point PREFIXTUNE_DATA at a prepared data folder."
        )
    return path


def open_text(path: Path) -> io.TextIOBase:
    """Open a UTF-8 text file for reading, transparently decompressing ``.gz`` and ``.xz``.

    Newlines are not translated (``newline=""``) so CRLF files are seen as they are.
    """
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_bytes(path: Path, name: str | None = None) -> bytes:
    """The (decompressed) bytes of a file; ``.gz`` and ``.xz`` are decompressed, judged by ``name`` (default:
    the path's own name; pass the final name when reading a temporary file)."""
    path = Path(path)
    suffix = Path(name).suffix if name is not None else path.suffix
    if suffix == ".gz":
        return gzip.decompress(path.read_bytes())
    if suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    return path.read_bytes()


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its line ending) for a text file (compressed or not)."""
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            yield lineno, line.rstrip("\r\n")


def group_pairs(items: Iterable[tuple[str, str, dict]]) -> list[Group]:
    """Group (source, reference, meta) triples by source, in order of first appearance.

    This is how the paper's decoding scripts build their ``file_dict`` (one generation per unique source,
    references collected in file order). ``meta`` of the first occurrence is kept. Empty references are
    dropped from the reference list (they carry nothing to score against) but the group is kept.
    """
    groups: dict[str, Group] = {}
    for source, reference, meta in items:
        group = groups.get(source)
        if group is None:
            group = groups[source] = Group(source=source, references=[], meta=dict(meta))
        if reference:
            group.references.append(reference)
    return list(groups.values())
