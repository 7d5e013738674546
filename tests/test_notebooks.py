"""The notebooks run headless on real smoke-scale runs (issue: ablations §7), and are committed without outputs.

One Hydra multirun trains, decodes and stores the prefixes the notebooks analyse: real SmolLM2-135M, a few steps,
all-layer prefixes on E2E and WebNLG, an embedding-only one and one initialised with "table-to-text:" (§7.4). The
notebooks then execute top to bottom through a Jupyter kernel (nbclient) against that results folder; every
section must find its inputs and produce its output (no "run make ... first" fallbacks).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prefixtune import paths

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOTEBOOKS = paths.REPO_ROOT / "notebooks"
FAST = ["scale=smoke", "logger.mode=disabled", "scale.max_decode_groups=2", "scale.max_dev_decode_groups=1",
        "decode.max_new_tokens=12", "trainer.max_steps=4", "trainer.save_every=4"]


def _need():
    if not (paths.models_dir() / "smollm2-135m").is_dir():
        pytest.skip("the SmolLM2 cache is not prepared (run `make setup`)")
    for ds in ("e2e", "webnlg"):
        if not (paths.data_dir() / ds).is_dir():
            pytest.skip(f"{ds} data not prepared (run `make setup`)")
    if shutil.which("java") is None:
        pytest.skip("Java is needed by the official scorers (METEOR)")


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    _need()
    tmp = tmp_path_factory.mktemp("nb")
    root, env = tmp / "results", {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    group = f"nb_{os.getpid()}"
    base = [sys.executable, "-m", "prefixtune.train", *FAST, f"output_root={root}", f"group={group}"]
    runs = [
        ["--multirun", "experiment=smoke/e2e_prefix", "data=e2e,webnlg", f"hydra.sweep.dir={tmp / 'multirun'}"],
        ["experiment=smoke/e2e_prefix", "method.depth=embedding", f"hydra.run.dir={tmp / 'emb'}"],
        ["experiment=smoke/e2e_prefix", "method.init.kind=words", "method.init.words='table-to-text:'",
         "method.init.fit_steps=50", f"hydra.run.dir={tmp / 'words'}"],
    ]
    try:
        for extra in runs:
            res = subprocess.run(base[:3] + extra[:1] + base[3:] + extra[1:], cwd=paths.REPO_ROOT, env=env,
                                 capture_output=True, text=True, timeout=1200)
            assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        yield root
    finally:
        shutil.rmtree(paths.REPO_ROOT / "checkpoints" / group, ignore_errors=True)


def _execute(name: str, root: Path, monkeypatch) -> tuple[str, int]:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend turns figures into outputs
    for k, v in {"PREFIXTUNE_RESULTS": str(root), "PREFIXTUNE_SCALE": "smoke", "PREFIXTUNE_NB_SOURCES": "2",
                 "PREFIXTUNE_NB_MAX_NEW_TOKENS": "12", "HF_HUB_OFFLINE": "1",
                 "PYTHONPATH": os.pathsep.join(p for p in (str(paths.REPO_ROOT / "src"),
                                                           os.environ.get("PYTHONPATH")) if p)}.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(paths.REPO_ROOT)}}).execute()  # raises on a failing cell
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
            images += "image/png" in out.get("data", {})
    return "\n".join(text), images


def test_prefix_analysis_runs_on_real_prefixes(smoke_root, monkeypatch):
    text, images = _execute("prefix_analysis.ipynb", smoke_root, monkeypatch)
    assert "all-layer prefixes: 3" in text and "embedding-only: 1" in text and "word-initialised: 1" in text, text
    assert "e2e: mean share on the prefix" in text and "webnlg: mean share on the prefix" in text
    assert "virtual token 0:" in text                        # nearest tokens of an embedding-only prefix
    assert "e2e vs webnlg: mean cosine" in text              # dataset similarity
    assert "mean cosine to the init activations" in text     # the init-words section ran
    assert "run `make" not in text, "a section fell back to 'run make ...' on runs that exist"
    assert images == 4, f"expected 4 figures (norms, attention, similarity, init), got {images}"


def test_results_overview_plots_the_records(smoke_root, monkeypatch):
    text, images = _execute("results_overview.ipynb", smoke_root, monkeypatch)
    assert "4 finished records" in text and "at scale smoke" in text, text
    assert "no Table 2 records at this scale yet" in text   # honest about what these records are not
    assert "no figure sweeps at scale smoke yet" in text
    assert images == 2, f"expected 2 figures (quality, cost), got {images}"


@pytest.mark.parametrize("name", ["prefix_analysis.ipynb", "results_overview.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{name}: cells {dirty} carry outputs (strip them before committing)"
