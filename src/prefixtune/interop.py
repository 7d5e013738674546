"""Prefix interop with PEFT (`peft.PrefixTuning`), both directions, for decoder-only models.

Layout: PEFT stores a prefix as `prompt_embeddings` (L, n_layer * 2 * n_kv_heads * head_dim) and views it as
(L, 2 * n_layer, H_kv, D) per position, which is exactly our materialised (n_layer, 2, H_kv, L, D) permuted
(tests/test_prefix_equivalence.py shows the two give the same logits). PEFT also shifts position ids by the
prefix length, as we do, so an exported adapter generates the same text under `PeftModel.from_pretrained`.

* `write_peft_prefix(method, dir)`: a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).
* `read_peft_prefix(dir, backbone)`: the materialised prefix of a PEFT adapter (PEFT saves the materialised
  `prompt_embeddings` with or without its `prefix_projection` MLP), to start a prefixtune run from it:
  `method.init.kind=peft method.init.path=DIR`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

WEIGHTS = "adapter_model.safetensors"


def _flat_to_layers(flat: torch.Tensor, bb) -> torch.Tensor:
    """(L, n_layer*2*H*D) -> (n_layer, 2, H, L, D)."""
    length = flat.shape[0]
    return flat.reshape(length, bb.n_layer, 2, bb.n_kv_head, bb.head_dim).permute(1, 2, 3, 0, 4).contiguous()


def write_peft_prefix(method, out_dir: str | Path, base_model: str | None = None) -> Path:
    from peft import PrefixTuningConfig
    from safetensors.torch import save_file

    bb = method.backbone
    kv = method.export().get("prefix.self")
    if bb.is_encoder_decoder or kv is None or getattr(method, "position", None) != "prefix" or len(method.gates):
        raise ValueError("only an ungated, all-layer decoder-only prefix (method=prefix) maps onto PEFT's "
                         "PrefixTuning (PEFT applies no prefix to BART's encoder or cross-attention)")
    length = kv.shape[3]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    conf = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=length, num_layers=bb.n_layer,
                              token_dim=bb.d_model, num_attention_heads=bb.model.config.num_attention_heads,
                              base_model_name_or_path=base_model or bb.model.config.name_or_path or None)
    conf.save_pretrained(str(out))
    flat = kv.permute(3, 0, 1, 2, 4).reshape(length, -1).contiguous()  # PEFT's (L, n_layer*2*H*D)
    save_file({"prompt_embeddings": flat}, str(out / WEIGHTS), metadata={"format": "pt"})
    return out


def read_peft_prefix(path: str | Path | None, bb) -> torch.Tensor:
    from safetensors.torch import load_file

    if not path:
        raise ValueError("method.init.kind=peft needs method.init.path (a PEFT PrefixTuning adapter directory)")
    d = Path(path)
    cfg_file, weights = d / "adapter_config.json", d / WEIGHTS
    for f in (cfg_file, weights):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not a PEFT adapter directory (method.init.path={path})")
    conf = json.loads(cfg_file.read_text())
    if conf.get("peft_type") != "PREFIX_TUNING":
        raise ValueError(f"{cfg_file}: peft_type={conf.get('peft_type')!r}, expected PREFIX_TUNING")
    # PEFT saves the materialised prefix as `prompt_embeddings`, with or without its prefix_projection MLP
    flat = load_file(str(weights))["prompt_embeddings"]
    want = bb.n_layer * 2 * bb.kv_dim
    if flat.ndim != 2 or flat.shape[1] != want:
        raise ValueError(f"{weights}: prefix of shape {tuple(flat.shape)} does not fit {bb.name} "
                         f"(expected (L, {want}) = n_layer {bb.n_layer} x 2 x kv dim {bb.kv_dim})")
    return _flat_to_layers(flat.float(), bb)

