"""Low-data subsets (paper.md §2.5): sizes {50, 100, 200, 500} x 5 sampled datasets, dev = 30 % of the size.

The paper's E2E subsets were never released and the script that made them is not in its repo, so we define our
own and release the indices. Rule, for a source split with N pairs (E2E: the 42,061 lines of ``src1_train``)::

    seed   = 1000 * size + subset_id                     # e.g. size 50, subset 3 -> 50003
    rng    = numpy.random.Generator(numpy.random.PCG64(seed))
    chosen = rng.choice(N, size + int(0.3 * size), replace=False)
    train  = chosen[:size]        dev = chosen[size:]    # disjoint by construction, kept in sampled order

Indices are 0-based line numbers of the source file (= positions in ``load_split(dataset, "train").pairs``).
``python -m prefixtune.data.lowdata --write results/lowdata_splits/`` writes one JSON per (size, subset) so
the subsets can be used without numpy; :func:`read_lowdata_file` turns such a file back into pairs. The paper
samples pairs (lines), not MRs, as its XSUM sampler does (``lowdata_gen.py``), so an MR can occur in both
train and dev.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .. import paths
from .registry import load_split
from .types import DataError, Pair, read_bytes

__all__ = [
    "lowdata_split",
    "lowdata_subset",
    "lowdata_indices",
    "lowdata_seed",
    "write_lowdata_files",
    "read_lowdata_file",
    "SIZES",
    "SUBSET_IDS",
    "DEV_FRACTION",
]

SIZES = (50, 100, 200, 500)
SUBSET_IDS = (0, 1, 2, 3, 4)
DEV_FRACTION = 0.3
RULE = (
    "numpy.random.Generator(PCG64(1000*size + subset_id)).choice(N, size + int(0.3*size), replace=False); "
    "first `size` -> train, the rest -> dev; 0-based line indices into the source file"
)


def lowdata_seed(size: int, subset_id: int) -> int:
    if size <= 0 or not 0 <= subset_id < 1000:
        raise ValueError(f"need size > 0 and 0 <= subset_id < 1000, got size={size}, subset_id={subset_id}")
    return 1000 * size + subset_id


def lowdata_indices(n: int, size: int, subset_id: int) -> tuple[list[int], list[int]]:
    """(train indices, dev indices) into a split of ``n`` pairs; see the module docstring for the rule."""
    n_dev = int(DEV_FRACTION * size)
    if size + n_dev > n:
        raise ValueError(f"cannot sample {size} + {n_dev} pairs from {n}")
    rng = np.random.Generator(np.random.PCG64(lowdata_seed(size, subset_id)))
    chosen = rng.choice(n, size + n_dev, replace=False)
    return [int(i) for i in chosen[:size]], [int(i) for i in chosen[size:]]


def lowdata_subset(pairs: list[Pair], size: int, subset_id: int) -> tuple[list[Pair], list[Pair]]:
    """(train pairs, dev pairs) of low-data subset ``subset_id`` of the given size, drawn from ``pairs``."""
    train_idx, dev_idx = lowdata_indices(len(pairs), size, subset_id)
    return [pairs[i] for i in train_idx], [pairs[i] for i in dev_idx]


def lowdata_split(
    dataset: str = "e2e",
    size: int = 100,
    subset_id: int = 0,
    *,
    source_split: str = "train",
    data_dir: Path | None = None,
) -> tuple[list[Pair], list[Pair]]:
    """(train pairs, dev pairs) of low-data subset ``subset_id`` of the given size, sampled from
    ``source_split``."""
    return lowdata_subset(load_split(dataset, source_split, data_dir=data_dir).pairs, size, subset_id)


def _atomic_write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_lowdata_files(
    out_dir: Path,
    dataset: str = "e2e",
    sizes=SIZES,
    subset_ids=SUBSET_IDS,
    *,
    source_split: str = "train",
    data_dir: Path | None = None,
) -> list[Path]:
    """Write ``{dataset}_size{size}_subset{id}.json`` for every (size, subset); returns the paths written."""
    split = load_split(dataset, source_split, data_dir=data_dir)
    source = Path(split.files[0])
    provenance = {
        "dataset": dataset,
        "source_split": source_split,
        "source_file": source.name,
        "source_sha256": hashlib.sha256(read_bytes(source)).hexdigest() if source.is_file() else None,
        "n_source": len(split.pairs),
        "rule": RULE,
        "numpy_version": np.__version__,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for size in sizes:
        for subset_id in subset_ids:
            train_idx, dev_idx = lowdata_indices(len(split.pairs), size, subset_id)
            record = {
                **provenance,
                "size": size,
                "subset_id": subset_id,
                "seed": lowdata_seed(size, subset_id),
                "train_lines": train_idx,
                "dev_lines": dev_idx,
            }
            path = out_dir / f"{dataset}_size{size}_subset{subset_id}.json"
            _atomic_write_json(path, record)
            written.append(path)
    return written


def read_lowdata_file(path: Path, data_dir: Path | None = None) -> tuple[list[Pair], list[Pair]]:
    """(train pairs, dev pairs) from a released index file, checking it refers to the same source data."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    pairs = load_split(record["dataset"], record["source_split"], data_dir=data_dir).pairs
    if len(pairs) != record["n_source"]:
        raise DataError(f"{path}: made from {record['n_source']} pairs but the local split has {len(pairs)}")
    return [pairs[i] for i in record["train_lines"]], [pairs[i] for i in record["dev_lines"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prefixtune.data.lowdata", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--write", type=Path, required=True, metavar="DIR", help="folder for the index JSONs")
    parser.add_argument("--dataset", default="e2e")
    parser.add_argument("--source-split", default="train")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--subsets", type=int, nargs="+", default=list(SUBSET_IDS))
    parser.add_argument("--data-dir", type=Path, default=None, help=f"default: {paths.data_dir()}")
    args = parser.parse_args(argv)
    written = write_lowdata_files(
        args.write,
        args.dataset,
        args.sizes,
        args.subsets,
        source_split=args.source_split,
        data_dir=args.data_dir,
    )
    print(f"wrote {len(written)} files to {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
