"""Run records: one JSON file per run under `results/runs/<group>/<run_id>.json`.

Records are the source of truth; tables and figures are pure functions of them (W&B is only a dashboard).
Writes are atomic (temp file in the same folder, fsync, rename), so a killed run leaves either the previous
record or the new one, never half a JSON. `python -m prefixtune.results list|validate` inspects them.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from prefixtune.paths import results_dir

SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed")

# Dotted config keys (fnmatch patterns; `*` also spans dots) that cannot change a reported number, so two
# runs differing only here share a config hash and the second is skipped as already done.
VOLATILE_KEYS = (
    "paths", "*.paths",                   # where the checkout/data/outputs live
    "model.path", "*.model.path",         # the local model cache folder: a machine path (`model.name` and
                                          # `model.label` name the weights); hashing it made a clone at another
                                          # path retrain -- and overwrite -- every committed cell
    "_hash",                              # the config's own hash, stored in the record's config for W&B
    "hydra", "*.hydra",                   # Hydra runtime: output dir, job name, override bookkeeping
    "logger", "*.logger", "wandb", "*.wandb",  # W&B mode/project/tags, console logging
    "force",                              # the rerun switch itself
    "scale.lr_grid",                      # the learning-rate grid a selection run belongs to, not its rate
    "scale.lr_grid_extend",               # (scale.lr_scale): extending the grid keeps the runs made (lrselect)
    "scale.label",                        # the words describing a scale (tables print the newest record's)
    "scale.lr_share",                     # which cell's choice a cell uses: hashed as the rate it resolves to
    "scale.lowdata_warmup_share",         # a scale's setting for the low-data optimiser: hashed where it lands
                                          # (optim.warmup_steps of the cells it changes), not in every cell
    "output_root",                        # where the records are written, not what they hold
    "isolate",                            # one child process per cell or in-process: same computation
    "num_workers", "*.num_workers",       # data-loader processes: throughput only
    "*log_every*", "*progress_bar*",      # logging cadence and display
    "trainer.speed", "*.trainer.speed",   # throughput settings (prefixtune.speed): numbers change by float rounding
                                          # at most (tests/test_speed.py), like the thread count
    "scale.plateau_max_steps",            # the hard cap past scale.max_steps for runs not yet on a dev-loss plateau
                                          # (prefixtune.trainer.plateau_from): a run on a plateau by scale.max_steps
                                          # is the same computation with or without it. A run that reached
                                          # scale.max_steps without one is a failed run, and is not taken as done
                                          # where the cap is higher (`extendable`): it is trained again
)

# Names used as file/folder names: no separators, no leading dot, no `.tmp` (marks unfinished writes).
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


class RecordError(ValueError):
    """A record file that cannot be read or does not match the schema; the message starts with the path."""

    def __init__(self, path: Path | str | None, problem: str):
        self.path = None if path is None else Path(path)
        super().__init__(f"{path if path is not None else '<record>'}: {problem}")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_name(kind: str, value: str) -> str:
    if not _SAFE.match(value) or ".tmp" in value:
        raise ValueError(f"{kind} {value!r} is not filesystem-safe (letters, digits, . _ = + -)")
    return value


def strip_volatile(cfg: dict, volatile: tuple[str, ...] = VOLATILE_KEYS, _prefix: str = "") -> dict:
    """A copy of `cfg` without the keys whose dotted path matches a pattern in `volatile`."""
    out = {}
    for key, value in cfg.items():
        path = f"{_prefix}{key}"
        if any(fnmatch.fnmatchcase(path, pat) for pat in volatile):
            continue
        out[key] = strip_volatile(value, volatile, f"{path}.") if isinstance(value, dict) else value
    return out


def config_hash(cfg: dict, volatile: tuple[str, ...] = VOLATILE_KEYS) -> str:
    """First 16 hex chars of sha256 over canonical JSON (sorted keys, no whitespace) of the resolved config.

    Note `1` and `1.0` hash differently; the resolved config comes from one schema, so types are stable.
    Non-JSON values raise TypeError: a config we cannot serialise could not be written to the record either.
    """
    text = json.dumps(strip_volatile(cfg, volatile), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_diff(old: dict, new: dict, volatile: tuple[str, ...] = VOLATILE_KEYS, limit: int = 8) -> list[str]:
    """`key: old -> new` for each dotted key whose (non-volatile) value differs, at most `limit` of them."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out
    a, b = flat(strip_volatile(old, volatile)), flat(strip_volatile(new, volatile))
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>"))
    lines = [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys[:limit]]
    return lines + ([f"... and {len(keys) - limit} more"] if len(keys) > limit else [])


def overrides_digest(overrides: list[str],
                     ignore: tuple[str, ...] = ("experiment", "scale", "seed")) -> str | None:
    """Short digest of extra command-line overrides (`key=value`), or None when there are none.

    Keys already spelled out in the run id and volatile keys are dropped; for a repeated key the last one
    wins (as in Hydra), and the rest are sorted so `a=1 b=2` and `b=2 a=1` name the same run.
    """
    last: dict[str, str] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        bare = key.lstrip("+~")
        parts = bare.split(".")
        # `paths.data=...` is volatile because its ancestor `paths` is.
        if bare in ignore or any(fnmatch.fnmatchcase(".".join(parts[:i]), p)
                                 for i in range(1, len(parts) + 1) for p in VOLATILE_KEYS):
            continue
        last[key] = value
    if not last:
        return None
    text = "\n".join(f"{k}={v}" for k, v in sorted(last.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_id(experiment: str, scale: str, seed: int, overrides_digest: str | None = None) -> str:
    """Deterministic, filesystem-safe id, e.g. `table2-e2e_prefix__cpu__s1` (+ `__o<digest>`); no timestamps,
    so rerunning the same command finds the same file."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    parts = [_check_name("experiment", experiment.strip("/").replace("/", "-")), _check_name("scale", scale),
             f"s{seed}"]
    if overrides_digest:
        parts.append("o" + _check_name("overrides digest", overrides_digest))
    return "__".join(parts)


@dataclasses.dataclass(kw_only=True)
class RunRecord:
    run_id: str
    group: str                                # results/runs/<group>/, e.g. "table2"
    experiment: str                           # e.g. "table2/e2e_prefix"
    config: dict                              # resolved config
    schema_version: int = SCHEMA_VERSION
    status: str = "running"
    config_hash: str = ""                     # filled from `config` when empty
    metrics: dict = dataclasses.field(default_factory=dict)     # "split/metric" -> float | None
    params: dict = dataclasses.field(default_factory=dict)      # trainable, stored, backbone_total, *_pct
    timing: dict = dataclasses.field(default_factory=dict)      # train_s, decode_s, score_s, wall_s
    memory: dict = dataclasses.field(default_factory=dict)      # provenance.peak_memory()
    provenance: dict = dataclasses.field(default_factory=dict)  # provenance.collect()
    wandb: dict = dataclasses.field(default_factory=lambda: {"mode": "disabled", "run_path": None})
    outputs: dict = dataclasses.field(default_factory=dict)     # name -> path relative to the repo
    notes: list = dataclasses.field(default_factory=list)       # deviations from the paper
    created_at: str = dataclasses.field(default_factory=utc_now)
    finished_at: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if not self.config_hash:
            self.config_hash = config_hash(self.config)

    @property
    def identity(self) -> str:
        """The config hash recomputed from the stored config under *today's* VOLATILE_KEYS. `config_hash` is
        what the run computed when it ran (kept as written: records are append-only); matching by identity
        keeps a record valid when a key becomes volatile (e.g. `model.path`, which held a machine path)."""
        return config_hash(self.config)

    @property
    def cell_identity(self) -> str:
        """`identity` without the seed: records of one table cell agree on it unless the config changed."""
        return self.identity_without(("seed",))

    def identity_without(self, keys: tuple[str, ...]) -> str:
        """`identity` with the dotted `keys` (fnmatch patterns) left out as well: what the repeats of one table
        cell or figure point share (their seed, for low data also the sampled subset, may differ)."""
        return config_hash(self.config, VOLATILE_KEYS + tuple(keys))

    @property
    def is_variant(self) -> bool:
        """A run id with `__o<digest>` had extra command-line overrides (see `run_id`): a variant of its cell,
        not another seed of it, so tables leave it out."""
        return "__o" in self.run_id

    def finish(self, metrics: dict | None = None) -> RunRecord:
        self.metrics.update(metrics or {})
        self.status, self.finished_at = "finished", utc_now()
        return self

    def fail(self, error: BaseException | str) -> RunRecord:
        self.status, self.finished_at = "failed", utc_now()
        self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str | None = None) -> RunRecord:
        problems = validate_dict(data)
        if problems:
            raise RecordError(path, "; ".join(problems))
        return cls(**data)


FIELDS = {f.name: f for f in dataclasses.fields(RunRecord)}
_TYPES = {"schema_version": int, "run_id": str, "group": str, "experiment": str, "status": str,
          "config": dict, "config_hash": str, "metrics": dict, "params": dict, "timing": dict, "memory": dict,
          "provenance": dict, "wandb": dict, "outputs": dict, "notes": list, "created_at": str,
          "finished_at": (str, type(None)), "error": (str, type(None))}


def validate_dict(data: Any) -> list[str]:
    """Schema problems of a decoded record, each naming the field; empty when valid."""
    if not isinstance(data, dict):
        return [f"top level must be a JSON object, got {type(data).__name__}"]
    problems = [f"unknown field {k!r}" for k in data if k not in FIELDS]
    problems += [f"missing field {k!r}" for k in FIELDS if k not in data]
    for key, typ in _TYPES.items():
        if key in data and (not isinstance(data[key], typ) or isinstance(data[key], bool)):
            problems.append(f"field {key!r} has type {type(data[key]).__name__}")
    if problems:
        return problems
    if data["schema_version"] > SCHEMA_VERSION:
        problems.append(f"schema_version {data['schema_version']} is newer than this code ({SCHEMA_VERSION})")
    if data["status"] not in STATUSES:
        problems.append(f"field 'status' is {data['status']!r}, expected one of {STATUSES}")
    if not re.fullmatch(r"[0-9a-f]{16}", data["config_hash"]):
        problems.append("field 'config_hash' is not 16 lowercase hex chars")
    for key in ("run_id", "group"):
        if not _SAFE.match(data[key]) or ".tmp" in data[key]:
            problems.append(f"field {key!r} = {data[key]!r} is not filesystem-safe")
    for name, value in data["metrics"].items():
        if "/" not in name:
            problems.append(f"metric {name!r} is not named 'split/metric'")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append(f"metric {name!r} is {type(value).__name__}, expected a number or null")
    problems += [f"output {k!r} is not a repo-relative path" for k, v in data["outputs"].items()
                 if not isinstance(v, str) or os.path.isabs(v)]
    if not all(isinstance(n, str) for n in data["notes"]):
        problems.append("field 'notes' must be a list of strings")
    if data["status"] == "finished" and data["finished_at"] is None:
        problems.append("finished record without 'finished_at'")
    if data["status"] == "failed" and not data["error"]:
        problems.append("failed record without 'error'")
    return problems


def runs_dir(root: Path | str | None = None) -> Path:
    """`root` is the results folder (default `paths.results_dir()`); records live in its `runs/`."""
    return Path(root if root is not None else results_dir()) / "runs"


def record_path(group: str, run_id: str, root: Path | str | None = None) -> Path:
    return runs_dir(root) / _check_name("group", group) / f"{_check_name('run id', run_id)}.json"


def _finite(value: Any, where: str, replaced: list[str]) -> Any:
    """Non-finite floats become null (noted), because NaN/Infinity are not JSON and other tools choke."""
    if isinstance(value, float) and not math.isfinite(value):
        replaced.append(f"{where}={value} written as null")
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), replaced) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{where}[{i}]", replaced) for i, v in enumerate(value)]
    return value


def write_record(rec: RunRecord, root: Path | str | None = None) -> Path:
    """Atomically (re)write the record of `rec.run_id`; returns its path."""
    replaced: list[str] = []
    data = _finite(rec.to_dict(), "", replaced)
    data["notes"] = list(data["notes"]) + [f"non-finite value: {r}" for r in replaced]
    problems = validate_dict(data)
    if problems:  # refuse to write what read_record would reject
        raise RecordError(f"{rec.group}/{rec.run_id}", "; ".join(problems))
    path = record_path(rec.group, rec.run_id, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n"
    # Same folder as the target so os.replace is a rename within one filesystem (atomic on POSIX).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())  # data on disk before the rename makes it visible
        os.chmod(tmp, 0o644)       # mkstemp creates 0600; records are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # persist the rename itself (not possible on every filesystem)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def read_record(path: Path | str) -> RunRecord:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(path, f"cannot read: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    return RunRecord.from_dict(data, path)


def _is_leftover(path: Path) -> bool:
    """Temp files of an interrupted write_record (`.<run_id>.json.<random>.tmp`): never read."""
    return path.name.startswith(".") or ".tmp" in path.name


def _scan(root: Path | str | None, group: str | None) -> Iterator[tuple[Path, RunRecord | RecordError]]:
    """Every record file, sorted by (group, run id), with its record or the reason it is invalid (including
    a file whose name/folder disagree with its run id/group: lookups by id would never find it)."""
    base = runs_dir(root) / group if group else runs_dir(root)
    for path in sorted(base.rglob("*.json")) if base.is_dir() else []:
        if _is_leftover(path):
            continue
        try:
            rec = read_record(path)
            if (rec.group, rec.run_id) != (path.parent.name, path.stem):
                raise RecordError(path, f"holds {rec.group}/{rec.run_id}, which belongs in another file")
            yield path, rec
        except RecordError as exc:
            yield path, exc


def iter_records(root: Path | str | None = None, group: str | None = None, status: str | None = "finished",
                 strict: bool = True) -> Iterator[RunRecord]:
    """Records sorted by (group, run id); `status=None` yields every status. An invalid file raises
    RecordError when `strict`, else is reported with a warning and skipped."""
    for _, rec in _scan(root, group):
        if isinstance(rec, RecordError):
            if strict:
                raise rec
            warnings.warn(f"skipping invalid record: {rec}", stacklevel=2)
        elif status is None or rec.status == status:
            yield rec


def frame(records: Iterable[RunRecord]):
    """One row per record as a pandas DataFrame (for notebooks and ad-hoc plots): identity columns, parameter
    shares, timings, peak memory and every metric under its record key (e.g. `test/bleu`)."""
    import pandas as pd

    rows = []
    for r in records:
        c = r.config
        rows.append({"group": r.group, "experiment": r.experiment, "run_id": r.run_id, "status": r.status,
                     "row": c.get("row"), "label": _label(c), "dataset": c.get("data", {}).get("name"),
                     "method": c.get("method", {}).get("name"), "seed": c.get("seed"),
                     "scale": c.get("scale", {}).get("name"), "model": c.get("model", {}).get("label"),
                     "variant": r.is_variant,
                     **{k: r.params.get(k) for k in ("trainable_pct", "stored_pct", "trainable", "stored")},
                     **{k: r.timing.get(k) for k in ("train_s", "decode_s", "score_s", "wall_s")},
                     "peak_rss_mb": r.memory.get("peak_rss_mb"), **r.metrics})
    return pd.DataFrame(rows)


def _label(cfg: dict) -> str:
    """A short name for what a run trained: its table row, else the method and what sets it apart."""
    if cfg.get("row"):
        return str(cfg["row"])
    m = cfg.get("method", {})
    parts = [str(m.get("name", "?"))]
    parts += [str(m[k]) for k, plain in (("depth", "all_layers"), ("position", "prefix")) if m.get(k, plain) != plain]
    if m.get("length") is not None:
        parts.append(f"L={m['length']}")
    init = m.get("init") or {}
    if init.get("kind", "random") != "random":
        parts.append(f"init {init.get('words') or init['kind']}")
    return " ".join(parts)


def steps_trained(rec: RunRecord) -> int | None:
    """Optimiser steps a run trained: `train/steps`, else its "trained N optimiser steps" note (pipeline)."""
    if isinstance(rec.metrics.get("train/steps"), (int, float)):
        return int(rec.metrics["train/steps"])
    for note in rec.notes:
        if note.startswith("trained ") and " optimiser steps" in note:
            return int(note.split()[1])
    return None


def extendable(rec: RunRecord, hard_cap: int | None) -> bool:
    """A finished record that ended without a dev-loss plateau (`train/plateau` 0, prefixtune.health) before
    `hard_cap` steps: a failed run that a config with a higher cap (scale.plateau_max_steps) trains again."""
    steps = rec.metrics.get("train/steps")
    return (hard_cap is not None and rec.metrics.get("train/plateau") == 0.0
            and isinstance(steps, (int, float)) and steps < int(hard_cap))


def find_finished(config_hash: str, root: Path | str | None = None,
                  group: str | None = None) -> RunRecord | None:
    """The latest finished record whose config has this hash (the skip-if-done check), or None. Hashes are
    recomputed from each record's stored config (`RunRecord.identity`), not read from its `config_hash` field.

    Not strict: one corrupt unrelated record must not stop every run; it is warned about instead.
    """
    hits = [r for r in iter_records(root, group, "finished", strict=False) if r.identity == config_hash]
    return max(hits, key=lambda r: r.finished_at or "", default=None)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _cmd_list(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    recs = list(iter_records(args.root, args.group, status, strict=False))
    # Headline metrics: test split first (what the paper reports), at most --metrics columns.
    names = sorted({m for r in recs for m in r.metrics}, key=lambda m: (not m.startswith("test/"), m))
    names = names[: args.metrics]
    rows = [["group", "run_id", "status", *names]]
    rows += [[r.group, r.run_id, r.status, *(_fmt(r.metrics.get(m)) for m in names)] for r in recs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"{len(recs)} record(s)", file=sys.stderr)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    scanned = list(_scan(args.root, None))
    bad = [rec for _, rec in scanned if isinstance(rec, RecordError)]
    for exc in bad:
        print(f"INVALID {exc}", file=sys.stderr)
    base = runs_dir(args.root)
    for path in sorted(base.rglob("*.tmp")) if base.is_dir() else []:  # a writer was killed mid-write
        print(f"note: leftover temp file {path}", file=sys.stderr)
    print(f"{len(scanned) - len(bad)} valid, {len(bad)} invalid record(s) under {base}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prefixtune.results", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, help="results folder (default: paths.results_dir())")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_list = sub.add_parser("list", parents=[common], help="table of run id, status and headline metrics")
    p_list.add_argument("--group")
    p_list.add_argument("--status", default="all", choices=[*STATUSES, "all"])
    p_list.add_argument("--metrics", type=int, default=4, help="how many metric columns")
    sub.add_parser("validate", parents=[common], help="check every record; exit 1 if any is invalid")
    args = parser.parse_args(argv)
    return {"list": _cmd_list, "validate": _cmd_validate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())


def newest_config(recs: list[RunRecord], key: Callable[[RunRecord], Any], repeat_keys: tuple[str, ...] = ("seed",)
                  ) -> tuple[list[RunRecord], list[RunRecord]]:
    """(kept, stale): per `key(record)` (a table cell, a figure point, a method row), the records sharing the
    config of that key's newest record, up to `repeat_keys` (what varies between the repeats averaged into one
    number). A cell whose config changed (e.g. a new cpu-scale setting) keeps older seeds on disk, but they must
    not be averaged with the new ones."""
    keys = [key(r) for r in recs]
    ident = [r.identity_without(repeat_keys) for r in recs]  # one hash per record
    newest: dict[Any, int] = {}  # key -> index of its newest record
    for i, (r, k) in enumerate(zip(recs, keys)):
        if k not in newest or (r.finished_at or "") > (recs[newest[k]].finished_at or ""):
            newest[k] = i
    keep, stale = [], []
    for r, k, i in zip(recs, keys, ident):
        (keep if i == ident[newest[k]] else stale).append(r)
    return keep, stale


# Resolved per machine at cpu scale (`${native_bf16:}`, conf/scale/cpu.yaml): bf16 autocast only where the CPU has
# native bf16 units, so the same command gives fp32 on one machine and bf16 on another.
PRECISION_KEYS = ("trainer.bf16", "decode.bf16")


def _precision(r: RunRecord) -> str:
    return "bf16" if (r.config.get("trainer") or {}).get("bf16") else "fp32"


def left_out_reasons(stale: list[RunRecord], kept: list[RunRecord], key: Callable[[RunRecord], Any],
                      repeat_keys: tuple[str, ...] = ("seed",)) -> dict[str, str | None]:
    """run id -> why `newest_config` left it out: its precision ("fp32"/"bf16") when only that differs from the
    kept runs of its `key` (a run on a machine of the other kind), None when its config is an earlier one."""
    same_but_precision = {(key(r), r.identity_without(repeat_keys + PRECISION_KEYS)) for r in kept}
    return {r.run_id: _precision(r) if (key(r), r.identity_without(repeat_keys + PRECISION_KEYS)) in same_but_precision
            else None for r in stale}


def left_out_lines(reasons: dict[str, str | None], what: str = "cell") -> list[str]:
    """The sentences a table or figure prints under itself for `left_out_reasons`."""
    other = sorted((rid, p) for rid, p in reasons.items() if p)
    earlier = sorted(rid for rid, p in reasons.items() if not p)
    lines = []
    if other:
        lines.append(f"{len(other)} run(s) in another precision than the newest runs of their {what} were left out "
                     f"(the cpu scale uses bf16 autocast only on CPUs with native bf16 units, so the precision follows "
                     f"the machine; runs are averaged only within one precision): "
                     + ", ".join(f"{rid} ({p})" for rid, p in other))
    if earlier:
        lines.append(f"{len(earlier)} run(s) of an earlier config of their {what} were left out (runs are averaged "
                     f"only within one config): {', '.join(earlier)}")
    return lines
