"""Backend choice, in one function.

``"torch"``: the blocked torch engine (any device). ``"triton"``: the fused
Triton kernels (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``).
``"auto"``: Triton for CUDA tensors when triton imports, torch otherwise.
"""
from __future__ import annotations

import os
from types import ModuleType

import torch

BACKENDS = ("auto", "torch", "triton")


def _triton_engine() -> tuple[ModuleType | None, str]:
    try:
        from mmdkit.kernels import triton_engine
    except ImportError as e:
        return None, f"triton could not be imported ({e}); install mmdkit[triton]"
    return triton_engine, ""


def choose_backend(backend: str, device: torch.device) -> tuple[str, ModuleType]:
    """(name, engine module exposing ``block_sums`` and ``kernel_matmul``)."""
    from mmdkit.kernels import blocked
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch", blocked
    engine, why = _triton_engine()
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if backend == "auto":
        return ("triton", engine) if engine is not None and device.type == "cuda" else ("torch", blocked)
    if engine is None:
        raise RuntimeError(f"backend='triton' cannot run: {why}")
    if device.type != "cuda" and not interpret:
        raise RuntimeError(f"backend='triton' needs CUDA tensors (got {device}), or TRITON_INTERPRET=1 "
                           "for the (slow) CPU interpreter")
    return "triton", engine
