"""What a learned prefix looks like: the functions behind notebooks/prefix_analysis.ipynb.

Everything works on stored artefacts (`results/artifacts/<group>/<run>/`, the materialised prefix of §4.3) found
through the run records, so the notebook analyses exactly the prefixes whose scores are in the tables:

* `kv_norms`: per-layer norm of the prefix keys/values beside the frozen LM's own keys/values on real tokens;
* `attention_on_prefix`: per-layer share of attention that goes to the prefix positions while generating (the
  prompt step and each new token), read inside our attention function (injection.KVProvider.observe);
* `nearest_tokens`: vocabulary items closest (cosine) to each embedding-only virtual token (§7.2);
* `similarity`: per-layer cosine similarity of the prefixes learned for different datasets;
* `init_drift`: how far a real-word-initialised prefix (§7.4) moved from the words' activations in training.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .results import RunRecord, iter_records


@dataclasses.dataclass
class Trained:
    """A finished run with a stored prefix artefact."""
    record: RunRecord
    artifact: Path

    @property
    def method(self) -> dict:
        return self.record.config["method"]

    @property
    def label(self) -> str:
        m = self.method
        init = m.get("init") or {}
        words = f" init '{init['words']}'" if init.get("kind") == "words" else ""
        return f"{self.record.config['data']['name']} {m.get('label', m['name'])} L={m.get('length')}{words}"


def find_trained(root: Path | str | None = None, group: str | None = None, name: str = "prefix",
                 depth: str | None = None, position: str | None = "prefix", init_kind: str | None = None,
                 scale: str | None = None) -> list[Trained]:
    """Finished records of method `name` with a stored artefact (oldest first); filters are exact matches."""
    root = Path(root) if root else None
    out = []
    for rec in iter_records(root, group):
        m = rec.config.get("method", {})
        rel = rec.outputs.get("artifact")
        if m.get("name") != name or not rel:
            continue
        if (depth and m.get("depth") != depth) or (position and m.get("position", "prefix") != position):
            continue
        if init_kind and (m.get("init") or {}).get("kind", "random") != init_kind:
            continue
        if scale and rec.config["scale"]["name"] != scale:
            continue
        path = _resolve(rel, root)
        if path is not None:
            out.append(Trained(rec, path))
    return sorted(out, key=lambda t: t.record.created_at)


def _resolve(rel: str, root: Path | None) -> Path | None:
    from .paths import REPO_ROOT, results_dir

    base = root or results_dir()
    for cand in (base / rel, base.parent / rel, REPO_ROOT / rel):
        if (cand / "weights.safetensors").exists():
            return cand
    return None


def load(trained: Trained):
    """(backbone, method) with the artefact loaded, in eval mode."""
    from .pipeline import load_artifact

    return load_artifact(trained.artifact)


def prefix_kv(method) -> torch.Tensor:
    """(n_layer, 2, H_kv, L, D): the keys/values every layer attends to (embedding-only: what the frozen LM
    computes from the virtual tokens)."""
    with torch.no_grad():
        return method.layer_kv()["self"].detach().float()


def real_kv(method, texts: Sequence[str]) -> torch.Tensor:
    """(n_layer, 2, H_kv, T, D) of the frozen LM on real text (the plain model: no prefix), concatenated over
    `texts`: the scale the prefix activations can be compared with."""
    bb = method.backbone
    parts = []
    for text in texts:
        ids = torch.tensor([bb.tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            cap = method._capture(input_ids=ids)
        parts.append(torch.stack([torch.stack(cap[("self", i)]) for i in range(bb.n_layer)]).detach().float())
    return torch.cat(parts, dim=3)


def kv_norms(kv: torch.Tensor) -> dict[str, np.ndarray]:
    """Mean L2 norm per layer of the key and value vectors (over heads and positions)."""
    norms = kv.detach().norm(dim=-1)  # (n_layer, 2, H, L)
    return {"key": norms[:, 0].mean(dim=(1, 2)).numpy(), "value": norms[:, 1].mean(dim=(1, 2)).numpy()}


def attention_on_prefix(method, encoder, sources: Sequence[str], dcfg: Any) -> dict[str, np.ndarray]:
    """Per layer, the mean attention probability on the prefix positions: `prompt` over the source tokens when
    the prompt is encoded, `generated` over every generated token (beam search as configured)."""
    from .decode import decode

    provider = method.provider
    provider.observe = {}
    try:
        decode(method, encoder, list(sources), dcfg)
        seen = provider.observe
    finally:
        provider.observe = None
    n = method.backbone.n_layer
    prompt, gen = np.zeros(n), np.zeros(n)
    for (kind, layer), calls in seen.items():
        if kind != "self":
            continue
        first = [c for c in calls if c.shape[-1] > 1]   # the prompt pass of each batch
        steps = [c for c in calls if c.shape[-1] == 1]  # one call per generated token
        prompt[layer] = float(torch.cat([c.flatten() for c in first]).mean()) if first else np.nan
        gen[layer] = float(torch.cat([c.flatten() for c in steps]).mean()) if steps else np.nan
    return {"prompt": prompt, "generated": gen}


def nearest_tokens(method, k: int = 5) -> list[list[tuple[str, float]]]:
    """For each embedding-only virtual token, the `k` vocabulary items with the closest input embedding."""
    if getattr(method, "depth", None) != "embedding":
        raise ValueError("nearest_tokens needs an embedding-only prefix (method.depth=embedding)")
    with torch.no_grad():
        virtual = method.pools["self"]().float()                        # (L, d)
        table = method.model.get_input_embeddings().weight.float()     # (V, d)
        sims = torch.nn.functional.normalize(virtual, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T
        top = sims.topk(k, dim=-1)
    tok = method.backbone.tokenizer
    return [[(tok.decode([int(i)]), float(s)) for s, i in zip(vals, idx)]
            for vals, idx in zip(top.values, top.indices)]


def similarity(a: torch.Tensor, b: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-layer cosine similarity of two prefixes' mean key (value) vectors: the mean over positions makes
    prefixes of different lengths comparable (e.g. E2E/WebNLG L=5 and DART L=10)."""
    def mean_vec(kv, j):  # (n_layer, H*D)
        return kv[:, j].mean(dim=2).flatten(1)
    cos = torch.nn.functional.cosine_similarity
    return {"key": cos(mean_vec(a, 0), mean_vec(b, 0), dim=-1).numpy(),
            "value": cos(mean_vec(a, 1), mean_vec(b, 1), dim=-1).numpy()}


def init_drift(method, words: str) -> dict[str, np.ndarray]:
    """Per-layer cosine similarity between a trained prefix and the activations of the words it was initialised
    with (what §7.4's initialisation regresses onto before training): 1 = training left it where it started."""
    target = real_kv(method, [words])
    learned = prefix_kv(method)
    if target.shape != learned.shape:
        raise ValueError(f"'{words}' gives {tuple(target.shape)} activations, the prefix is {tuple(learned.shape)}")
    cos = torch.nn.functional.cosine_similarity
    return {"key": cos(learned[:, 0].flatten(1), target[:, 0].flatten(1), dim=-1).numpy(),
            "value": cos(learned[:, 1].flatten(1), target[:, 1].flatten(1), dim=-1).numpy()}
