"""Where a number came from: code version, package versions, hardware and peak memory.

Every function here is best-effort and never raises: a run that finished after hours must still get its
record written when, say, git is missing or /proc is not mounted. Unknown values are `None`, never guessed.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prefixtune.paths import REPO_ROOT

# Distribution names (as pip spells them) whose versions can move a reported number.
TRACKED_PACKAGES = (
    "torch", "transformers", "peft", "accelerate", "datasets", "hydra-core", "wandb",
    "sacrebleu", "rouge-score", "pycocoevalcap", "nltk", "numpy",
)

# Paths that runs themselves write into the checkout. Changes there do not change the code that produced
# a number, so they must not mark the next run "dirty": records and generated tables (results/), prepared
# data (data/). Git pathspec magic, so the same exclusion applies to tracked and untracked files.
DIRTY_EXCLUDE = ("results", "data")

# /proc/cpuinfo flags that decide which low-precision paths the CPU kernels can take (bf16 autocast speed).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

_GIT_TIMEOUT_S = 10
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY")


def _git(repo: Path, *args: str) -> str | None:
    """stdout of a git command, or None when git is absent, the folder is no repository, or it fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
            # A stray GIT_DIR from a hook or an outer tool would make us describe the wrong repository.
            env={k: v for k, v in os.environ.items() if k not in _GIT_REDIRECTS},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_info(repo: Path | str = REPO_ROOT) -> dict[str, Any]:
    """{"sha", "dirty", "branch", "src_tree"}; all None outside a git work tree (e.g. an installed sdist)."""
    repo = Path(repo)
    info: dict[str, Any] = {"sha": None, "dirty": None, "branch": None, "src_tree": None}
    if (_git(repo, "rev-parse", "--is-inside-work-tree") or "").strip() != "true":
        return info
    sha = _git(repo, "rev-parse", "--verify", "-q", "HEAD")  # fails on a branch with no commits yet
    info["sha"] = sha.strip() if sha else None
    # symbolic-ref also names an unborn branch; it fails (-> None) on a detached HEAD, which is honest.
    branch = _git(repo, "symbolic-ref", "--short", "-q", "HEAD")
    info["branch"] = branch.strip() if branch else None
    # `:/` anchors the pathspecs at the work-tree root whatever subfolder `repo` points at.
    excludes = [f":(top,exclude){p}" for p in DIRTY_EXCLUDE]
    status = _git(repo, "status", "--porcelain", "--untracked-files=normal", "--", ":/", *excludes)
    info["dirty"] = None if status is None else bool(status.strip())
    # the code that computes a number: the src/ tree of HEAD (a docs or results commit leaves it alone), "+dirty"
    # when src/ has uncommitted changes (tables report a cell whose seeds ran on several: prefixtune.tables)
    tree = _git(repo, "rev-parse", "-q", "--verify", "HEAD:src") if info["sha"] else None
    src_status = _git(repo, "status", "--porcelain", "--untracked-files=normal", "--", ":(top)src")
    info["src_tree"] = (tree.strip() + ("+dirty" if src_status and src_status.strip() else "")) if tree else None
    return info


def code_version(git: dict | None, repo: Path | str = REPO_ROOT) -> str | None:
    """The src/ tree a record's code had (`provenance.git.src_tree`); for a record written before that field, the
    tree of its commit looked up in this repository, "+dirty" when its work tree had uncommitted changes anywhere
    (those records did not say where); None when neither is known, e.g. outside a clone."""
    git = git or {}
    if git.get("src_tree"):
        return str(git["src_tree"])
    if not git.get("sha"):
        return None
    tree = _src_tree_of(str(repo), str(git["sha"]))
    return (tree + ("+dirty" if git.get("dirty") else "")) if tree else None


@functools.lru_cache(maxsize=None)
def _src_tree_of(repo: str, sha: str) -> str | None:
    """The src/ tree of a commit (one git call per commit: a table's records share a few)."""
    tree = _git(Path(repo), "rev-parse", "-q", "--verify", f"{sha}:src")
    return tree.strip() if tree else None


def package_versions() -> dict[str, str | None]:
    """Installed versions read from package metadata (no imports, so this is cheap and side-effect free)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cpuinfo() -> tuple[str | None, dict[str, bool] | None]:
    """CPU model name and the flags in CPU_FLAGS, from the first processor block of /proc/cpuinfo."""
    text = _read("/proc/cpuinfo")
    if text is None:
        return (platform.processor() or None), None
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:  # "Features" on ARM
            flags = set(value.split())
    found = None if flags is None else {f: f in flags for f in CPU_FLAGS}
    return model or platform.processor() or None, found


def _total_ram_mb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_limit_mb() -> float | None:
    """A container's memory limit, which is what actually bounds a run (cgroup v2, then v1)."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = (_read(path) or "").strip()
        if text.isdigit() and int(text) < 2**60:  # v1 reports "no limit" as a huge number
            return round(int(text) / 2**20, 1)
    return None


def _torch():
    """torch only if the caller already imported it: importing it here would cost seconds and add
    hundreds of MB to the very peak-RSS figure we are about to report."""
    return sys.modules.get("torch")


# CPU flags of native bf16 arithmetic. Without them PyTorch's CPU bf16 autocast runs slow fallback kernels: on a
# 2-core AMD EPYC (Zen 3, AVX2 only) a Table 5 EMB-10 training step of SmolLM2-135M (E2E, batch 10) took ~138 s
# with bf16 autocast, against 1.7 s on the 2-core Intel AMX machine (its record: 170 s for 100 steps), and an
# XSUM step at batch 8 x 128 tokens took 8.4 s there in fp32 (2026-12-02) -- bf16 pays only where these exist.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bf16() -> bool:
    """Whether bf16 autocast runs on native bf16 units here: the CUDA device if there is one (the trainer uses
    it), else the CPU (AVX512-BF16 or AMX-BF16). `PREFIXTUNE_BF16=1|0` overrides the detection.

    Registered as the `${native_bf16:}` resolver (prefixtune.train): the cpu scale asks for bf16 only where it
    pays, and the resolved value (a plain bool) is what the run's config -- and so its hash -- records."""
    forced = os.environ.get("PREFIXTUNE_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"PREFIXTUNE_BF16={forced!r}: expected 0 or 1 (or unset, to detect)")
    import torch  # the CUDA question needs it; composing a config happens once per process

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    _, flags = _cpuinfo()
    if flags is not None:
        return any(flags.get(f) for f in NATIVE_BF16_FLAGS)
    return bool(torch.cpu._is_avx512_bf16_supported())  # no /proc/cpuinfo (macOS, Windows): ask PyTorch


def hardware() -> dict[str, Any]:
    model, flags = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))  # cores this process may use (taskset, cgroup cpusets)
    except (AttributeError, OSError):
        usable = None
    info: dict[str, Any] = {
        "machine": platform.machine() or None,
        "os": platform.platform(),
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_total_mb": _total_ram_mb(),
        "ram_limit_mb": _cgroup_limit_mb(),
        "cpu_flags": flags,
        "torch_threads": None,
        "cuda_devices": [],
    }
    torch = _torch()
    if torch is not None:
        try:
            info["torch_threads"] = torch.get_num_threads()
            if torch.cuda.is_available():
                n = torch.cuda.device_count()
                info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(n)]
                info["cuda_bf16"] = bool(torch.cuda.is_bf16_supported())
        except Exception:  # a broken driver must not cost us the record
            pass
    return info


def reset_peak_memory() -> bool:
    """Start a new peak-memory window for this run. A Hydra multirun runs every cell in one process, so without
    this the process-wide peak of an earlier fine-tuning cell would be reported for every later cell. Linux
    resets the peak RSS (VmHWM) when "5" is written to /proc/self/clear_refs; elsewhere this returns False and
    `peak_memory` reports the process-wide peak, saying so. Freed heap memory is first handed back to the OS
    (glibc malloc_trim): `speed.tune_malloc` keeps it resident by design, and without the trim a cell would
    report the retained heap of an earlier, larger cell as its own peak."""
    _trim_heap()
    torch = _torch()
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    except Exception:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim_heap() -> bool:
    """glibc malloc_trim(0): return the free heap to the OS. False where the C library has no malloc_trim."""
    import ctypes
    import ctypes.util

    try:
        name = ctypes.util.find_library("c")
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
        return bool(trim(0)) if trim is not None else False
    except OSError:
        return False


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_memory(run_window: bool = False) -> dict[str, float | str | None]:
    """Peak resident memory (MB) and, with CUDA, peak allocated GPU memory (MB). `peak_rss_scope` says what the
    peak covers: "run" (since `reset_peak_memory`, on Linux) or "process" (since the process started)."""
    hwm = _vm_hwm_mb() if run_window else None
    if hwm is not None:
        rss_mb, scope = hwm, "run"
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is KiB on Linux but bytes on macOS.
        rss_mb, scope = (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process"
    out: dict[str, float | str | None] = {"peak_rss_mb": round(rss_mb, 1), "peak_rss_scope": scope,
                                          "cuda_max_allocated_mb": None}
    torch = _torch()
    if torch is not None:
        try:
            if torch.cuda.is_available():
                out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        except Exception:
            pass
    return out


def cpu_snapshot() -> tuple[float, float, float, int] | None:
    """(wall s, busy s of every CPU in /proc/stat, this process's CPU s, CPUs in /proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
        fields = [float(x) for x in lines[0].split()[1:]]
        n_cpu = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / tick                      # user..steal; guest time is already in user
    own = resource.getrusage(resource.RUSAGE_SELF)
    return time.time(), busy, own.ru_utime + own.ru_stime, n_cpu


def others_cpu_share(start: tuple | None, end: tuple | None) -> float | None:
    """The share of the machine's CPU time that *other* processes used between two snapshots (0 = the run had the
    CPU to itself). A timed run sharing a 2-core CPU can slow several-fold (thread contention), so records
    say so next to their times. None where it cannot be measured (no /proc/stat, or it counts more CPUs than
    this process may use: a container on a bigger host, whose other tenants would be counted)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if start is None or end is None or end[3] != usable:
        return None
    wall = end[0] - start[0]
    if wall <= 0:
        return None
    other = (end[1] - start[1]) - (end[2] - start[2])
    return round(min(max(other / (wall * end[3]), 0.0), 1.0), 3)


def collect(repo: Path | str = REPO_ROOT) -> dict[str, Any]:
    """The `provenance` block of a run record."""
    return {"git": git_info(repo), "versions": package_versions(), "hardware": hardware()}
