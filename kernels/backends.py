"""Backends: objects with the same operations, chosen in one function.

A backend has ``name`` and the engine operations ``kernel_matmul``,
``kernel_matmuls`` (several kernels of one tile, forward only),
``block_sums`` and ``permutation_sums`` with one signature on every backend;
statistics call these methods and never branch on the backend.

* :class:`TorchBackend`: the blocked torch engine (any device, any float
  dtype, exact float32/float64 arithmetic).
* :class:`TritonBackend`: the fused Triton kernels (CUDA tensors, or CPU
  tensors under ``TRITON_INTERPRET=1``; float32/float16/bfloat16), with a
  ``precision`` for the dots.

:func:`get_backend` turns ``backend="auto" | "torch" | "triton"`` into one of
them: "auto" is Triton for CUDA tensors of those dtypes when triton imports,
the torch engine otherwise (float64 always goes to torch).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

from mmdkit.kernels import blocked
from mmdkit.kernels.specs import KernelSpec

__all__ = ["Backend", "TorchBackend", "TritonBackend", "get_backend", "BACKENDS", "PRECISIONS"]

BACKENDS = ("auto", "torch", "triton")
PRECISIONS = ("ieee", "tf32", "tf32x3")  # the Triton engine's (triton_engine.PRECISIONS)


class Backend:
    """The engine operations; every backend implements all of them with these signatures."""

    name: str = "backend"

    def kernel_matmul(self, X: Tensor, Y: Tensor | None, V: Tensor, kernel: KernelSpec,
                      exclude_diagonal: bool = False) -> Tensor:
        """K(X, Y) @ V (Y None: X with itself), differentiable twice in X, Y and V."""
        raise NotImplementedError  # abstract

    def kernel_matmuls(self, X: Tensor, Y: Tensor | None, V: Tensor, kernels: tuple[KernelSpec, ...],
                       exclude_diagonal: bool = False) -> Tensor:
        """(S, n, p): K_s(X, Y) @ V for several kernels of one kind and norm (forward only)."""
        raise NotImplementedError  # abstract

    def block_sums(self, Z: Tensor, sizes: tuple[int, ...], kernel: KernelSpec,
                   exclude_diagonal: bool = False) -> Tensor:
        """float64 S[a, b]: kernel sums over consecutive blocks of Z, differentiable twice."""
        raise NotImplementedError  # abstract

    def permutation_sums(self, Z: Tensor, specs: list[KernelSpec], memory_budget: int, sizes=None):
        """An operator E -> [(diag(E' K0 E), E' K0 1, 1' K0 1) per spec] (float64; K0: zero diagonal),
        with ``square_sums()`` -> float64 (S,) of sum_{i != j} k_s^2, ``method``, ``tiles`` and ``dtype``.
        ``sizes`` (the blocks of Z) matters to sharded backends only, whose operators also name the
        global ``label_rows`` their label matrices cover."""
        raise NotImplementedError  # abstract


@dataclass(frozen=True)
class TorchBackend(Backend):
    """The blocked torch engine (:mod:`mmdkit.kernels.blocked`)."""

    name: str = "torch"

    def kernel_matmul(self, X, Y, V, kernel, exclude_diagonal=False):
        return blocked.kernel_matmul(X, Y, V, kernel, exclude_diagonal)

    def kernel_matmuls(self, X, Y, V, kernels, exclude_diagonal=False):
        return blocked.kernel_matmuls(X, Y, V, kernels, exclude_diagonal)

    def block_sums(self, Z, sizes, kernel, exclude_diagonal=False):
        return blocked.block_sums(Z, sizes, kernel, exclude_diagonal)

    def permutation_sums(self, Z, specs, memory_budget, sizes=None):
        return blocked.PermutationSums(Z, specs, memory_budget)


class _StreamedPermutationSums:
    """:class:`~mmdkit.kernels.blocked.PermutationSums` from a backend's ``kernel_matmul``.

    One symmetric product K0 @ [1, E] per spec and call (the column of ones
    gives K0 1); nothing is cached (``method`` "streamed", one ``tiles`` unit).
    """

    method, tiles = "streamed", 1

    def __init__(self, backend: Backend, Z: Tensor, specs: list[KernelSpec]):
        self.backend, self.Z, self.specs = backend, Z, specs
        self.dtype = blocked.compute_dtype(Z.dtype)

    def __call__(self, E: Tensor, tick=None):
        E = E.to(device=self.Z.device, dtype=self.dtype)
        f64 = torch.float64
        V = torch.cat([torch.ones(E.shape[0], 1, dtype=E.dtype, device=E.device), E], 1)
        out = []
        for spec in self.specs:
            T = self.backend.kernel_matmul(self.Z, None, V, spec, exclude_diagonal=True)
            r = T[:, 0].to(f64)
            out.append(((E * T[:, 1:]).sum(0, dtype=f64), E.to(f64).T @ r, r.sum()))
        if tick is not None:
            tick(E.shape[1])
        return out

    def square_sums(self) -> Tensor:
        """float64 (S,): sum_{i != j} k_s^2, one sweep of k^2 per spec (``spec.square()``)."""
        N = self.Z.shape[0]
        return torch.stack([self.backend.block_sums(self.Z, (N,), s.square(), exclude_diagonal=True)[0, 0]
                            for s in self.specs])


@dataclass(frozen=True)
class TritonBackend(Backend):
    """The fused Triton kernels (:mod:`mmdkit.kernels.triton_engine`).

    L1-norm kernels (``Laplace(norm="l1")``) run on the blocked engine (torch
    ops on the same device): the Triton kernels build L2 distance tiles only.
    """

    name: str = "triton"
    precision: str = "ieee"

    @property
    def _engine(self) -> ModuleType:
        from mmdkit.kernels import triton_engine
        return triton_engine

    def kernel_matmul(self, X, Y, V, kernel, exclude_diagonal=False):
        if kernel.norm == "l1":  # no L1 tiles in the Triton kernels: the blocked engine runs on any device
            return blocked.kernel_matmul(X, Y, V, kernel, exclude_diagonal)
        return self._engine.kernel_matmul(X, Y, V, kernel, exclude_diagonal, precision=self.precision)

    def kernel_matmuls(self, X, Y, V, kernels, exclude_diagonal=False):
        """One launch per kernel (the fused kernels take one spec); a float64 V is computed in float32."""
        Vc = V.float() if V.dtype == torch.float64 else V
        with torch.no_grad():
            return torch.stack([self.kernel_matmul(X, Y, Vc, k, exclude_diagonal) for k in kernels]).to(V.dtype)

    def block_sums(self, Z, sizes, kernel, exclude_diagonal=False):
        if kernel.norm == "l1":
            return blocked.block_sums(Z, sizes, kernel, exclude_diagonal)
        return self._engine.block_sums(Z, sizes, kernel, exclude_diagonal, precision=self.precision)

    def permutation_sums(self, Z, specs, memory_budget, sizes=None):
        return _StreamedPermutationSums(self, Z, [s.resolve(Z.shape[1]) for s in specs])


def _triton_engine() -> tuple[ModuleType | None, str]:
    """(the Triton engine module or None, why it could not be imported)."""
    try:
        from mmdkit.kernels import triton_engine
    except ImportError as e:
        return None, f"triton could not be imported ({e}); install mmdkit[triton]"
    return triton_engine, ""


def get_backend(backend: str = "auto", device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                precision: str = "ieee") -> Backend:
    """The backend that runs tensors of ``device`` and ``dtype`` for the caller's ``backend=``.

    ``precision`` ("ieee": exact fp32 dots; "tf32": tensor cores with 10-bit
    mantissas; "tf32x3": tensor cores with split-float32 operands, float32-level
    accuracy) applies to Triton only; the torch engine always computes exactly. An explicit
    ``backend="triton"`` that cannot run raises a ``ValueError`` that says
    why; only "auto" falls back.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if backend == "torch":
        return TorchBackend()
    engine, why = _triton_engine()
    if backend == "auto":
        if engine is None or device.type != "cuda" or dtype == torch.float64:
            return TorchBackend()
        return TritonBackend(precision=precision)
    if engine is None:
        raise ValueError(f"`backend`='triton' cannot run: {why}")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"`backend`='triton' needs CUDA tensors (got {device}), or TRITON_INTERPRET=1 "
                         "for the (slow) CPU interpreter")
    if dtype == torch.float64:
        raise ValueError("`backend`='triton' computes in float32/float16/bfloat16; use backend='torch' "
                         "(or 'auto') for float64")
    return TritonBackend(precision=precision)
