"""XSUM (BBC extreme summarisation): the 1,000-article offline sample, and a loader for the full corpus.

Only 1,000 real **test** articles are in the shared data (``test.sample1000.jsonl.xz``; see its DATA.md). They
are exposed under names that can never be mistaken for the paper's splits:

=================  ===================  ================================================================
split name         lines of the sample  use
=================  ===================  ================================================================
``sample1000``     0-999 (all)          scoring a model trained elsewhere on real XSUM test articles
``sample_train``   0-799                offline training experiments
``sample_dev``     800-899              offline early stopping / model selection
``sample_test``    900-999              offline evaluation -- *not* "XSUM test"
=================  ===================  ================================================================

The cut is by file line (fixed, no RNG); the file order is the official test-split order, which has no topical
structure. Source = ``document`` (sentences separated by ``\\n``, as in HF ``xsum``), target = ``summary``
(stripped), group meta = ``{"id": BBC id}``; one group per article (summaries are single-reference).

The full corpus (``train`` / ``dev`` / ``test``, i.e. HF ``train`` / ``validation`` / ``test``) is read by
:func:`load_xsum_records` from, in order: the ``source`` argument or ``$PREFIXTUNE_XSUM`` if it is a local
folder (``{split}.jsonl[.gz|.xz]`` in HF format, the paper's legacy ``xsum.tar.gz`` layout
``{train,val,test}.{source, target}``, a ``datasets.save_to_disk`` folder, or parquet files of a hub
snapshot), else the hub dataset ``EdinburghNLP/xsum`` via ``datasets.load_dataset``. Offline
(``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, or the hub unreachable within a few seconds) it raises
:class:`DataError` at once instead of hanging.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from . import xsum_topics
from .types import DataError, Group, Pair, Split, iter_lines, require_file

__all__ = [
    "load_xsum",
    "load_xsum_records",
    "read_xsum_jsonl",
    "SAMPLE_FILE",
    "SAMPLE_SPLITS",
    "FULL_SPLITS",
    "HUB_ID",
]

SAMPLE_FILE = "test.sample1000.jsonl.xz"
URLS_FILE = "XSum-WebArxiveUrls.txt"  # not in the offline data; users with it get the topic splits
SAMPLE_SPLITS = {
    "sample1000": (0, 1000),
    "sample_train": (0, 800),
    "sample_dev": (800, 900),
    "sample_test": (900, 1000),
}
FULL_SPLITS = {"train": "train", "dev": "validation", "test": "test"}  # ours -> HF names
LEGACY_SPLITS = {"train": "train", "dev": "val", "test": "test"}  # ours -> xsum.tar.gz names
HUB_ID = "EdinburghNLP/xsum"
HUB_HOST = ("huggingface.co", 443)


def read_xsum_jsonl(path: Path) -> list[dict]:
    """HF-format JSON lines ``{"document", "summary", "id"}``; errors name the file and line."""
    require_file(path, "XSUM jsonl")
    records = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: malformed JSON ({err.msg})") from None
        if not isinstance(record, dict) or not {"document", "summary"} <= record.keys():
            raise DataError(f"{path}:{lineno}: expected an object with 'document' and 'summary'")
        records.append(record)
    return records


def _to_split(split: str, records: list[dict], files: tuple[str, ...]) -> Split:
    pairs, groups = [], []
    for i, r in enumerate(records):
        document, summary = str(r["document"]), str(r["summary"]).strip()
        if document.strip() and summary:  # a few HF articles have an empty document: nothing to train on
            pairs.append(Pair(document, summary))
        groups.append(Group(document, [summary] if summary else [], {"id": str(r.get("id", i))}))
    return Split("xsum", split, pairs, groups, files=files)


def load_xsum(split: str, data_dir: Path, source: str | os.PathLike | None = None) -> Split:
    if split in SAMPLE_SPLITS:
        path = Path(data_dir) / "xsum" / SAMPLE_FILE
        records = read_xsum_jsonl(path)
        if len(records) != 1000:
            raise DataError(f"{path}: expected 1,000 articles, found {len(records)}")
        start, stop = SAMPLE_SPLITS[split]
        return _to_split(split, records[start:stop], (str(path),))
    if split in FULL_SPLITS:
        records, origin = load_xsum_records(split, source)
        return _to_split(split, records, (origin,))
    for kind in xsum_topics.KINDS:  # extrapolation splits, e.g. news_to_sports_train (ACL Table 4)
        part = split[len(kind) + 1:] if split.startswith(kind + "_") else None
        if part in FULL_SPLITS:
            urls = Path(os.environ.get("PREFIXTUNE_XSUM_URLS") or Path(data_dir) / "xsum" / URLS_FILE)
            if not urls.is_file():
                raise DataError(f"{urls}: the XSUM article URLs (EdinburghNLP/XSum {URLS_FILE}) are needed for the "
                                f"{kind} split; set PREFIXTUNE_XSUM_URLS to the file")
            records, origin = load_xsum_records(part, source)
            chosen = xsum_topics.select(kind, part, records, xsum_topics.read_urls(urls))
            return _to_split(split, chosen, (origin, str(urls)))
    extra = [f"{k}_{p}" for k in xsum_topics.KINDS for p in FULL_SPLITS]
    raise DataError(
        f"xsum has no split {split!r}; choose one of {sorted(FULL_SPLITS) + sorted(SAMPLE_SPLITS) + extra}"
    )


# --- the full corpus ----------------------------------------------------------------------------------------


def _falsy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("", "0", "false", "no", "off")


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _read_local(folder: Path, split: str) -> list[dict] | None:
    hf = FULL_SPLITS[split]
    for name in (split, hf):
        for suffix in (".jsonl", ".jsonl.gz", ".jsonl.xz"):
            if (folder / f"{name}{suffix}").is_file():
                return read_xsum_jsonl(folder / f"{name}{suffix}")
    legacy = LEGACY_SPLITS[split]
    src, tgt = folder / f"{legacy}.source", folder / f"{legacy}.target"
    if src.is_file() and tgt.is_file():
        documents = [line for _, line in iter_lines(src)]
        summaries = [line for _, line in iter_lines(tgt)]
        if len(documents) != len(summaries):
            raise DataError(f"{src}: {len(documents)} lines but {tgt} has {len(summaries)}")
        return [
            {"document": d, "summary": s, "id": str(i)}
            for i, (d, s) in enumerate(zip(documents, summaries, strict=True))
        ]
    parquet = sorted(folder.rglob(f"{hf}-*.parquet")) or sorted(folder.rglob(f"{hf}/*.parquet"))
    if not (folder / "dataset_dict.json").is_file() and not parquet:
        return None
    import datasets  # heavy import: only when a saved dataset or parquet snapshot is actually read

    if (folder / "dataset_dict.json").is_file():
        return [dict(r) for r in datasets.load_from_disk(str(folder))[hf]]
    return [
        dict(r) for r in datasets.load_dataset("parquet", data_files=[str(p) for p in parquet], split="train")
    ]


def load_xsum_records(split: str, source: str | os.PathLike | None = None) -> tuple[list[dict], str]:
    """Records ``{"document", "summary", "id"}`` of a full XSUM split and a string saying where they came
    from."""
    if split not in FULL_SPLITS:
        raise DataError(f"full XSUM has splits {sorted(FULL_SPLITS)}, not {split!r}")
    source = source if source is not None else os.environ.get("PREFIXTUNE_XSUM") or HUB_ID
    folder = Path(source).expanduser()
    if folder.is_dir():
        records = _read_local(folder, split)
        if records is None:
            raise DataError(
                f"{folder}: no XSUM {split!r} data found. Expected {split}.jsonl[.gz|.xz] or "
                f"{FULL_SPLITS[split]}.jsonl (HF format), {LEGACY_SPLITS[split]}.source + .target (the "
                f"paper's xsum.tar.gz layout), a datasets.save_to_disk folder, or "
                f"{FULL_SPLITS[split]}-*.parquet files."
            )
        return records, str(folder)
    hint = (
        "The full XSUM corpus is not in the shared data (only a 1,000-article test sample: use splits "
        "'sample_train'/'sample_dev'/'sample_test'). Set PREFIXTUNE_XSUM to a local copy, or run where the "
        "Hugging Face hub is reachable."
    )
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if not _falsy(os.environ.get(var)):
            raise DataError(f"cannot load {source!r} from the hub: {var}={os.environ[var]}. {hint}")
    if not _hub_reachable():
        raise DataError(f"cannot load {source!r}: {HUB_HOST[0]} is not reachable. {hint}")
    import datasets

    try:
        dataset = datasets.load_dataset(str(source), split=FULL_SPLITS[split])
    except Exception as err:  # noqa: BLE001 - any hub/network failure becomes one clear error
        raise DataError(
            f"datasets.load_dataset({str(source)!r}, split={FULL_SPLITS[split]!r}) failed: "
            f"{type(err).__name__}: {err}. {hint}"
        ) from err
    return [dict(r) for r in dataset], f"hf:{source}"
