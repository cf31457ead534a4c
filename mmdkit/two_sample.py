"""Permutation two-sample tests: MMD and energy distance (the aggregated MMD test in :mod:`mmdkit.aggregated`).

Both tests validate their input once, compute the observed statistic with
the estimators' internal functions, and take their null distribution from the
engine's permutation product (:mod:`mmdkit._permutations`).
"""
from __future__ import annotations

import math

import torch

from mmdkit._permutations import generator, null_statistics, pvalue
from mmdkit._progress import check_progress
from mmdkit._validation import FeatureKernel, as_pair, check_int, is_feature_kernel, output
from mmdkit.aggregated import PAPER_PERMUTATIONS, aggregated_test
from mmdkit.bandwidth import resolve_kernel
from mmdkit.estimators import _energy_distance, _mmd2, _terms
from mmdkit.kernels import Backend, Energy, KernelSpec, Mixture, get_backend
from mmdkit.results import TwoSampleTestResult

__all__ = ["mmd_test", "energy_test", "ALTERNATIVES", "DEFAULT_MEMORY_BUDGET"]

ALTERNATIVES = ("greater", "less", "two-sided")
DEFAULT_MEMORY_BUDGET = 2**30  # bytes for the dense kernel matrices (1 GiB)


def _setup(X, Y, n_permutations, alternative, batch, memory_budget, progress, min_n):
    """Validated samples and settings shared by both tests."""
    check_progress(progress)
    Xt, Yt, numpy_in = as_pair(X, Y, min_n)
    count = check_int(n_permutations, "n_permutations", 1)
    if not isinstance(alternative, str) or alternative not in ALTERNATIVES:
        raise ValueError(f"`alternative` must be one of {ALTERNATIVES}, got {alternative!r}")
    if batch is not None:
        batch = check_int(batch, "batch", 1)
    memory_budget = check_int(memory_budget, "memory_budget", 0)
    return Xt, Yt, numpy_in, count, batch, memory_budget


def energy_test(X, Y, exponent: float = 1.0, n_permutations: int = 1000, seed=None,
                alternative: str = "greater", batch: int | None = None, backend: str = "auto",
                memory_budget: int = DEFAULT_MEMORY_BUDGET, progress: bool | None = None,
                precision: str = "ieee") -> TwoSampleTestResult:
    r"""Energy-distance permutation test of H0: X and Y come from the same distribution.

    The statistic is Szekely and Rizzo's

        E_{n,m} = n m / (n + m) x [2 mean ||x_i - y_j||^b - mean ||x_i - x_j||^b - mean ||y_i - y_j||^b]

    with every mean over all pairs (the V-statistic, diagonals included): the
    value ``dcor.homogeneity.energy_test`` and R's ``energy::eqdist.etest``
    report, i.e. n m / (n + m) x :func:`mmdkit.energy_distance`.

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) and (m, d), or (n,) for d = 1
    exponent : float in (0, 2)
        b above; 1 is the energy distance.
    n_permutations : int
        Random relabellings; when C(n + m, n) <= n_permutations every distinct
        relabelling is enumerated instead (``exact=True``).
    seed : None, int, torch.Generator or numpy.random.Generator
        Permutations are drawn on the CPU from a torch.Generator, so the same
        seed gives the same p-value on every backend and for numpy or torch input.
    alternative : {"greater", "less", "two-sided"}
        As in ``scipy.stats.permutation_test``; "greater" is the usual test.
    batch : int or None
        Permutations per engine call (memory O((n + m) batch)); None picks one.
    backend : {"auto", "torch", "triton"}
    memory_budget : int
        Bytes allowed for the dense (n + m)^2 kernel matrix; above it the matrix
        is streamed in tiles.
    progress : None, bool
        None: a tqdm bar when the test is expected to run over ~2 s; False: never.
    precision : {"ieee", "tf32", "tf32x3"}
        As in :func:`mmdkit.mmd2` (Triton only).

    Returns
    -------
    TwoSampleTestResult
        ``statistic`` (float), ``pvalue``, ``null_distribution`` (numpy) and
        the settings used.

    Notes
    -----
    p = (1 + #{null >= observed - tol}) / (1 + P) for random permutations and
    #{null >= observed - tol} / C(n + m, n) when exact (scipy's convention,
    the identity is one of the enumerated relabellings); tol = 100 eps |observed|
    with eps of the compute dtype (float32 for float32 and lower inputs).
    dcor counts ``null > observed`` strictly, so its p-values can be smaller by
    ties only. Cost: O((n + m)^2 (d + P)) time, one kernel matrix product per
    batch of permutations.

    References
    ----------
    Szekely & Rizzo. Testing for equal distributions in high dimension.
    InterStat 5 (2004). Szekely & Rizzo. Energy statistics: a class of
    statistics based on distances. J. Stat. Plan. Inference 143 (2013).

    Examples
    --------
    >>> import numpy as np
    >>> from mmdkit import energy_test
    >>> rng = np.random.default_rng(0)
    >>> res = energy_test(rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 1, seed=0)
    >>> res.pvalue < 0.01
    True
    """
    Xt, Yt, numpy_in, count, batch, memory_budget = _setup(X, Y, n_permutations, alternative, batch, memory_budget,
                                                 progress, 1)
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
        raise TypeError(f"`exponent` must be a float in (0, 2), got {exponent!r}")
    spec = Energy(exponent=float(exponent))
    engine = get_backend(backend, Xt.device, Xt.dtype, precision)
    gen = generator(seed)
    n, m = Xt.shape[0], Yt.shape[0]
    exact = math.comb(n + m, n) <= count
    count = math.comb(n + m, n) if exact else count
    scale = n * m / (n + m)
    with torch.no_grad():
        [((FX, FY), unit, w)] = _terms(spec, Xt, Yt)
        value = w * _energy_distance(FX, FY, unit, False, engine)
        statistic = float(output(value, numpy_in, Xt.dtype)) * n * m / (n + m)
        observed, null, op = null_statistics(torch.cat([FX, FY]), n, m, [unit], engine, False, gen, count, exact,
                                             batch, memory_budget, progress, "energy_test")
    null, observed = null[0] * (w * scale), observed[0] * (w * scale)
    return TwoSampleTestResult(
        statistic=statistic, pvalue=pvalue(null, observed, alternative, exact, op.dtype),
        null_distribution=null, n_permutations=count, exact=exact, kernel=spec, bandwidth=None,
        backend=engine.name, method=op.method, alternative=alternative, test="energy")


def mmd_test(X, Y, kernel="gaussian", bandwidth=None, n_permutations: int | None = None, seed=None,
             alternative: str = "greater", batch: int | None = None, backend: str = "auto",
             memory_budget: int = DEFAULT_MEMORY_BUDGET, aggregate: bool = False, alpha: float = 0.05,
             progress: bool | None = None, precision: str = "ieee") -> TwoSampleTestResult:
    r"""Kernel two-sample permutation test on the unbiased MMD^2 (optionally MMDAgg).

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) and (m, d), or (n,) for d = 1; n, m >= 2
    kernel : str, KernelSpec or FeatureKernel
        As in :func:`mmdkit.mmd2`. A FeatureKernel (e.g. the trained kernel of
        :func:`mmdkit.learned_kernel_test`) needs ``bandwidth=None`` and
        ``aggregate=False``: its statistic and every permutation's are the
        weighted sums over its terms, all terms permuted alike.
    bandwidth : float, "median", list of floats, "grid" or None
        As in :func:`mmdkit.mmd2` (a list is a sum of kernels, one test).
        With ``aggregate=True``: a list or "grid" (None means "grid", see
        :func:`mmdkit.bandwidth_grid`), one test per bandwidth.
    n_permutations : int or None
        Random relabellings; when C(n + m, n) <= n_permutations every distinct
        relabelling is enumerated instead (``exact=True``; never for an
        aggregated test, which draws 2 x n_permutations: B1 = B2 = n_permutations).
        None: 1000, or 2000 for an aggregated test (B1 = B2 = 2000, the paper's).
    seed : None, int, torch.Generator or numpy.random.Generator
        Permutations are drawn on the CPU from a torch.Generator, so the same
        seed gives the same p-value on every backend and for numpy or torch input.
    alternative : {"greater", "less", "two-sided"}
        As in ``scipy.stats.permutation_test``; an aggregated test is "greater".
    batch : int or None
        Permutations per engine call (memory O((n + m) batch)); None picks one.
    backend : {"auto", "torch", "triton"}
    memory_budget : int
        Bytes allowed for the dense kernel matrices ((n + m)^2 per bandwidth);
        above it they are streamed in tiles.
    aggregate : bool
        Run MMDAgg: one test per bandwidth on shared permutations, combined
        with the level correction of Schrab et al.
    alpha : float
        Level of the aggregated test's decision (``reject``); unused otherwise.
    progress : None, bool
        None: a tqdm bar when the test is expected to run over ~2 s; False: never.
    precision : {"ieee", "tf32", "tf32x3"}
        As in :func:`mmdkit.mmd2` (Triton only).

    Returns
    -------
    TwoSampleTestResult
        ``statistic`` is ``mmd2_unbiased(X, Y, kernel)`` (the same call, as a
        float), ``pvalue``, ``null_distribution`` and the settings used; an
        aggregated test adds ``reject``, ``alpha`` and ``per_bandwidth``.

    Notes
    -----
    Every permutation statistic comes from the engine's permutation product
    diag(E' K0 E), E' K0 1 for a label matrix E, one product per batch
    (:mod:`mmdkit._permutations`), so the cost is
    O((n + m)^2 (d + P)) with BLAS doing the P part.
    p = (1 + #{null >= observed - tol}) / (1 + P) for random permutations,
    #{null >= observed - tol} / C(n + m, n) when exact (scipy's convention);
    tol = 100 eps |observed|, eps of the compute dtype. "less" counts
    null <= observed + tol; "two-sided" doubles the smaller one-sided p-value.
    The comparisons use the identity labelling's value from the same product
    as the null (equal to ``statistic`` up to rounding).

    Aggregated (MMDAgg): with weights w_l = 1/L over the L bandwidths, B1
    permutations (plus the identity) give each bandwidth's quantiles q_l(a);
    u is found by bisection (50 steps) as the largest value with
    P_B2(max_l [MMD_l - q_l(1 - u w_l)] > 0) <= alpha on the second set of B2
    permutations, and the test rejects when some single p-value p_l <= u w_l.
    The reported p-value calibrates t = min_l p_l / w_l against the same
    quantity on the second set, (1 + #{t_b <= t}) / (1 + B2); pvalue <= alpha
    implies ``reject``.

    References
    ----------
    Gretton et al. A kernel two-sample test. JMLR 13 (2012).
    Schrab, Kim, Albert, Laurent, Guedj, Gretton. MMD aggregated two-sample
    test. JMLR 24 (2023).

    Examples
    --------
    >>> import numpy as np
    >>> from mmdkit import mmd_test
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(100, 2)), rng.normal(size=(120, 2)) + 0.8
    >>> mmd_test(X, Y, seed=0).pvalue < 0.01
    True
    >>> mmd_test(X, Y, aggregate=True, n_permutations=200, seed=0).reject
    True
    """
    if not isinstance(aggregate, bool):
        raise TypeError(f"`aggregate` must be True or False, got {aggregate!r}")
    if n_permutations is None:
        n_permutations = PAPER_PERMUTATIONS if aggregate else 1000
    Xt, Yt, numpy_in, count, batch, memory_budget = _setup(X, Y, n_permutations, alternative, batch, memory_budget,
                                                 progress, 2)
    engine = get_backend(backend, Xt.device, Xt.dtype, precision)
    gen = generator(seed)
    if is_feature_kernel(kernel, bandwidth):
        if aggregate:
            raise ValueError(f"`aggregate=True` tests one kernel per bandwidth of a spec; a "
                             f"{type(kernel).__name__} is one kernel (use aggregate=False)")
        return _mmd_test(Xt, Yt, kernel, count, alternative, gen, batch, engine, memory_budget, progress, numpy_in)
    if aggregate:
        return aggregated_test(Xt, Yt, kernel, bandwidth, count, alpha, alternative, gen, batch, engine,
                               memory_budget, progress)
    if isinstance(bandwidth, str) and bandwidth == "grid":
        raise ValueError("`bandwidth='grid'` needs `aggregate=True` (one test per bandwidth)")
    spec = resolve_kernel(kernel, bandwidth, Xt, Yt)
    return _mmd_test(Xt, Yt, spec, count, alternative, gen, batch, engine, memory_budget, progress, numpy_in)


def _same_draws(gen: torch.Generator) -> torch.Generator:
    """A new generator in ``gen``'s state (it draws the same permutations)."""
    g = torch.Generator()
    g.set_state(gen.get_state())
    return g


def _mmd_test(Xt, Yt, kernel: KernelSpec | FeatureKernel, count: int, alternative: str, gen: torch.Generator,
              batch, engine: Backend, memory_budget: int, progress, numpy_in: bool) -> TwoSampleTestResult:
    """The permutation test on MMD^2_u of validated samples for a resolved spec or a feature kernel.

    A feature kernel's statistic and null are the weighted sums over its terms,
    every term permuted by the same draws (a copy of ``gen`` per term, ``gen``
    itself for the last, so ``gen`` ends where one spec would leave it).
    """
    n, m = Xt.shape[0], Yt.shape[0]
    exact = math.comb(n + m, n) <= count
    count = math.comb(n + m, n) if exact else count
    with torch.no_grad():
        terms = [(F, spec, float(w)) for F, spec, w in _terms(kernel, Xt, Yt)]
        value = sum(w * _mmd2(FX, FY, spec, "unbiased", engine) for (FX, FY), spec, w in terms)
        statistic = float(output(value, numpy_in, Xt.dtype))  # mmd2_unbiased's
        observed, null = 0.0, 0.0
        for i, ((FX, FY), spec, w) in enumerate(terms):
            draws = gen if i == len(terms) - 1 else _same_draws(gen)
            obs, nul, op = null_statistics(torch.cat([FX, FY]), n, m, [spec], engine, True, draws, count, exact,
                                           batch, memory_budget, progress, "mmd_test")
            observed, null = observed + w * obs[0], null + w * nul[0]
    if isinstance(kernel, FeatureKernel):
        bw = None
    else:
        bw = kernel.bandwidths if isinstance(kernel, Mixture) else kernel.bandwidth
    return TwoSampleTestResult(
        statistic=statistic, pvalue=pvalue(null, observed, alternative, exact, op.dtype),
        null_distribution=null, n_permutations=count, exact=exact, kernel=kernel, bandwidth=bw,
        backend=engine.name, method=op.method, alternative=alternative, test="mmd")
