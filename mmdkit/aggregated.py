"""The aggregated MMD test (MMDAgg, Schrab et al. 2023): one test per bandwidth on shared permutations.

Every bandwidth's null distribution comes from one pass of the engine's
permutation product over the same label matrices (the kernels share one
distance tile); the level correction is Algorithm 1 of Schrab et al. with
uniform weights, step for step as ``mmdagg/np.py`` of the authors' code
(github.com/antoninschrab/mmdagg-paper): M1 = the identity and B1
permutations (sorted), quantile index ceil((B1 + 1)(1 - u w)) - 1, strict
``M2 > quantile`` on the B2 others, B3 = 50 bisection steps on u in
[0, min 1/w] keeping the lower end, reject when some p_l <= u w_l. The
collection "grid" is the paper's (:func:`mmdkit.bandwidth_grid`). Called by
:func:`mmdkit.mmd_test` with ``aggregate=True``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mmdkit._permutations import all_finite, null_statistics, tolerance
from mmdkit._validation import spec_of
from mmdkit.bandwidth import _grid, GRID_POINTS, GRID_SIZE, on_unit_scale, resolve_kernel
from mmdkit.estimators import mmd2_from_sums
from mmdkit.kernels import Backend, Mixture
from mmdkit.results import BandwidthResult, TwoSampleTestResult

__all__ = ["aggregated_test"]

BISECTION_STEPS = 50  # MMDAgg's B3
PAPER_PERMUTATIONS = 2000  # MMDAgg's B1 = B2: the default of the authors' code and of its exp1bis runs


def aggregated_test(Xt: Tensor, Yt: Tensor, kernel, bandwidth, count: int, alpha, alternative: str,
                    gen: torch.Generator, batch: int | None, engine: Backend, memory_budget: int,
                    progress, sizes: tuple[int, int] | None = None) -> TwoSampleTestResult:
    """MMDAgg on validated samples (see :func:`mmdkit.mmd_test`, ``aggregate=True``).

    On a sharded backend (:mod:`mmdkit.distributed`) Xt, Yt are this rank's rows,
    ``sizes`` the global (n, m) and ``bandwidth`` the resolved list.
    """
    if alternative != "greater":
        raise ValueError(f"`alternative` must be 'greater' for an aggregated test, got {alternative!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (float, int)) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must lie in (0, 1), got {alpha!r}")
    if isinstance(kernel, Mixture):
        if bandwidth is not None:
            raise ValueError("`bandwidth` must be None when `kernel` is a Mixture (its components are the bandwidths)")
        specs = [s.resolve(Xt.shape[1]) for s in kernel.components]
    else:
        if bandwidth is None or (isinstance(bandwidth, str) and bandwidth == "grid"):
            spec = spec_of(kernel)
            if isinstance(spec, Mixture) or not spec.has_bandwidth:
                raise ValueError(f"`bandwidth`='grid' needs a kernel with a bandwidth, got {spec.name}")
            bandwidth = list(_grid(Xt, Yt, spec, GRID_SIZE, GRID_POINTS))
        elif not isinstance(bandwidth, (list, tuple)):
            raise ValueError(f"`bandwidth` must be a list of floats or 'grid' for an aggregated test, "
                             f"got {bandwidth!r}")
        specs = list(resolve_kernel(kernel, list(bandwidth), Xt, Yt).components)
    if any(s.needs_bandwidth for s in specs):
        raise ValueError("every component of the aggregated `kernel` needs a bandwidth")
    local = (Xt.shape[0], Yt.shape[0])
    n, m = sizes or local
    L = len(specs)
    w = np.full(L, 1.0 / L)
    Z = torch.cat([Xt, Yt])
    with torch.no_grad():
        # one process: at unit scale (a sharded backend's ranks would each pick their own scale)
        (Z,), units, k_w = on_unit_scale(specs, Z) if sizes is None else ((Z,), specs, [1.0] * L)
        observed, null, op = null_statistics(Z, n, m, units, engine, True, gen, 2 * count, False, batch,
                                             memory_budget, progress, "mmd_test (aggregated)", local)
        sums = [kw * engine.block_sums(Z, local, s, exclude_diagonal=True) for s, kw in zip(units, k_w)]
        stats = [float(mmd2_from_sums(S[0, 0], S[0, 1], S[1, 1], n, m, True).to(Xt.dtype)) for S in sums]
    k_w = np.array(k_w)  # k_l = k_w k'_l: 1 for kernels with a bandwidth
    observed, null = observed * k_w, null * k_w[:, None]
    # M1: the identity and the first set (quantiles); M2: the second set (level correction)
    M1 = np.sort(np.concatenate([observed[:, None], null[:, :count]], 1), 1)  # (L, B1 + 1)
    M2 = null[:, count:]  # (L, B2)
    B1 = count
    rows = np.arange(L)

    def quantiles(u):
        return M1[rows, np.ceil((B1 + 1) * (1 - u * w)).astype(int) - 1]

    lo, hi = 0.0, float(np.min(1 / w))
    for _ in range(BISECTION_STEPS):
        u = (lo + hi) / 2
        if np.mean((M2 > quantiles(u)[:, None]).any(0)) <= alpha:
            lo = u
        else:
            hi = u
    u = lo

    N1 = np.sort(null[:, :count], 1)  # the first set without the identity

    def single_pvalues(values):  # (L, k) -> (1 + #{first set >= value - tol}) / (B1 + 1), per bandwidth
        # The value itself takes the identity's place in the set it is ranked in, so the observed
        # statistic and each permutation of the second set are scored alike (exchangeable under H0).
        below = np.stack([np.searchsorted(N1[i], values[i] - tolerance(values[i], op.dtype), side="left")
                          for i in range(L)])
        return (1 + B1 - below) / (B1 + 1)

    p_obs = single_pvalues(observed[:, None])[:, 0]
    t_obs = float(np.min(p_obs / w))
    t_null = np.min(single_pvalues(M2) / w[:, None], 0)
    pvalue = (1 + np.count_nonzero(t_null <= t_obs)) / (1 + t_null.size) if all_finite(observed, null) else np.nan
    thresholds = u * w
    details = tuple(BandwidthResult(bandwidth=float(s.bandwidth), statistic=stats[i], pvalue=float(p_obs[i]),
                                    threshold=float(thresholds[i]), reject=bool(p_obs[i] <= thresholds[i]),
                                    null_distribution=null[i, :count].copy())
                    for i, s in enumerate(specs))
    return TwoSampleTestResult(
        statistic=t_obs, pvalue=float(pvalue), null_distribution=t_null, n_permutations=count, exact=False,
        kernel=Mixture(components=tuple(specs)), bandwidth=tuple(float(s.bandwidth) for s in specs),
        backend=engine.name, method=op.method, alternative=alternative, test="mmdagg", alpha=float(alpha),
        reject=bool(np.isfinite(pvalue)) and any(d.reject for d in details), per_bandwidth=details)
