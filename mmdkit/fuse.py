"""MMD-FUSE (Biggs, Schrab & Gretton, NeurIPS 2023): a soft maximum of normalised MMDs, with permutations.

Every kernel's permuted MMD^2 comes from one pass of the engine's permutation
product over shared label matrices (kernels of one norm share a distance
tile); the kernels' normalisers, sums of k^2, come from the same operator
(its cached tiles, or one more sweep). No data splitting: the fusion is computed the
same way for the observed labelling and for every permutation.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from mmdkit._permutations import generator, null_statistics, pvalue
from mmdkit._progress import check_progress
from mmdkit._validation import as_pair, check_int
from mmdkit.bandwidth import _spaced, on_unit_scale, times, unit_scale
from mmdkit.kernels import Backend, Gaussian, KernelSpec, Laplace, Mixture, get_backend
from mmdkit.results import TwoSampleTestResult
from mmdkit.two_sample import DEFAULT_MEMORY_BUDGET

__all__ = ["fuse_test", "fuse_bandwidths", "fuse_collection", "FUSE_MAX_POINTS"]

FUSE_MAX_POINTS = 2000  # pooled points whose pairwise distances set the bandwidths (all of them up to this)


def _fuse_lambdas(Z: Tensor, norm: str, count: int) -> np.ndarray:
    """The paper's bandwidths for one norm on the validated pooled sample (see :func:`fuse_bandwidths`)."""
    Zs = _spaced(Z.detach(), FUSE_MAX_POINTS).double().cpu()
    c = unit_scale(Zs)  # float64 squares overflow beyond 1e154
    dist = torch.nn.functional.pdist(times(Zs, c), p=1.0 if norm == "l1" else 2.0).numpy()
    # the authors take the upper triangle *with* the diagonal: N zeros, which become the median
    dist = np.concatenate([dist, np.zeros(Zs.shape[0])])
    if not (dist > 0).any():
        raise ValueError("MMD-FUSE's bandwidths are undefined: all points of `X` and `Y` coincide")
    fill = np.median(dist)
    if fill == 0:  # tied data, over half the distances 0: the authors' rule would give lambda_min = 0
        fill = np.median(dist[dist > 0])
    dist = np.where(dist == 0, fill, dist)
    k_lo, k_hi = int(math.floor(dist.size * 0.05)), int(math.floor(dist.size * 0.95))
    dist = np.partition(dist, (k_lo, k_hi))  # the two order statistics, without a full sort
    return np.linspace(dist[k_lo] / 2, dist[k_hi] * 2, count) / c


def fuse_bandwidths(X, Y, norm: str = "l2", count: int = 10) -> tuple[float, ...]:
    """MMD-FUSE's bandwidths lambda for one distance, as the authors' code builds them.

    The pairwise distances (``norm`` "l2" or "l1") of the pooled sample, the
    upper triangle with its diagonal, zeros replaced by their median (by the
    median of the nonzero ones when over half are 0, as on discrete data,
    where the authors' rule gives a first bandwidth of 0); then
    ``count`` values spaced linearly from half the 5% to twice the 95%
    quantile (order statistics at floor(0.05 D) and floor(0.95 D) of the D
    sorted values). Up to ``FUSE_MAX_POINTS`` pooled points are used, beyond
    that as many evenly spaced by index (deterministic).

    Examples
    --------
    >>> from mmdkit.fuse import fuse_bandwidths
    >>> [round(b, 3) for b in fuse_bandwidths([[0.0], [1.0], [3.0]], [[6.0]], count=3)]
    [0.5, 6.25, 12.0]
    """
    Xt, Yt, _ = as_pair(X, Y, 1)
    if norm not in ("l2", "l1"):
        raise ValueError(f"`norm` must be 'l2' or 'l1', got {norm!r}")
    return tuple(float(b) for b in _fuse_lambdas(torch.cat([Xt, Yt]), norm, check_int(count, "count", 2)))


def fuse_collection(X: Tensor, Y: Tensor, count: int = 10) -> list[KernelSpec]:
    """The paper's default collection on validated samples: ``count`` L1 Laplace and ``count`` Gaussian kernels.

    exp(-sqrt(2) ||x - y||_1 / lambda) = ``Laplace(lambda / sqrt(2), norm="l1")`` on the L1
    bandwidths and exp(-||x - y||^2 / (2 lambda^2)) = ``Gaussian(lambda)`` on the L2 ones.
    """
    Z = torch.cat([X, Y])
    return ([Laplace(float(b) / math.sqrt(2), norm="l1") for b in _fuse_lambdas(Z, "l1", count)]
            + [Gaussian(float(b)) for b in _fuse_lambdas(Z, "l2", count)])


def _fused(mmd2: np.ndarray, norms: np.ndarray, n: int, lam: float) -> np.ndarray:
    """log( mean_k exp(lam * M_k) ), M_k = (n (n - 1))^(3/2) MMD^2_k / ||K0_k||_F, for (L, B) values."""
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 (every k 0): NaN, which gets no p-value
        M = mmd2 * (n * (n - 1)) ** 1.5 / norms[:, None]
        A = lam * M
        top = A.max(0)
        return top + np.log(np.exp(A - top).mean(0))


def fuse_test(X, Y, kernel=None, n_bandwidths: int = 10, n_permutations: int = 2000, seed=None,
              alpha: float = 0.05, lambda_multiplier: float = 1.0, batch: int | None = None,
              backend: str = "auto", memory_budget: int = DEFAULT_MEMORY_BUDGET, progress: bool | None = None,
              precision: str = "ieee") -> TwoSampleTestResult:
    r"""MMD-FUSE two-sample test (Biggs, Schrab & Gretton 2023): fused normalised MMDs, permutation p-value.

    For each kernel k of a collection of L kernels, the unbiased MMD^2_k of the
    samples (n <= m: n is the smaller size) is normalised by the Frobenius
    norm of its pooled kernel matrix without diagonal, and the normalised
    statistics are fused by a soft maximum:

        M_k  = (n (n - 1))^(3/2) MMD^2_k / sqrt(sum_{i != j} k(z_i, z_j)^2)
        FUSE = log( (1 / L) sum_k exp(lambda_multiplier * M_k) )

    i.e. lambda MMD^2_k / N_k^(1/2) with lambda = sqrt(n (n - 1)) and
    N_k = sum_{i != j} k(z_i, z_j)^2 / (n (n - 1))^2, exactly as the authors'
    code computes it (github.com/antoninschrab/mmdfuse, ``mmdfuse.py``; the
    paper's 1 / lambda in front is left out there and here, which changes no
    p-value). The p-value ranks FUSE among its values under random
    permutations of the pooled sample, all kernels sharing each permutation.

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) and (m, d), or (n,) for d = 1; n, m >= 2
    kernel : None, list of KernelSpec or Mixture
        None: the paper's collection (:func:`fuse_collection`): ``n_bandwidths``
        Laplace kernels on the L1 distance, exp(-sqrt(2) ||x - y||_1 / lambda),
        and ``n_bandwidths`` Gaussian kernels exp(-||x - y||^2 / (2 lambda^2)),
        with lambda from :func:`fuse_bandwidths`. Else your own collection: specs
        with bandwidths set, each of a family whose k^2 is a spec (Gaussian,
        Laplace, RationalQuadratic, IMQ).
    n_bandwidths : int
        Bandwidths per kernel family of the default collection (the paper: 10).
    n_permutations : int
        Random relabellings (the paper: 2000).
    seed : None, int, torch.Generator or numpy.random.Generator
        Fixes the permutations; the same seed gives the same p-value on every backend.
    alpha : float
        Level of the returned decision ``reject`` = pvalue <= alpha.
    lambda_multiplier : float
        Scales lambda (the paper's default 1).
    batch, backend, memory_budget, progress, precision
        As in :func:`mmdkit.mmd_test`.

    Returns
    -------
    TwoSampleTestResult
        ``test`` "fuse"; ``statistic`` FUSE; ``null_distribution`` FUSE under
        each permutation; ``kernel`` the tuple of the collection's specs;
        ``bandwidth`` their bandwidths; ``alpha``, ``reject``.

    Notes
    -----
    p = (1 + #{null >= FUSE - tol}) / (1 + P), tol = 100 eps |FUSE| (as
    :func:`mmdkit.mmd_test`). Cost: one permutation product per batch for all
    kernels (O(N^2 (L + P)) for N = n + m); the normalisers reuse the kernel
    tiles when they are cached. L1 tiles come from direct differences (no matmul).

    References
    ----------
    Biggs, Schrab & Gretton. MMD-FUSE: Learning and Combining Kernels for
    Two-Sample Testing Without Data Splitting. NeurIPS 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from mmdkit import fuse_test
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(60, 3)), rng.normal(size=(50, 3)) + 0.8
    >>> res = fuse_test(X, Y, n_permutations=200, seed=0)
    >>> res.pvalue < 0.05, res.reject
    (True, True)
    """
    check_progress(progress)
    Xt, Yt, _ = as_pair(X, Y, 2)
    count = check_int(n_permutations, "n_permutations", 1)
    if batch is not None:
        batch = check_int(batch, "batch", 1)
    memory_budget = check_int(memory_budget, "memory_budget", 0)
    if isinstance(alpha, bool) or not isinstance(alpha, (float, int)) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must lie in (0, 1), got {alpha!r}")
    if (isinstance(lambda_multiplier, bool) or not isinstance(lambda_multiplier, (float, int))
            or not (math.isfinite(lambda_multiplier) and lambda_multiplier > 0)):
        raise ValueError(f"`lambda_multiplier` must be a positive float, got {lambda_multiplier!r}")
    specs = _collection(kernel, Xt, Yt, n_bandwidths)
    engine = get_backend(backend, Xt.device, Xt.dtype, precision)
    return _fuse(Xt, Yt, specs, count, generator(seed), float(alpha), float(lambda_multiplier), batch, engine,
                 memory_budget, progress)


def _collection(kernel, Xt: Tensor, Yt: Tensor, n_bandwidths) -> list[KernelSpec]:
    """The validated, resolved kernel collection of :func:`fuse_test`."""
    if kernel is None:
        return fuse_collection(Xt, Yt, check_int(n_bandwidths, "n_bandwidths", 2))
    specs = list(kernel.components) if isinstance(kernel, Mixture) else kernel
    if not isinstance(specs, (list, tuple)) or not specs or not all(isinstance(s, KernelSpec) for s in specs):
        raise TypeError(f"`kernel` must be None, a non-empty list of kernel specs or a Mixture, got {kernel!r}")
    for i, s in enumerate(specs):
        if s.needs_bandwidth:
            raise ValueError(f"`kernel[{i}]` ({s!r}) needs a bandwidth")
        try:
            s.square()
        except NotImplementedError as e:
            raise ValueError(f"`kernel[{i}]` cannot be normalised: {e}") from None
    return [s.resolve(Xt.shape[1]) for s in specs]


def _fuse(Xt: Tensor, Yt: Tensor, specs: list[KernelSpec], count: int, gen: torch.Generator, alpha: float,
          lam: float, batch: int | None, engine: Backend, memory_budget: int, progress) -> TwoSampleTestResult:
    """MMD-FUSE on validated samples and a resolved collection (see :func:`fuse_test`)."""
    n, m = Xt.shape[0], Yt.shape[0]
    with torch.no_grad():
        (Z,), units, w = on_unit_scale(specs, torch.cat([Xt, Yt]))
        observed, null, op = null_statistics(Z, n, m, units, engine, True, gen, count, False, batch, memory_budget,
                                             progress, "fuse_test")
        norms = op.square_sums().cpu().numpy() ** 0.5
    w = np.array(w)  # k = w k' (1 for kernels with a bandwidth): MMD^2 and the norms scale alike
    observed, null, norms = observed * w, null * w[:, None], norms * w
    small = min(n, m)
    fused_obs = float(_fused(observed[:, None], norms, small, lam)[0])
    fused_null = _fused(null, norms, small, lam)
    p = pvalue(fused_null, fused_obs, "greater", False, op.dtype)
    return TwoSampleTestResult(
        statistic=fused_obs, pvalue=p, null_distribution=fused_null, n_permutations=count, exact=False,
        kernel=tuple(specs), bandwidth=tuple(float(s.bandwidth) for s in specs), backend=engine.name,
        method=op.method, alternative="greater", test="fuse", alpha=alpha, reject=p <= alpha)
