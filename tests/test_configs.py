"""Every real config composes, resolves, and builds (design.md: "tests compose every real config").

Two matrices, both built from the files on disk (new experiment files are picked up automatically):
  * method x tiny model x scale -- what the method/model tests and `scale=tiny` runs use;
  * experiment x scale (with the model the scale or the experiment selects: the real `make table2` commands) and
    experiment x tiny model at `scale=tiny` (how tests run an experiment).
Overriding an experiment's own method is not a supported use, so experiment x method is not crossed.

Hydra's `compose` costs ~0.1-0.3 s here, so each matrix has an all-pairs covering subset that runs by default
(every row value meets every column value at least once, the third axis rotating); the remaining cells carry
`slow` and run with the full suite (`make test`).
"""
from __future__ import annotations

import itertools

import pytest
from omegaconf import OmegaConf

from prefixtune.methods import adapter, combo, finetune, lora, parallel_adapter, prefix  # noqa: F401  (registration)
from prefixtune.methods.base import REGISTRY
from prefixtune.paths import REPO_ROOT

CONF = REPO_ROOT / "conf"
METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
TINY_MODELS = sorted(p.stem for p in (CONF / "model").glob("tiny_*.yaml"))
ALL_MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
SCALES = ["tiny", "smoke", "cpu", "paper"]
EXPERIMENTS = sorted(str(p.relative_to(CONF / "experiment").with_suffix(""))
                     for p in (CONF / "experiment").rglob("*.yaml"))
# what each scale file selects as its model when neither the command line nor the experiment does
SCALE_DEFAULT_MODEL = {"tiny": "tiny_gpt2", "smoke": "smollm2_135m", "cpu": "smollm2_135m", "paper": "gpt2_medium"}


def _yaml(group: str, name: str):
    return OmegaConf.load(CONF / group / f"{name}.yaml")


def _defaults_override(cfg, group: str) -> str | None:
    """`- override /<group>: X` in a file's defaults list, else None."""
    for item in cfg.get("defaults") or []:
        if OmegaConf.is_dict(item) or isinstance(item, dict):
            for key, value in dict(item).items():
                if key.replace("override ", "").strip().lstrip("/") == group:
                    return value
    return None


def _experiment(name: str):
    """An experiment file merged over the experiment it builds on (`- /experiment/<parent>` in its defaults),
    with the defaults lists concatenated child first, so `_defaults_override` sees the child's overrides first."""
    exp = _yaml("experiment", name)
    parents = [d for d in exp.get("defaults") or [] if isinstance(d, str) and d.startswith("/experiment/")]
    for parent in parents:
        base = _experiment(parent.removeprefix("/experiment/"))
        defaults = list(exp.get("defaults") or []) + list(base.get("defaults") or [])
        exp = OmegaConf.merge(base, exp)
        exp.defaults = defaults
    return exp


def method_registry_name(stem: str) -> str:
    """The `name:` of a method file, following its `defaults:` chain (infix -> prefix, finetune_top2 -> finetune)."""
    cfg = _yaml("method", stem)
    if cfg.get("name"):
        return cfg.name
    parents = [d for d in cfg.get("defaults") or [] if isinstance(d, str) and d != "_self_"]
    assert parents, f"conf/method/{stem}.yaml has neither `name` nor a parent in `defaults`"
    return method_registry_name(parents[0])


def _method_cells():
    for (im, method), (isc, scale) in itertools.product(enumerate(METHODS), enumerate(SCALES)):
        covering = TINY_MODELS[(im + isc) % len(TINY_MODELS)]
        for model in TINY_MODELS:
            marks = () if model == covering else (pytest.mark.slow,)
            yield pytest.param(method, model, scale, marks=marks, id=f"{method}-{model}-{scale}")


def _experiment_cells():
    """(experiment, scale, model or None = whatever the scale/experiment selects)."""
    for ie, exp in enumerate(EXPERIMENTS):
        for isc, scale in enumerate(SCALES):
            fast = isc == 1 + ie % (len(SCALES) - 1)  # smoke / cpu / paper in turn
            yield pytest.param(exp, scale, None, marks=() if fast else (pytest.mark.slow,), id=f"{exp}-{scale}")
        for im, model in enumerate(TINY_MODELS):
            fast = im == ie % len(TINY_MODELS)
            yield pytest.param(exp, "tiny", model, marks=() if fast else (pytest.mark.slow,),
                               id=f"{exp}-tiny-{model}")


def test_inventory():
    """The matrices are built from the files on disk; make sure they are not silently empty."""
    assert {"prefix", "infix", "embedding_only", "finetune", "finetune_top2", "adapter"} <= set(METHODS)
    assert TINY_MODELS == ["tiny_bart", "tiny_gpt2", "tiny_llama"]
    assert EXPERIMENTS, "no experiment files found under conf/experiment/"
    for scale in SCALES:
        assert (CONF / "scale" / f"{scale}.yaml").exists()


def _common_checks(resolved: dict) -> None:
    assert resolved["logger"]["mode"] == "disabled"
    for key in ("seed", "output_root", "optim", "trainer", "decode", "data", "scale", "method", "model"):
        assert key in resolved, key
    assert str(resolved["output_root"]).strip() and "${" not in str(resolved["output_root"])
    assert resolved["method"]["name"] in REGISTRY


@pytest.mark.parametrize(("method", "model", "scale"), list(_method_cells()))
def test_compose_method_model_scale(compose_cfg, method, model, scale):
    cfg = compose_cfg(f"scale={scale}", f"model={model}", f"method={method}")
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation (pt_path, oc.env) resolves
    _common_checks(resolved)
    assert resolved["model"]["name"] == model  # the command line wins over the scale's `override /model`
    assert resolved["model"]["source"] == "tiny"
    assert resolved["method"]["name"] == method_registry_name(method)
    assert resolved["scale"]["name"] == scale


@pytest.mark.parametrize(("experiment", "scale", "model"), list(_experiment_cells()))
def test_compose_experiment(compose_cfg, experiment, scale, model):
    overrides = [f"experiment={experiment}", f"scale={scale}"] + ([f"model={model}"] if model else [])
    resolved = OmegaConf.to_container(compose_cfg(*overrides), resolve=True)
    _common_checks(resolved)
    exp = _experiment(experiment)
    assert resolved["experiment_name"] == exp.experiment_name
    assert resolved["group"] == exp.group
    assert resolved["scale"]["name"] == scale
    exp_method = _defaults_override(exp, "method")
    if exp_method:
        assert resolved["method"]["name"] == method_registry_name(exp_method)
    expected_model = model or _defaults_override(exp, "model") or SCALE_DEFAULT_MODEL[scale]
    assert resolved["model"]["name"] == expected_model
    # the experiment's own values beat the group defaults
    for section in ("method", "optim", "trainer", "decode"):
        values = OmegaConf.to_container(exp[section]) if section in exp else {}
        for key, value in values.items():
            if not isinstance(value, dict):
                assert resolved[section][key] == value, f"{section}.{key}"


@pytest.mark.parametrize("scale", SCALES)
def test_scale_selects_its_model(compose_cfg, scale):
    """Without `model=`, each scale brings its own model (and its paths resolve)."""
    cfg = compose_cfg(f"scale={scale}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["model"]["name"] == SCALE_DEFAULT_MODEL[scale]
    if resolved["model"]["source"] == "local":
        assert "${" not in resolved["model"]["path"]


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_model_file_composes(compose_cfg, model):
    resolved = OmegaConf.to_container(compose_cfg(f"model={model}"), resolve=True)
    m = resolved["model"]
    assert m["name"] == model
    assert m["source"] in {"hub", "local", "tiny"}
    assert m["sep_token"] and m["eos_token"]


@pytest.mark.parametrize(("group", "option"), [
    (g.name, p.stem) for g in sorted(CONF.iterdir()) if g.is_dir() and g.name in {"data", "decode", "optim",
                                                                                   "trainer", "logger"}
    for p in sorted(g.glob("*.yaml"))])
def test_other_groups_compose(compose_cfg, group, option):
    resolved = OmegaConf.to_container(compose_cfg(f"{group}={option}"), resolve=True)
    assert group in resolved


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_files_are_overrides_with_their_command(experiment):
    """design.md: experiment files hold only overrides and open with the command that runs them."""
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    head = [line for line in text.splitlines()[:5] if line.startswith("#")]
    assert head and head[0].strip() == "# @package _global_", "experiment files must be global overrides"
    assert any(f"experiment={experiment}" in line for line in head), \
        f"the first comment lines should show `python -m prefixtune.train experiment={experiment} ...`"


# ---- every method builds on every tiny model (or refuses clearly) ------------------------------------------

DECODER_ONLY_METHODS = {"embedding_only", "infix", "prompt_tuning"}  # paper §7.2-7.3 ran on GPT-2 only


@pytest.mark.parametrize("model", TINY_MODELS)
@pytest.mark.parametrize("method", METHODS)
def test_build_method(tiny_method, model, method):
    if model == "tiny_bart" and method in DECODER_ONLY_METHODS:
        with pytest.raises(ValueError, match="decoder-only"):
            tiny_method(model, f"method={method}")
        return
    bb, m, cfg = tiny_method(model, f"method={method}")
    counts = m.param_counts()
    assert counts["trainable"] > 0 and counts["stored"] > 0
    assert counts["backbone_total"] == bb.num_parameters()
    assert m.registry_name == cfg.method.name == method_registry_name(method)
    if cfg.method.name != "finetune":  # finetune and finetune_top2 (also `name: finetune`) train LM weights
        # parameter-efficient: the backbone is frozen, except tensors a method injects into it (PEFT's LoRA)
        assert not any(p.requires_grad for n, p in m.model.named_parameters()
                       if not any(f in n for f in m.inside_model))


def test_unknown_method_is_a_clear_error(tiny_backbone, compose_cfg):
    from prefixtune.methods.base import build_method

    cfg = compose_cfg("method=prefix", "method.name=no_such_method")
    with pytest.raises(KeyError, match="not registered"):
        build_method(tiny_backbone("gpt2"), cfg.method)


def _make_multirun_line(target: str, *variables: str) -> str:
    """The first `--multirun` command that `make -n <target> <variables>` would run."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", target, *variables], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True).stdout
    return next(ln for ln in out.splitlines() if "--multirun" in ln)


@pytest.mark.parametrize(("target", "var", "key"), [("fig3", "FIG3_SUBSETS", "data.lowdata.subset"),
                                                    ("fig5", "FIG5_SEEDS", "seed"), ("pelt", "PELT_SEEDS", "seed")])
def test_make_sweeps_repeats_slowest_and_accepts_a_single_value(target, var, key):
    """The Makefile's repeat overrides (seeds, sampled subsets) come first, so Hydra runs every cell once before
    any cell twice, and stay sweeps with one value: a plain `data.lowdata.subset=0` is validated against the primary
    config, where data.lowdata is null, and Hydra refuses it (what `make fig3 FIG3_SUBSETS=0` once did)."""
    import shlex

    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for values in ("0", "0,1"):
        line = _make_multirun_line(target, f"{var}={values}")
        args = shlex.split(line)[shlex.split(line).index("--multirun") + 1:]
        jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)[0]
        n = len(values.split(","))
        assert len(jobs) % n == 0 and len(jobs) >= n
        per = len(jobs) // n
        got = [dict(o.split("=", 1) for o in job)[key] for job in jobs]
        assert got == [v for v in values.split(",") for _ in range(per)], got  # slowest-varying: blocks


def test_a_plain_lowdata_override_fails_on_the_primary_config():
    """Why the Makefile wraps repeats in choice(): Hydra composes the primary config (no experiment) with every
    non-sweep override, and data.lowdata is null there."""
    from hydra.errors import ConfigCompositionException

    from conftest import _compose

    with pytest.raises(ConfigCompositionException, match="lowdata"):
        _compose("data.lowdata.subset=0", base=())


@pytest.mark.parametrize("data,scale,lengths", [
    ("dart", "cpu", "1,5,10,20,40"),
    ("xsum", "paper", "1,10,20,50,80,100,200,300"),   # ACL A.2's summarisation grid, unchanged at paper scale
    ("xsum_sample", "cpu", "1,10,50,100,200,300"),    # 2-hour budget: 20 and 80 dropped, the claimed peak bracketed
])
def test_make_fig4_sweeps_the_paper_lengths_for_its_scale(data, scale, lengths):
    line = _make_multirun_line("fig4", f"FIG4_DATA={data}", f"SCALE={scale}")
    assert f"experiment=fig4/{data}_prefix" in line and f"method.length={lengths}" in line.split(), line
