"""The cpu scale asks for bf16 autocast only where the hardware computes bf16 natively (provenance.native_bf16),
and on such a machine it resolves to exactly the config the committed records were made with (same hashes)."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from prefixtune import paths, provenance
from prefixtune.results import config_hash, read_record


@pytest.fixture
def cpu_only(monkeypatch):
    import torch

    monkeypatch.delenv("PREFIXTUNE_BF16", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def with_flags(*flags):
        monkeypatch.setattr(provenance, "_cpuinfo", lambda: ("cpu", {f: f in flags for f in provenance.CPU_FLAGS}))
    return with_flags


@pytest.mark.parametrize(("flags", "native"), [
    (("avx2",), False),                                  # AMD Zen 3 / most laptops: bf16 is emulated
    (("avx2", "avx512f"), False),                        # AVX-512 without the BF16 extension
    (("avx2", "avx512f", "avx512_bf16"), True),          # AMD Zen 4, Intel Cooper Lake
    (("avx2", "avx512f", "amx_tile", "amx_bf16"), True),  # Intel Sapphire Rapids and later
])
def test_native_bf16_follows_the_cpu_flags(cpu_only, flags, native):
    cpu_only(*flags)
    assert provenance.native_bf16() is native


def test_the_environment_overrides_detection(cpu_only, monkeypatch):
    cpu_only("avx2")
    monkeypatch.setenv("PREFIXTUNE_BF16", "1")
    assert provenance.native_bf16() is True
    monkeypatch.setenv("PREFIXTUNE_BF16", "0")
    assert provenance.native_bf16() is False
    monkeypatch.setenv("PREFIXTUNE_BF16", "yes")
    with pytest.raises(ValueError, match="PREFIXTUNE_BF16='yes'"):
        provenance.native_bf16()


@pytest.mark.parametrize("native", ["0", "1"])
def test_cpu_scale_resolves_precision_to_a_plain_bool(compose_cfg, monkeypatch, native):
    monkeypatch.setenv("PREFIXTUNE_BF16", native)
    cfg = OmegaConf.to_container(compose_cfg("experiment=table2/e2e_prefix", base=("scale=cpu", "logger.mode=disabled")),
                                 resolve=True)
    assert cfg["trainer"]["bf16"] is cfg["decode"]["bf16"] is (native == "1")


@pytest.mark.parametrize("cell", ["table2/e2e_prefix", "table2/dart_finetune", "table5/e2e_emb10"])
def test_committed_records_keep_their_hash_on_a_bf16_machine(compose_cfg, monkeypatch, cell):
    group, name = cell.split("/")
    path = paths.REPO_ROOT / "results" / "runs" / group / f"{group}-{name}__cpu__s1.json"
    if not path.exists():
        pytest.skip(f"{path} not committed")
    record = json.loads(path.read_text())
    monkeypatch.setenv("PREFIXTUNE_BF16", "1" if record["config"]["trainer"]["bf16"] else "0")
    cfg = OmegaConf.to_container(compose_cfg(f"experiment={cell}", base=("scale=cpu", "logger.mode=disabled")),
                                 resolve=True)
    cfg.pop("output_root")
    # the record's identity: its stored config hashed under today's volatile keys (results.RunRecord.identity), which
    # is what a rerun compares against (a key made volatile since, e.g. scale.label, changes the stored hash only)
    assert config_hash(cfg) == read_record(path).identity
