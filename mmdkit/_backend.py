"""Backend choice, in one function.

``"torch"``: the blocked torch engine (any device, any float dtype, always
exact fp32/fp64 arithmetic). ``"triton"``: the fused Triton kernels (CUDA
tensors, or CPU tensors under ``TRITON_INTERPRET=1``; float32/16/bfloat16).
``"auto"``: Triton for CUDA tensors of those dtypes when triton imports, the
torch engine otherwise (float64 always goes to torch).
"""
from __future__ import annotations

import functools
import os
from types import ModuleType, SimpleNamespace

import torch

BACKENDS = ("auto", "torch", "triton")
PRECISIONS = ("ieee", "tf32")


def _triton_engine() -> tuple[ModuleType | None, str]:
    try:
        from mmdkit.kernels import triton_engine
    except ImportError as e:
        return None, f"triton could not be imported ({e}); install mmdkit[triton]"
    return triton_engine, ""


def choose_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32,
                   precision: str = "ieee") -> tuple[str, SimpleNamespace]:
    """(name, engine) where engine.block_sums / engine.kernel_matmul run on that backend.

    ``precision`` ("ieee" exact fp32 distance tiles, or "tf32") applies to
    Triton only; the torch engine always computes exactly.
    """
    from mmdkit.kernels import blocked
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}")
    torch_engine = SimpleNamespace(block_sums=blocked.block_sums, kernel_matmul=blocked.kernel_matmul)
    if backend == "torch":
        return "torch", torch_engine
    engine, why = _triton_engine()
    if backend == "auto":
        if engine is None or device.type != "cuda" or dtype == torch.float64:
            return "torch", torch_engine
    else:
        interpret = os.environ.get("TRITON_INTERPRET") == "1"
        if engine is None:
            raise RuntimeError(f"backend='triton' cannot run: {why}")
        if device.type != "cuda" and not interpret:
            raise RuntimeError(f"backend='triton' needs CUDA tensors (got {device}), or TRITON_INTERPRET=1 "
                               "for the (slow) CPU interpreter")
        if dtype == torch.float64:
            raise RuntimeError("backend='triton' computes in float32/float16/bfloat16; use backend='torch' "
                               "(or 'auto') for float64")
    return "triton", SimpleNamespace(
        block_sums=functools.partial(engine.block_sums, precision=precision),
        kernel_matmul=functools.partial(engine.kernel_matmul, precision=precision))
