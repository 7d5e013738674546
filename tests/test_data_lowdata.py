"""Low-data sampler: determinism (pinned indices), disjoint train/dev, sizes, and the released index files."""

from __future__ import annotations

import json

import pytest

from prefixtune import paths
from prefixtune.data import load_split
from prefixtune.data.lowdata import (
    SIZES,
    SUBSET_IDS,
    lowdata_indices,
    lowdata_seed,
    lowdata_split,
    main,
    read_lowdata_file,
)

N_E2E = 42061
needs_data = pytest.mark.skipif(
    not (paths.data_dir() / "e2e" / "src1_train.reconstructed.txt.gz").is_file(),
    reason="data/e2e not prepared: run `make setup` (python -m prefixtune.setup_data)",
)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("subset_id", SUBSET_IDS)
def test_sizes_disjoint_and_deterministic(size, subset_id):
    train, dev = lowdata_indices(N_E2E, size, subset_id)
    assert len(train) == size and len(dev) == int(0.3 * size)
    assert len(set(train)) == size and not set(train) & set(dev)
    assert all(0 <= i < N_E2E for i in train + dev)
    assert (train, dev) == lowdata_indices(N_E2E, size, subset_id)


def test_pinned_values():
    """If numpy ever changes Generator.choice, this fails instead of silently changing the released
    subsets."""
    assert lowdata_seed(50, 3) == 50003
    train, dev = lowdata_indices(N_E2E, 50, 0)
    assert train[:5] == PINNED_50_0_TRAIN and dev[:3] == PINNED_50_0_DEV


def test_subsets_differ():
    assert len({tuple(lowdata_indices(N_E2E, 100, i)[0]) for i in SUBSET_IDS}) == 5


def test_too_small_source():
    with pytest.raises(ValueError, match="cannot sample"):
        lowdata_indices(60, 50, 0)


@pytest.mark.integration
@needs_data
def test_lowdata_split_and_release_files(tmp_path):
    pairs = load_split("e2e", "train").pairs
    train, dev = lowdata_split("e2e", 50, 1)
    idx_train, idx_dev = lowdata_indices(len(pairs), 50, 1)
    assert train == [pairs[i] for i in idx_train] and dev == [pairs[i] for i in idx_dev]
    assert main(["--write", str(tmp_path), "--sizes", "50", "200", "--subsets", "0", "4"]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "e2e_size200_subset0.json",
        "e2e_size200_subset4.json",
        "e2e_size50_subset0.json",
        "e2e_size50_subset4.json",
    ]
    record = json.loads((tmp_path / "e2e_size50_subset0.json").read_text())
    assert record["train_lines"] == lowdata_indices(N_E2E, 50, 0)[0]
    assert record["n_source"] == N_E2E and record["seed"] == 50000
    assert record["source_sha256"] == "eae319082237310913d9f37f6a891d48fb3f821f29d86870d2cb4f92ddd72c5a"
    assert read_lowdata_file(tmp_path / "e2e_size50_subset0.json") == lowdata_split("e2e", 50, 0)


PINNED_50_0_TRAIN = [
    21047,
    25805,
    3133,
    2390,
    2410,
]  # numpy 2.4 Generator(PCG64(50000)).choice(42061, 65, ...)
PINNED_50_0_DEV = [23355, 11750, 18993]


def test_the_committed_release_files_are_the_samplers_subsets():
    """results/lowdata_splits/ (committed; the subsets the paper never released, ours are) must be exactly what the
    sampler draws, for every size x subset: a drift in numpy or in the rule would silently change Figure 3."""
    release = paths.REPO_ROOT / "results" / "lowdata_splits"
    files = sorted(release.glob("e2e_size*_subset*.json"))
    assert len(files) == len(SIZES) * len(SUBSET_IDS), [f.name for f in files]
    for f in files:
        rec = json.loads(f.read_text())
        train, dev = lowdata_indices(rec["n_source"], rec["size"], rec["subset_id"])
        assert (rec["train_lines"], rec["dev_lines"]) == (train, dev), f.name
        assert rec["seed"] == lowdata_seed(rec["size"], rec["subset_id"]), f.name
