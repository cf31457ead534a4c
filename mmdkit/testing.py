"""Permutation two-sample tests: MMD, energy distance, and MMDAgg over bandwidths.

Every permutation statistic comes from one matrix product. Pool the samples,
Z = [X; Y] (N = n + m points), and write each relabelling as a column e of a
label matrix E (N x B) with e_i = m on the points labelled X and -n on those
labelled Y (integers, exact in every float dtype). With K0 the kernel matrix of
Z with a zero diagonal, T = K0 @ E and the row sums r = K0 1 give, per column,

    q = e' K0 e = sum_i e_i T_i,    u = e' r,    S = 1' r,
    Sxx = (q + 2 n u + n^2 S) / N^2,    Syy = (q - 2 m u + m^2 S) / N^2,
    MMD_u^2 = q / (n m)^2 + Sxx / (n^2 (n - 1)) + Syy / (m^2 (m - 1)),
    energy V-statistic = q / (n m)^2   (the energy kernel -||x - y|| has k(z, z) = 0),

so a batch of B permutations costs one (N x N) @ (N x B) product -- half of
one, since K0 is symmetric and q = 2 e' U e with U its strictly upper part.
The upper tiles of K0 come from the engine's tile function; they are kept
when they fit ``memory_budget`` ("dense") and recomputed every batch
otherwise ("streamed": one tile plus O(N B) memory, never N^2).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import Tensor

from mmdkit._backend import choose_backend
from mmdkit._validation import as_pair, check_int, resolve_kernel
from mmdkit.estimators import energy_distance, mmd2_unbiased
from mmdkit.kernels import blocked
from mmdkit.kernels.blocked import compute_dtype
from mmdkit.kernels.specs import Energy, KernelSpec, Mixture

__all__ = ["mmd_test", "energy_test", "TwoSampleTestResult", "BandwidthResult", "bandwidth_grid"]

ALTERNATIVES = ("greater", "less", "two-sided")
DEFAULT_MEMORY_BUDGET = 2**30  # bytes for the dense kernel matrices (1 GiB)
_LABEL_BYTES = 64 * 2**20  # automatic batch: label and product blocks of about this size
_PROGRESS_AFTER_S = 2.0  # open a progress bar when a test is expected to run longer
_BISECTION_STEPS = 50  # MMDAgg's B3
# Tile sides of K0 here: the (BM, BN) @ (BN, batch) products dominate, so tiles
# may be larger than the engine's L2-sized ones; fewer, larger elementwise calls
# also cost far less when the two cores are shared. Dense tiles stay smaller so
# the triangle saves more of the product (1024: 62% of K0 @ E at N = 4000).
_DENSE_TILE, _STREAM_TILE = 1024, 2048
_GRID_SIZE, _GRID_POINTS = 10, 500  # MMDAgg's bandwidth collection


@dataclass(frozen=True, eq=False)
class BandwidthResult:
    """One bandwidth of an aggregated (MMDAgg) test.

    ``pvalue`` is the single test's permutation p-value, ``threshold`` the
    corrected level u * w it is compared with, ``reject`` = pvalue <= threshold.
    """

    bandwidth: float
    statistic: float
    pvalue: float
    threshold: float
    reject: bool
    null_distribution: np.ndarray = field(repr=False)


@dataclass(frozen=True, eq=False)
class TwoSampleTestResult:
    """Result of :func:`mmd_test` or :func:`energy_test` (fields in the style of scipy.stats).

    Attributes
    ----------
    statistic : float
        The observed statistic: ``mmd2_unbiased(X, Y, kernel)``; for
        ``energy_test`` n m / (n + m) x ``energy_distance(X, Y)``; for an
        aggregated test the Bonferroni-weighted smallest single-bandwidth
        p-value min_l p_l / w_l (small is extreme).
    pvalue : float
    null_distribution : numpy.ndarray
        The statistic under each permutation (for an aggregated test: the
        weighted smallest p-value of each permutation of the second set).
    n_permutations : int
        Permutations used (C(n + m, n) when ``exact``). An aggregated test
        draws twice this many: one set for the quantiles, one for the level.
    exact : bool
        True when every distinct relabelling was enumerated.
    kernel : KernelSpec
    bandwidth : float, tuple of floats or None
    backend : str
        The engine that ran ("torch" or "triton").
    method : str
        "dense" (kernel matrix built once) or "streamed" (tiles, O(N batch) memory).
    alternative : str
    test : str
        "mmd", "energy" or "mmdagg".
    alpha, reject : float, bool or None
        The level and decision of an aggregated test (None otherwise).
    per_bandwidth : tuple of BandwidthResult
        The single tests of an aggregated test (empty otherwise).
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray
    n_permutations: int
    exact: bool
    kernel: KernelSpec
    bandwidth: float | tuple[float, ...] | None
    backend: str
    method: str
    alternative: str
    test: str
    alpha: float | None = None
    reject: bool | None = None
    per_bandwidth: tuple[BandwidthResult, ...] = ()

    def __repr__(self):
        extra = "" if self.reject is None else f", reject={self.reject}, alpha={self.alpha}"
        return (f"TwoSampleTestResult(test={self.test!r}, statistic={self.statistic:.6g}, "
                f"pvalue={self.pvalue:.6g}, n_permutations={self.n_permutations}, exact={self.exact}, "
                f"kernel={self.kernel.name}, bandwidth={self.bandwidth}, backend={self.backend!r}, "
                f"method={self.method!r}{extra})")


# -- permutations ------------------------------------------------------------

def _generator(seed) -> torch.Generator:
    """A CPU torch.Generator from ``seed``: None (fresh entropy), an int, a torch or numpy Generator."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError(f"`seed` must be a CPU torch.Generator (permutations are drawn on the CPU "
                             f"so every backend sees the same ones), got one on {seed.device}")
        return seed
    g = torch.Generator()
    if seed is None:
        g.seed()
    elif isinstance(seed, np.random.Generator):
        g.manual_seed(int(seed.integers(2**63)))
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {seed}")
        g.manual_seed(int(seed))
    else:
        raise TypeError(f"`seed` must be None, an int or a torch.Generator, got {type(seed).__name__}")
    return g


def _x_indices(gen: torch.Generator, n: int, N: int, count: int, exact: bool):
    """Indices of the X-labelled points of each relabelling: all C(N, n) subsets in
    lexicographic order (the identity first) when exact, else the first n entries of
    one torch.randperm(N) per permutation (so batching never changes the draws)."""
    if exact:
        yield from (torch.tensor(c) for c in itertools.combinations(range(N), n))
    else:
        for _ in range(count):
            yield torch.randperm(N, generator=gen)[:n]


def _labels(rows: list[Tensor], n: int, m: int, dtype: torch.dtype) -> Tensor:
    """Label matrix (N, B) on the CPU: m on the X-labelled points, -n elsewhere (a transposed view)."""
    E = torch.full((len(rows), n + m), float(-n), dtype=dtype)
    if rows:
        E.scatter_(1, torch.stack(rows), float(m))  # row-wise scatter: contiguous writes
    return E.T


# -- the kernel operator ---------------------------------------------------------

@dataclass(frozen=True)
class _SquaredDistance(KernelSpec):
    """k(t) = t: lets the engine's tile function hand back the distance tile itself."""

    has_bandwidth: ClassVar[bool] = False

    def evaluate_(self, t, derivative=False):
        return t, None


@dataclass(frozen=True)
class _InnerProduct(_SquaredDistance):
    kind: ClassVar[str] = "dot"


def _kernel_tiles(L: Tensor, R: Tensor, specs: list[KernelSpec], diagonal: int | None):
    """Yield k_s on the tile of (L, R) for each spec, the pairs (i, i) zeroed.

    The tile of t comes once from the engine's own tile function; each spec evaluates a copy.
    """
    raw = _SquaredDistance() if specs[0].kind == "distance" else _InnerProduct()
    t, _ = blocked._tile(L, R, raw, False, diagonal, exclude=False)
    for i, spec in enumerate(specs):
        k, _ = spec.evaluate_(t if i == len(specs) - 1 else t.clone())
        if diagonal is not None:
            k.diagonal(diagonal).zero_()
        yield k


class _KernelOperator:
    """E -> per spec (q, u, S) in float64: q = diag(E' K0 E), u = E' K0 1, S = 1' K0 1.

    The torch engine works on the upper tiles of K0 only: with U the strictly
    upper part, K0 = U + U', so q = 2 sum_i e_i (U e)_i and u = e' (U 1) + 1' (U e)
    -- half the products of K0 @ E, and U 1 is one more column of the first
    batch. "dense" keeps the tiles (built once, within ``memory_budget``);
    "streamed" recomputes them every batch (one tile plus O(N B) memory).
    Other engines (Triton) stream the full product through their ``kernel_matmul``.
    """

    def __init__(self, Z: Tensor, specs: list[KernelSpec], backend: str, memory_budget: int,
                 precision: str = "ieee"):
        self.name, self.engine = choose_backend(backend, Z.device, Z.dtype, precision)
        self.Z, self.specs = Z, specs
        self.dtype = compute_dtype(Z.dtype)
        N, item = Z.shape[0], torch.finfo(self.dtype).bits // 8
        dense_rows = blocked._ranges(N, _DENSE_TILE)
        upper = sum(((i1 - i0) * (N - i0) for i0, i1 in dense_rows))  # entries in the upper tiles
        self.method = "dense" if self.name == "torch" and len(specs) * upper * item <= memory_budget \
            else "streamed"
        self.rows = dense_rows if self.method == "dense" else blocked._ranges(N, _STREAM_TILE)
        self.tiles = len(self.rows) * (len(self.rows) + 1) // 2 if self.name == "torch" else 1
        self.u1 = self.cache = None  # U 1 per spec, from the first call
        if self.name == "torch":
            Zc, _ = blocked._centre(Z, None, specs[0])
            self.L, self.R = blocked._factors(Zc, Zc, specs[0].kind)
        if self.method == "dense":
            self.cache = list(self._upper_tiles())

    def _upper_tiles(self):
        """Yield (i0, i1, j0, j1, [tile of U_s]) over the upper tiles, diagonal tiles strictly upper."""
        for a, (i0, i1) in enumerate(self.rows):
            for j0, j1 in self.rows[a:]:
                ks = list(_kernel_tiles(self.L[i0:i1], self.R[j0:j1], self.specs, 0 if i0 == j0 else None))
                if i0 == j0:
                    for k in ks:
                        k.triu_(1)  # each unordered pair once
                yield i0, i1, j0, j1, ks

    def __call__(self, E: Tensor, tick: Callable[[int], None]):
        E = E.to(device=self.Z.device, dtype=self.dtype)
        N, B = E.shape
        ones = torch.ones(N, 1, dtype=E.dtype, device=E.device)
        f64 = torch.float64
        if self.name != "torch":  # the engine's own symmetric sweep; the column of ones gives K0 1
            out = []
            for spec in self.specs:
                T = self.engine.kernel_matmul(self.Z, None, torch.cat([ones, E], 1), spec, exclude_diagonal=True)
                r = T[:, 0].to(f64)
                out.append(((E * T[:, 1:]).sum(0, dtype=f64), E.to(f64).T @ r, r.sum()))
            tick(B)
            return out
        first = self.u1 is None
        V = torch.cat([ones, E], 1) if first else E
        S = len(self.specs)
        q = [torch.zeros(V.shape[1], dtype=f64, device=E.device) for _ in range(S)]
        c = [torch.zeros(V.shape[1], dtype=f64, device=E.device) for _ in range(S)]
        u1 = [torch.zeros(N, dtype=f64, device=E.device) for _ in range(S)] if first else self.u1
        acc: list[Tensor] = []
        row = None

        def finish():  # block row done: acc = (U V)[rows]
            for s, A in enumerate(acc):
                q[s] += (V[row[0]:row[1]] * A).sum(0, dtype=f64)
                c[s] += A.sum(0, dtype=f64)
                if first:
                    u1[s][row[0]:row[1]] = A[:, 0]
        for i0, i1, j0, j1, ks in (self.cache or self._upper_tiles()):
            if (i0, i1) != row:
                if row is not None:
                    finish()
                row, acc = (i0, i1), [torch.zeros(i1 - i0, V.shape[1], dtype=E.dtype, device=E.device) for _ in ks]
            for A, k in zip(acc, ks):
                A.addmm_(k, V[j0:j1])  # (BM, BN) @ (BN, B) -> (BM, B)
            tick(B)
        finish()
        self.u1 = u1
        skip = 1 if first else 0
        return [(2 * q[s][skip:], E.to(f64).T @ u1[s] + c[s][skip:], 2 * u1[s].sum()) for s in range(S)]


class _Progress:
    """Counts work units; opens a tqdm bar once the run is expected to take over ~2 s."""

    def __init__(self, total: int, enabled: bool | None, desc: str):
        self.total, self.enabled, self.desc = total, enabled, desc
        self.done, self.bar, self.t0 = 0, None, time.perf_counter()
        if enabled is True:
            self._open()

    def _open(self):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.total, initial=self.done, desc=self.desc, leave=False, mininterval=0.5,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    def __call__(self, units: int):
        self.done += units
        if self.bar is not None:
            self.bar.update(units)
        elif self.enabled is None and self.done < self.total:
            elapsed = time.perf_counter() - self.t0
            if elapsed * self.total / self.done > _PROGRESS_AFTER_S:
                self._open()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _null(Z: Tensor, n: int, m: int, specs: list[KernelSpec], stat, gen, count: int, exact: bool,
          batch: int | None, backend: str, precision: str, memory_budget: int, progress, desc: str):
    """Statistics of the identity labelling and of every permutation, for every spec.

    ``stat(q, u, S)`` maps the float64 per-column sums to statistics. Returns
    (observed (S,), null (S, count), operator). The identity is evaluated by the
    same product as the permutations, so its value is the one the p-value compares.
    """
    N = n + m
    op = _KernelOperator(Z, specs, backend, memory_budget, precision)
    item = torch.finfo(op.dtype).bits // 8
    if batch is None:
        batch = max(16, _LABEL_BYTES // (2 * N * item))
    batch = min(batch, count + 1)
    bar = _Progress((count + 1) * op.tiles, progress, desc)
    draws = _x_indices(gen, n, N, count, exact)
    identity = torch.tensor([float(m)] * n + [float(-n)] * m, dtype=op.dtype)[:, None]
    observed = np.empty(len(specs))
    null = np.empty((len(specs), count))
    done, first = 0, True
    try:
        while first or done < count:
            take = min(count - done, batch - first)
            E = _labels([next(draws) for _ in range(take)], n, m, op.dtype)
            if first:  # the identity labelling goes through the same product as the permutations
                E = torch.cat([identity, E], 1)
            E = E.to(device=Z.device)
            for s, (q, u, total) in enumerate(op(E, bar)):
                values = stat(q, u, total).cpu().numpy()
                if first:
                    observed[s], values = values[0], values[1:]
                null[s, done:done + take] = values
            done, first = done + take, False
    finally:
        bar.close()
    return observed, null, op


def _mmd2_unbiased_from(n: int, m: int):
    """stat(q, u, S) for the unbiased MMD^2 (see the module docstring)."""
    N, nm2 = n + m, float(n * m) ** 2

    def stat(q, u, S):
        Sxx = (q + 2 * n * u + n * n * S) / N**2
        Syy = (q - 2 * m * u + m * m * S) / N**2
        return q / nm2 + Sxx / (n * n * (n - 1)) + Syy / (m * m * (m - 1))
    return stat


def _energy_from(n: int, m: int):
    """stat(q, u, S) for n m / (n + m) x the V-statistic energy distance."""
    return lambda q, u, S: q / (float(n * m) * (n + m))


# -- p-values ----------------------------------------------------------------------

def _tolerance(values, dtype: torch.dtype):
    """scipy's tie tolerance: 100 eps |value| (eps of the dtype the null was computed in)."""
    return np.abs(values) * (100 * torch.finfo(dtype).eps)


def _pvalue(null: np.ndarray, observed: float, alternative: str, exact: bool, dtype) -> float:
    """(adj + #{null at least as extreme}) / (adj + P), adj = 0 for an exact test (scipy's rule)."""
    adj = 0 if exact else 1
    gamma = _tolerance(observed, dtype)
    greater = (np.count_nonzero(null >= observed - gamma) + adj) / (null.size + adj)
    less = (np.count_nonzero(null <= observed + gamma) + adj) / (null.size + adj)
    p = {"greater": greater, "less": less, "two-sided": 2 * min(greater, less)}[alternative]
    return float(min(max(p, 0.0), 1.0))


def _setup(X, Y, n_permutations, alternative, batch, memory_budget, min_n):
    """Validated pooled sample and settings shared by both tests."""
    Xt, Yt, _ = as_pair(X, Y, min_n)
    count = check_int(n_permutations, "n_permutations", 1)
    if alternative not in ALTERNATIVES:
        raise ValueError(f"`alternative` must be one of {ALTERNATIVES}, got {alternative!r}")
    if batch is not None:
        batch = check_int(batch, "batch", 1)
    memory_budget = check_int(memory_budget, "memory_budget", 0)
    return Xt, Yt, count, batch, memory_budget


def _check_progress(progress):
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"`progress` must be None, True or False, got {progress!r}")


# -- public tests ------------------------------------------------------------------

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
    precision : {"ieee", "tf32"}
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
    _check_progress(progress)
    Xt, Yt, count, batch, memory_budget = _setup(X, Y, n_permutations, alternative, batch, memory_budget, 1)
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
        raise TypeError(f"`exponent` must be a float in (0, 2), got {exponent!r}")
    spec = Energy(exponent=float(exponent))
    n, m = Xt.shape[0], Yt.shape[0]
    exact = math.comb(n + m, n) <= count
    count = math.comb(n + m, n) if exact else count
    with torch.no_grad():
        statistic = float(energy_distance(X, Y, exponent=spec.exponent, backend=backend, precision=precision)) \
            * n * m / (n + m)
        observed, null, op = _null(torch.cat([Xt, Yt]).detach(), n, m, [spec], _energy_from(n, m),
                                   _generator(seed), count, exact, batch, backend, precision, memory_budget,
                                   progress, "energy_test")
    return TwoSampleTestResult(
        statistic=statistic, pvalue=_pvalue(null[0], observed[0], alternative, exact, op.dtype),
        null_distribution=null[0], n_permutations=count, exact=exact, kernel=spec, bandwidth=None,
        backend=op.name, method=op.method, alternative=alternative, test="energy")


def bandwidth_grid(X, Y, count: int = _GRID_SIZE, max_points: int = _GRID_POINTS) -> tuple[float, ...]:
    """MMDAgg's bandwidth collection: ``count`` geometric steps from q05 / 2 to 2 max.

    q05 and max are the 5% quantile and the maximum of the nonzero distances
    between X and Y on at most ``max_points`` points of each, evenly spaced by
    index (deterministic). Schrab et al. start at the minimum distance and use
    the 5% quantile only when the minimum is below 0.1; the quantile is used
    here always, so the grid scales with the data.

    Examples
    --------
    >>> from mmdkit.testing import bandwidth_grid
    >>> [round(h, 3) for h in bandwidth_grid([[0.0], [1.0]], [[2.0], [4.0]], count=3)]
    [0.575, 2.145, 8.0]
    """
    Xt, Yt, _ = as_pair(X, Y, 1)
    count = check_int(count, "count", 2)
    pick = lambda A: A[torch.linspace(0, A.shape[0] - 1, min(max_points, A.shape[0])).long()]
    dist = torch.cdist(pick(Xt.detach()).double(), pick(Yt.detach()).double()).flatten()
    dist = dist[dist > 0]
    if dist.numel() == 0:
        raise ValueError("bandwidth grid is undefined: all points of `X` and `Y` coincide")
    lo, hi = float(torch.quantile(dist, 0.05)) / 2, 2 * float(dist.max())
    return tuple(float(h) for h in np.geomspace(lo, hi, count))


def _aggregate(Xt, Yt, X, Y, kernel, bandwidth, count, alpha, alternative, seed, batch, backend,
               precision, memory_budget, progress) -> TwoSampleTestResult:
    """MMDAgg (Schrab et al. 2023, Algorithm 1) with uniform weights over the bandwidths."""
    if alternative != "greater":
        raise ValueError(f"`alternative` must be 'greater' for an aggregated test, got {alternative!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (float, int)) or not 0 < alpha < 1:
        raise ValueError(f"`alpha` must lie in (0, 1), got {alpha!r}")
    if isinstance(kernel, Mixture):
        if bandwidth is not None:
            raise ValueError("`bandwidth` must be None when `kernel` is a Mixture (its components are the bandwidths)")
        specs = list(kernel.components)
    else:
        if bandwidth is None or (isinstance(bandwidth, str) and bandwidth == "grid"):
            bandwidth = list(bandwidth_grid(Xt, Yt))
        elif not isinstance(bandwidth, (list, tuple)):
            raise ValueError(f"`bandwidth` must be a list of floats or 'grid' for an aggregated test, "
                             f"got {bandwidth!r}")
        specs = list(resolve_kernel(kernel, list(bandwidth), Xt, Yt).components)
    if any(s.needs_bandwidth for s in specs):
        raise ValueError("every component of the aggregated `kernel` needs a bandwidth")
    n, m = Xt.shape[0], Yt.shape[0]
    L = len(specs)
    w = np.full(L, 1.0 / L)
    with torch.no_grad():
        observed, null, op = _null(torch.cat([Xt, Yt]).detach(), n, m, specs, _mmd2_unbiased_from(n, m),
                                   _generator(seed), 2 * count, False, batch, backend, precision, memory_budget,
                                   progress, "mmd_test (aggregated)")
        stats = [float(mmd2_unbiased(X, Y, kernel=s, backend=backend, precision=precision)) for s in specs]
    # M1: the identity and the first set (quantiles); M2: the second set (level correction)
    M1 = np.sort(np.concatenate([observed[:, None], null[:, :count]], 1), 1)  # (L, B1 + 1)
    M2 = null[:, count:]  # (L, B2)
    B1 = count
    rows = np.arange(L)

    def quantiles(u):
        return M1[rows, np.ceil((B1 + 1) * (1 - u * w)).astype(int) - 1]

    lo, hi = 0.0, float(np.min(1 / w))
    for _ in range(_BISECTION_STEPS):
        u = (lo + hi) / 2
        if np.mean((M2 > quantiles(u)[:, None]).any(0)) <= alpha:
            lo = u
        else:
            hi = u
    u = lo

    def single_pvalues(values):  # (L, k) -> #{M1 >= value - tol} / (B1 + 1), per bandwidth
        below = np.stack([np.searchsorted(M1[i], values[i] - _tolerance(values[i], op.dtype), side="left")
                          for i in range(L)])
        return (B1 + 1 - below) / (B1 + 1)

    p_obs = single_pvalues(observed[:, None])[:, 0]
    t_obs = float(np.min(p_obs / w))
    t_null = np.min(single_pvalues(M2) / w[:, None], 0)
    pvalue = (1 + np.count_nonzero(t_null <= t_obs)) / (1 + t_null.size)
    thresholds = u * w
    details = tuple(BandwidthResult(bandwidth=float(s.bandwidth), statistic=stats[i], pvalue=float(p_obs[i]),
                                    threshold=float(thresholds[i]), reject=bool(p_obs[i] <= thresholds[i]),
                                    null_distribution=null[i, :count].copy())
                    for i, s in enumerate(specs))
    return TwoSampleTestResult(
        statistic=t_obs, pvalue=float(pvalue), null_distribution=t_null, n_permutations=count, exact=False,
        kernel=Mixture(components=tuple(specs)), bandwidth=tuple(float(s.bandwidth) for s in specs),
        backend=op.name, method=op.method, alternative=alternative, test="mmdagg", alpha=float(alpha),
        reject=any(d.reject for d in details), per_bandwidth=details)


def mmd_test(X, Y, kernel="gaussian", bandwidth=None, n_permutations: int = 1000, seed=None,
             alternative: str = "greater", batch: int | None = None, backend: str = "auto",
             memory_budget: int = DEFAULT_MEMORY_BUDGET, aggregate: bool = False, alpha: float = 0.05,
             progress: bool | None = None, precision: str = "ieee") -> TwoSampleTestResult:
    r"""Kernel two-sample permutation test on the unbiased MMD^2 (optionally MMDAgg).

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) and (m, d), or (n,) for d = 1; n, m >= 2
    kernel : str or KernelSpec
        As in :func:`mmdkit.mmd2`.
    bandwidth : float, "median", list of floats, "grid" or None
        As in :func:`mmdkit.mmd2` (a list is a sum of kernels, one test).
        With ``aggregate=True``: a list or "grid" (None means "grid", see
        :func:`mmdkit.testing.bandwidth_grid`), one test per bandwidth.
    n_permutations : int
        Random relabellings; when C(n + m, n) <= n_permutations every distinct
        relabelling is enumerated instead (``exact=True``; never for an
        aggregated test, which draws 2 x n_permutations: B1 = B2 = n_permutations).
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
    precision : {"ieee", "tf32"}
        As in :func:`mmdkit.mmd2` (Triton only).

    Returns
    -------
    TwoSampleTestResult
        ``statistic`` is ``mmd2_unbiased(X, Y, kernel)`` (the same call, as a
        float), ``pvalue``, ``null_distribution`` and the settings used; an
        aggregated test adds ``reject``, ``alpha`` and ``per_bandwidth``.

    Notes
    -----
    Every permutation statistic comes from T = K0 @ E for a label matrix E,
    one product per batch (module docstring), so the cost is
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
    _check_progress(progress)
    Xt, Yt, count, batch, memory_budget = _setup(X, Y, n_permutations, alternative, batch, memory_budget, 2)
    if not isinstance(aggregate, bool):
        raise TypeError(f"`aggregate` must be True or False, got {aggregate!r}")
    if aggregate:
        return _aggregate(Xt, Yt, X, Y, kernel, bandwidth, count, alpha, alternative, seed, batch, backend,
                          precision, memory_budget, progress)
    if isinstance(bandwidth, str) and bandwidth == "grid":
        raise ValueError("`bandwidth='grid'` needs `aggregate=True` (one test per bandwidth)")
    spec = resolve_kernel(kernel, bandwidth, Xt, Yt)
    n, m = Xt.shape[0], Yt.shape[0]
    exact = math.comb(n + m, n) <= count
    count = math.comb(n + m, n) if exact else count
    with torch.no_grad():
        statistic = float(mmd2_unbiased(X, Y, kernel=spec, backend=backend, precision=precision))
        observed, null, op = _null(torch.cat([Xt, Yt]).detach(), n, m, [spec], _mmd2_unbiased_from(n, m),
                                   _generator(seed), count, exact, batch, backend, precision, memory_budget,
                                   progress, "mmd_test")
    bw = spec.bandwidths if isinstance(spec, Mixture) else spec.bandwidth
    return TwoSampleTestResult(
        statistic=statistic, pvalue=_pvalue(null[0], observed[0], alternative, exact, op.dtype),
        null_distribution=null[0], n_permutations=count, exact=exact, kernel=spec, bandwidth=bw,
        backend=op.name, method=op.method, alternative=alternative, test="mmd")
