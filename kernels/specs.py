"""Kernel specs: small frozen descriptions of k(x, y) that every backend reads.

A spec is a function of one pairwise quantity ``t``:

* ``kind == "distance"``: ``t = ||x - y||^2`` (translation invariant, so the
  engines may centre the data first);
* ``kind == "dot"``: ``t = <x, y>`` (not translation invariant).

A distance kernel's ``norm`` says which distance: "l2" (every kernel) or
"l1", ``t = ||x - y||_1^2``, offered by :class:`Laplace` only, where the kernel
stays positive definite (a product of one-dimensional Laplace kernels). The
engines build L1 tiles from direct differences, never from a matmul.

Each spec defines its value and its derivative ``dk/dt`` once, in
:meth:`KernelSpec.evaluate_`, with in-place torch ops on a tile of ``t``, and
its second derivative in :meth:`KernelSpec.second_derivative`;
:class:`Derivative` turns a spec into the spec of ``dk/dt`` (whose own
derivative is ``d2k/dt2``), which is how the engines' backward passes stay
differentiable. The blocked torch engine reads these definitions; the Triton
kernels map each spec to a kernel id and its parameters
(``triton_engine.kernel_terms``) and re-state the same formulas in registers,
and the dense float64 test oracle (``kernels/reference.py``) writes them out
once more, independently.

Every parameter is checked when the spec is built: a spec that exists is a
valid kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import ClassVar

import torch
from torch import Tensor

__all__ = [
    "KernelSpec", "Gaussian", "Laplace", "Energy", "RationalQuadratic", "IMQ",
    "Polynomial", "Mixture", "Derivative", "derivative", "KERNELS", "NORMS", "check_positive",
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


_LOG2E = 1.0 / math.log(2.0)
# exp2 arguments below these give results outside the normal range (the slow path :func:`_exp_` avoids)
_LOG2_TINY = {dt: math.log2(torch.finfo(dt).tiny) + 1.0 for dt in (torch.float16, torch.bfloat16, torch.float32,
                                                                     torch.float64)}


def _zero_infinities_(x: Tensor) -> Tensor:
    """``x`` with its +-inf entries set to 0, in place (one pass; NaN stays NaN): the value a
    derivative that diverges at t = 0 takes there, without the bool tile of a masked fill."""
    return x.nan_to_num_(nan=math.nan, posinf=0.0, neginf=0.0)


def check_positive(value, name: str) -> float:
    """``value`` as a float, checked to be a positive finite real number (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"`{name}` must be a positive float, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be positive and finite, got {value}")
    return float(value)


def _finite(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise (ValueError if isinstance(value, Real) and not isinstance(value, bool) else TypeError)(
            f"`{name}` must be a finite float, got {value!r}")
    return float(value)


_LARGEST, _SMALLEST = 1.7976931348623157e308, 5e-324  # the positive float64 range


def _power(base: float, exponent: float) -> float:
    """base ** exponent for base > 0, inf (not an OverflowError) past the float range."""
    try:
        return base ** exponent
    except OverflowError:
        return math.inf


def _zero_at_origin(d: Tensor, t: Tensor) -> Tensor:
    """``d`` with the entries at t == 0 set to 0 (the package's convention at a cusp)."""
    return d.masked_fill_(t == 0, 0.0)


@dataclass(frozen=True)
class KernelSpec:
    """Base class. ``bandwidth=None`` means "to be chosen by the caller"."""

    kind: ClassVar[str] = "distance"
    name: ClassVar[str] = "kernel"
    has_bandwidth: ClassVar[bool] = True
    # True when k has a cusp at t = 0 (a sqrt of t): there the engines must see
    # coincident points at exactly t = 0, not at a rounding error above it.
    cusp_at_zero: ClassVar[bool] = False
    norm = "l2"  # the distance in t (a plain class attribute: only Laplace makes it a field)
    bandwidth: float | None = None

    def __post_init__(self):
        if self.bandwidth is not None:
            if not self.has_bandwidth:
                raise ValueError(f"`bandwidth` does not apply to the {self.name} kernel, got {self.bandwidth!r}")
            check_positive(self.bandwidth, f"bandwidth` of `{type(self).__name__}")

    def evaluate_(self, t: Tensor, derivative: bool = False) -> tuple[Tensor, Tensor | None]:
        """Return ``(k(t), dk/dt or None)``; may overwrite ``t``."""
        raise NotImplementedError  # abstract: every concrete spec overrides it

    def row_sums_(self, t: Tensor, folded: bool = False) -> Tensor:
        """sum_j k(t_ij) per row, in t's dtype (``folded``: t is :meth:`fold` * t); may overwrite ``t``.

        The forward of a kernel sum needs no k tile of its own: a kernel whose
        value is a negated power (Energy) sums the power and negates the row
        sums, one elementwise pass less than :meth:`evaluate_` then a sum.
        """
        return (self.evaluate_folded_ if folded else self.evaluate_)(t)[0].sum(1)

    def second_derivative(self, t: Tensor) -> Tensor:
        """d2k/dt2 at ``t`` (out of place); 0 at t = 0 for kernels with a cusp there."""
        raise NotImplementedError  # abstract: every concrete spec overrides it

    def square(self) -> KernelSpec:
        """The spec of k(x, y)^2, where it is one of the same family (Gaussian, Laplace, RQ, IMQ, Polynomial)."""
        raise NotImplementedError(f"k^2 of the {self.name} kernel is not a {self.name} kernel")

    def derivative_scale(self) -> float | None:
        """c when dk/dt = c k(t) for every t (Gaussian), else None.

        Engines then multiply accumulated products of k by c instead of
        forming a separate dk/dt tile.
        """
        return None

    def fold(self) -> float | None:
        """f where the engines may scale t by f inside the distance matmul (None: they may not).

        A kernel exp(c t) or exp(-sqrt(t) / h) then evaluates on t' = f t with
        :meth:`evaluate_folded_` as exp2 of t' (or of -sqrt(t')): the scale and
        log2(e) ride in the matmul's factors, which removes one elementwise pass
        and the systematic error of multiplying every t by one rounded float32
        constant, and exp2 runs at about twice the rate of exp in torch on the
        CPU (bench/RESULTS.md, "Elementwise passes").
        """
        return None

    def evaluate_folded_(self, t: Tensor, derivative: bool = False) -> tuple[Tensor, Tensor | None]:
        """:meth:`evaluate_` on t' = :meth:`fold` * t (unclamped where the fold is negative); may overwrite it."""
        raise NotImplementedError(f"the {self.name} kernel has no folded form")  # only kernels whose fold() is set

    # -- helpers shared by all specs ---------------------------------------
    @property
    def needs_bandwidth(self) -> bool:
        return self.has_bandwidth and self.bandwidth is None

    def with_bandwidth(self, bandwidth: float) -> KernelSpec:
        return replace(self, bandwidth=float(bandwidth))

    def resolve(self, d: int) -> KernelSpec:
        """Fill defaults that depend on the dimension (only Polynomial has one)."""
        return self

    def scaled(self, c: float) -> tuple[KernelSpec, float]:
        """(k', w) with k(x, y) = w k'(c x, c y) for c > 0: this kernel on data multiplied by c.

        A distance kernel with a bandwidth is a function of ||x - y|| / h, so k' has bandwidth c h and
        w = 1 (exact for a power of two c; kept inside the positive float range). A dot kernel is not
        scale-invariant: only c = 1 is allowed.
        """
        if c == 1:
            return self, 1.0
        if self.kind != "distance" or not self.has_bandwidth:
            raise ValueError(f"the {self.name} kernel is not a function of ||x - y|| / h; it cannot be rescaled")
        return replace(self, bandwidth=min(max(self._h() * c, _SMALLEST), _LARGEST)), 1.0

    def _h(self) -> float:
        if self.bandwidth is None:
            raise ValueError(f"`bandwidth` of {type(self).__name__} is not set; pass a float or 'median'")
        return self.bandwidth


@dataclass(frozen=True)
class Gaussian(KernelSpec):
    """k(x, y) = exp(-||x - y||^2 / (2 h^2))."""

    name: ClassVar[str] = "gaussian"

    def derivative_scale(self):
        h = self._h()
        return -0.5 / h / h  # no OverflowError for h >= 1.4e154 (h ** 2 would raise): c underflows to 0

    def square(self):  # exp(-t / (2 h^2))^2 = exp(-t / (2 (h / sqrt 2)^2))
        return replace(self, bandwidth=self._h() / math.sqrt(2))

    def evaluate_(self, t, derivative=False):
        c = self.derivative_scale()
        k = _exp_(t.mul_(c))
        return k, (k * c if derivative else None)

    def fold(self):  # t' = c log2(e) t <= 0, k = 2^t'
        return self.derivative_scale() * _LOG2E

    def evaluate_folded_(self, t, derivative=False):
        k = t.clamp_(_LOG2_TINY[t.dtype], 0.0).exp2_()  # t' <= 0 (the matmul's rounding may leave it > 0)
        return k, (k * self.derivative_scale() if derivative else None)

    def second_derivative(self, t):  # c^2 exp(c t)
        c = self.derivative_scale()
        return _exp_(t * c).mul_(c * c)


NORMS = ("l2", "l1")


@dataclass(frozen=True)
class Laplace(KernelSpec):
    """k(x, y) = exp(-||x - y|| / h), on the L2 (default) or the L1 distance. dk/dt is 0 at t = 0.

    Three kernels are called "Laplace" in this field; each is this spec:

    * mmdkit's exp(-||x - y||_2 / h): ``Laplace(h)``;
    * MMDAgg's (Schrab et al. 2023) and scikit-learn's ``laplacian_kernel`` (gamma = 1 / lambda),
      exp(-||x - y||_1 / lambda): ``Laplace(lambda, norm="l1")``;
    * MMD-FUSE's (Biggs et al. 2023) exp(-sqrt(2) ||x - y||_1 / lambda):
      ``Laplace(lambda / sqrt(2), norm="l1")``.

    With ``norm="l1"`` the engines take direct differences (no matmul) and
    the statistics have no gradient (a ``NotImplementedError`` says so).
    """

    name: ClassVar[str] = "laplace"
    cusp_at_zero: ClassVar[bool] = True
    norm: str = "l2"

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.norm, str) or self.norm not in NORMS:
            raise ValueError(f"`norm` of Laplace must be one of {NORMS}, got {self.norm!r}")

    def square(self):  # exp(-r / h)^2 = exp(-r / (h / 2))
        return replace(self, bandwidth=self._h() / 2)

    def evaluate_(self, t, derivative=False):
        h = self._h()
        r = t.sqrt_()
        if not derivative:
            return _exp_(r.div_(-h)), None
        k = _exp_(r / -h)
        dk = _zero_infinities_((k / r).mul_(-0.5 / h))  # k / r is infinite exactly where r = 0
        return k, dk

    def fold(self):  # t' = (log2(e) / h)^2 t >= 0, k = 2^-sqrt(t'); the L1 tiles are not matmuls
        f = _LOG2E / self._h()
        return f * f if self.norm == "l2" else None

    def evaluate_folded_(self, t, derivative=False):
        r = t.sqrt_()  # r' = log2(e) r / h
        k = r.neg().clamp_min_(_LOG2_TINY[t.dtype]).exp2_()
        # dk/dt = -k / (2 h r) = -(log2(e) / (2 h^2)) k / r'; 0 at r = 0
        h = self._h()
        dk = _zero_infinities_(k.div(r).mul_(-0.5 * _LOG2E / h / h)) if derivative else None
        return k, dk

    def second_derivative(self, t):  # k (r + h) / (4 h^2 r^3), r = sqrt(t)
        h = self._h()
        r = t.sqrt()
        k = _exp_(r / -h)
        return _zero_at_origin(k * (r + h) / (4 * h * h * r ** 3), t)


@dataclass(frozen=True)
class Energy(KernelSpec):
    """Distance-induced (energy) kernel k(x, y) = ||x||^b + ||y||^b - ||x - y||^b.

    Only ``-||x - y||^b`` is evaluated pairwise: the norm terms cancel exactly
    in every MMD estimator and shift the witness by a constant, which
    :func:`mmdkit.witness` adds back. ``exponent`` b lies in (0, 2); b = 1 gives
    the energy distance. dk/dt is set to 0 at t = 0, so coincident points get
    a zero (not NaN) gradient. There is no bandwidth: passing one raises
    (``Energy(0.5)`` would set it, not b; write ``Energy(exponent=0.5)``).

    ``offset`` c >= 0 smooths the cusp: the pairwise part becomes
    -(||x - y||^2 + c^2)^(b/2) (a generalised multiquadric; with the norm terms
    (||x||^2 + c^2)^(b/2) + (||y||^2 + c^2)^(b/2) - c^b it is positive definite
    for the same b), infinitely differentiable, with a pull between two points
    that vanishes as they meet instead of staying at |d/dx ||x - y||^b| ~ ||x - y||^(b - 1).
    c = 0 is the energy kernel itself.

    >>> import torch
    >>> from mmdkit import mmd2_biased
    >>> X, Y = torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])
    >>> round(float(mmd2_biased(X, Y, kernel=Energy(exponent=1.0, offset=0.0))), 6)  # 2 * 2.5 - 0.5 - 0
    4.5
    >>> round(float(mmd2_biased(X, Y, kernel=Energy(exponent=1.0, offset=1.0))), 6)  # smooth at 0
    3.191239
    """

    name: ClassVar[str] = "energy"
    has_bandwidth: ClassVar[bool] = False
    exponent: float = 1.0
    offset: float = 0.0

    def __post_init__(self):
        if self.bandwidth is not None:  # Energy(0.5) would otherwise set the unused bandwidth, not b
            raise ValueError(f"`bandwidth` does not apply to the energy kernel, got {self.bandwidth!r}; "
                             "set the exponent by name: Energy(exponent=...)")
        if not 0 < _finite(self.exponent, "exponent` of `Energy") < 2:
            raise ValueError(f"`exponent` of Energy must lie in (0, 2), got {self.exponent}")
        if _finite(self.offset, "offset` of `Energy") < 0:
            raise ValueError(f"`offset` of Energy must be >= 0, got {self.offset}")

    @property
    def cusp_at_zero(self) -> bool:  # type: ignore[override]
        return self.offset == 0

    def evaluate_(self, t, derivative=False):
        b, c2 = self.exponent, self.offset ** 2
        if c2:
            t.add_(c2)
        dk = None
        if derivative and b != 0.5:  # dk/dt = -(b/2) t^(b/2 - 1), 0 at t = 0 (where it is infinite for b < 2)
            dk = t.pow(b / 2 - 1).mul_(-b / 2)
            dk = _zero_infinities_(dk) if b < 2 else dk.masked_fill_(t == 0, 0.0)
        q = self._power_(t)
        if derivative and b == 0.5:  # t^(-3/4) as 1 / q^3
            dk = _zero_infinities_(torch.mul(q, q).mul_(q).reciprocal_().mul_(-0.25))
        return q.neg_(), dk

    def _power_(self, t):  # t^(b/2) in place; b = 0.5 by two square roots (4x faster than pow, to a few ulp)
        b = self.exponent
        return t.sqrt_() if b == 1 else t.sqrt_().sqrt_() if b == 0.5 else t.pow_(b / 2)

    def row_sums_(self, t, folded=False):  # -(sum_j t_ij^(b/2)): the negation on the sums, not the tile
        return self._power_(t.add_(self.offset ** 2) if self.offset else t).sum(1).neg_()

    def second_derivative(self, t):  # -(b/2)(b/2 - 1) (t + c^2)^(b/2 - 2), 0 at t = 0 when c = 0
        a = self.exponent / 2
        if self.offset:
            return (t + self.offset ** 2).pow_(a - 2).mul_(-a * (a - 1))
        return _zero_at_origin(t.pow(a - 2).mul_(-a * (a - 1)), t)

    def scaled(self, c):  # ||x - y||^b = c^-b ||c x - c y||^b: offset c' = c offset, w = c^-b
        if c == 1:
            return self, 1.0
        return replace(self, offset=self.offset * c), _power(c, -self.exponent)

    def anchor(self, A: Tensor) -> Tensor:
        """(||a||^2 + c^2)^(b/2) - c^b per row a of A (out of place): a norm term of the full kernel."""
        b, c = self.exponent, self.offset
        return A.norm(dim=1) ** b if c == 0 else (A * A).sum(1).add_(c * c).pow_(b / 2).sub_(c ** b)


@dataclass(frozen=True)
class RationalQuadratic(KernelSpec):
    """k(x, y) = (1 + ||x - y||^2 / (2 alpha h^2))^(-alpha)."""

    name: ClassVar[str] = "rq"
    alpha: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        check_positive(self.alpha, "alpha` of `RationalQuadratic")

    def square(self):  # (1 + t / (2 a h^2))^(-2 a) = RQ(h / sqrt 2, 2 a)
        return replace(self, bandwidth=self._h() / math.sqrt(2), alpha=2 * self.alpha)

    def evaluate_(self, t, derivative=False):
        h, a = self._h(), self.alpha
        base = t.mul_(1.0 / (2 * a * h * h)).add_(1.0)
        dk = base.pow(-a - 1).mul_(-1.0 / (2 * h * h)) if derivative else None
        return base.pow_(-a), dk

    def second_derivative(self, t):  # (alpha + 1) / (4 alpha h^4) base^(-alpha - 2)
        h, a = self._h(), self.alpha
        base = t.mul(1.0 / (2 * a * h * h)).add_(1.0)
        return base.pow_(-a - 2).mul_((a + 1) / (4 * a * h * h) / (h * h))


@dataclass(frozen=True)
class IMQ(KernelSpec):
    """Inverse multiquadric k(x, y) = (1 + ||x - y||^2 / h^2)^beta, beta < 0."""

    name: ClassVar[str] = "imq"
    beta: float = -0.5

    def __post_init__(self):
        super().__post_init__()
        if _finite(self.beta, "beta` of `IMQ") >= 0:
            raise ValueError(f"`beta` of IMQ must be negative (beta >= 0 is not an inverse multiquadric, "
                             f"nor positive definite), got {self.beta}")

    def square(self):  # (1 + t / h^2)^(2 beta)
        return replace(self, beta=2 * self.beta)

    def evaluate_(self, t, derivative=False):
        h, b = self._h(), self.beta
        base = t.mul_(1.0 / (h * h)).add_(1.0)
        dk = base.pow(b - 1).mul_(b / (h * h)) if derivative else None
        return base.pow_(b), dk

    def second_derivative(self, t):  # beta (beta - 1) / h^4 base^(beta - 2)
        h, b = self._h(), self.beta
        return t.mul(1.0 / (h * h)).add_(1.0).pow_(b - 2).mul_(b * (b - 1) / (h * h) / (h * h))


@dataclass(frozen=True)
class Polynomial(KernelSpec):
    """k(x, y) = (gamma <x, y> + coef0)^degree; gamma defaults to 1/d (KID's kernel)."""

    kind: ClassVar[str] = "dot"
    name: ClassVar[str] = "polynomial"
    has_bandwidth: ClassVar[bool] = False
    degree: int = 3
    gamma: float | None = None
    coef0: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.degree, bool) or not isinstance(self.degree, Integral):
            raise TypeError(f"`degree` of Polynomial must be an integer >= 1, got {self.degree!r}")
        if self.degree < 1:
            raise ValueError(f"`degree` of Polynomial must be an integer >= 1, got {self.degree}")
        if self.gamma is not None:
            check_positive(self.gamma, "gamma` of `Polynomial")
        if _finite(self.coef0, "coef0` of `Polynomial") < 0:
            raise ValueError(f"`coef0` of Polynomial must be >= 0 (a negative offset is not positive "
                             f"definite), got {self.coef0}")

    def resolve(self, d):
        return self if self.gamma is not None else replace(self, gamma=1.0 / d)

    def square(self):  # (gamma t + coef0)^(2 degree)
        return replace(self, degree=2 * self.degree)

    def evaluate_(self, t, derivative=False):
        g, p = self.gamma, self.degree
        if g is None:
            raise ValueError("`gamma` of Polynomial is not set; call .resolve(d)")
        base = t.mul_(g).add_(self.coef0)
        dk = base.pow(p - 1).mul_(p * g) if derivative else None
        return base.pow_(p), dk

    def second_derivative(self, t):  # p (p - 1) gamma^2 (gamma t + coef0)^(p - 2)
        g, p = self.gamma, self.degree
        if p == 1:
            return torch.zeros_like(t)
        return t.mul(g).add_(self.coef0).pow_(p - 2).mul_(p * (p - 1) * g * g)


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
        super().__post_init__()
        if not self.components:
            raise ValueError("`components` of Mixture is empty")
        if any(not isinstance(c, KernelSpec) or isinstance(c, Derivative) for c in self.components):
            raise TypeError("`components` of Mixture must be kernel specs")
        if any(c.kind != "distance" for c in self.components):
            raise ValueError("`components` of Mixture must all be distance kernels")
        if len({c.norm for c in self.components}) != 1:
            raise ValueError("`components` of Mixture must share one distance (norm): they share one distance "
                             f"tile; got {sorted({c.norm for c in self.components})}")
        if self.weights is not None:
            if len(self.weights) != len(self.components):
                raise ValueError(f"`weights` has {len(self.weights)} entries for {len(self.components)} components")
            for i, w in enumerate(self.weights):
                check_positive(w, f"weights[{i}]` of `Mixture")

    @property
    def weighted(self) -> tuple[tuple[KernelSpec, float], ...]:
        """(component, weight) pairs; weights default to 1."""
        return tuple(zip(self.components, self.weights or (1.0,) * len(self.components)))

    @classmethod
    def of(cls, base: type[KernelSpec] | KernelSpec, bandwidths, weights=None) -> Mixture:
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
    def norm(self) -> str:  # type: ignore[override]
        return self.components[0].norm

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

    def scaled(self, c):
        """Each component scaled; their factors move into the weights (the largest one into w)."""
        if c == 1:
            return self, 1.0
        parts = [(comp.scaled(c), wi) for comp, wi in self.weighted]
        w = max(f for (_, f), _ in parts)
        return replace(self, components=tuple(k for (k, _), _ in parts),
                       weights=tuple(wi * f / w for (_, f), wi in parts)), w

    def evaluate_(self, t, derivative=False):
        k = dk = None
        for i, (c, wi) in enumerate(self.weighted):
            ki, dki = c.evaluate_(t if i == len(self.components) - 1 else t.clone(), derivative)
            k = ki * wi if k is None else k.add_(ki, alpha=wi)
            if derivative:
                dk = dki * wi if dk is None else dk.add_(dki, alpha=wi)
        return k, dk

    def second_derivative(self, t):
        return sum(wi * c.second_derivative(t) for c, wi in self.weighted)


@dataclass(frozen=True)
class Derivative(KernelSpec):
    """The kernel's derivative in t as a kernel: k_D(t) = dk/dt of ``base`` (``order`` 1) or d2k/dt2 (2).

    The engines' backward passes are kernel sums of dk/dt; running them on
    ``Derivative(kernel)`` through the same differentiable primitive is what
    makes every statistic twice differentiable. Its own derivative is the next
    order; mmdkit kernels define two, so a third derivative raises.
    """

    name: ClassVar[str] = "derivative"
    has_bandwidth: ClassVar[bool] = False
    base: KernelSpec | None = None
    order: int = 1

    def __post_init__(self):
        if not isinstance(self.base, KernelSpec) or isinstance(self.base, Derivative):
            raise TypeError(f"`base` of Derivative must be a kernel spec (not a Derivative), got {self.base!r}")
        if self.order not in (1, 2):
            raise NotImplementedError(f"mmdkit kernels are twice differentiable; derivative order {self.order} "
                                      "(a third derivative of a statistic) was requested")
        if self.base.needs_bandwidth:
            raise ValueError(f"`bandwidth` of {type(self.base).__name__} is not set")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.base.kind

    @property
    def cusp_at_zero(self) -> bool:  # type: ignore[override]
        return self.base.cusp_at_zero

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.base.norm

    def derivative_scale(self):
        return self.base.derivative_scale()  # d/dt (c^j e^(c t)) = c (c^j e^(c t))

    def resolve(self, d):
        return replace(self, base=self.base.resolve(d))

    def next(self) -> Derivative:
        """The derivative of this spec in t (raises past the second order)."""
        return Derivative(base=self.base, order=self.order + 1)

    def evaluate_(self, t, derivative=False):
        if self.order == 1:
            dk2 = self.base.second_derivative(t) if derivative else None
            return self.base.evaluate_(t, True)[1], dk2
        if derivative:
            self.next()  # raises: no third derivative
        return self.base.second_derivative(t), None

    def second_derivative(self, t):
        return self.next().next()  # raises


def derivative(kernel: KernelSpec) -> Derivative:
    """The spec of dk/dt (of d2k/dt2 when ``kernel`` is already a first derivative)."""
    return kernel.next() if isinstance(kernel, Derivative) else Derivative(base=kernel)


KERNELS: dict[str, type[KernelSpec]] = {
    cls.name: cls for cls in (Gaussian, Laplace, Energy, RationalQuadratic, IMQ, Polynomial)
}
KERNELS.update({"rbf": Gaussian, "rational_quadratic": RationalQuadratic,
                "distance": Energy, "poly": Polynomial})
