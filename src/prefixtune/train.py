"""Entry point: `python -m prefixtune.train experiment=<group>/<name> [overrides]`.

compose -> (skip if a finished record has this config hash) -> build backbone + method -> fit -> decode dev/test
-> score -> write the prefix artefact and one JSON record atomically under results/runs/<group>/.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from . import lrselect, paths, provenance

log = logging.getLogger("prefixtune.train")

_PATHS = {"root": paths.REPO_ROOT, "models": paths.models_dir, "data": paths.data_dir,
          "results": paths.results_dir}


def _pt_path(name: str) -> str:
    value = _PATHS[name]
    return str(value() if callable(value) else value)


OmegaConf.register_new_resolver("pt_path", _pt_path, replace=True)
# `${native_bf16:}`: bf16 autocast where the hardware computes bf16 natively (conf/scale/cpu.yaml)
OmegaConf.register_new_resolver("native_bf16", provenance.native_bf16, replace=True)
# `${lr_choice:root,select,experiment[,share]}`: the learning-rate factor chosen on dev (conf/scale/conv_base.yaml,
# prefixtune.lrselect); `share` maps experiment-name patterns to the cell whose choice they use
OmegaConf.register_new_resolver("lr_choice", lambda root, select, exp, share=None: lrselect.chosen_factor(
    root, select, exp, share), replace=True)
# `${warmup_within:steps,share,cap...}`: warmup steps capped at a share of the run (conf/optim/lowdata.yaml)
OmegaConf.register_new_resolver("warmup_within", lambda *a: __import__("prefixtune.trainer", fromlist=["x"])
                                .warmup_within(*a), replace=True)


def run(cfg: DictConfig, overrides: list[str] | None = None) -> Any:
    """Run one experiment cell and return its RunRecord (the finished one if it already exists)."""
    from . import pipeline

    return pipeline.run(cfg, overrides or [])


@hydra.main(version_base="1.3", config_path=str(paths.REPO_ROOT / "conf"), config_name="train")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task)
    record = run(cfg, overrides)
    log.info("record: %s (%s)", record.run_id, record.status)


if __name__ == "__main__":
    main()
