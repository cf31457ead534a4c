"""Learned deep kernels for two-sample tests: MMD-D (Liu, Xu, Lu, Zhang, Gretton, Sutherland; ICML 2020).

The kernel is

    k(x, y) = [(1 - eps) kappa(phi(x), phi(y)) + eps] q(x, y),

kappa and q Gaussian kernels with bandwidths sigma_phi and sigma_q, phi a
network (a small MLP by default). A product of Gaussians is a Gaussian on the
concatenated scaled features, so k is a weighted sum of two Gaussian kernels
of bandwidth 1 on two feature maps,

    k(x, y) = (1 - eps) G(f(x), f(y)) + eps G(x / sigma_q, y / sigma_q),   f = [phi / sigma_phi, id / sigma_q],

which is how :class:`LearnedKernel` presents itself to the statistics (a
:class:`~mmdkit._validation.FeatureKernel`): every kernel sum, its gradient
included, goes through the engine on the two feature matrices, and MMD^2
(linear in k) is the weighted sum of the two terms'.

:func:`learned_kernel_test` trains phi, sigma_phi, sigma_q and eps on one
part of the data by maximising the test-power criterion
J = MMD^2_u / sqrt(sigma^2_H1 + lam) (:func:`power_criterion`) and runs the
permutation test of :func:`mmdkit.mmd_test` with the trained kernel on the
other part.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from numbers import Real

import numpy as np
import torch
from torch import Tensor

from mmdkit._permutations import generator
from mmdkit._progress import Progress
from mmdkit._validation import FeatureKernel, as_pair, is_feature_kernel, output
from mmdkit.bandwidth import median_bandwidth, resolve_kernel
from mmdkit.estimators import _terms, mmd2_from_sums
from mmdkit.kernels import Backend, Gaussian, check_positive, compute_dtype, get_backend, paired_values
from mmdkit.results import TwoSampleTestResult
from mmdkit.two_sample import DEFAULT_MEMORY_BUDGET, _mmd_test, _setup

__all__ = ["LearnedKernel", "LearnedKernelTestResult", "learned_kernel_test", "power_criterion", "mlp"]

UNIT_GAUSSIAN = Gaussian(1.0)  # both terms: exp(-|f(x) - f(y)|^2 / 2) on scaled features
GRID_FACTORS = tuple(2.0**k for k in range(-5, 3))  # starting bandwidths: median x 1/32 .. 4
DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_LAM, DEFAULT_WIDTH, DEFAULT_EPSILON = 300, 5e-4, 1e-8, 50, 0.5


def mlp(d: int, width: int = DEFAULT_WIDTH, generator: torch.Generator | None = None) -> torch.nn.Sequential:
    """The paper's featurizer: Linear(d, w) -> Softplus -> Linear(w, w) -> Softplus -> Linear(w, w) -> Softplus
    -> Linear(w, w), initialised as torch's Linear (uniform on +-1/sqrt(fan_in)) from ``generator`` (CPU)."""
    dims = [d, width, width, width, width]
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = torch.nn.Linear(a, b)
        bound = 1.0 / math.sqrt(a)
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=generator)
            lin.bias.uniform_(-bound, bound, generator=generator)
        layers += [lin] if i == len(dims) - 2 else [lin, torch.nn.Softplus()]
    return torch.nn.Sequential(*layers)


class LearnedKernel(FeatureKernel, torch.nn.Module):
    r"""k(x, y) = [(1 - eps) exp(-|phi(x) - phi(y)|^2 / (2 sigma_phi^2)) + eps] exp(-|x - y|^2 / (2 sigma_q^2)).

    A ``torch.nn.Module`` whose parameters are the featurizer's, log sigma_phi,
    log sigma_q and logit eps (so sigma > 0 and eps in (0, 1) throughout
    training). Pass it as ``kernel=`` to :func:`mmdkit.mmd2` (every estimator),
    :func:`mmdkit.mmd2_unbiased`, :func:`mmdkit.witness` and
    :func:`mmdkit.mmd_test`; with tensor input the statistics are
    differentiable in the kernel's parameters too. MMDAgg
    (``mmd_test(aggregate=True)``), :func:`mmdkit.kid` and anything else that
    needs a spec refuse it with a TypeError/ValueError.

    Parameters
    ----------
    featurizer : torch.nn.Module
        phi: maps a float tensor (N, d) to (N, k) (or (N,)), row by row.
    sigma_phi, sigma_q : float
        Initial bandwidths of kappa (on phi) and q (on the input).
    epsilon : float in (0, 1)
        Initial eps, the weight of q alone: it keeps k characteristic whatever
        phi learns (Liu et al. 2020). An older kernel function of the
        paper's reference code writes ``epsilon = 10^(-10)``, which Python
        evaluates as a bitwise XOR (-4); here eps is a real number in (0, 1),
        trained through a sigmoid.

    Notes
    -----
    :meth:`terms` gives the two feature maps [phi / sigma_phi, x / sigma_q]
    (weight 1 - eps) and x / sigma_q (weight eps), each with a Gaussian of
    bandwidth 1; the features are computed in the kernel's dtype and device
    and returned in the input's.

    Examples
    --------
    >>> import torch, mmdkit
    >>> from mmdkit import LearnedKernel
    >>> from mmdkit.deep_kernel import mlp
    >>> k = LearnedKernel(mlp(2, width=8, generator=torch.Generator().manual_seed(0)), 1.0, 2.0, 0.1).double()
    >>> X, Y = torch.zeros(3, 2, dtype=torch.float64), torch.ones(4, 2, dtype=torch.float64)
    >>> bool(mmdkit.mmd2_unbiased(X, Y, kernel=k) > 0)
    True
    """

    name = "learned"

    def __init__(self, featurizer: torch.nn.Module, sigma_phi: float = 1.0, sigma_q: float = 1.0,
                 epsilon: float = DEFAULT_EPSILON):
        super().__init__()
        if not isinstance(featurizer, torch.nn.Module):
            raise TypeError(f"`featurizer` must be a torch.nn.Module, got {type(featurizer).__name__}")
        sigma_phi, sigma_q = check_positive(sigma_phi, "sigma_phi"), check_positive(sigma_q, "sigma_q")
        if isinstance(epsilon, bool) or not isinstance(epsilon, Real) or not 0 < epsilon < 1:
            raise ValueError(f"`epsilon` must lie in (0, 1), got {epsilon!r}")
        ref = next(featurizer.parameters(), None)
        like = dict(dtype=ref.dtype if ref is not None else torch.get_default_dtype(),
                    device=ref.device if ref is not None else None)
        self.featurizer = featurizer
        self.log_sigma_phi = torch.nn.Parameter(torch.tensor(math.log(sigma_phi), **like))
        self.log_sigma_q = torch.nn.Parameter(torch.tensor(math.log(sigma_q), **like))
        self.epsilon_logit = torch.nn.Parameter(torch.tensor(math.log(epsilon / (1 - epsilon)), **like))

    @property
    def sigma_phi(self) -> Tensor:
        return self.log_sigma_phi.exp()

    @property
    def sigma_q(self) -> Tensor:
        return self.log_sigma_q.exp()

    @property
    def epsilon(self) -> Tensor:
        return torch.sigmoid(self.epsilon_logit)

    def features(self, Z: Tensor) -> Tensor:
        """phi(Z) in the kernel's dtype and device, shape (N, k)."""
        ref = self.log_sigma_q
        phi = self.featurizer(Z.to(ref.device, ref.dtype))
        if isinstance(phi, Tensor) and phi.ndim == 1:
            phi = phi[:, None]
        if not isinstance(phi, Tensor) or phi.ndim != 2 or phi.shape[0] != Z.shape[0]:
            got = tuple(phi.shape) if isinstance(phi, Tensor) else type(phi).__name__
            raise ValueError(f"`featurizer` must map a ({Z.shape[0]}, {Z.shape[1]}) tensor to shape "
                             f"({Z.shape[0]}, k), got {got}")
        return phi

    def terms(self, Z: Tensor) -> list:
        """[([phi / sigma_phi, Z / sigma_q], G_1, 1 - eps), (Z / sigma_q, G_1, eps)] in Z's dtype and device."""
        ref = self.log_sigma_q
        zq = Z.to(ref.device, ref.dtype) / self.sigma_q
        deep = torch.cat([self.features(Z) / self.sigma_phi, zq], 1)
        back = lambda A: A.to(Z.device, Z.dtype)  # noqa: E731
        return [(back(deep), UNIT_GAUSSIAN, back(torch.sigmoid(-self.epsilon_logit))),  # 1 - eps, no cancellation
                (back(zq), UNIT_GAUSSIAN, back(self.epsilon))]

    def extra_repr(self) -> str:
        return (f"sigma_phi={float(self.sigma_phi.detach()):.4g}, sigma_q={float(self.sigma_q.detach()):.4g}, "
                f"epsilon={float(self.epsilon.detach()):.4g}")


def _criterion(X: Tensor, Y: Tensor, kernel, engine: Backend, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    """(J, MMD^2_u, sigma^2_H1) of validated X, Y with n = m, float64 0-d tensors, differentiable.

    One engine sweep per term: ``kernel_matmul`` of the pooled sample (diagonal
    excluded) against the two sample indicators gives every off-diagonal row
    sum over X and over Y, hence the three block sums of MMD^2_u and, with the
    diagonal k(z_i, z_i) (``paired_values``), the row sums of H.
    """
    n = X.shape[0]
    Z = torch.cat([X, Y])
    V = torch.zeros(2 * n, 2, dtype=compute_dtype(Z.dtype), device=Z.device)
    V[:n, 0], V[n:, 1] = 1, 1
    R = diag = 0
    for (F,), spec, w in _terms(kernel, Z):
        R = R + w * engine.kernel_matmul(F, None, V, spec, exclude_diagonal=True).to(torch.float64)  # (2n, 2)
        diag = diag + w * paired_values(F, F, spec).to(torch.float64)  # k(z_i, z_i)
    mmd2 = mmd2_from_sums(R[:n, 0].sum(), R[:n, 1].sum(), R[n:, 1].sum(), n, n, True)
    r = R[:n, 0] - R[:n, 1] + R[n:, 1] - R[n:, 0] + diag[:n] + diag[n:]  # r_i = sum_j H_ij
    var = 4 * (r @ r) / n**3 - 4 * r.sum() ** 2 / n**4
    return mmd2 / torch.sqrt(var + lam), mmd2, var


def _check_lam(lam) -> float:
    if isinstance(lam, bool) or not isinstance(lam, Real) or not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"`lam` must be a finite float >= 0, got {lam!r}")
    return float(lam)


def power_criterion(X, Y, kernel="gaussian", bandwidth=None, lam: float = DEFAULT_LAM, backend: str = "auto",
                    precision: str = "ieee"):
    r"""The test-power criterion J = MMD^2_u / sqrt(sigma^2_H1 + lam) of paired samples (n = m).

    With H_ij = k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(x_j, y_i) (i, j
    over 1..n, diagonal included),

        sigma^2_H1 = 4 / n^3 sum_i (sum_j H_ij)^2 - 4 / n^4 (sum_ij H_ij)^2,

    the plug-in estimate of the asymptotic variance of sqrt(n) MMD^2_u under
    H1 (Liu et al. 2020, eq. 5; Sutherland et al. 2017). MMD^2_u is
    :func:`mmdkit.mmd2_unbiased` (cross term over all n^2 pairs; the paper's
    code leaves out the n pairs (x_i, y_i), which changes it by O(1/n)).
    The test power is increasing in J for large n, so kernels are chosen by
    maximising it (on data apart from the test data).

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) each, n >= 2
    kernel, bandwidth : as in :func:`mmdkit.mmd2` (a FeatureKernel such as
        :class:`LearnedKernel` too)
    lam : float >= 0
        Regulariser of the variance (the paper's lambda; 1e-8 in its code).
    backend, precision : as in :func:`mmdkit.mmd2`

    Returns
    -------
    A float for numpy input, else a 0-d tensor of X's dtype, differentiable
    in X, Y and a kernel's parameters.

    Notes
    -----
    Cost: one symmetric ``kernel_matmul`` sweep of the pooled 2n points per
    kernel term (its row sums against the two sample indicators give both
    MMD^2_u and the row sums of H), O(n^2 d) time, O(n d) memory.

    References
    ----------
    Liu, Xu, Lu, Zhang, Gretton, Sutherland. Learning deep kernels for
    non-parametric two-sample tests. ICML 2020.
    Sutherland, Tung, Strathmann, De, Ramdas, Smola, Gretton. Generative
    models and model criticism via optimized maximum mean discrepancy. ICLR 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from mmdkit import power_criterion
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + [1.0, 0.0]
    >>> power_criterion(X, Y, bandwidth=1.0) > power_criterion(X, Y, bandwidth=0.01)  # 0.34 vs -0.001
    True
    """
    X, Y, numpy_out = as_pair(X, Y, 2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"`X` and `Y` must have the same number of points (paired, n = m), "
                         f"got {X.shape[0]} and {Y.shape[0]}")
    lam = _check_lam(lam)
    engine = get_backend(backend, X.device, X.dtype, precision)
    if not is_feature_kernel(kernel, bandwidth):
        kernel = resolve_kernel(kernel, bandwidth, X, Y)
    return output(_criterion(X, Y, kernel, engine, lam)[0], numpy_out, X.dtype)


def _initial_bandwidths(kernel: LearnedKernel, X: Tensor, Y: Tensor, engine: Backend, lam: float) -> None:
    """Start from the best Gaussian (Liu et al.'s MMD-O): sigma_q is the bandwidth of the grid
    median x 2^-5 .. median x 4 (median distance of the pooled X, Y) whose Gaussian has the largest J on
    (X, Y); then sigma_phi the one of the same grid on the initial features that maximises the whole
    kernel's J."""
    best = lambda grid, J: grid[int(np.argmax([float(J(h)) for h in grid]))]  # noqa: E731
    with torch.no_grad():
        h = median_bandwidth(X, Y)
        kernel.log_sigma_q.fill_(math.log(best([h * f for f in GRID_FACTORS], lambda h: _criterion(
            X, Y, Gaussian(h), engine, lam)[0])))
        phi = kernel.features(torch.cat([X, Y]))
        try:
            h = median_bandwidth(phi)
        except ValueError:
            raise ValueError("`featurizer` maps every training point to the same features (no scale to start "
                             "sigma_phi from)") from None

        def J(h):
            kernel.log_sigma_phi.fill_(math.log(h))
            return _criterion(X, Y, kernel, engine, lam)[0]

        kernel.log_sigma_phi.fill_(math.log(best([h * f for f in GRID_FACTORS], J)))


def _fit(kernel: LearnedKernel, X: Tensor, Y: Tensor, epochs: int, lr: float, lam: float, engine: Backend,
         progress) -> np.ndarray:
    """Adam on -J, full batch, ``epochs`` steps; J before each step and after the last, (epochs + 1,)."""
    opt = torch.optim.Adam(kernel.parameters(), lr=lr)
    values = []
    bar = Progress(epochs, progress, "learned_kernel_test")
    kernel.train()
    try:
        for _ in range(epochs):
            opt.zero_grad()
            J = _criterion(X, Y, kernel, engine, lam)[0]
            (-J).backward()
            opt.step()
            values.append(J.detach())
            bar(1)
    finally:
        bar.close()
    kernel.eval()
    with torch.no_grad():
        values.append(_criterion(X, Y, kernel, engine, lam)[0])
    history = torch.stack(values).cpu().numpy()
    if not np.isfinite(history).all():
        raise ValueError(f"training diverged (J = {history[~np.isfinite(history)][0]} at epoch "
                         f"{int(np.argmin(np.isfinite(history)))}); lower `lr` or raise `lam`")
    return history


@dataclass(frozen=True, eq=False)
class LearnedKernelTestResult(TwoSampleTestResult):
    """Result of :func:`learned_kernel_test`: a :class:`~mmdkit.TwoSampleTestResult` (test "mmd_d") plus training.

    Attributes
    ----------
    learned_kernel : LearnedKernel
        The trained kernel (also ``kernel``); pass it as ``kernel=`` to test
        new data with :func:`mmdkit.mmd_test`.
    criterion : numpy.ndarray, shape (epochs + 1,)
        J on the training data before each Adam step, and after the last.
    n_train : int
        Points of each sample that trained the kernel.
    n_test : tuple of int
        Points of X and of Y that the test used.
    """

    learned_kernel: LearnedKernel | None = field(default=None, repr=False)
    criterion: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    n_train: int = 0
    n_test: tuple[int, int] = (0, 0)

    def __repr__(self):
        J = f"{self.criterion[0]:.4g} -> {self.criterion[-1]:.4g}" if self.criterion.size else "none"
        return (f"LearnedKernelTestResult(test={self.test!r}, statistic={self.statistic:.6g}, "
                f"pvalue={self.pvalue:.6g}, n_permutations={self.n_permutations}, n_train={self.n_train}, "
                f"n_test={self.n_test}, J={J}, kernel={self.learned_kernel!r})")


def learned_kernel_test(X, Y, featurizer: torch.nn.Module | None = None, train_fraction: float = 0.5,
                        epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR, n_permutations: int = 1000,
                        seed=None, alternative: str = "greater", lam: float = DEFAULT_LAM,
                        width: int = DEFAULT_WIDTH, epsilon: float = DEFAULT_EPSILON, batch: int | None = None,
                        backend: str = "auto", memory_budget: int = DEFAULT_MEMORY_BUDGET,
                        progress: bool | None = None, precision: str = "ieee") -> LearnedKernelTestResult:
    r"""Two-sample test with a learned deep kernel (MMD-D): train the kernel on one part, test on the rest.

    1. Split: k = floor(train_fraction min(n, m)) random points of each sample
       train the kernel (n = m, as the criterion needs pairs; the larger
       sample is subsampled, as in the paper); all other points, n - k of X
       and m - k of Y, are held out for the test.
    2. Train :class:`LearnedKernel`
       k(x, y) = [(1 - eps) kappa(phi(x), phi(y)) + eps] q(x, y) by Adam on
       -J, J = MMD^2_u / sqrt(sigma^2_H1 + lam) (:func:`power_criterion`),
       ``epochs`` full-batch steps. Training starts from the best Gaussian
       (the paper's MMD-O): sigma_q is the bandwidth among median x 2^j,
       j = -5..2 (median distance of the training points), whose Gaussian
       has the largest J on the training points, then sigma_phi the one of
       the same grid on the initial features that maximises the whole
       kernel's J (the reference code starts both at small random values);
       eps starts at ``epsilon``.
    3. Test: :func:`mmdkit.mmd_test` with the trained kernel on the held-out
       points (permutation null of MMD^2_u, ``n_permutations`` relabellings).

    The held-out points never influence the kernel, so the test has level
    alpha whatever training did.

    Parameters
    ----------
    X, Y : tensor or array, shape (n, d) and (m, d), or (n,) for d = 1
    featurizer : torch.nn.Module or None
        phi, mapping (N, d) to (N, k) row by row; None: :func:`mlp` (d -> width
        -> width -> width -> width, Softplus, the paper's network). A given
        module is copied (``copy.deepcopy``) and the copy trained, so the
        argument is left as it came.
    train_fraction : float in (0, 1)
    epochs : int >= 0
        Full-batch Adam steps (the paper: 1000 at lr 5e-4 on a GPU; the
        default is 300 at the same rate, for a CPU). 0 tests the starting
        kernel.
    lr : float
        Adam's learning rate (the paper's 5e-4 by default).
    n_permutations, alternative, batch, backend, memory_budget, precision :
        as in :func:`mmdkit.mmd_test`.
    seed : None, int, torch.Generator or numpy.random.Generator
        Fixes the split, the default network's initial weights and the
        permutations: the same seed gives the same p-value.
    lam : float >= 0
        Variance regulariser of J.
    width : int
        Width of the default network (ignored with a ``featurizer``).
    epsilon : float in (0, 1)
        Initial eps, trained through a sigmoid. The default 0.5 is where the
        reference code's trained eps starts (sigmoid of a U(0, 1e-10) draw);
        its older kernel function fixed ``epsilon = 10^(-10)``, which Python
        evaluates as a bitwise XOR (-4, a kernel 5 kappa q - 4 q), not 1e-10.
    progress : None, bool
        A bar over the training epochs and the permutations (None: only on
        a terminal, for runs expected to take over ~2 s).

    Returns
    -------
    LearnedKernelTestResult
        ``statistic`` (MMD^2_u of the held-out points with the trained
        kernel), ``pvalue``, ``null_distribution``, ``learned_kernel``,
        ``criterion`` (J per epoch), ``n_train``, ``n_test``; test "mmd_d".

    Notes
    -----
    Training runs in the data's dtype (float32 for lower precisions), on its
    device; each epoch costs one engine sweep per kernel term over the 2k
    training points (and its backward), O(k^2 (w + d)) time and O(k (w + d))
    memory; the test costs O((n + m - 2k)^2 (w + d + P)). Every kernel sum
    goes through the engine, none through a dense kernel matrix.

    With a few hundred training points per sample the network mostly fits
    noise: on Blob-D (Liu et al.; n = m = 360, 180 training points each, 20
    data sets) held-out power was 0.60 at ``epochs=0`` (the starting kernel)
    and 0.50 after the default 300 epochs (held-out J 0.092 and 0.086) while
    J on the training points rose; a median-bandwidth Gaussian had 0.05.
    ``criterion`` shows the training curve; the paper trains on thousands of
    points for its harder cases.

    References
    ----------
    Liu, Xu, Lu, Zhang, Gretton, Sutherland. Learning deep kernels for
    non-parametric two-sample tests. ICML 2020 (reference code:
    github.com/fengliu90/DK-for-TST).

    Examples
    --------
    >>> import numpy as np
    >>> from mmdkit import learned_kernel_test
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) * [1.0, 2.0]
    >>> res = learned_kernel_test(X, Y, epochs=50, width=16, n_permutations=200, seed=0)
    >>> bool(res.pvalue < 0.05), bool(res.criterion[-1] > res.criterion[0])
    (True, True)
    """
    Xt, Yt, numpy_in, count, batch, memory_budget = _setup(X, Y, n_permutations, alternative, batch, memory_budget,
                                                           progress, 2)
    Xt, Yt = Xt.detach(), Yt.detach()  # the test gives no gradients: training never reaches the caller's graph
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, Real) or not 0 < train_fraction < 1:
        raise ValueError(f"`train_fraction` must lie in (0, 1), got {train_fraction!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"`epochs` must be an integer >= 0, got {epochs!r}")
    lr, lam = check_positive(lr, "lr"), _check_lam(lam)
    if featurizer is None and (isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1):
        raise ValueError(f"`width` must be an integer >= 1, got {width!r}")
    if featurizer is not None and not isinstance(featurizer, torch.nn.Module):
        raise TypeError(f"`featurizer` must be a torch.nn.Module or None, got {type(featurizer).__name__}")
    n, m, d = Xt.shape[0], Yt.shape[0], Xt.shape[1]
    k = int(train_fraction * min(n, m))
    if k < 2 or n - k < 2 or m - k < 2:
        raise ValueError(f"`train_fraction`={train_fraction} leaves {k} training and {n - k}, {m - k} test points "
                         f"of n = {n}, m = {m}; each part needs at least 2 of each sample")
    engine = get_backend(backend, Xt.device, Xt.dtype, precision)
    gen = generator(seed)
    px, py = torch.randperm(n, generator=gen).to(Xt.device), torch.randperm(m, generator=gen).to(Xt.device)
    dtype = Xt.dtype if Xt.dtype in (torch.float32, torch.float64) else torch.float32
    Xtr, Ytr = Xt[px[:k]].to(dtype), Yt[py[:k]].to(dtype)
    phi = mlp(d, int(width), gen) if featurizer is None else copy.deepcopy(featurizer)
    kernel = LearnedKernel(phi, 1.0, 1.0, epsilon).to(device=Xt.device, dtype=dtype)
    train_engine = get_backend(backend, Xt.device, dtype, precision)
    _initial_bandwidths(kernel, Xtr, Ytr, train_engine, lam)
    history = _fit(kernel, Xtr, Ytr, int(epochs), lr, lam, train_engine, progress)
    res = _mmd_test(Xt[px[k:]], Yt[py[k:]], kernel, count, alternative, gen, batch, engine, memory_budget,
                    progress, numpy_in)
    common = {f.name: getattr(res, f.name) for f in fields(TwoSampleTestResult)}
    common["test"] = "mmd_d"
    return LearnedKernelTestResult(**common, learned_kernel=kernel, criterion=history, n_train=k,
                                   n_test=(n - k, m - k))
