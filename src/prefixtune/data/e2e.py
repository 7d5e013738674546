"""E2E NLG (original release) in the paper's ``src1_*.txt`` format, and the rebuild of its train file.

File format (paper.md §4.4): one example per line, ``MR||REF `` (note the space before the newline), e.g.::

    name : Blue Spice | Type : coffee shop | area : city centre||Blue Spice is a coffee shop in city centre .

gives ``Pair(source="name : Blue Spice | Type : coffee shop | area : city centre",
target="Blue Spice is a coffee shop in city centre .")``. Both sides are stripped, as the paper's
decoding script does (``line.strip().split('||')`` in ``gpt2/run_generation.py``).

Note for the collator: the paper's *training* reader (``LineByLineData2TextTextDataset``) splits the
unstripped line, so its E2E training targets kept the trailing space and its training string ended in
``"… .  <|endoftext|>"`` (two spaces). WebNLG/DART targets have no trailing space. We return the stripped
target for every dataset; a collator that wants the original byte-for-byte E2E training string must add the
space back.

Groups: unique MRs in order of first appearance, references in file order (547 dev / 630 test).

Train: the paper's ``src1_train.txt`` is not available; ``src1_train.reconstructed.txt.gz`` is rebuilt from
harvardnlp/neural-template-gen ``data/e2e_aligned.tar.gz`` with :func:`rebuild_src1_from_aligned` (the same
rule applied to the ``valid`` split reproduces the paper's ``src1_valid.txt`` byte for byte; tests check
both). If a user puts the original ``src1_train.txt`` into the data folder it is preferred.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

from .types import DataError, Group, Pair, Split, group_pairs, iter_lines, require_file

__all__ = [
    "load_e2e",
    "read_src1",
    "rebuild_src1_from_aligned",
    "aligned_mr_to_src1",
    "aligned_ref_to_src1",
    "SPLIT_FILES",
    "ALIGNED_KEY_MAP",
]

# Candidate files per split, first existing wins (the original train file, if a user has it, beats the
# rebuild).
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": ("src1_train.txt", "src1_train.reconstructed.txt.gz", "src1_train.reconstructed.txt"),
    "dev": ("src1_valid.txt", "src1_valid.txt.gz"),
    "test": ("src1_test.txt", "src1_test.txt.gz"),
}
# The file `make setup` provides for each split (named in the error when nothing is found).
SETUP_FILES = {"train": "src1_train.reconstructed.txt.gz", "dev": "src1_valid.txt", "test": "src1_test.txt"}

# Harvard attribute names -> the paper's field names (DATA.md "Key mapping"); others are unchanged.
ALIGNED_KEY_MAP = {
    "eatType": "Type",
    "priceRange": "price",
    "customerrating": "customer rating",
    "familyFriendly": "family friendly",
}
_FIELD_RE = re.compile(r"__start_(?P<key>[A-Za-z]+)__ (?P<value>.*?) __end_(?P=key)__")


def read_src1(path: Path) -> list[Pair]:
    """Parse a ``src1_*.txt[.gz]`` file into pairs; blank lines are skipped (as the paper's reader does)."""
    require_file(path, "E2E src1 file")
    pairs: list[Pair] = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        parts = line.split("||")
        if len(parts) != 2:
            raise DataError(
                f"{path}:{lineno}: expected exactly one '||' between MR and reference, "
                f"found {len(parts) - 1}: {line[:120]!r}"
            )
        source, target = parts[0].strip(), parts[1].strip()
        if not source or not target:
            raise DataError(f"{path}:{lineno}: empty {'MR' if not source else 'reference'}: {line[:120]!r}")
        pairs.append(Pair(source, target))
    return pairs


def _split_file(data_dir: Path, split: str) -> Path:
    if split not in SPLIT_FILES:
        raise DataError(f"e2e has no split {split!r}; choose one of {sorted(SPLIT_FILES)}")
    folder = Path(data_dir) / "e2e"
    for name in SPLIT_FILES[split]:
        if (folder / name).is_file():
            return folder / name
    return require_file(folder / SETUP_FILES[split], f"E2E {split}")


def load_e2e(split: str, data_dir: Path) -> Split:
    path = _split_file(data_dir, split)
    pairs = read_src1(path)
    groups: list[Group] = group_pairs((p.source, p.target, {"first_pair": i}) for i, p in enumerate(pairs))
    return Split("e2e", split, pairs, groups, files=(str(path),))


# --- rebuild of the train file from the Harvard preprocessing -----------------------------------------------


def aligned_mr_to_src1(line: str, where: str = "") -> str:
    """``__start_name__ The Vaults __end_name__ __start_eatType__ pub __end_eatType__`` -> ``name : The Vaults
    | Type : pub``."""
    line = line.rstrip("\r\n")
    fields, pos = [], 0
    for match in _FIELD_RE.finditer(line):
        if line[pos : match.start()].strip():
            raise DataError(f"{where}: unexpected text outside a field: {line[pos : match.start()]!r}")
        key = match.group("key")
        fields.append(f"{ALIGNED_KEY_MAP.get(key, key)} : {match.group('value')}")
        pos = match.end()
    if not fields or line[pos:].strip():
        raise DataError(f"{where}: not a Harvard E2E MR line: {line[:120]!r}")
    return " | ".join(fields)


def aligned_ref_to_src1(line: str, where: str = "") -> str:
    """``tokenized ref <eos>|||span annotations`` -> ``tokenized ref``."""
    text = line.rstrip("\r\n").split("|||", 1)[0]
    if not text.endswith(" <eos>"):
        raise DataError(f"{where}: expected the reference to end in ' <eos>' before '|||': {line[:120]!r}")
    return text[: -len(" <eos>")]


def rebuild_src1_from_aligned(tar_path: Path, split: str = "train") -> bytes:
    """Rebuild ``src1_{split}.txt`` (bytes, UTF-8) from ``e2e_aligned.tar.gz`` (DATA.md "How ... was made").

    ``split`` is the Harvard split name: ``train`` (-> our reconstructed train) or ``valid`` (-> identical to
    the paper's ``src1_valid.txt``). Each output line is ``MR||REF `` followed by ``\\n``.
    """
    require_file(tar_path, "e2e_aligned.tar.gz")
    with tarfile.open(tar_path, "r:gz") as tar:

        def member_lines(name: str) -> list[str]:
            try:
                handle = tar.extractfile(f"e2e_aligned/{name}")
            except KeyError:
                handle = None
            if handle is None:
                raise DataError(f"{tar_path}: member e2e_aligned/{name} not found")
            return handle.read().decode("utf-8").split("\n")

        mrs = member_lines(f"src_{split}.txt")
        refs = member_lines(f"{split}.txt")
    for lines in (mrs, refs):
        if lines and lines[-1] == "":
            lines.pop()
    if len(mrs) != len(refs):
        raise DataError(f"{tar_path}: src_{split}.txt has {len(mrs)} lines but {split}.txt has {len(refs)}")
    out = []
    for i, (mr, ref) in enumerate(zip(mrs, refs, strict=True), start=1):
        where = f"{tar_path}:e2e_aligned/{split}.txt:{i}"
        out.append(f"{aligned_mr_to_src1(mr, where)}||{aligned_ref_to_src1(ref, where)} \n")
    return "".join(out).encode("utf-8")
