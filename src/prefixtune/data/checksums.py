"""sha256 manifests (``data/checksums/<name>.sha256``) and verification with a size+mtime stamp cache.

Manifest format: ``sha256sum`` lines ``<hex>  <relative path>`` (so ``cd data/e2e && sha256sum -c`` works)
plus comment lines. ``#content <hex>  <path>`` gives the sha256 of the *decompressed* bytes of a
``.gz``/``.xz`` file: a file rebuilt or recompressed here (whose compressed bytes may differ with the
compressor build) is accepted when either hash matches.

Hashing all data (~60 MB) takes well under a second, but the stamp file ``.prefixtune-verified.json`` in each
folder lets a warm ``setup_data`` skip even that: a file whose (size, mtime_ns) still equal the stamped
values, stamped with the same expected hash, is not hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .types import DataError, read_bytes

__all__ = [
    "Manifest",
    "ChecksumError",
    "read_manifest",
    "parse_manifest",
    "sha256_file",
    "sha256_bytes",
    "verify_file",
    "StampCache",
    "MANIFEST_DIR",
    "STAMP_NAME",
]

MANIFEST_DIR = Path(__file__).resolve().parent / "checksums"
STAMP_NAME = ".prefixtune-verified.json"


class ChecksumError(DataError):
    """A file's sha256 is not the one in the manifest."""


@dataclass(frozen=True)
class Manifest:
    name: str
    files: dict[str, str]  # relative path -> sha256 of the file's bytes
    content: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 of its decompressed bytes
    origin: str = ""

    def digest(self) -> str:
        """A hash of the manifest itself, so stamps made under another manifest are not trusted."""
        text = json.dumps([sorted(self.files.items()), sorted(self.content.items())])
        return hashlib.sha256(text.encode()).hexdigest()


def parse_manifest(text: str, name: str = "", origin: str = "") -> Manifest:
    files: dict[str, str] = {}
    content: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (line.startswith("#") and not line.startswith("#content ")):
            continue
        target = files
        if line.startswith("#content "):
            target, line = content, line[len("#content ") :]
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or not rel or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(f"{origin or name}:{lineno}: not a '<sha256>  <path>' line: {raw!r}")
        target[rel.lstrip("*")] = digest
    unknown = set(content) - set(files)
    if unknown:
        raise DataError(f"{origin or name}: #content lines for files not in the manifest: {sorted(unknown)}")
    return Manifest(name=name, files=files, content=content, origin=origin)


def read_manifest(name: str, directory: Path | None = None) -> Manifest:
    path = Path(directory or MANIFEST_DIR) / f"{name}.sha256"
    if not path.is_file():
        raise DataError(f"{path}: no checksum manifest for {name!r}")
    return parse_manifest(path.read_text(encoding="utf-8"), name=name, origin=str(path))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_file(path: Path, rel: str, manifest: Manifest, label: str | None = None) -> str:
    """Check ``path`` against the manifest entry ``rel``; return ``"file"`` or ``"content"`` (which hash
    matched).

    Raises :class:`ChecksumError` naming the file (``label``, default ``path``) and both hashes.
    """
    expected = manifest.files.get(rel)
    if expected is None:
        raise ChecksumError(f"{rel}: not listed in {manifest.origin or manifest.name}")
    actual = sha256_file(path)
    if actual == expected:
        return "file"
    content_expected = manifest.content.get(rel)
    detail = ""
    if content_expected is not None:
        content_actual = sha256_bytes(read_bytes(path, rel))
        if content_actual == content_expected:
            return "content"
        detail = f"\n  decompressed: expected {content_expected}\n                got      {content_actual}"
    raise ChecksumError(
        f"{label or path}: sha256 mismatch\n  expected {expected}\n  got      {actual}{detail}\n"
        f"  (manifest {manifest.origin or manifest.name})"
    )


class StampCache:
    """``{rel: [size, mtime_ns, sha256]}`` of files verified in one folder, valid for one manifest digest."""

    def __init__(self, folder: Path, manifest: Manifest):
        self.path = Path(folder) / STAMP_NAME
        self.digest = manifest.digest()
        self.manifest = manifest
        self.entries: dict[str, list] = {}
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            if stored.get("manifest") == self.digest:
                self.entries = dict(stored.get("files", {}))
        except (OSError, ValueError, AttributeError):
            self.entries = {}

    def fresh(self, rel: str, path: Path) -> bool:
        entry = self.entries.get(rel)
        if not entry:
            return False
        try:
            st = path.stat()
        except OSError:
            return False
        return entry == [st.st_size, st.st_mtime_ns, self.manifest.files.get(rel)]

    def record(self, rel: str, path: Path) -> None:
        st = path.stat()
        self.entries[rel] = [st.st_size, st.st_mtime_ns, self.manifest.files[rel]]

    def forget(self, rel: str) -> None:
        self.entries.pop(rel, None)

    def save(self) -> None:
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(
                json.dumps({"manifest": self.digest, "files": self.entries}, indent=0, sort_keys=True),
                encoding="utf-8",
            )
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
