"""The dense oracle: kernel matrices and statistics from the plain formulas.

Small inputs only (it stores n x m). With ``upcast=True`` (the default) it
works in float64, with pairwise quantities from direct differences
``(x_i - y_j)`` rather than the norm expansion the engines use, and with each
kernel written out again as a plain out-of-place formula (:func:`formula`), so
it checks the specs' in-place code and derivatives independently and torch
autograd can differentiate it (twice, too). Tests and benchmarks import these;
nobody writes a third implementation.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mmdkit.kernels.specs import (
    IMQ, Energy, Gaussian, KernelSpec, Laplace, Mixture, Polynomial, RationalQuadratic,
)

__all__ = ["make_pair", "formula", "pairwise_t", "kernel_matrix", "mmd2_reference", "energy_distance_reference"]


def pairwise_t(X: Tensor, Y: Tensor, kind: str = "distance", norm: str = "l2") -> Tensor:
    """(n, m) matrix of squared L2 (or ``norm="l1"``: squared L1) distances, or inner products (``kind="dot"``)."""
    if kind == "dot":
        return X @ Y.T
    if norm == "l1":
        return (X[:, None, :] - Y[None, :, :]).abs().sum(-1) ** 2
    return ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)


def formula(kernel: KernelSpec, t: Tensor) -> Tensor:
    """k as a plain function of t (squared distance or inner product), out of place."""
    h = kernel.bandwidth
    if isinstance(kernel, Gaussian):
        return torch.exp(-t / (2 * h * h))
    if isinstance(kernel, Laplace):
        return torch.exp(-torch.sqrt(t) / h)
    if isinstance(kernel, Energy):
        return -(t + kernel.offset ** 2) ** (kernel.exponent / 2)
    if isinstance(kernel, RationalQuadratic):
        return (1 + t / (2 * kernel.alpha * h * h)) ** -kernel.alpha
    if isinstance(kernel, IMQ):
        return (1 + t / (h * h)) ** kernel.beta
    if isinstance(kernel, Polynomial):
        return (kernel.gamma * t + kernel.coef0) ** kernel.degree
    if isinstance(kernel, Mixture):
        w = kernel.weights or (1.0,) * len(kernel.components)
        return sum(wi * formula(c, t) for c, wi in zip(kernel.components, w))
    raise TypeError(f"no reference formula for {type(kernel).__name__}")


def kernel_matrix(X: Tensor, Y: Tensor, kernel: KernelSpec, upcast: bool = True) -> Tensor:
    """Dense K(X, Y), differentiable through torch autograd (twice, too)."""
    if upcast:
        X, Y = X.double(), Y.double()
    kernel = kernel.resolve(X.shape[1])
    t = pairwise_t(X, Y, kernel.kind, kernel.norm)
    if kernel.kind == "dot":
        return formula(kernel, t)
    # Gradient 0 at coincident points (the package's convention): the double-where
    # keeps sqrt(0)'s infinite slope out of autograd.
    zero = t == 0
    return torch.where(zero, formula(kernel, torch.zeros_like(t)), formula(kernel, torch.where(zero, 1.0, t)))


def mmd2_reference(X: Tensor, Y: Tensor, kernel: KernelSpec, estimator: str = "unbiased",
                   upcast: bool = True) -> Tensor:
    """MMD^2 from dense matrices: ``"unbiased"`` (U-statistic) or ``"biased"`` (V)."""
    Kxx, Kyy, Kxy = (kernel_matrix(A, B, kernel, upcast) for A, B in ((X, X), (Y, Y), (X, Y)))
    n, m = X.shape[0], Y.shape[0]
    if estimator == "biased":
        return Kxx.mean() + Kyy.mean() - 2 * Kxy.mean()
    off = lambda K, s: (K.sum() - K.diagonal().sum()) / (s * (s - 1))
    return off(Kxx, n) + off(Kyy, m) - 2 * Kxy.mean()


def energy_distance_reference(X: Tensor, Y: Tensor, upcast: bool = True) -> Tensor:
    """V-statistic 2 E||X - Y|| - E||X - X'|| - E||Y - Y'|| (dcor's convention)."""
    if upcast:
        X, Y = X.double(), Y.double()
    d = lambda A, B: pairwise_t(A, B).sqrt().mean()
    return 2 * d(X, Y) - d(X, X) - d(Y, Y)


def make_pair(n: int, m: int, d: int, shift: float = 0.0, dtype=torch.float32, seed: int = 0,
              centre: float = 0.0) -> tuple[Tensor, Tensor]:
    """The test and benchmark factory: X ~ N(centre, I), Y ~ N(centre + shift e_1, I).

    Drawn in float64 from an explicit generator, then cast, so every dtype
    sees the same points.
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) + centre
    Y = torch.randn(m, d, generator=g, dtype=torch.float64) + centre
    Y[:, 0] += shift
    return X.to(dtype), Y.to(dtype)
