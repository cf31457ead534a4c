"""Bandwidths: the median heuristic, MMDAgg's grid, turning ``kernel=``/``bandwidth=`` into a spec, and
the unit scale every statistic's data meet the engine at (:func:`on_unit_scale`)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from mmdkit._validation import as_pair, as_samples, check_bandwidth, check_int, spec_of
from mmdkit.kernels import KernelSpec, Mixture

__all__ = ["median_bandwidth", "bandwidth_grid", "resolve_kernel", "unit_scale", "times", "on_unit_scale"]

GRID_SIZE, GRID_POINTS = 10, 500  # MMDAgg's number_bandwidths and max_samples (Schrab et al. 2023)
GRID_SMALL, GRID_LARGE = 0.1, 0.3  # its clamps of the smallest and the largest distance
_LAMBDA_PER_H = {"gaussian": math.sqrt(2), "rq": math.sqrt(2)}  # h = lambda / this (1 otherwise)
SAFE_EXPONENT = 20  # samples whose largest |entry| lies in [2^-20, 2^20] meet the engine as they are


def unit_scale(*samples: Tensor) -> float:
    """The power of two c that brings the largest |entry| of the samples into [1/2, 1), or 1 when it
    lies in [2^-SAFE_EXPONENT, 2^SAFE_EXPONENT] already (or every entry is 0); one device-to-host sync.

    The engines square the data (||x||^2 + ||y||^2 - 2 x.y): float32 squares leave the float range
    for entries beyond about 1e19 or below 1e-19 (float64: 1e154, 1e-154). Data times c square safely,
    and c is exact: the distances of c x are c times those of x, bit for bit.
    """
    top = float(torch.stack([A.detach().abs().max().to(torch.float64) for A in samples]).max())
    if not 0 < top < math.inf:
        return 1.0
    e = math.frexp(top)[1]  # top = f 2^e, f in [1/2, 1)
    return 1.0 if abs(e) <= SAFE_EXPONENT else math.ldexp(1.0, min(-e, 1020))  # 2^1020: float64 subnormal data


def times(A: Tensor, c: float) -> Tensor:
    """A * c for a power of two c, exact and differentiable, in factors that A's dtype represents."""
    e = math.frexp(c)[1] - 1
    step = int(math.log2(torch.finfo(A.dtype).max)) - 1  # 2^step and 2^-step are normal numbers of the dtype
    while e:
        k = max(-step, min(step, e))
        A, e = A * math.ldexp(1.0, k), e - k
    return A


def on_unit_scale(specs: list[KernelSpec], *samples: Tensor) -> tuple[tuple[Tensor, ...], list[KernelSpec], list]:
    """(samples x c, [k'_s], [w_s]) with k_s(x, y) = w_s k'_s(c x, c y), c = :func:`unit_scale` of the samples:
    the one place a statistic's data and kernels are brought to the engine's float range.

    Every distance kernel is a function of ||x - y|| / h (the bandwidth scales with the data) or
    homogeneous (Energy: w = c^-b), so a statistic, linear in k, is w times that of the scaled samples;
    gradients flow through the multiplication by c. With a dot kernel (Polynomial, not scale-invariant)
    c = 1 and nothing changes.
    """
    c = unit_scale(*samples) if all(s.kind == "distance" for s in specs) else 1.0
    if c == 1:
        return samples, list(specs), [1.0] * len(specs)
    scaled = [s.scaled(c) for s in specs]
    return tuple(times(A, c) for A in samples), [k for k, _ in scaled], [w for _, w in scaled]


def _spaced(A: Tensor, count: int) -> Tensor:
    """At most ``count`` rows of A, evenly spaced by index (deterministic)."""
    if A.shape[0] <= count:
        return A
    return A[torch.linspace(0, A.shape[0] - 1, count, device=A.device).long()]


def _median_distance(Z: Tensor, max_points: int) -> float:
    """Median nonzero pairwise distance of (a deterministic subsample of) the validated Z."""
    Z = _spaced(Z.detach(), max_points).double()
    c = unit_scale(Z)  # float64 squares overflow beyond 1e154
    dist = torch.nn.functional.pdist(times(Z, c)) / c
    dist = dist[dist > 0]
    if dist.numel() == 0:
        raise ValueError("`bandwidth`='median' is undefined: all points of `X` (and `Y`) are identical; "
                         "pass a float bandwidth")
    if dist.numel() % 2:
        return float(dist.median())
    return float(dist.sort().values[dist.numel() // 2 - 1: dist.numel() // 2 + 1].mean())


def median_bandwidth(X, Y=None, max_points: int = 2000):
    """Median heuristic: the median of the pairwise distances in the pooled sample.

    Uses at most ``max_points`` points, evenly spaced by index (deterministic),
    and ignores zero distances (duplicates). Returns a float.

    Examples
    --------
    >>> from mmdkit import median_bandwidth
    >>> median_bandwidth([[0.0], [1.0], [3.0]])
    2.0
    """
    if Y is None:
        Z, _ = as_samples(X, "X")
    else:
        Xt, Yt, _ = as_pair(X, Y)
        Z = torch.cat([Xt, Yt])
    return _median_distance(Z, check_int(max_points, "max_points", 2))


def _lambda_per_h(spec: KernelSpec) -> float:
    """The paper's lambda per unit of mmdkit's h (the paper's kernels are functions of ||x - y|| / lambda)."""
    return _LAMBDA_PER_H.get(spec.name, 1.0)


def _grid(X: Tensor, Y: Tensor, spec: KernelSpec, count: int, max_points: int) -> tuple[float, ...]:
    """MMDAgg's collection on validated samples, as mmdkit bandwidths of ``spec`` (see :func:`bandwidth_grid`)."""
    p = 1.0 if getattr(spec, "norm", "l2") == "l1" else 2.0
    A, B = X.detach()[:max_points].double(), Y.detach()[:max_points].to(X.device).double()
    c = unit_scale(A, B)
    dist = torch.cdist(times(A, c), times(B, c), p=p, compute_mode="donot_use_mm_for_euclid_dist").flatten().cpu() / c
    lo = float(dist.min())
    if lo < GRID_SMALL:  # the 5% order statistic, at least GRID_SMALL
        k = math.floor(dist.numel() * 0.05)
        lo = max(float(dist.kthvalue(k + 1).values), GRID_SMALL)
    lo, hi = lo / 2, max(float(dist.max()), GRID_LARGE) * 2
    power = (hi / lo) ** (1 / (count - 1))
    per_h = _lambda_per_h(spec)
    return tuple(power ** i * lo / per_h for i in range(count))


def bandwidth_grid(X, Y, count: int = GRID_SIZE, max_points: int = GRID_POINTS,
                   kernel="gaussian") -> tuple[float, ...]:
    r"""MMDAgg's bandwidth collection (Schrab et al. 2023), built as the authors' code builds it.

    With D the distances ||x_i - y_j|| between the first ``max_points`` rows
    of X and the first ``max_points`` rows of Y (X against Y only, zeros
    included; the L2 distance, or the L1 one for ``Laplace(norm="l1")``), and
    N = ``count``:

    * lambda_min = min D / 2 when min D >= 0.1; otherwise
      lambda_min = max(D_(floor(0.05 |D|)), 0.1) / 2, the 5% order statistic of
      the sorted D (0-based), clamped below at 0.1;
    * lambda_max = 2 max(max D, 0.3);
    * lambda_i = lambda_min * c^i, i = 0 .. N - 1, with
      c = (lambda_max / lambda_min)^(1 / (N - 1)) (geometric spacing).

    The lambda are the paper's, for kernels of ||x - y|| / lambda: its Gaussian
    exp(-||x - y||^2 / lambda^2) and Laplace exp(-||x - y||_1 / lambda). The
    returned bandwidths are mmdkit's h of ``kernel`` giving the same kernels:
    h = lambda / sqrt(2) for :class:`Gaussian` (exp(-||x - y||^2 / (2 h^2))) and
    :class:`RationalQuadratic` (whose large-alpha limit is that Gaussian);
    h = lambda for :class:`Laplace` and :class:`IMQ` (and any other kernel).
    The paper's Laplace uses the L1 distance: ``Laplace(norm="l1")``;
    ``"laplace"`` (mmdkit's L2 Laplace) is the same kernel only for d = 1 and
    otherwise gets the same rule on L2 distances.

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) and (m, d), or (n,) for d = 1
    count : int
        Number of bandwidths N (the paper's ``number_bandwidths``), >= 2.
    max_points : int
        Rows of each sample used (the first ones, as the paper's
        ``max_samples`` = 500).
    kernel : str or KernelSpec
        A kernel with a bandwidth (not a Mixture); its bandwidth, if set, is ignored.

    Returns
    -------
    tuple of float
        N increasing bandwidths h.

    Notes
    -----
    The clamps 0.1 and 0.3 are absolute, as in the paper (whose data lie in
    [0, 1]^d or are MNIST pixels): the collection is not scale-equivariant for
    data with distances below them. Cost O(max_points^2 d).

    References
    ----------
    Schrab, Kim, Albert, Laurent, Guedj, Gretton. MMD aggregated two-sample
    test. JMLR 24 (2023); the collection of ``compute_bandwidths`` in
    ``mmdagg/np.py`` of github.com/antoninschrab/mmdagg-paper (and of the
    ``mmdagg`` package).

    Examples
    --------
    >>> from mmdkit import bandwidth_grid
    >>> X, Y = [[0.0], [1.0]], [[2.0], [4.0]]  # D = {2, 4, 1, 3}: lambda from 1 / 2 to 2 * 4
    >>> [round(h, 3) for h in bandwidth_grid(X, Y, count=3, kernel="laplace")]
    [0.5, 2.0, 8.0]
    >>> [round(h, 3) for h in bandwidth_grid(X, Y, count=3)]  # Gaussian: lambda / sqrt(2)
    [0.354, 1.414, 5.657]
    """
    Xt, Yt, _ = as_pair(X, Y, 1)
    spec = spec_of(kernel)
    if isinstance(spec, Mixture) or not spec.has_bandwidth:
        raise ValueError(f"`kernel` must be a single kernel with a bandwidth for a bandwidth grid, got {spec.name}")
    return _grid(Xt, Yt, spec, check_int(count, "count", 2), check_int(max_points, "max_points", 1))


def resolve_kernel(kernel, bandwidth, X: Tensor, Y: Tensor | None = None) -> KernelSpec:
    """A ready spec from ``kernel=`` (name or spec) and ``bandwidth=`` (float, 'median', list, None).

    X and Y are validated tensors. A list gives a Mixture over those
    bandwidths; 'median' (the default when the kernel needs one) is the median
    heuristic on the pooled sample; a float is the bandwidth (a Mixture scales
    its set bandwidths by it, see :meth:`Mixture.with_bandwidth`).
    """
    spec = spec_of(kernel)
    if isinstance(bandwidth, (list, tuple)):
        if not bandwidth:
            raise ValueError("`bandwidth` list is empty")
        hs = [check_bandwidth(h, f"bandwidth[{i}]") for i, h in enumerate(bandwidth)]
        if isinstance(spec, Mixture) or not spec.has_bandwidth:
            raise ValueError(f"`bandwidth` as a list needs a kernel with a bandwidth, got {spec.name}")
        return Mixture.of(spec, hs).resolve(X.shape[1])
    if bandwidth is None:
        bandwidth = "median" if spec.needs_bandwidth else None
    if bandwidth is not None and not spec.has_bandwidth:
        raise ValueError(f"`bandwidth` does not apply to the {spec.name} kernel, got {bandwidth!r}")
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"`bandwidth` must be a positive float, 'median' or a list, got {bandwidth!r}")
        bandwidth = _median_distance(X if Y is None else torch.cat([X, Y.to(X)]), 2000)
    if bandwidth is not None:
        spec = spec.with_bandwidth(check_bandwidth(bandwidth))
    return spec.resolve(X.shape[1])
