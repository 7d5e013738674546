"""`make bench` end to end on tiny models: the report is complete and its equalities hold. Speeds are measured
and reported by the benchmark, never asserted here (DEVELOPERS.md: no timed tests)."""
from __future__ import annotations

import json

import pytest

from prefixtune import paths

pytestmark = pytest.mark.integration  # real E2E data (make setup)

TINY = ["models=[tiny_gpt2,tiny_llama]", "decode.model=tiny_gpt2", "decode.sources=4", "decode.max_new_tokens=6",
        "batch_size=4", "timed_steps=2", "memory_steps=1", "memory_methods=[prefix,finetune]",
        "matmul.size=256", "matmul.repeats=2", "train_path.models=[tiny_llama]", "train_path.timed_steps=2",
        "train_path.warmup_steps=1", "train_path.variants.compile=null", "decode.train_steps=3", "decode.train_lr=1e-2"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not (paths.data_dir() / "e2e").is_dir():
        pytest.skip("E2E data not prepared (run `make setup`)")
    out = tmp_path_factory.mktemp("bench")
    mp = pytest.MonkeyPatch()
    mp.setenv("PREFIXTUNE_RESULTS", str(out))
    mp.setenv("PREFIXTUNE_BF16", "1")  # measure the bf16 paths on any machine (tiny models: cheap even if emulated)
    try:
        from prefixtune import bench

        assert bench.main(TINY) == 0
    finally:
        mp.undo()
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_report_has_every_section(report):
    rep, md = report
    for model in ("tiny_gpt2", "tiny_llama"):
        assert set(rep[model]["train"]) >= {"prefix", "peft_prefix", "finetune", "adapter", "lora", "prefix_vs_peft"}
        assert rep[model]["memory"]["finetune"]["peak_mb"] > 0
    assert {"fp32", "bf16", "speedup"} <= set(rep["tiny_gpt2"]["bf16"]["prefix"])
    assert rep["matmul"]["fp32_gflops"] > 0 and len(rep["targets"]) == 7
    assert "## Targets" in md and "## Decoding" in md
    assert 0 <= rep["decode"]["bf16_same_outputs"] <= rep["decode"]["sources"] and "bf16 autocast" in md


def test_without_native_bf16_the_report_says_bf16_was_not_measured(report):
    import copy

    from prefixtune import bench

    rep = copy.deepcopy(report[0])
    del rep["tiny_gpt2"]["bf16"], rep["decode"]["batched_bf16_s"], rep["decode"]["bf16_same_outputs"]
    rep["tiny_gpt2"]["bf16_skipped"] = bench.NO_NATIVE_BF16
    md = bench.to_markdown(rep)
    assert "bf16 autocast: not measured -- this machine has no native bf16" in md and "bf16 s/step" not in md


def test_bf16_comparison_starts_from_the_same_weights(report):
    """fp32 and bf16 runs are built from one seed: their first losses differ only by bf16 rounding."""
    rep, _ = report
    r = rep["tiny_gpt2"]["bf16"]["prefix"]
    assert len(r["fp32"]["losses"]) == len(r["bf16"]["losses"]) and r["first_loss_rel_diff"] < 0.02, r


def test_our_prefix_follows_peft_from_the_same_weights(report):
    """GPT-2 geometry: PEFT's MLP weights copied into ours give the same loss curve (same method, same optimiser)."""
    rep, _ = report
    pv = rep["tiny_gpt2"]["train"]["prefix_vs_peft"]
    assert pv["same_start"] and pv["max_loss_diff"] < 1e-4, pv
    assert rep["tiny_llama"]["train"]["prefix_vs_peft"]["same_start"] is False  # GQA: shapes differ, said so


def test_decoding_paths_agree(report):
    rep, _ = report
    assert rep["decode"]["batched_equals_one_at_a_time"] and rep["decode"]["batched_equals_peft"]


def test_flop_floor_counts_the_head_only_where_it_projects():
    from prefixtune.bench import flop_floor

    rate = {"fp32_gflops": 1.0}
    train = {"prefix": {"step_s": 1.0, "padded_tokens": 100, "head_tokens": 40},
             "peft_prefix": {"step_s": 1.0, "padded_tokens": 100, "head_tokens": 100},
             "finetune": {"step_s": 1.0, "padded_tokens": 100, "head_tokens": 40}}
    fl = flop_floor(train, body_params=1000, head_params=500, rate=rate)
    assert fl["prefix"]["gflop_per_step"] == 4 * (1000 * 100 + 500 * 40) / 1e9
    assert fl["peft_prefix"]["gflop_per_step"] == 4 * (1000 * 100 + 500 * 100) / 1e9
    assert fl["finetune"]["gflop_per_step"] == 6 * (1000 * 100 + 500 * 40) / 1e9  # weight gradients too


def test_head_tokens_of_each_path(report):
    rep, _ = report
    tr = rep["tiny_llama"]["train"]
    assert tr["peft_prefix"]["head_tokens"] == tr["peft_prefix"]["padded_tokens"]
    assert 0 < tr["prefix"]["head_tokens"] < tr["prefix"]["padded_tokens"]
    assert rep["tiny_llama"]["body_params"] + rep["tiny_llama"]["head_params"] <= rep["tiny_llama"]["n_params"]


def test_training_path_variants_follow_the_stock_losses(report):
    """Every speed variant starts from the same seed and batch: its first losses match the stock path's within
    bf16 rounding, the stock path is run twice (drift), and the profile covers the step's ops."""
    rep, md = report
    path = rep["tiny_llama"]["train_path"]
    assert set(path) == {"stock", "math_sdpa", "frozen_bf16", "mallopt", "stock (again)"}
    assert path["stock (again)"]["losses"] == path["stock"]["losses"]  # same process setup: bitwise the same
    assert all(r["first_losses_max_rel_diff"] < 0.02 for r in path.values()), {k: r["first_losses_max_rel_diff"]
                                                                              for k, r in path.items()}
    assert path["mallopt"]["applied"]["frozen_bf16_linears"] > 0 and path["stock"]["applied"]["frozen_bf16_linears"] == 0
    prof = path["mallopt"]["profile"]["ms_per_step"]
    assert prof["matmuls"] > 0 and prof["attention"] > 0 and "Where a `mallopt` step goes" in md
    assert 0 < rep["tiny_llama"]["train_path_floor"]["share"]["stock"]


def test_decoding_engines_agree_after_training(report):
    rep, md = report
    d = rep["decode"]
    assert d["batched_equals_hf_engine"] and len(d["train_losses"]) == 3
    assert 0.0 <= d["eos_share"] <= 1.0 and "HF `generate` engine" in md
