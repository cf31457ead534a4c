"""Bandwidths: the median heuristic, MMDAgg's grid, and turning ``kernel=``/``bandwidth=`` into a spec."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mmdkit._validation import as_pair, as_samples, check_bandwidth, check_int, spec_of
from mmdkit.kernels import KernelSpec, Mixture

__all__ = ["median_bandwidth", "bandwidth_grid", "resolve_kernel"]

GRID_SIZE, GRID_POINTS = 10, 500  # MMDAgg's bandwidth collection


def _spaced(A: Tensor, count: int) -> Tensor:
    """At most ``count`` rows of A, evenly spaced by index (deterministic)."""
    if A.shape[0] <= count:
        return A
    return A[torch.linspace(0, A.shape[0] - 1, count, device=A.device).long()]


def _median_distance(Z: Tensor, max_points: int) -> float:
    """Median nonzero pairwise distance of (a deterministic subsample of) the validated Z."""
    dist = torch.nn.functional.pdist(_spaced(Z.detach(), max_points).double())
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


def _grid(X: Tensor, Y: Tensor, count: int, max_points: int) -> tuple[float, ...]:
    """MMDAgg's grid on validated samples (see :func:`bandwidth_grid`)."""
    dist = torch.cdist(_spaced(X.detach(), max_points).double(), _spaced(Y.detach(), max_points).double()).flatten()
    dist = dist[dist > 0]
    if dist.numel() == 0:
        raise ValueError("bandwidth grid is undefined: all points of `X` and `Y` coincide")
    lo, hi = float(torch.quantile(dist, 0.05)) / 2, 2 * float(dist.max())
    return tuple(float(h) for h in np.geomspace(lo, hi, count))


def bandwidth_grid(X, Y, count: int = GRID_SIZE, max_points: int = GRID_POINTS) -> tuple[float, ...]:
    """MMDAgg's bandwidth collection: ``count`` geometric steps from q05 / 2 to 2 max.

    q05 and max are the 5% quantile and the maximum of the nonzero distances
    between X and Y on at most ``max_points`` points of each, evenly spaced by
    index (deterministic). Schrab et al. start at the minimum distance and use
    the 5% quantile only when the minimum is below 0.1; the quantile is used
    here always, so the grid scales with the data.

    Examples
    --------
    >>> from mmdkit import bandwidth_grid
    >>> [round(h, 3) for h in bandwidth_grid([[0.0], [1.0]], [[2.0], [4.0]], count=3)]
    [0.575, 2.145, 8.0]
    """
    Xt, Yt, _ = as_pair(X, Y, 1)
    return _grid(Xt, Yt, check_int(count, "count", 2), check_int(max_points, "max_points", 1))


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
