"""Kernel Inception Distance (KID): unbiased MMD^2 with the cubic polynomial kernel.

Two protocols share one kernel, k(x, y) = (gamma <x, y> + coef0)^degree with
gamma = 1/d, coef0 = 1, degree = 3 (Binkowski et al. 2018):

* subsets (the published protocol of torchmetrics, clean-fid, torch-fidelity):
  the mean and standard deviation of the unbiased MMD^2 over random subsets;
* exact (``subsets=None``): the unbiased MMD^2 of the full samples and the
  unbiased estimate of its variance, from one engine sweep that applies k and
  k^2 to each dot tile (``kernel_matmuls``; never an n x m matrix).

Features may be tensors, arrays, memory-mapped ``.npy`` files
(``np.load(path, mmap_mode="r")``) or iterators of chunks; see :func:`kid`.
Every kernel sum goes through the engine (:func:`mmdkit.kernels.get_backend`).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from mmdkit._permutations import generator
from mmdkit._validation import as_tensor, check_device, check_finite, check_int
from mmdkit.estimators import _mmd2, mmd2_from_sums
from mmdkit.kernels import Backend, KernelSpec, Polynomial, get_backend

__all__ = ["kid", "KID", "KIDResult"]

EXACT_MIN_N = 4  # the unbiased variance estimate needs 4 distinct points of each sample
READ_BYTES = 32 * 2**20  # memory-mapped arrays are read in row blocks of about this size


@dataclass(frozen=True, eq=False)
class KIDResult:
    """Result of :func:`kid` (values in MMD^2 units, never scaled by 1000).

    Attributes
    ----------
    value : float
        KID: the mean of the subset values, or the full-sample unbiased MMD^2
        (``method`` "exact").
    std : float
        "subsets": the standard deviation of the subset values with ddof = 0
        (as torchmetrics and torch-fidelity report it; the spread of one
        subset's estimate, not the error of the mean). "exact": the standard
        error of ``value``, sqrt(max(variance, 0)).
    variance : float
        std^2 before the clip: for "exact" the unbiased estimate of
        Var[MMD^2_u] (it can come out slightly negative on tiny samples).
    method : str
        "subsets" or "exact".
    subsets, subset_size : int or None
        The subsets used (None for "exact"; ``subset_size`` None when explicit
        ``subset_indices`` have unequal sizes).
    ddof : int or None
        0 for "subsets", None for "exact".
    n, m, d : int
        Points of ``real``, of ``fake``, and their dimension.
    kernel : Polynomial
        The resolved kernel (gamma set).
    backend : str
        The engine that ran.
    subset_values : numpy.ndarray
        The unbiased MMD^2 of each subset (empty for "exact").
    """

    value: float
    std: float
    variance: float
    method: str
    subsets: int | None
    subset_size: int | None
    ddof: int | None
    n: int
    m: int
    d: int
    kernel: Polynomial
    backend: str
    subset_values: np.ndarray = field(repr=False)


@dataclass
class _Source:
    """One sample, validated for shape and dtype: a tensor, a memory-mapped array read in row
    blocks, or the chunks an iterator gave (moved into the pooled tensor one by one)."""

    name: str
    n: int
    d: int
    dtype: torch.dtype
    device: torch.device | None  # None: follows the other sample (not a tensor)
    tensor: Tensor | None = None
    array: np.ndarray | None = None
    chunks: list[Tensor] | None = None


def _numpy_float(dtype: np.dtype, name: str) -> np.dtype:
    """The native float dtype an array of ``dtype`` is read as (integers as float64, like numpy input)."""
    if dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must hold real numbers, got a memory-mapped array of dtype {dtype}")
    return np.dtype(np.float64) if dtype.kind in "biu" else dtype.newbyteorder("=")


def _source(x, name: str) -> _Source:
    """Shape and dtype checks of one sample (values are checked where they are read)."""
    if isinstance(x, np.memmap):
        arr = x[:, None] if x.ndim == 1 else x
        native = _numpy_float(arr.dtype, name)
        if arr.ndim != 2:
            raise ValueError(f"`{name}` must have shape (n, d) or (n,), got shape {tuple(x.shape)}")
        if arr.size == 0:
            raise ValueError(f"`{name}` is empty: shape {tuple(x.shape)}")
        dtype = torch.from_numpy(np.empty(0, dtype=native)).dtype
        return _Source(name, arr.shape[0], arr.shape[1], dtype, None, array=arr)
    if isinstance(x, Iterator):
        chunks: list[Tensor] = []
        for k, c in enumerate(x):
            T, _ = as_tensor(c, f"{name}[{k}]")
            if chunks and T.shape[1] != chunks[0].shape[1]:
                raise ValueError(f"`{name}[{k}]` has {T.shape[1]} columns but `{name}[0]` has {chunks[0].shape[1]}")
            if chunks and T.device != chunks[0].device:
                raise ValueError(f"`{name}[{k}]` is on {T.device} but `{name}[0]` is on {chunks[0].device}")
            check_finite(**{f"{name}[{k}]": T})
            chunks.append(T.detach())
        if not chunks:
            raise ValueError(f"`{name}` is empty: the iterator gave no chunks")
        dtype = chunks[0].dtype
        for c in chunks[1:]:
            dtype = torch.promote_types(dtype, c.dtype)
        return _Source(name, sum(c.shape[0] for c in chunks), chunks[0].shape[1], dtype, chunks[0].device,
                       chunks=chunks)
    T, _ = as_tensor(x, name)
    return _Source(name, T.shape[0], T.shape[1], T.dtype, T.device, tensor=T.detach())


def _read(arr: np.ndarray, rows, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Rows of a memory-mapped array (a slice or an index array) as a tensor."""
    block = arr[rows]  # a fancy index copies; a slice of a read-only map is copied here
    native = _numpy_float(arr.dtype, "")
    block = np.ascontiguousarray(block, native) if block.flags.writeable else np.array(block, native, order="C")
    return torch.from_numpy(block).to(device=device, dtype=dtype)


def _fill(src: _Source, out: Tensor) -> None:
    """Write the rows of ``src`` into ``out`` (its one in-memory copy); chunks are released as they go."""
    if src.tensor is not None:
        out.copy_(src.tensor)
    elif src.array is not None:
        step = max(1, READ_BYTES // (src.d * src.array.dtype.itemsize))
        for i in range(0, src.n, step):
            out[i:i + step] = _read(src.array, slice(i, i + step), out.dtype, out.device)
    else:
        i = 0
        while src.chunks:
            c = src.chunks.pop(0)
            out[i:i + c.shape[0]] = c
            i += c.shape[0]


def _check_finite(named: list[tuple[str, Tensor]]) -> None:
    """check_finite on (name, tensor) pairs whose names may repeat (the CLI given one file twice)."""
    if not named:
        return
    if len({name for name, _ in named}) == len(named):
        check_finite(**dict(named))
    else:
        for name, T in named:
            check_finite(**{name: T})


def _subset_pairs(subset_indices, n: int, m: int, names) -> list[tuple[Tensor, Tensor]]:
    """Validated (real_idx, fake_idx) index tensors (1-D, integer, in range, >= 2 each)."""
    if isinstance(subset_indices, (str, bytes)) or not hasattr(subset_indices, "__len__"):
        raise TypeError("`subset_indices` must be a sequence of (real_idx, fake_idx) pairs, "
                        f"got {type(subset_indices).__name__}")
    if len(subset_indices) == 0:
        raise ValueError("`subset_indices` is empty; give at least one (real_idx, fake_idx) pair")
    pairs = []
    for s, pair in enumerate(subset_indices):
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"`subset_indices`[{s}] must be a pair (real_idx, fake_idx)")
        out = []
        for idx, size, side in zip(pair, (n, m), names):
            t = idx if isinstance(idx, Tensor) else torch.as_tensor(np.asarray(idx))
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise TypeError(f"`subset_indices`[{s}] indices of `{side}` must be integers, got {t.dtype}")
            if t.ndim != 1 or t.numel() < 2:
                raise ValueError(f"`subset_indices`[{s}] indices of `{side}` must be a 1-D list of at least 2 "
                                 f"indices, got shape {tuple(t.shape)}")
            t = t.to("cpu", torch.long)
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= size:
                raise ValueError(f"`subset_indices`[{s}] indices of `{side}` must lie in [0, {size}), "
                                 f"got {lo if lo < 0 else hi}")
            out.append(t)
        pairs.append((out[0], out[1]))
    return pairs


def _variance(Sxx, Syy, Sxy, Rxx, Ryy, Ax, By, Cx, Cy, Qxx, Qyy, Qxy, n: int, m: int) -> float:
    """Unbiased estimate of Var[MMD^2_u] from the sums of :func:`exact_unbiased` (float64 scalars); see kid's Notes."""
    n2, m2 = n * (n - 1), m * (m - 1)
    n3, m3 = n2 * (n - 2), m2 * (m - 2)
    n4, m4 = n3 * (n - 3), m3 * (m - 3)
    # unbiased estimates of the moments (distinct indices) and of the products of means
    t3x, t2x, mu2x = (Rxx - Qxx) / n3, Qxx / n2, (Sxx * Sxx - 4 * Rxx + 2 * Qxx) / n4
    t3y, t2y, mu2y = (Ryy - Qyy) / m3, Qyy / m2, (Syy * Syy - 4 * Ryy + 2 * Qyy) / m4
    shared_x, shared_y, t2xy = (Ax - Qxy) / (n * m2), (By - Qxy) / (m * n2), Qxy / (n * m)
    mu2xy = (Sxy * Sxy - Ax - By + Qxy) / (n2 * m2)
    cross_x, mu_x_xy = Cx / (n2 * m), (Sxx * Sxy - 2 * Cx) / (n3 * m)
    cross_y, mu_y_xy = Cy / (m2 * n), (Syy * Sxy - 2 * Cy) / (m3 * n)
    return ((4 * (n - 2) * (t3x - mu2x) + 2 * (t2x - mu2x)) / n2
            + (4 * (m - 2) * (t3y - mu2y) + 2 * (t2y - mu2y)) / m2
            + 4 * ((m - 1) * (shared_x - mu2xy) + (n - 1) * (shared_y - mu2xy) + (t2xy - mu2xy)) / (n * m)
            - 8 * (cross_x - mu_x_xy) / n - 8 * (cross_y - mu_y_xy) / m)


def exact_unbiased(Z: Tensor, n: int, m: int, spec: KernelSpec, engine: Backend) -> tuple[float, float]:
    """(unbiased MMD^2, unbiased variance estimate) of the pooled sample Z = [X; Y] (validated), for any spec
    whose square is a spec (``spec.square()``): KID's polynomial, CMMD's Gaussian."""
    V = torch.zeros(n + m, 2, dtype=torch.float64, device=Z.device)
    V[:n, 0], V[n:, 1] = 1.0, 1.0
    # row sums of k and k^2 (one sweep, one dot tile) against X and Y, diagonal excluded:
    # [K~xx 1, Kxy 1] on X's rows, [Kyx 1, K~yy 1] on Y's
    R, R2 = engine.kernel_matmuls(Z, None, V, (spec, spec.square()), exclude_diagonal=True).to(torch.float64)
    Q = torch.stack([R2[:n].sum(0), R2[n:].sum(0)])  # Q[a, b] = sum of k^2 over block a x block b
    r, a, b, s = R[:n, 0], R[:n, 1], R[n:, 0], R[n:, 1]
    sums = torch.stack([r.sum(), s.sum(), a.sum(), r @ r, s @ s, a @ a, b @ b, r @ a, s @ b,
                        Q[0, 0], Q[1, 1], Q[0, 1]]).tolist()  # one device-to-host copy
    Sxx, Syy, Sxy = sums[:3]
    return float(mmd2_from_sums(Sxx, Sxy, Syy, n, m, True)), float(_variance(*sums, n, m))


def kid(real, fake, subsets: int | None = 100, subset_size: int = 1000, seed=None, subset_indices=None, *,
        degree: int = 3, gamma: float | None = None, coef0: float = 1.0, backend: str = "auto",
        device=None) -> KIDResult:
    r"""Kernel Inception Distance between ``real`` and ``fake`` features.

    KID is the unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (<x, y> / d + 1)^3:

    .. math::

        \mathrm{KID} = \frac{1}{n(n-1)} \sum_{i \ne j} k(x_i, x_j)
        + \frac{1}{m(m-1)} \sum_{i \ne j} k(y_i, y_j) - \frac{2}{nm} \sum_{i, j} k(x_i, y_j)

    averaged over random subsets (the published protocol) or computed once on
    the full samples (``subsets=None``).

    Parameters
    ----------
    real, fake : tensor, array, memory-mapped array, or iterator of chunks
        Features, shape (n, d) and (m, d) (or (n,) for d = 1). A
        ``np.memmap`` (``np.load(path, mmap_mode="r")``) is read in row
        blocks: the subsets read only their rows, the exact value copies the
        file once into the pooled tensor. An iterator (a generator, or
        ``iter(loader)``) yields (b, d) chunks; they are kept until the
        sample is complete, then moved one by one into the tensor that is
        computed on, so the features are in memory once, not twice. A list
        is an array-like, not a stream of chunks.
    subsets : int or None
        Number of random subsets (default 100). None: the exact full-sample
        value and its standard error.
    subset_size : int
        Points drawn from each sample for each subset, without replacement
        (default 1000). It must not exceed n or m: a ``ValueError`` naming
        ``subset_size`` says so (torchmetrics' rule; clean-fid silently uses
        min(n, m, subset_size) instead -- pass that to reproduce it).
    seed : None, int, torch.Generator or numpy.random.Generator
        Seed of the subsets. Subset s draws ``torch.randperm(n)[:subset_size]``
        for ``real``, then ``torch.randperm(m)[:subset_size]`` for ``fake``, from
        one CPU generator, so an int seed gives the subsets torchmetrics'
        ``KernelInceptionDistance.compute()`` draws after
        ``torch.manual_seed(seed)`` (on CPU). The draws do not depend on the
        device or backend.
    subset_indices : sequence of (real_idx, fake_idx) pairs, optional
        Explicit subsets (1-D integer index arrays, at least 2 each; the sizes
        may differ). They reproduce another library's draws exactly; they
        replace ``subsets``, ``subset_size`` and ``seed`` (giving a ``seed``
        too is an error).
    degree, gamma, coef0 : kernel parameters
        k(x, y) = (gamma <x, y> + coef0)^degree; gamma None means 1/d. The
        defaults are KID's.
    backend : {"auto", "torch", "triton"}
        As in :func:`mmdkit.mmd2`.
    device : torch device, optional
        Where to compute. Default: the device of a tensor input, else the CPU.

    Returns
    -------
    KIDResult
        ``value``, ``std`` and the settings (see :class:`KIDResult`). Values
        are MMD^2 as computed: papers often print KID x 10^3; nothing here is
        scaled.

    Notes
    -----
    *Subsets.* ``value`` is the mean of the subsets' unbiased MMD^2 and
    ``std`` their standard deviation with ddof = 0, as torchmetrics returns
    them (clean-fid returns the mean only). For the same subsets the values
    equal theirs to rounding (checked in float64 to 1e-10). Cost: ``subsets``
    engine sweeps over (2 subset_size)^2 / 2 pairs.

    *Exact* (``subsets=None``). ``value`` is the unbiased MMD^2 of all n and
    m points (n != m is fine; torchmetrics' ``poly_mmd`` divides the Y-Y sum
    by n(n-1) and the X-Y sum by n^2 and is wrong for n != m). ``variance`` is
    the unbiased estimate of Var[MMD^2_u]: with the two-sample U-statistic
    decomposition

    .. math::

        \mathrm{Var} = \tfrac{4(n-2)\zeta_1^x + 2\zeta_2^x}{n(n-1)}
        + \tfrac{4(m-2)\zeta_1^y + 2\zeta_2^y}{m(m-1)}
        + \tfrac{4[(m-1)\xi_x + (n-1)\xi_y + \xi_2]}{nm}
        - \tfrac{8\eta_x}{n} - \tfrac{8\eta_y}{m},

    with zeta_1^x = E k(x1,x2)k(x1,x3) - mu_xx^2, zeta_2^x = E k(x1,x2)^2 -
    mu_xx^2, xi_x = E k(x,y)k(x,y') - mu_xy^2, xi_y = E k(x,y)k(x',y) -
    mu_xy^2, xi_2 = E k(x,y)^2 - mu_xy^2, eta_x = E k(x1,x2)k(x1,y) - mu_xx
    mu_xy (and y alike), each moment and each product of means is replaced by
    its U-statistic over distinct indices. The result is exactly unbiased for
    any n, m >= 4 (and, being symmetric in each sample, the only such
    estimator). Sutherland et al. 2017's estimator for n = m (opt-mmd's
    ``_mmd2_and_variance``; Binkowski et al.'s ``compute_scores.py`` has a
    function of that name) is not exactly unbiased, as Sutherland & Deka 2019
    point out; in a d = 16 Gaussian example it differs from this one by 2 %
    at n = 200 and 0.4 % at n = 1000 (6 % at n = 1000 when P = Q). Every one of those sums is a function of the row sums
    r = K~xx 1, s = K~yy 1, a = Kxy 1, b = Kxy' 1 (K~: diagonal dropped) and
    the sums of k^2 over the three blocks; k^2 of the polynomial kernel is the
    polynomial kernel of twice the degree. So the engine runs two symmetric
    sweeps over the pooled (n + m) points -- one ``kernel_matmul`` with two
    indicator columns for the row sums, one ``block_sums`` of k^2 -- in
    O((n + m)^2 d) time and O((n + m)(d + 2)) memory: no n x m matrix.
    Memory-mapped and chunked features are held once, in the pooled tensor;
    tensor inputs are copied into it once (as :func:`mmdkit.mmd2` pools its
    inputs). float32 features are computed with float32
    kernel values and float64 sums; pass float64 for full precision.

    References
    ----------
    Binkowski, Sutherland, Arbel, Gretton. Demystifying MMD GANs. ICLR 2018.
    Sutherland, Deka. Unbiased estimators for the variance of MMD estimators.
    arXiv:1906.02104 (2019).

    Examples
    --------
    >>> import torch, mmdkit
    >>> g = torch.Generator().manual_seed(0)
    >>> real = torch.randn(600, 8, generator=g, dtype=torch.float64)
    >>> fake = torch.randn(500, 8, generator=g, dtype=torch.float64) + 0.3
    >>> r = mmdkit.kid(real, fake, subsets=50, subset_size=200, seed=0)
    >>> r.method, r.subsets, r.subset_size, r.ddof
    ('subsets', 50, 200, 0)
    >>> e = mmdkit.kid(real, fake, subsets=None)      # all pairs, and the standard error
    >>> print(f"{e.value:.4f} +- {e.std:.4f}")
    0.3031 +- 0.0477
    >>> abs(r.value - e.value) < 3 * r.std / 50 ** 0.5
    True
    """
    names = ("real", "fake")
    return _kid(real, fake, subsets, subset_size, seed, subset_indices, degree, gamma, coef0, backend, device,
                names)


def _kid(real, fake, subsets, subset_size, seed, subset_indices, degree, gamma, coef0, backend, device,
         names) -> KIDResult:
    """:func:`kid` with the samples called ``names`` in messages (the CLI passes file names)."""
    if subsets is not None:
        subsets = check_int(subsets, "subsets", 1)
    subset_size = check_int(subset_size, "subset_size", 2)
    if subset_indices is not None:
        if subsets is None:
            raise ValueError("`subset_indices` gives subsets, but `subsets`=None asks for the exact value")
        if seed is not None:
            raise ValueError("`seed` has no effect when `subset_indices` gives the subsets; leave it None")
    spec = Polynomial(degree=degree, gamma=gamma, coef0=coef0)
    X, Y = _source(real, names[0]), _source(fake, names[1])
    if X.d != Y.d:
        raise ValueError(f"`{names[0]}` and `{names[1]}` must have the same number of columns (d), "
                         f"got {X.d} and {Y.d}")
    if device is not None:
        device = check_device(device)
    else:
        devices = {s.device for s in (X, Y) if s.device is not None}
        if len(devices) > 1:
            raise ValueError(f"`{names[0]}` is on {X.device} but `{names[1]}` is on {Y.device}")
        device = devices.pop() if devices else torch.device("cpu")
    dtype = torch.promote_types(X.dtype, Y.dtype)
    engine = get_backend(backend, device, dtype)
    spec = spec.resolve(X.d)
    n, m = X.n, Y.n
    common = dict(n=n, m=m, d=X.d, kernel=spec, backend=engine.name)
    with torch.no_grad():
        if subsets is None:
            for src in (X, Y):
                if src.n < EXACT_MIN_N:
                    raise ValueError(f"`{src.name}` needs at least {EXACT_MIN_N} points for the exact KID and its "
                                     f"unbiased variance, got {src.n}")
            Z = torch.empty(n + m, X.d, dtype=dtype, device=device)
            _fill(X, Z[:n])
            _fill(Y, Z[n:])
            _check_finite([(names[0], Z[:n]), (names[1], Z[n:])])
            value, variance = exact_unbiased(Z, n, m, spec, engine)
            return KIDResult(value=value, std=math.sqrt(max(variance, 0.0)), variance=variance, method="exact",
                             subsets=None, subset_size=None, ddof=None, subset_values=np.empty(0), **common)
        if subset_indices is not None:
            pairs = _subset_pairs(subset_indices, n, m, names)
        else:
            for src in (X, Y):
                if subset_size > src.n:
                    raise ValueError(f"`subset_size`={subset_size} exceeds the {src.n} points of `{src.name}`; "
                                     f"use subset_size <= {min(n, m)} (or subsets=None for the exact value)")
            gen = generator(seed)
            pairs = [(torch.randperm(n, generator=gen)[:subset_size], torch.randperm(m, generator=gen)[:subset_size])
                     for _ in range(subsets)]
        values = _subset_values(X, Y, pairs, spec, engine, dtype, device)
    sizes = {len(i) for pair in pairs for i in pair}
    variance = float(values.var())  # ddof = 0
    return KIDResult(value=float(values.mean()), std=math.sqrt(variance), variance=variance, method="subsets",
                     subsets=len(pairs), subset_size=sizes.pop() if len(sizes) == 1 else None, ddof=0,
                     subset_values=values, **common)


def _subset_values(X: _Source, Y: _Source, pairs, spec: Polynomial, engine: Backend, dtype: torch.dtype,
                   device: torch.device) -> np.ndarray:
    """Unbiased MMD^2 of each (real_idx, fake_idx) subset, float64 array."""
    in_memory = []
    for src in (X, Y):  # in-memory samples: one tensor each, checked once
        if src.array is None:
            if src.chunks is not None:
                whole = torch.empty(src.n, src.d, dtype=src.dtype, device=src.chunks[0].device)
                _fill(src, whole)
                src.tensor, src.chunks = whole, None
            src.tensor = src.tensor.to(device=device, dtype=dtype)
            in_memory.append((src.name, src.tensor))
    _check_finite(in_memory)
    values = []
    for ri, fi in pairs:
        rows, read = [], []
        for src, idx in ((X, ri), (Y, fi)):
            if src.array is not None:  # only these rows are read, and checked
                rows.append(_read(src.array, idx.numpy(), dtype, device))
                read.append((src.name, rows[-1]))
            else:
                rows.append(src.tensor[idx.to(device)])
        _check_finite(read)
        values.append(_mmd2(rows[0], rows[1], spec, "unbiased", engine))
    return torch.stack(values).to(torch.float64).cpu().numpy()



def store_batches(batches, noun: str) -> None:
    """Append a validated copy of each given batch to its list: ``batches`` holds (name, batch or None, list)
    for the two samples of an accumulating metric (KID, CMMD); one d for all, finite values, at least one."""
    if all(x is None for _, x, _ in batches):
        raise ValueError(f"give `{batches[0][0]}`, `{batches[1][0]}` or both")
    stored_all = [S for _, _, stored in batches for S in stored]
    new = {}
    for name, x, stored in batches:
        if x is None:
            continue
        T, _ = as_tensor(x, name)
        d = next((S.shape[1] for S in stored_all), T.shape[1])
        if T.shape[1] != d:
            raise ValueError(f"`{name}` has {T.shape[1]} columns but the stored {noun} have {d}")
        new[name] = (T.detach().clone(), stored)  # the caller may reuse its buffer
    check_finite(**{name: T for name, (T, _) in new.items()})
    for T, stored in new.values():
        stored.append(T)

class KID:
    """KID accumulated over batches, in torchmetrics' style (without depending on it).

    ``update(real=..., fake=...)`` stores features (either or both per
    call), ``compute()`` returns :func:`kid` of everything stored, ``reset()``
    clears the fake features (and the real ones unless
    ``reset_real_features=False``, to compare several generators with one
    reference set). Like torchmetrics' metric, the state holds the features;
    ``compute`` works on one more copy.

    Parameters
    ----------
    subsets, subset_size, seed, degree, gamma, coef0, backend, device :
        As in :func:`kid`. An int ``seed`` gives the same subsets on every
        ``compute()``.
    reset_real_features : bool
        Whether ``reset()`` also clears the real features (default True).

    Examples
    --------
    >>> import torch
    >>> from mmdkit import KID
    >>> g = torch.Generator().manual_seed(0)
    >>> metric = KID(subsets=10, subset_size=100, seed=0)
    >>> for _ in range(3):
    ...     metric.update(real=torch.randn(64, 16, generator=g), fake=torch.randn(64, 16, generator=g) + 1)
    >>> r = metric.compute()
    >>> r.n, r.m, r.subsets, bool(r.value > 0.1)
    (192, 192, 10, True)
    >>> metric.reset()
    >>> metric.compute()
    Traceback (most recent call last):
    ...
    ValueError: no `real` features: call update(real=...) first
    """

    def __init__(self, subsets: int | None = 100, subset_size: int = 1000, seed=None, *, degree: int = 3,
                 gamma: float | None = None, coef0: float = 1.0, backend: str = "auto", device=None,
                 reset_real_features: bool = True):
        if subsets is not None:
            check_int(subsets, "subsets", 1)
        check_int(subset_size, "subset_size", 2)
        if not isinstance(reset_real_features, bool):
            raise TypeError(f"`reset_real_features` must be True or False, got {reset_real_features!r}")
        Polynomial(degree=degree, gamma=gamma, coef0=coef0)  # checks the kernel parameters now
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        self.degree, self.gamma, self.coef0 = degree, gamma, coef0
        self.backend, self.device = backend, device
        self.reset_real_features = reset_real_features
        self.real_features: list[Tensor] = []
        self.fake_features: list[Tensor] = []

    def update(self, real=None, fake=None) -> None:
        """Store a copy of a batch of real and/or fake features (tensors or arrays, shape (b, d))."""
        store_batches((("real", real, self.real_features), ("fake", fake, self.fake_features)), "features")

    def compute(self) -> KIDResult:
        """:func:`kid` of all stored features."""
        for name, stored in (("real", self.real_features), ("fake", self.fake_features)):
            if not stored:
                raise ValueError(f"no `{name}` features: call update({name}=...) first")
        return kid(iter(self.real_features), iter(self.fake_features), self.subsets, self.subset_size, self.seed,
                   degree=self.degree, gamma=self.gamma, coef0=self.coef0, backend=self.backend,
                   device=self.device)

    def reset(self) -> None:
        """Clear the fake features, and the real ones when ``reset_real_features``."""
        self.fake_features = []
        if self.reset_real_features:
            self.real_features = []
