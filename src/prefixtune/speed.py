"""Training speed settings (conf/trainer `speed`: sdpa_backend, frozen_bf16, malloc_tune, compile), each measured in
`make bench` (results/bench.md, "Training path") and none changing what is computed beyond float rounding.

Why each one (2-core Intel AMX machine, SmolLM2-135M, prefix L = 5, batch 10, bf16 autocast; s/step):
* `sdpa_backend: math` (1.73 -> 0.99): PyTorch's CPU flash-attention kernel is slow in the backward pass at these
  short lengths (T ~ 70 with 30 heads; 369 ms of a 1.7 s step). The math backend is two bmm and a softmax.
* `frozen_bf16` (-> 0.95): under bf16 autocast every nn.Linear casts its fp32 weight to bf16 on every call, forward
  and backward; a frozen weight can be stored in bf16 once instead -- bitwise the operand autocast would have made.
  A weight tied to an embedding (SmolLM2's LM head) gets an untied bf16 copy: the lookup stays fp32 as under
  autocast. Everything is restored when training ends, so fp32 decoding sees the original weights.
* `malloc_tune` (-> 0.88): glibc returns freed large blocks to the OS with munmap/trim, and the next step faults the
  same pages in again (page zeroing was ~10% of a step). mallopt keeps them in the heap. Process-wide, kept after;
  `provenance.reset_peak_memory` trims the heap so that a multirun cell's peak is not an earlier cell's retained heap.
* `compile` (-> 0.63; off by default): `torch.compile(dynamic=True)` of the backbone body costs ~315 s cold (76 s
  with the inductor cache warm), so it pays only past ~1,000 steps; eager stays the fallback.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from typing import Any, Iterator

import torch
from torch import nn

log = logging.getLogger(__name__)

# glibc's mallopt parameter numbers (malloc.h) and the values that keep freed memory in the heap
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_MALLOPT = {_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1, _M_TOP_PAD: 1 << 30}
_malloc_tuned = False


def tune_malloc() -> bool:
    """Keep freed memory in the process heap (no mmap for large blocks, no trimming). False where the C library
    is not glibc (macOS, musl): there the allocator differs and nothing is changed."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
        if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
            return False
        _malloc_tuned = all(mallopt(k, v) == 1 for k, v in _MALLOPT.items())
    except OSError:
        return False
    return _malloc_tuned


@contextlib.contextmanager
def frozen_in_bf16(model: nn.Module) -> Iterator[int]:
    """Store every frozen nn.Linear weight in bf16 for the duration (yields how many were converted); restore the
    original fp32 tensors afterwards. Only for bf16 autocast, where the results are bitwise the same."""
    embedded = {m.weight.data_ptr() for m in model.modules() if isinstance(m, nn.Embedding)}
    saved: list[tuple[nn.Linear, nn.Parameter]] = []
    try:
        for m in model.modules():
            if isinstance(m, nn.Linear) and not m.weight.requires_grad and m.weight.dtype == torch.float32:
                saved.append((m, m.weight))
                # a new Parameter (not .data in place): a weight shared with an embedding must stay fp32 there
                m.weight = nn.Parameter(m.weight.detach().to(torch.bfloat16), requires_grad=False)
        if any(w.data_ptr() in embedded for _, w in saved):
            log.debug("frozen_bf16: untied a bf16 copy of an embedding-tied head")
        yield len(saved)
    finally:
        for m, w in saved:
            m.weight = w


@contextlib.contextmanager
def sdpa_backend(name: str | None) -> Iterator[None]:
    """`math` forces PyTorch's math SDPA kernel; null leaves PyTorch's choice."""
    if not name:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    if name not in backends:
        raise ValueError(f"trainer.speed.sdpa_backend={name!r}: expected one of {sorted(backends)} or null")
    with sdpa_kernel(backends[name]):
        yield


@contextlib.contextmanager
def compiled_body(model: nn.Module, enabled: bool) -> Iterator[None]:
    """torch.compile the backbone body in place (its forward; the LM head and the loss stay eager) and undo it
    afterwards, so that decoding does not recompile for the cache shapes."""
    body = getattr(model, "base_model", None)
    if not enabled or body is None:
        yield
        return
    body.compile(dynamic=True)
    try:
        yield
    finally:
        body._compiled_call_impl = None


@contextlib.contextmanager
def training(method: nn.Module, t: Any) -> Iterator[dict[str, Any]]:
    """Every speed setting of conf/trainer `t` (t.speed) around a training run; yields what was applied (for the
    record). The settings are in results.VOLATILE_KEYS: they change throughput, and the numbers only by float
    rounding (tests/test_speed.py), like the thread count."""
    s = t.get("speed") or {}
    applied: dict[str, Any] = {"sdpa_backend": s.get("sdpa_backend"), "compile": bool(s.get("compile", False))}
    applied["malloc_tuned"] = tune_malloc() if s.get("malloc_tune", False) else False
    model = method.backbone.model
    with contextlib.ExitStack() as stack:
        use_bf16 = bool(t.get("bf16")) and bool(s.get("frozen_bf16", False))
        applied["frozen_bf16_linears"] = stack.enter_context(frozen_in_bf16(model)) if use_bf16 else 0
        stack.enter_context(sdpa_backend(s.get("sdpa_backend")))
        stack.enter_context(compiled_body(model, applied["compile"]))
        yield applied
