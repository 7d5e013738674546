"""E2E loader (paper format), its errors, and the rebuild of the train file from e2e_aligned.tar.gz."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from prefixtune import paths
from prefixtune.data import DataError, Pair, load_split
from prefixtune.data.e2e import aligned_mr_to_src1, aligned_ref_to_src1, read_src1, rebuild_src1_from_aligned

E2E = paths.data_dir() / "e2e"
TRAIN_CONTENT_SHA256 = (
    "eae319082237310913d9f37f6a891d48fb3f821f29d86870d2cb4f92ddd72c5a"  # DATA.md, uncompressed
)
needs_data = pytest.mark.skipif(
    not (E2E / "src1_valid.txt").is_file(),
    reason=f"{E2E} not prepared: run `make setup` (python -m prefixtune.setup_data)",
)


# --- unit tests on small files ------------------------------------------------------------------------------


def test_read_src1_strips_and_skips_blank_lines(tmp_path):
    path = tmp_path / "src1_x.txt"
    path.write_text("name : A | Type : pub||A is a pub . \n\nname : B||B . \n", encoding="utf-8")
    assert read_src1(path) == [Pair("name : A | Type : pub", "A is a pub ."), Pair("name : B", "B .")]


@pytest.mark.parametrize("bad, found", [("name : A no separator \n", 0), ("a||b||c \n", 2)])
def test_read_src1_bad_line_names_file_and_line(tmp_path, bad, found):
    path = tmp_path / "src1_bad.txt"
    path.write_text("name : A||ok . \n" + bad, encoding="utf-8")
    with pytest.raises(DataError, match=rf"src1_bad\.txt:2: expected exactly one '\|\|'.*found {found}"):
        read_src1(path)


def test_read_src1_empty_side(tmp_path):
    path = tmp_path / "src1_empty.txt"
    path.write_text("name : A|| \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"src1_empty\.txt:1: empty reference"):
        read_src1(path)


def test_missing_file_says_run_make_setup(tmp_path):
    with pytest.raises(DataError, match=r"src1_valid\.txt: file not found.*make setup"):
        load_split("e2e", "dev", data_dir=tmp_path)


def test_aligned_line_conversion():
    mr = (
        "__start_name__ The Vaults __end_name__ __start_eatType__ pub __end_eatType__ __start_priceRange__ "
        "more than £ 30 __end_priceRange__ __start_customerrating__ 5 out of 5 __end_customerrating__ "
        "__start_familyFriendly__ no __end_familyFriendly__ __start_near__ Café Adriatic __end_near__\n"
    )
    assert aligned_mr_to_src1(mr) == (
        "name : The Vaults | Type : pub | price : more than £ 30 | customer rating : "
        "5 out of 5 | family friendly : no | near : Café Adriatic"
    )
    ref = "The Vaults pub near Café Adriatic has a 5 star rating . <eos>|||0,2,0 2,3,1\n"
    assert aligned_ref_to_src1(ref) == "The Vaults pub near Café Adriatic has a 5 star rating ."
    with pytest.raises(DataError):
        aligned_mr_to_src1("name[The Vaults], eatType[pub]")
    with pytest.raises(DataError):
        aligned_ref_to_src1("no eos marker|||0,1,0")


def test_rebuild_on_a_tiny_tarball(tmp_path):
    members = {
        "e2e_aligned/src_valid.txt": "__start_name__ A __end_name__ __start_area__ city centre __end_area__\n"
        "__start_name__ B __end_name__\n",
        "e2e_aligned/valid.txt": "A is central . <eos>|||0,1,0\nB . <eos>|||0,1,0\n",
    }
    path = tmp_path / "e2e_aligned.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert (
        rebuild_src1_from_aligned(path, "valid")
        == b"name : A | area : city centre||A is central . \nname : B||B . \n"
    )
    with pytest.raises(DataError, match="src_train.txt not found"):
        rebuild_src1_from_aligned(path, "train")


# --- the prepared data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def e2e_splits():
    return {s: load_split("e2e", s) for s in ("train", "dev", "test")}


@pytest.mark.integration
@needs_data
@pytest.mark.parametrize(
    "split, n_pairs, n_groups", [("train", 42061, 4862), ("dev", 4672, 547), ("test", 4693, 630)]
)
def test_counts(e2e_splits, split, n_pairs, n_groups):
    s = e2e_splits[split]
    assert (len(s.pairs), len(s.groups)) == (n_pairs, n_groups)
    assert sum(len(g.references) for g in s.groups) == n_pairs
    assert s.files[0].endswith(
        {"train": "src1_train.reconstructed.txt.gz", "dev": "src1_valid.txt", "test": "src1_test.txt"}[split]
    )


@pytest.mark.integration
@needs_data
def test_known_linearisation_and_groups(e2e_splits):
    test = e2e_splits["test"]
    assert test.pairs[0] == Pair(
        "name : Blue Spice | Type : coffee shop | area : city centre",
        "A coffee shop in the city centre area called Blue Spice .",
    )
    assert test.groups[0].source == "name : Blue Spice | Type : coffee shop | area : city centre"
    assert test.groups[0].references[:2] == [
        "A coffee shop in the city centre area called Blue Spice .",
        "Blue Spice is a coffee shop in city centre .",
    ]
    dev = e2e_splits["dev"]
    assert dev.pairs[0].source == "name : Alimentum | area : city centre | family friendly : no"
    fields = {f.split(" : ")[0] for p in e2e_splits["train"].pairs for f in p.source.split(" | ")}
    assert fields == {"name", "Type", "food", "price", "customer rating", "area", "family friendly", "near"}


@pytest.mark.integration
@needs_data
def test_rebuild_valid_is_byte_identical_to_the_paper_file():
    assert (
        rebuild_src1_from_aligned(E2E / "e2e_aligned.tar.gz", "valid")
        == (E2E / "src1_valid.txt").read_bytes()
    )


@pytest.mark.integration
@needs_data
def test_rebuild_train_matches_the_reconstructed_sha256():
    data = rebuild_src1_from_aligned(E2E / "e2e_aligned.tar.gz", "train")
    assert hashlib.sha256(data).hexdigest() == TRAIN_CONTENT_SHA256
    assert data.count(b"\n") == 42061
