"""Prepare every dataset in ``paths.data_dir()/<dataset>/`` and the GPT-2 BPE files in
``paths.gpt2_tokenizer_dir()``.

    python -m prefixtune.setup_data [--data-dir D] [--shared S] [--source auto|shared|download] [--force]
                                    [names...]

For each file of a checksum manifest (``prefixtune/data/checksums/<name>.sha256``): keep it if it is already
there and verified (a size+mtime stamp avoids re-hashing); else copy it from ``S/data/<name>/`` (``S`` = the
shared folder, default ``paths.shared_dir()``) when that has it; else download it from the pinned public
source in ``prefixtune.data.sources`` (or rebuild it there from already obtained files). Every new file is
written under a temporary name, verified against the manifest, and only then renamed into place, so a failed
or interrupted run leaves no partial file behind. A sha256 mismatch raises :class:`ChecksumError` naming the
file and both hashes. Files of the shared folder that are not in the manifest (DATA.md, SHA256SUMS, READMEs)
are copied as documentation.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .data.checksums import STAMP_NAME, ChecksumError, Manifest, StampCache, read_manifest, verify_file
from .data.fetch import Fetch, Fetcher, urllib_fetch
from .data.sources import Rebuilt, source_for
from .data.types import DataError

__all__ = ["setup", "prepare_folder", "urllib_fetch", "DATASETS", "TOKENIZER", "Report", "main"]

DATASETS = ("e2e", "webnlg", "dart", "xsum")
TOKENIZER = "gpt2-tokenizer"


@dataclass
class Report:
    name: str
    folder: Path
    counts: dict[str, int] = field(
        default_factory=dict
    )  # cached / hashed / copied / downloaded / rebuilt / docs
    seconds: float = 0.0

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def line(self) -> str:
        parts = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        return f"{self.name:15s} {parts or 'nothing to do'} ({self.seconds:.2f} s) -> {self.folder}"


def _tmp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.part-{os.getpid()}")


def _remove_stale_parts(folder: Path) -> None:
    """Delete ``.*.part-<pid>`` files left by runs that were killed (their pid is gone)."""
    for part in folder.rglob(".*.part-*"):
        pid = part.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                part.unlink(missing_ok=True)
            except PermissionError:
                pass


def _order(manifest: Manifest, name: str, shared: Path | None) -> list[str]:
    """Manifest files with every rebuilt file after the inputs it needs."""

    def is_rebuilt(rel: str) -> bool:
        if shared is not None and (shared / rel).is_file():
            return False
        try:
            return isinstance(source_for(name, rel), Rebuilt)
        except DataError:
            return False

    rels = list(manifest.files)
    return [r for r in rels if not is_rebuilt(r)] + [r for r in rels if is_rebuilt(r)]


def _copy_docs(shared: Path, folder: Path, manifest: Manifest, report: Report) -> None:
    """Copy the shared folder's files that the manifest does not list (DATA.md, SHA256SUMS, READMEs)."""
    for doc in sorted(p for p in shared.rglob("*") if p.is_file()):
        rel = doc.relative_to(shared).as_posix()
        target = folder / rel
        if rel in manifest.files or rel == STAMP_NAME:
            continue
        if target.is_file() and target.read_bytes() == doc.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(target)
        try:
            shutil.copyfile(doc, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        report.add("docs")


def prepare_folder(
    name: str,
    folder: Path,
    shared: Path | None,
    *,
    fetch: Fetch = urllib_fetch,
    force: bool = False,
    log: Callable[[str], None] = print,
    manifest: Manifest | None = None,
) -> Report:
    """Make ``folder`` hold every file of manifest ``name``, verified (see the module docstring).

    ``shared`` is the shared copy of this folder (or None); ``manifest`` defaults to the committed one."""
    start = time.perf_counter()
    manifest = manifest if manifest is not None else read_manifest(name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shared = Path(shared) if shared is not None and Path(shared).is_dir() else None
    report = Report(name, folder)
    stamps = StampCache(folder, manifest)
    fetcher = Fetcher(name, folder, manifest, shared, fetch)
    _remove_stale_parts(folder)
    try:
        for rel in _order(manifest, name, shared):
            target = folder / rel
            if target.is_file():
                if not force and stamps.fresh(rel, target):
                    report.add("cached")
                    continue
                try:
                    verify_file(target, rel, manifest)
                    stamps.record(rel, target)
                    report.add("hashed")
                    continue
                except ChecksumError as err:
                    log(f"warning: replacing {target}: {str(err).splitlines()[0]}")
                    stamps.forget(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_name(target)
            try:
                how, origin = fetcher.obtain(rel, tmp)
                verify_file(tmp, rel, manifest, label=f"{target} ({how} from {origin})")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            stamps.record(rel, target)
            report.add(how)
            log(f"{name}: {how} {rel}")
        if shared is not None:
            _copy_docs(shared, folder, manifest, report)
    finally:
        stamps.save()
        fetcher.close()
    report.seconds = time.perf_counter() - start
    return report


def setup(
    names: list[str] | None = None,
    *,
    data_dir: Path | None = None,
    shared: Path | None = None,
    tokenizer_dir: Path | None = None,
    source: str = "auto",
    fetch: Fetch = urllib_fetch,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Report]:
    """Prepare datasets ``names`` (default: all four plus the tokenizer). ``source``: ``auto`` (shared copy
    where it has the file, else download), ``shared`` (shared folder required) or ``download`` (ignore the
    shared folder)."""
    names = list(names or (*DATASETS, TOKENIZER))
    unknown = set(names) - {*DATASETS, TOKENIZER}
    if unknown:
        raise DataError(f"unknown names {sorted(unknown)}; choose from {[*DATASETS, TOKENIZER]}")
    data_dir = Path(data_dir) if data_dir is not None else paths.data_dir()
    shared_root = Path(shared) if shared is not None else paths.shared_dir()
    if source == "download":
        shared_root = None
    elif source == "shared" and not (shared_root / "data").is_dir():
        raise DataError(f"{shared_root / 'data'}: shared folder not found (--source shared)")
    reports = []
    for name in names:
        if name == TOKENIZER:
            folder = Path(tokenizer_dir) if tokenizer_dir is not None else paths.gpt2_tokenizer_dir()
            shared_folder = shared_root / "models" / "gpt2-tokenizer" if shared_root else None
        else:
            folder = data_dir / name
            shared_folder = shared_root / "data" / name if shared_root else None
        reports.append(prepare_folder(name, folder, shared_folder, fetch=fetch, force=force, log=log))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prefixtune.setup_data",
        description="Prepare the datasets and GPT-2 BPE files (verified by sha256).",
    )
    parser.add_argument("names", nargs="*", help=f"subset of {[*DATASETS, TOKENIZER]} (default: all)")
    parser.add_argument("--data-dir", type=Path, default=None, help=f"default: {paths.data_dir()}")
    parser.add_argument(
        "--shared", type=Path, default=None, help=f"shared folder (default: {paths.shared_dir()})"
    )
    parser.add_argument(
        "--tokenizer-dir", type=Path, default=None, help=f"default: {paths.gpt2_tokenizer_dir()}"
    )
    parser.add_argument("--source", choices=("auto", "shared", "download"), default="auto")
    parser.add_argument("--force", action="store_true", help="re-hash every file (ignore the stamp cache)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        reports = setup(
            args.names,
            data_dir=args.data_dir,
            shared=args.shared,
            tokenizer_dir=args.tokenizer_dir,
            source=args.source,
            force=args.force,
            log=(lambda _: None) if args.quiet else print,
        )
    except DataError as err:
        print(f"setup_data: error: {err}", file=sys.stderr)
        return 1
    for report in reports:
        print(report.line())
    print(f"setup_data: done in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
