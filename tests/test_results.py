"""Run records and provenance: atomic writes, stable config hashes, clear read errors, the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prefixtune import provenance, results
from prefixtune.results import RecordError, RunRecord

CFG = {
    "seed": 1,
    "model": {"name": "tiny_gpt2", "dtype": "float32"},
    "method": {"name": "prefix", "length": 10, "reparam": {"hidden": 512}},
    "optim": {"lr": 5e-5, "epochs": 5},
    "data": {"name": "e2e", "num_workers": 4},
    "paths": {"data": "/home/a/data"},
    "logger": {"wandb": {"mode": "offline"}},
    "force": False,
}


def make(run_id: str = "table2-e2e_prefix__cpu__s1", **kw) -> RunRecord:
    return RunRecord(run_id=run_id, group="table2", experiment="table2/e2e_prefix", config=CFG, **kw)


def finished(run_id: str = "table2-e2e_prefix__cpu__s1", bleu: float = 69.7, **kw) -> RunRecord:
    return make(run_id, **kw).finish({"test/bleu": bleu, "test/nist": 8.7})


# --- config hash -----------------------------------------------------------------------------------------

def _reordered(d):
    return {k: _reordered(v) if isinstance(v, dict) else v for k, v in reversed(list(d.items()))}


def test_hash_is_16_hex_and_ignores_key_order():
    h = results.config_hash(CFG)
    assert len(h) == 16 and int(h, 16) >= 0
    assert results.config_hash(_reordered(CFG)) == h


@pytest.mark.parametrize("dotted, value", [
    ("paths.data", "/elsewhere"), ("data.num_workers", 0), ("logger.wandb.mode", "disabled"),
    ("force", True), ("hydra.run.dir", "outputs/x"),
    ("model.path", "/home/u/prefixtune/models/tiny"),  # a checkout elsewhere: same cell (was a bug)
    ("_hash", "0123456789abcdef"),                      # the hash the pipeline stores in the config for W&B
])
def test_hash_ignores_volatile_keys(dotted, value):
    cfg = json.loads(json.dumps(CFG))
    *parents, leaf = dotted.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    assert results.config_hash(cfg) == results.config_hash(CFG)


@pytest.mark.parametrize("dotted, value", [
    ("optim.lr", 8e-5), ("method.length", 5), ("method.reparam.hidden", 800), ("seed", 2),
    ("model.dtype", "bfloat16"),
])
def test_hash_changes_with_a_real_hyperparameter(dotted, value):
    cfg = json.loads(json.dumps(CFG))
    *parents, leaf = dotted.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    node[leaf] = value
    assert results.config_hash(cfg) != results.config_hash(CFG)


def test_hash_volatile_list_is_a_parameter():
    assert results.config_hash(CFG, volatile=("optim",)) == results.config_hash(
        {**CFG, "optim": {"lr": 1.0}}, volatile=("optim",))


# --- run ids ---------------------------------------------------------------------------------------------

def test_run_id_is_deterministic_and_safe():
    rid = results.run_id("table2/e2e_prefix", "cpu", 1)
    assert rid == "table2-e2e_prefix__cpu__s1" == results.run_id("table2/e2e_prefix", "cpu", 1)
    digest = results.overrides_digest(["optim.lr=1e-4", "method.length=5"])
    assert digest == results.overrides_digest(["method.length=5", "optim.lr=1e-4", "seed=3", "force=true"])
    with_o = results.run_id("table2/e2e_prefix", "cpu", 1, digest)
    assert with_o == f"{rid}__o{digest}" and len(digest) == 8
    assert results.overrides_digest(["seed=2", "paths.data=/x", "force=true"]) is None
    assert results.overrides_digest(["optim.lr=1e-4"]) != results.overrides_digest(["optim.lr=2e-4"])
    assert "/" not in with_o and os.sep not in with_o


@pytest.mark.parametrize("experiment, scale, seed", [
    ("../etc/passwd", "cpu", 1), ("a b", "cpu", 1), ("table2/x", "c/u", 1), ("x", "cpu", -1),
    ("x", "cpu", "1"), ("x.tmp", "cpu", 1), ("", "cpu", 1),
])
def test_run_id_rejects_unsafe_parts(experiment, scale, seed):
    with pytest.raises(ValueError):
        results.run_id(experiment, scale, seed)


# --- write / read ----------------------------------------------------------------------------------------

def test_roundtrip_and_layout(tmp_path):
    rec = finished()
    path = results.write_record(rec, tmp_path)
    assert path == tmp_path / "runs" / "table2" / "table2-e2e_prefix__cpu__s1.json"
    back = results.read_record(path)
    assert back == rec and back.config_hash == results.config_hash(CFG)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_nonfinite_metrics_are_written_as_null_with_a_note(tmp_path):
    path = results.write_record(finished(bleu=float("nan")), tmp_path)
    back = results.read_record(path)
    assert back.metrics["test/bleu"] is None
    assert any("metrics.test/bleu" in n for n in back.notes)


def test_write_refuses_invalid_record(tmp_path):
    with pytest.raises(RecordError, match="finished_at"):
        results.write_record(make(status="finished"), tmp_path)
    assert not (tmp_path / "runs").exists()


def test_crash_before_rename_keeps_old_record(tmp_path, monkeypatch):
    path = results.write_record(finished(bleu=1.0), tmp_path)
    before = path.read_bytes()

    def boom(src, dst):
        raise KeyboardInterrupt  # as if interrupted between the temp write and the rename
    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        results.write_record(finished(bleu=2.0), tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_sigkill_mid_write_leaves_old_record_and_a_skipped_leftover(tmp_path):
    path = results.write_record(finished(bleu=1.0), tmp_path)
    before = path.read_bytes()
    # A real `kill -9` after the temp file is written and fsynced but before os.replace runs.
    script = textwrap.dedent(f"""
        import os, signal
        from prefixtune import results
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        rec = results.RunRecord(run_id="table2-e2e_prefix__cpu__s1", group="table2",
                                experiment="table2/e2e_prefix", config={{"seed": 1}})
        rec.finish({{"test/bleu": 2.0}})
        results.write_record(rec, {str(tmp_path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert path.read_bytes() == before
    leftovers = [p for p in path.parent.iterdir() if p != path]
    assert len(leftovers) == 1 and ".tmp" in leftovers[0].name
    assert json.loads(leftovers[0].read_text())["metrics"]["test/bleu"] == 2.0  # complete, but never read
    assert [r.metrics["test/bleu"] for r in results.iter_records(tmp_path)] == [1.0]
    assert results.main(["validate", "--root", str(tmp_path)]) == 0


def _write_raw(tmp_path: Path, text: str, name: str = "table2-e2e_prefix__cpu__s1.json") -> Path:
    path = tmp_path / "runs" / "table2" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_error_names_file_and_json_position(tmp_path):
    path = _write_raw(tmp_path, '{\n  "run_id": "x",\n  "group": \n}\n')
    with pytest.raises(RecordError) as err:
        results.read_record(path)
    assert str(path) in str(err.value) and "line 4, column 1" in str(err.value)
    assert err.value.path == path


def test_read_error_names_missing_and_unknown_fields(tmp_path):
    data = finished().to_dict()
    del data["config_hash"]
    data["bleu"] = 1.0
    path = _write_raw(tmp_path, json.dumps(data))
    with pytest.raises(RecordError, match=r"unknown field 'bleu'.*missing field 'config_hash'") as err:
        results.read_record(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("field, value, match", [
    ("status", "done", "status"), ("metrics", {"bleu": 1.0}, "split/metric"),
    ("metrics", {"test/bleu": "69"}, "number or null"), ("outputs", {"pred": "/abs/p.txt"}, "repo-relative"),
    ("schema_version", 99, "newer"), ("notes", "x", "'notes' has type str"),
])
def test_read_error_names_bad_values(tmp_path, field, value, match):
    data = finished().to_dict()
    data[field] = value
    with pytest.raises(RecordError, match=match):
        results.read_record(_write_raw(tmp_path, json.dumps(data)))


# --- iteration and skip-if-done --------------------------------------------------------------------------

def test_iter_records_filters_sorts_and_is_strict(tmp_path):
    results.write_record(finished("b__cpu__s1"), tmp_path)
    results.write_record(finished("a__cpu__s1"), tmp_path)
    results.write_record(make("c__cpu__s1"), tmp_path)  # still running
    other = finished("z__cpu__s1")
    other.group = "table3"
    results.write_record(other, tmp_path)
    assert [r.run_id for r in results.iter_records(tmp_path)] == ["a__cpu__s1", "b__cpu__s1", "z__cpu__s1"]
    assert [r.run_id for r in results.iter_records(tmp_path, group="table3")] == ["z__cpu__s1"]
    assert len(list(results.iter_records(tmp_path, status=None))) == 4
    bad = _write_raw(tmp_path, "{", name="broken.json")
    with pytest.raises(RecordError, match="broken.json"):
        list(results.iter_records(tmp_path))
    with pytest.warns(UserWarning, match="broken.json"):
        assert len(list(results.iter_records(tmp_path, strict=False))) == 3
    bad.unlink()
    # A valid record stored under the wrong name would be invisible to lookups by id.
    (tmp_path / "runs" / "table2" / "a__cpu__s1.json").rename(tmp_path / "runs" / "table2" / "moved.json")
    with pytest.raises(RecordError, match="belongs in another file"):
        list(results.iter_records(tmp_path))


def test_find_finished(tmp_path):
    h = results.config_hash(CFG)
    assert results.find_finished(h, tmp_path) is None
    results.write_record(make(), tmp_path)
    assert results.find_finished(h, tmp_path) is None  # running is not done
    results.write_record(make().fail(RuntimeError("oom")), tmp_path)
    assert results.find_finished(h, tmp_path) is None  # failed is not done
    results.write_record(finished(), tmp_path)
    assert results.find_finished(h, tmp_path).run_id == "table2-e2e_prefix__cpu__s1"
    assert results.find_finished(results.config_hash({**CFG, "seed": 2}), tmp_path) is None
    assert results.find_finished(h, tmp_path, group="table3") is None


def test_find_finished_recomputes_the_hash_from_the_stored_config(tmp_path):
    """A record whose `config_hash` field was computed when `model.path` (a machine path) still counted: a
    checkout at another path must still find it finished, or it retrains the cell."""
    cfg = {**CFG, "model": {**CFG["model"], "path": "/work/main/models/tiny"}}
    then = tuple(k for k in results.VOLATILE_KEYS if "model.path" not in k)
    rec = RunRecord(run_id="table2-e2e_prefix__cpu__s1", group="table2", experiment="table2/e2e_prefix",
                    config=cfg, config_hash=results.config_hash(cfg, then)).finish({"test/bleu": 0.5})
    results.write_record(rec, tmp_path)
    here = {**cfg, "model": {**cfg["model"], "path": "/home/u/prefixtune/models/tiny"}}
    assert results.config_hash(here) != rec.config_hash  # the stored field alone would miss it
    found = results.find_finished(results.config_hash(here), tmp_path)
    assert found is not None and found.run_id == rec.run_id and found.config_hash == rec.config_hash
    assert results.find_finished(results.config_hash({**here, "seed": 2}), tmp_path) is None


def test_config_diff_names_the_changed_keys_only():
    new = json.loads(json.dumps(CFG))
    new["optim"]["lr"], new["paths"]["data"], new["decode"] = 1e-4, "/elsewhere", {"bf16": True}
    assert results.config_diff(CFG, new) == ["decode.bf16: '<absent>' -> True", "optim.lr: 5e-05 -> 0.0001"]
    assert results.config_diff(CFG, CFG) == []
    many = {**CFG, **{f"k{i}": i for i in range(12)}}
    assert results.config_diff(CFG, many, limit=3)[-1] == "... and 9 more"


def test_cell_identity_ignores_only_the_seed():
    a, b = make(), RunRecord(run_id="x__cpu__s2", group="table2", experiment="e", config={**CFG, "seed": 2})
    assert a.identity != b.identity and a.cell_identity == b.cell_identity
    c = RunRecord(run_id="x__cpu__s3", group="table2", experiment="e", config={**CFG, "optim": {"lr": 1.0}})
    assert c.cell_identity != a.cell_identity


def test_failed_record_keeps_error(tmp_path):
    path = results.write_record(make().fail(ValueError("bad shape")), tmp_path)
    back = results.read_record(path)
    assert back.status == "failed" and back.error == "ValueError: bad shape" and back.finished_at


# --- CLI ----------------------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefixtune.results", *args], capture_output=True, text=True)


def test_cli_list_and_validate_exit_codes(tmp_path):
    results.write_record(finished(), tmp_path)
    results.write_record(make("x__cpu__s2"), tmp_path)
    done = _cli("list", "--root", str(tmp_path))
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["group", "run_id", "status", "test/bleu", "test/nist"]
    assert "table2-e2e_prefix__cpu__s1" in lines[1] and "69.7" in lines[1] and "running" in lines[2]
    assert _cli("validate", "--root", str(tmp_path)).returncode == 0
    _write_raw(tmp_path, '{"run_id": 1}', name="bad.json")
    bad = _cli("validate", "--root", str(tmp_path))
    assert bad.returncode == 1 and "bad.json" in bad.stderr and "missing field" in bad.stderr
    assert _cli("validate", "--root", str(tmp_path / "empty")).returncode == 0
    assert _cli("bogus").returncode == 2


# --- provenance ------------------------------------------------------------------------------------------

def test_provenance_outside_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert provenance.git_info(tmp_path) == {"sha": None, "dirty": None, "branch": None, "src_tree": None}
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert provenance.git_info(tmp_path) == {"sha": None, "dirty": None, "branch": None, "src_tree": None}


def test_git_dirty_ignores_results_and_data(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    if subprocess.run([*git, "init", "-q", "-b", "main"], capture_output=True).returncode:
        pytest.skip("git not available")
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    for sub in ("results/runs/table2", "data"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "new.json").write_text("{}")
    info = provenance.git_info(tmp_path)
    assert len(info["sha"]) == 40 and info["branch"] == "main" and info["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_info(tmp_path / "results")["dirty"] is True


def test_the_code_version_is_the_src_tree_and_a_docs_commit_keeps_it(tmp_path, monkeypatch):
    """provenance.git.src_tree names the code that computed a record: unchanged by a commit outside src/, changed
    by one inside it, "+dirty" with uncommitted src/ changes; an older record (sha only) is looked up in git."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    if subprocess.run([*git, "init", "-q", "-b", "main"], capture_output=True).returncode:
        pytest.skip("git not available")

    def commit(path, text):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
        subprocess.run([*git, "add", path], check=True)
        subprocess.run([*git, "commit", "-q", "-m", path], check=True)
        return provenance.git_info(tmp_path)

    a = commit("src/m.py", "x = 1\n")
    b = commit("README.md", "docs\n")
    c = commit("src/m.py", "x = 2\n")
    assert a["src_tree"] == b["src_tree"] != c["src_tree"] and a["sha"] != b["sha"]
    assert provenance.code_version({"sha": a["sha"], "dirty": False}, tmp_path) == a["src_tree"]
    assert provenance.code_version(b, tmp_path) == a["src_tree"] and provenance.code_version({}, tmp_path) is None
    (tmp_path / "src" / "m.py").write_text("x = 3\n")
    assert provenance.git_info(tmp_path)["src_tree"] == c["src_tree"] + "+dirty"


def test_package_versions_hardware_memory():
    versions = provenance.package_versions()
    assert set(provenance.TRACKED_PACKAGES) <= set(versions) and versions["python"]
    assert all(v is None or isinstance(v, str) for v in versions.values())
    hw = provenance.hardware()
    assert hw["logical_cores"] >= 1 and {"cpu_model", "ram_total_mb", "cuda_devices"} <= set(hw)
    mem = provenance.peak_memory()
    assert mem["peak_rss_mb"] > 1
    block = provenance.collect()
    assert set(block) == {"git", "versions", "hardware"}
    json.dumps(block)  # must fit into a record as is


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux-only peak reset")
def test_peak_memory_is_per_run_in_one_process():
    """A multirun runs all cells in one process: a later cell must not report an earlier cell's peak.

    The 400 MB come from an anonymous mmap, not the heap: `speed.tune_malloc` (run by any earlier trainer test
    in this process) keeps freed heap memory resident by design, so a heap array's `del` would not lower RSS.
    Both peaks are run-window peaks, so an earlier test's larger process-wide peak cannot mask the drop."""
    import mmap

    size = 400 * 2**20
    assert provenance.reset_peak_memory()
    big = mmap.mmap(-1, size)
    for off in range(0, size, mmap.PAGESIZE):  # touch every page so it is resident
        big[off] = 1
    with_big = provenance.peak_memory(run_window=True)
    assert with_big["peak_rss_scope"] == "run"
    big.close()  # munmap: the pages go back to the OS at once
    assert provenance.reset_peak_memory()
    after = provenance.peak_memory(run_window=True)
    assert after["peak_rss_scope"] == "run"
    assert after["peak_rss_mb"] < with_big["peak_rss_mb"] - 300, (with_big, after)
    assert provenance.peak_memory()["peak_rss_scope"] == "process"


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux-only peak reset")
def test_peak_window_does_not_count_a_heap_kept_by_tune_malloc():
    """With `speed.tune_malloc` on, freed heap memory stays resident; the next run's peak must still not include it."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from prefixtune import provenance, speed\n"
        "assert speed.tune_malloc()\n"
        "big = np.ones(400 * 2**20 // 8); big += 1\n"
        "assert provenance.reset_peak_memory()\n"
        "with_big = provenance.peak_memory(run_window=True)['peak_rss_mb']\n"
        "del big\n"
        "assert provenance.reset_peak_memory()\n"
        "after = provenance.peak_memory(run_window=True)['peak_rss_mb']\n"
        "assert after < with_big - 300, (with_big, after)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
