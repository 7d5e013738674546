"""Locating Java and the jars the official metrics run.

METEOR 1.5 (`meteor-1.5.jar` + `data/paraphrase-en.gz`) and the Stanford PTB tokenizer
(`stanford-corenlp-3.4.1.jar`) are the jars that ship with the `pycocoevalcap` package, i.e. the same files the
E2E (coco-caption) and WebNLG/DART (meteor-1.5) evaluation scripts call. We never download anything.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from prefixtune.metrics.errors import ToolUnavailable


@functools.lru_cache(maxsize=1)
def java_executable() -> str | None:
    """`$JAVA_HOME/bin/java` if set, else `java` on PATH; None if neither runs."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    found = shutil.which("java")
    if found:
        candidates.append(found)
    for cand in candidates:
        try:
            subprocess.run([cand, "-version"], capture_output=True, check=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        return cand
    return None


def java_available() -> bool:
    return java_executable() is not None


def require_java() -> str:
    java = java_executable()
    if java is None:
        raise ToolUnavailable(
            "Java is required for METEOR 1.5 and the PTB tokenizer (E2E/WebNLG/DART metrics) but no working "
            "`java` was found (install a JRE >= 8, e.g. `conda install openjdk` or `apt-get install default-jre`)."
        )
    return java


def _pycocoevalcap_dir() -> Path:
    import pycocoevalcap  # namespace package in 1.2: no __file__

    return Path(next(iter(pycocoevalcap.__path__)))


def meteor_jar() -> Path:
    jar = _pycocoevalcap_dir() / "meteor" / "meteor-1.5.jar"
    if not (jar.is_file() and (jar.parent / "data" / "paraphrase-en.gz").is_file()):
        raise ToolUnavailable(f"METEOR 1.5 jar or its paraphrase table not found next to {jar}")
    return jar


def ptb_tokenizer_jar() -> Path:
    jar = _pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    if not jar.is_file():
        raise ToolUnavailable(f"Stanford PTB tokenizer jar not found at {jar}")
    return jar
