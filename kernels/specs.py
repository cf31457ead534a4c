"""Kernel specs: small frozen descriptions of k(x, y) that every backend reads.

A spec is a function of one pairwise quantity ``t``:

* ``kind == "distance"``: ``t = ||x - y||^2`` (translation invariant, so the
  engines may centre the data first);
* ``kind == "dot"``: ``t = <x, y>`` (not translation invariant).

Each spec defines its value and its derivative ``dk/dt`` once, in
:meth:`KernelSpec.evaluate_`, with in-place torch ops on a tile of ``t``; the
blocked torch engine reads that definition; the Triton kernels map each spec
to a kernel id and its parameters (``triton_engine.kernel_terms``) and
re-state the same formulas in registers, and the dense float64 reference
(``kernels/reference.py``) writes them out once more, independently, as the
oracle both are tested against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from torch import Tensor

__all__ = [
    "KernelSpec", "Gaussian", "Laplace", "Energy", "RationalQuadratic", "IMQ",
    "Polynomial", "Mixture", "KERNELS",
]


def _exp_(x: Tensor) -> Tensor:
    """exp of ``x`` in place, for arguments <= 0, with results floored at e * finfo.tiny.

    torch's vectorised exp takes a path about 100x slower for every argument
    whose result underflows the normal range (below about -87.3 in float32,
    -708.4 in float64): a Gaussian of small bandwidth on spread-out points is
    mostly such arguments. Clamping the argument at log(tiny) + 1 keeps every
    result normal; a kernel value of 3e-38 (float32) instead of 0 changes no
    sum by more than n^2 times that.
    """
    return x.clamp_min_(math.log(torch.finfo(x.dtype).tiny) + 1.0).exp_()


@dataclass(frozen=True)
class KernelSpec:
    """Base class. ``bandwidth=None`` means "to be chosen by the caller"."""

    kind: ClassVar[str] = "distance"
    name: ClassVar[str] = "kernel"
    has_bandwidth: ClassVar[bool] = True
    # True when k has a cusp at t = 0 (a sqrt of t): there the engines must see
    # coincident points at exactly t = 0, not at a rounding error above it.
    cusp_at_zero: ClassVar[bool] = False
    bandwidth: float | None = None

    def evaluate_(self, t: Tensor, derivative: bool = False) -> tuple[Tensor, Tensor | None]:
        """Return ``(k(t), dk/dt or None)``; may overwrite ``t``."""
        raise NotImplementedError  # abstract: every concrete spec overrides it

    def derivative_scale(self) -> float | None:
        """c when dk/dt = c k(t) for every t (Gaussian), else None.

        Engines then multiply accumulated products of k by c instead of
        forming a separate dk/dt tile.
        """
        return None

    # -- helpers shared by all specs ---------------------------------------
    @property
    def needs_bandwidth(self) -> bool:
        return self.has_bandwidth and self.bandwidth is None

    def with_bandwidth(self, bandwidth: float) -> "KernelSpec":
        return replace(self, bandwidth=float(bandwidth))

    def resolve(self, d: int) -> "KernelSpec":
        """Fill defaults that depend on the dimension (only Polynomial has one)."""
        return self

    def __call__(self, X: Tensor, Y: Tensor) -> Tensor:
        """Dense kernel matrix k(X, Y) (small inputs only; see kernels.reference)."""
        from mmdkit.kernels.reference import kernel_matrix
        return kernel_matrix(X, Y, self)

    def _h(self) -> float:
        if self.bandwidth is None:
            raise ValueError(f"`bandwidth` of {type(self).__name__} is not set; pass a float or 'median'")
        return self.bandwidth


@dataclass(frozen=True)
class Gaussian(KernelSpec):
    """k(x, y) = exp(-||x - y||^2 / (2 h^2))."""

    name: ClassVar[str] = "gaussian"

    def derivative_scale(self):
        return -0.5 / self._h() ** 2

    def evaluate_(self, t, derivative=False):
        c = self.derivative_scale()
        k = _exp_(t.mul_(c))
        return k, (k * c if derivative else None)


@dataclass(frozen=True)
class Laplace(KernelSpec):
    """k(x, y) = exp(-||x - y|| / h). dk/dt is set to 0 at t = 0 (finite gradient)."""

    name: ClassVar[str] = "laplace"
    cusp_at_zero: ClassVar[bool] = True

    def evaluate_(self, t, derivative=False):
        h = self._h()
        r = t.sqrt_()
        if not derivative:
            return _exp_(r.div_(-h)), None
        k = _exp_(r / -h)
        dk = (k / r).mul_(-0.5 / h).masked_fill_(r == 0, 0.0)
        return k, dk


@dataclass(frozen=True)
class Energy(KernelSpec):
    """Distance-induced (energy) kernel k(x, y) = ||x||^b + ||y||^b - ||x - y||^b.

    Only ``-||x - y||^b`` is evaluated pairwise: the norm terms cancel exactly
    in every MMD estimator and shift the witness by a constant, which
    :func:`mmdkit.witness` adds back. ``exponent`` b lies in (0, 2); b = 1 gives
    the energy distance. dk/dt is set to 0 at t = 0, so coincident points get
    a zero (not NaN) gradient. There is no bandwidth: passing one raises
    (``Energy(0.5)`` would set it, not b; write ``Energy(exponent=0.5)``).
    """

    name: ClassVar[str] = "energy"
    has_bandwidth: ClassVar[bool] = False
    cusp_at_zero: ClassVar[bool] = True
    exponent: float = 1.0

    def __post_init__(self):
        if self.bandwidth is not None:  # Energy(0.5) would otherwise set the unused bandwidth, not b
            raise ValueError(f"`bandwidth` does not apply to the energy kernel, got {self.bandwidth!r}; "
                             "set the exponent by name: Energy(exponent=...)")
        if not 0 < self.exponent < 2:
            raise ValueError(f"`exponent` of Energy must lie in (0, 2), got {self.exponent}")

    def evaluate_(self, t, derivative=False):
        b = self.exponent
        dk = None
        if derivative:  # dk/dt = -(b/2) t^(b/2 - 1), 0 at t = 0
            dk = t.pow(b / 2 - 1).mul_(-b / 2).masked_fill_(t == 0, 0.0)
        k = t.sqrt_() if b == 1 else t.pow_(b / 2)
        return k.neg_(), dk


@dataclass(frozen=True)
class RationalQuadratic(KernelSpec):
    """k(x, y) = (1 + ||x - y||^2 / (2 alpha h^2))^(-alpha)."""

    name: ClassVar[str] = "rq"
    alpha: float = 1.0

    def evaluate_(self, t, derivative=False):
        h, a = self._h(), self.alpha
        base = t.mul_(1.0 / (2 * a * h * h)).add_(1.0)
        dk = base.pow(-a - 1).mul_(-1.0 / (2 * h * h)) if derivative else None
        return base.pow_(-a), dk


@dataclass(frozen=True)
class IMQ(KernelSpec):
    """Inverse multiquadric k(x, y) = (1 + ||x - y||^2 / h^2)^beta, beta in (-1, 0)."""

    name: ClassVar[str] = "imq"
    beta: float = -0.5

    def evaluate_(self, t, derivative=False):
        h, b = self._h(), self.beta
        base = t.mul_(1.0 / (h * h)).add_(1.0)
        dk = base.pow(b - 1).mul_(b / (h * h)) if derivative else None
        return base.pow_(b), dk


@dataclass(frozen=True)
class Polynomial(KernelSpec):
    """k(x, y) = (gamma <x, y> + coef0)^degree; gamma defaults to 1/d (KID's kernel)."""

    kind: ClassVar[str] = "dot"
    name: ClassVar[str] = "polynomial"
    has_bandwidth: ClassVar[bool] = False
    degree: int = 3
    gamma: float | None = None
    coef0: float = 1.0

    def resolve(self, d):
        return self if self.gamma is not None else replace(self, gamma=1.0 / d)

    def evaluate_(self, t, derivative=False):
        g, p = self.gamma, self.degree
        if g is None:
            raise ValueError("`gamma` of Polynomial is not set; call .resolve(d)")
        base = t.mul_(g).add_(self.coef0)
        dk = base.pow(p - 1).mul_(p * g) if derivative else None
        return base.pow_(p), dk


@dataclass(frozen=True)
class Mixture(KernelSpec):
    """Sum of distance kernels of one squared distance (computed once).

    ``Mixture.of(Gaussian, [0.5, 1, 2])`` is the usual bandwidth mixture;
    ``weights`` default to 1 for each component.
    """

    name: ClassVar[str] = "mixture"
    components: tuple[KernelSpec, ...] = field(default_factory=tuple)
    weights: tuple[float, ...] | None = None

    def __post_init__(self):
        if not self.components:
            raise ValueError("`components` of Mixture is empty")
        if any(c.kind != "distance" for c in self.components):
            raise ValueError("`components` of Mixture must all be distance kernels")
        if self.weights is not None and len(self.weights) != len(self.components):
            raise ValueError(f"`weights` has {len(self.weights)} entries for {len(self.components)} components")

    @classmethod
    def of(cls, base: type[KernelSpec] | KernelSpec, bandwidths, weights=None) -> "Mixture":
        proto = base() if isinstance(base, type) else base
        return cls(components=tuple(proto.with_bandwidth(h) for h in bandwidths),
                   weights=None if weights is None else tuple(float(w) for w in weights))

    @property
    def needs_bandwidth(self) -> bool:
        return any(c.needs_bandwidth for c in self.components)

    @property
    def cusp_at_zero(self) -> bool:  # type: ignore[override]
        return any(c.cusp_at_zero for c in self.components)

    @property
    def bandwidths(self) -> tuple[float | None, ...]:
        return tuple(c.bandwidth for c in self.components)

    def with_bandwidth(self, bandwidth):
        """Scale every component's bandwidth by ``bandwidth`` (unset ones take it as is).

        Components without a bandwidth (energy, polynomial) are kept as they are.
        """
        return replace(self, components=tuple(
            c.with_bandwidth(bandwidth if c.bandwidth is None else c.bandwidth * bandwidth)
            if c.has_bandwidth else c for c in self.components))

    def evaluate_(self, t, derivative=False):
        w = self.weights or (1.0,) * len(self.components)
        k = dk = None
        for i, (c, wi) in enumerate(zip(self.components, w)):
            ki, dki = c.evaluate_(t if i == len(self.components) - 1 else t.clone(), derivative)
            k = ki * wi if k is None else k.add_(ki, alpha=wi)
            if derivative:
                dk = dki * wi if dk is None else dk.add_(dki, alpha=wi)
        return k, dk


KERNELS: dict[str, type[KernelSpec]] = {
    cls.name: cls for cls in (Gaussian, Laplace, Energy, RationalQuadratic, IMQ, Polynomial)
}
KERNELS.update({"rbf": Gaussian, "rational_quadratic": RationalQuadratic,
                "distance": Energy, "poly": Polynomial})
