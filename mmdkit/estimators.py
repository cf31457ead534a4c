"""MMD, energy distance and witness functions.

Every kernel sum goes through one engine call on a backend object
(:func:`mmdkit.kernels.get_backend`): ``block_sums`` on the pooled sample
for the estimators, ``kernel_matmul`` for the witness. Public functions
validate their arguments once and call the internal ``_`` functions, which
take validated tensors, a resolved spec and a backend; the permutation tests
and the GAN losses call those directly.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mmdkit._validation import FeatureKernel, as_pair, as_tensor, check_finite, is_feature_kernel, output
from mmdkit.bandwidth import median_bandwidth, on_unit_scale, resolve_kernel
from mmdkit.kernels import Backend, Energy, KernelSpec, Mixture, compute_dtype, get_backend, paired_values

__all__ = ["mmd2", "mmd2_unbiased", "mmd2_biased", "mmd2_linear", "energy_distance",
           "witness", "median_bandwidth", "mmd2_from_sums", "ESTIMATORS"]

ESTIMATORS = ("unbiased", "biased", "linear")


def mmd2_from_sums(Sxx, Sxy, Syy, n: int, m: int, unbiased: bool):
    """MMD^2 from the kernel sums over X x X, X x Y and Y x Y (diagonals excluded when ``unbiased``).

    The one place the estimators are formed from sums: tensors or arrays of
    any shape (one entry per relabelling in the permutation tests), float64.
    """
    if unbiased:
        return Sxx / (n * (n - 1)) + Syy / (m * (m - 1)) - 2 * Sxy / (n * m)
    return Sxx / n**2 + Syy / m**2 - 2 * Sxy / (n * m)


def _terms(kernel: KernelSpec | FeatureKernel, *samples: Tensor) -> list:
    """[(features of each sample, spec, weight)]: one term (the samples) for a spec, else the
    :class:`~mmdkit._validation.FeatureKernel`'s terms on the pooled samples, split back per sample;
    each term brought to unit scale (:func:`~mmdkit.bandwidth.on_unit_scale`, which multiplies its weight).

    The one place a statistic meets a feature kernel and the engine's float range: every statistic is
    linear in k, so callers sum w x (the statistic of each term).
    """
    if not isinstance(kernel, FeatureKernel):
        return [_unit_term(samples, kernel, 1.0)]
    sizes = [A.shape[0] for A in samples]
    return [_unit_term(F.split(sizes), spec, w) for F, spec, w in kernel.terms(torch.cat(samples))]


def _unit_term(samples: tuple, spec: KernelSpec, w) -> tuple:
    """One term of :func:`_terms` at unit scale."""
    scaled, (spec,), (c,) = on_unit_scale([spec], *samples)
    return scaled, spec, w if c == 1 else w * c


def _mmd2(X: Tensor, Y: Tensor, spec: KernelSpec, estimator: str, engine: Backend) -> Tensor:
    """MMD^2 of validated X, Y (same dtype and device) for a resolved spec; 0-d tensor."""
    n, m = X.shape[0], Y.shape[0]
    if estimator == "linear":
        h = min(n, m) // 2
        dt = compute_dtype(X.dtype)
        x1, x2, y1, y2 = (A[s:2 * h:2].to(dt) for A, s in ((X, 0), (X, 1), (Y, 0), (Y, 1)))
        f = lambda A, B: paired_values(A, B, spec)  # noqa: E731
        return (f(x1, x2) + f(y1, y2) - f(x1, y2) - f(x2, y1)).mean()
    unbiased = estimator == "unbiased"
    S = engine.block_sums(torch.cat([X, Y]), (n, m), spec, exclude_diagonal=unbiased)
    return mmd2_from_sums(S[0, 0], S[0, 1], S[1, 1], n, m, unbiased)


def mmd2(X, Y, kernel="gaussian", bandwidth=None, estimator: str = "unbiased", backend: str = "auto",
         precision: str = "ieee"):
    r"""Squared maximum mean discrepancy between the samples X ~ P and Y ~ Q.

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) and (m, d), or (n,) for d = 1
    kernel : str, KernelSpec or FeatureKernel
        "gaussian", "laplace", "energy", "rq", "imq", "polynomial", or a spec;
        or a kernel on features such as a trained
        :class:`mmdkit.deep_kernel.LearnedKernel` (then ``bandwidth`` must be
        None): MMD^2 is linear in k, so it is the weighted sum of each term's.
    bandwidth : float, "median", list of floats or None
        None means "median" for kernels with a bandwidth. A list gives a
        mixture (sum) of the kernel at those bandwidths.
    estimator : {"unbiased", "biased", "linear"}
        "unbiased": the U-statistic (diagonal terms excluded, n, m >= 2);
        "biased": the V-statistic (diagonal included, always >= 0);
        "linear": Gretton et al. (2012) linear-time estimate on
        min(n, m) // 2 disjoint pairs.
    backend : {"auto", "torch", "triton"}
        "auto": Triton for CUDA float32/16/bf16 tensors, the blocked torch
        engine otherwise. The result does not depend on the backend beyond
        rounding.
    precision : {"ieee", "tf32", "tf32x3"}
        Triton only: "tf32" computes the distance tile on tensor cores
        (about 1e-3 relative error, for GAN training); "tf32x3" as three
        TF32 products of split operands (float32-level accuracy, measured
        under emulation); the torch engine is always exact.

    Returns
    -------
    A float for numpy input; for tensor input a 0-d tensor of the input's
    dtype and device, differentiable in X and Y.

    Notes
    -----
    Unbiased: 1/(n(n-1)) sum_{i!=j} k(x_i,x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i,y_j)
    - 2/(nm) sum_{i,j} k(x_i,y_j). Cost O((n+m)^2 d) time, O((n+m) d)
    memory: one symmetric blocked sweep over the pooled sample, never storing
    a kernel matrix. The gradient is accumulated in the same sweep.

    References
    ----------
    Gretton, Borgwardt, Rasch, Schoelkopf, Smola. A kernel two-sample test.
    JMLR 13 (2012).

    Examples
    --------
    >>> import torch, mmdkit
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(500, 2, generator=g); Y = torch.randn(500, 2, generator=g) + 1
    >>> bool(mmdkit.mmd2(X, Y, bandwidth=1.0) > 0.1)
    True
    """
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"`estimator` must be one of {ESTIMATORS}, got {estimator!r}")
    X, Y, numpy_out = as_pair(X, Y, 1 if estimator == "biased" else 2)
    engine = get_backend(backend, X.device, X.dtype, precision)
    if estimator == "linear" and precision != "ieee":
        raise ValueError(f"`precision`={precision!r} applies to the pairwise engine; the linear estimator is "
                         "elementwise and always computed exactly (leave `precision`='ieee')")
    if not is_feature_kernel(kernel, bandwidth):
        kernel = resolve_kernel(kernel, bandwidth, X, Y)
    value = sum(w * _mmd2(FX, FY, spec, estimator, engine) for (FX, FY), spec, w in _terms(kernel, X, Y))
    return output(value, numpy_out, X.dtype)


def mmd2_unbiased(X, Y, kernel="gaussian", bandwidth=None, backend: str = "auto", precision: str = "ieee"):
    """Unbiased (U-statistic) MMD^2; ``mmd2(..., estimator="unbiased")``. May be negative.

    Examples
    --------
    >>> import numpy as np
    >>> from mmdkit import mmd2_unbiased
    >>> rng = np.random.default_rng(0)
    >>> abs(mmd2_unbiased(rng.normal(size=(300, 3)), rng.normal(size=(300, 3)))) < 0.01
    True
    """
    return mmd2(X, Y, kernel, bandwidth, "unbiased", backend, precision)


def mmd2_biased(X, Y, kernel="gaussian", bandwidth=None, backend: str = "auto", precision: str = "ieee"):
    """Biased (V-statistic) MMD^2, >= 0; ``mmd2(..., estimator="biased")``."""
    return mmd2(X, Y, kernel, bandwidth, "biased", backend, precision)


def mmd2_linear(X, Y, kernel="gaussian", bandwidth=None, backend: str = "auto"):
    """Linear-time MMD^2 (Gretton et al. 2012, Lemma 14); ``mmd2(..., estimator="linear")``.

    Mean over i < min(n, m) // 2 of h_i = k(x_{2i}, x_{2i+1}) + k(y_{2i}, y_{2i+1})
    - k(x_{2i}, y_{2i+1}) - k(x_{2i+1}, y_{2i}). Unbiased, O(n d), higher variance.
    Elementwise torch on every backend (there is no pairwise sweep to fuse).

    Examples
    --------
    >>> from mmdkit import mmd2_linear
    >>> mmd2_linear([[0.0], [0.0]], [[3.0], [3.0]], kernel="energy")   # 2 t for point masses
    6.0
    """
    return mmd2(X, Y, kernel, bandwidth, "linear", backend)


def _abs_pair_sum_1d(a: Tensor) -> Tensor:
    """sum_{i<j} |a_i - a_j| = sum_i a_i (#{a_j < a_i} - #{a_j > a_i}), counts by sorting.

    Tied points share one coefficient, so their gradient follows the package's
    convention (|x - y| has slope 0 at x = y) like the blocked path.
    """
    s, _ = torch.sort(a)
    _, group, counts = torch.unique_consecutive(s.detach(), return_inverse=True, return_counts=True)
    below = counts.cumsum(0) - counts  # points strictly below each tie group
    coef = (2 * below + counts - s.shape[0])[group]  # below - above
    return (s * coef.to(s.dtype)).sum()


def energy_distance(X, Y, unbiased: bool = False, exponent: float = 1.0, backend: str = "auto",
                    precision: str = "ieee"):
    r"""Energy distance between the samples X ~ P and Y ~ Q (squared form).

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) and (m, d), or (n,) for d = 1
    unbiased : bool
        False (default): the V-statistic
        2 E||X - Y||^b - E||X - X'||^b - E||Y - Y'||^b with every mean over all
        pairs, diagonal included -- what ``dcor.energy_distance`` returns.
        True: the U-statistic (diagonals excluded), equal to
        ``mmd2_unbiased(X, Y, kernel="energy")``.
    exponent : float in (0, 2)
        b above.
    backend, precision : as in :func:`mmd2`

    Notes
    -----
    This is the *square* of scipy's 1-D ``scipy.stats.energy_distance``
    (which returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|)) and the same quantity
    as dcor's. With the distance-induced kernel it is 2 x (biased MMD^2) / 2,
    i.e. exactly MMD^2 with k(x, y) = ||x|| + ||y|| - ||x - y||. For d = 1 and
    b = 1 it is computed exactly in O(n log n) by sorting; otherwise by the
    blocked O((n+m)^2 d) sweep.

    References
    ----------
    Szekely & Rizzo. Energy statistics: a class of statistics based on
    distances. J. Stat. Plan. Inference 143 (2013).

    Examples
    --------
    >>> from mmdkit import energy_distance
    >>> energy_distance([0.0, 0.0], [3.0, 3.0])   # P = delta_0, Q = delta_3: 2 t
    6.0
    """
    if not isinstance(unbiased, bool):
        raise TypeError(f"`unbiased` must be True or False, got {unbiased!r}")
    X, Y, numpy_out = as_pair(X, Y, 2 if unbiased else 1)
    engine = get_backend(backend, X.device, X.dtype, precision)  # checks them on the sort path too
    value = sum(w * _energy_distance(FX, FY, spec, unbiased, engine)
                for (FX, FY), spec, w in _terms(Energy(exponent=exponent), X, Y))
    return output(value, numpy_out, X.dtype)


def _energy_distance(X: Tensor, Y: Tensor, spec: Energy, unbiased: bool, engine: Backend) -> Tensor:
    """Energy distance of validated X, Y (0-d tensor); the exact sort for d = 1, b = 1."""
    n, m = X.shape[0], Y.shape[0]
    if X.shape[1] == 1 and spec.exponent == 1.0 and spec.offset == 0:
        a, b = X[:, 0].double(), Y[:, 0].double()
        sx, sy = _abs_pair_sum_1d(a), _abs_pair_sum_1d(b)
        sxy = _abs_pair_sum_1d(torch.cat([a, b])) - sx - sy  # sum over all (i, j) of |x_i - y_j|
        return mmd2_from_sums(-2 * sx, -sxy, -2 * sy, n, m, unbiased)
    S = engine.block_sums(torch.cat([X, Y]), (n, m), spec, exclude_diagonal=unbiased)
    return mmd2_from_sums(S[0, 0], S[0, 1], S[1, 1], n, m, unbiased)


def witness(X, Y, T, kernel="gaussian", bandwidth=None, backend: str = "auto", precision: str = "ieee"):
    r"""MMD witness function f(t) = mean_i k(t, x_i) - mean_j k(t, y_j) at the points T.

    Positive where P has more mass than Q. For the energy kernel
    k(x, y) = ||x|| + ||y|| - ||x - y|| this is
    E||t - Y|| - E||t - X|| + (E||X|| - E||Y||), the Cramer-GAN critic.

    Parameters
    ----------
    X, Y : samples, shape (n, d) and (m, d)
    T : points, shape (k, d)
    kernel, bandwidth, backend, precision : as in :func:`mmd2` (a FeatureKernel too); "median" uses X and Y.

    Returns
    -------
    Values at T, shape (k,): numpy array for numpy input, else a tensor
    (differentiable in X, Y and T).

    Examples
    --------
    >>> import numpy as np
    >>> from mmdkit import witness
    >>> w = witness(np.zeros((5, 1)), np.ones((5, 1)), np.array([[0.0], [1.0]]), bandwidth=1.0)
    >>> bool(w[0] > 0 > w[1])
    True
    """
    X, xn = as_tensor(X, "X")
    Y, yn = as_tensor(Y, "Y")
    T_, tn = as_tensor(T, "T")
    X, Y, _ = as_pair(X, Y)
    if T_.shape[1] != X.shape[1]:
        raise ValueError(f"`T` must have d = {X.shape[1]} columns like `X`, got {T_.shape[1]}")
    T_ = T_.to(X.device, X.dtype)
    check_finite(T=T_)
    engine = get_backend(backend, X.device, X.dtype, precision)
    if not is_feature_kernel(kernel, bandwidth):
        kernel = resolve_kernel(kernel, bandwidth, X, Y)
    f = sum(w * _witness(FX, FY, FT, spec, engine) for (FX, FY, FT), spec, w in _terms(kernel, X, Y, T_))
    return f.detach().cpu().numpy() if (xn and yn and tn) else f


def _energy_offset(spec: KernelSpec, X: Tensor, Y: Tensor):
    """sum over Energy components of w (E||X||^b - E||Y||^b): the norm terms of the energy kernel
    k(x, y) = ||x||^b + ||y||^b - ||x - y||^b that the engine leaves out (0 if there are none);
    with an offset, :meth:`Energy.anchor`'s terms."""
    parts = spec.weighted if isinstance(spec, Mixture) else ((spec, 1.0),)
    return sum(w * (c.anchor(X).mean() - c.anchor(Y).mean()) for c, w in parts if isinstance(c, Energy))


def _witness(X: Tensor, Y: Tensor, T: Tensor, spec: KernelSpec, engine: Backend) -> Tensor:
    """Witness of validated X, Y at T (k,), in X's dtype, twice differentiable."""
    n, m = X.shape[0], Y.shape[0]
    weights = [torch.full((n, 1), 1.0 / n, dtype=torch.float64), torch.full((m, 1), -1.0 / m, dtype=torch.float64)]
    v = torch.cat(weights).to(X.device, compute_dtype(X.dtype))  # 1/n exact to the compute precision
    f = engine.kernel_matmul(T, torch.cat([X, Y]), v, spec)[:, 0]
    return (f + _energy_offset(spec, X, Y)).to(X.dtype)
