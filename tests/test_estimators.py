"""The public estimators against independent references.

* float64: every estimator and kernel against the dense oracle
  (kernels/reference.py) within the error model's budget (tests/conftest.py;
  mmd2_error_model, grad_bounds, witness_bounds), with n != m, n = 2, d = 1;
* energy distance against dcor (any d) and scipy (d = 1; scipy returns the
  square root), the sort path against the blocked path, the closed form
  P = delta_0, Q = delta_t -> 2|t|;
* MMD^2 of two Gaussians against its closed form within a Monte Carlo bound;
* float32 against float64 within the budget far from the origin and at
  duplicate points, and (<= 1e-4) for energy distance at n = m = 2000, d = 16;
* gradients against float64 autograd of the dense formulas, also at duplicate
  points (finite, zero contribution from coincident pairs);
* the witness and the median heuristic against their dense formulas;
* input/output conventions (numpy -> float, torch -> tensor, (n,) -> (n, 1)).
"""
import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import torch

from mmdkit import (
    IMQ, Energy, Gaussian, Laplace, Mixture, Polynomial, RationalQuadratic, energy_distance,
    median_bandwidth, mmd2, mmd2_biased, mmd2_linear, mmd2_unbiased, witness,
)
from mmdkit.kernels.reference import (
    energy_distance_reference, kernel_matrix, make_pair, mmd2_reference,
)

dcor = pytest.importorskip("dcor")

RTOL = 1e-7  # issue 2's done-means; only test_energy_distance_float32_n2000_d16's float64 dcor check still uses it


def estimator_weights(estimator, n, m):
    """(n + m, n + m) weights W with MMD^2 = sum_ij W_ij k(z_i, z_j) over the pooled sample z = (x, y)."""
    N = n + m
    if estimator == "biased":
        w = torch.cat([torch.full((n,), 1.0 / n), torch.full((m,), -1.0 / m)]).double()
        return torch.outer(w, w)
    W = torch.zeros(N, N, dtype=torch.float64)
    if estimator == "unbiased":
        W[:n, :n], W[n:, n:] = 1.0 / (n * (n - 1)), 1.0 / (m * (m - 1))
        W[:n, n:] = W[n:, :n] = -1.0 / (n * m)
        return W.fill_diagonal_(0.0)
    h = min(n, m) // 2  # linear: pairs (x_2p, x_2p+1), (y_2p, y_2p+1), (x_2p, y_2p+1), (x_2p+1, y_2p)
    for p in range(h):
        a, b, c, e = 2 * p, 2 * p + 1, n + 2 * p, n + 2 * p + 1
        W[a, b] += 1.0 / h
        W[c, e] += 1.0 / h
        W[a, e] -= 1.0 / h
        W[b, c] -= 1.0 / h
    return W


def mmd2_error_model(X, Y, spec, estimator, parts):
    """(terms, conditioning, row_conditioning) of MMD^2 for conftest's budget. MMD^2 = sum_ij W_ij k_ij
    (estimator_weights); each part is rounded in its entry (size s_ij = |k_ij| + |k'_ij| T_ij, d + 5 roundings:
    kernel_matmul_parts with V = I returns s itself) and summed along rows of at most n + m.
    float64 (entries and sums): terms = n + m + d + 5, conditioning = sum_ij |W_ij| s_ij / |MMD^2| (the L1 size
    also bounds every partial sum of the later reductions over rows, tiles and lanes).
    float32 data (entries in float32, sums in float64): the entry errors of one row share the rounded point
    (its centring, its norm), so they add up along the row and walk across rows: terms d + 5,
    row_conditioning = ||(sum_j |W_ij| s_ij)_i||_2 / |MMD^2| (the plain rms over parts, errors independent, is
    exceeded 4x here)."""
    X, Y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    Z = torch.cat([X, Y])
    eye = torch.eye(len(Z), dtype=torch.float64)
    (size, _), *_ = parts(Z, None, eye, eye, spec)
    W = estimator_weights(estimator, len(X), len(Y))
    value, WS = abs(float((W * kernel_matrix(Z, Z, spec)).sum())), W.abs() * size
    return len(Z) + X.shape[1] + 5, float(WS.sum()) / value, float(WS.sum(1).norm()) / value


def scipy_median(*samples):
    """Median of the positive pairwise distances of the pooled sample (scipy's pdist)."""
    dist = scipy.spatial.distance.pdist(np.vstack([np.asarray(s, dtype=np.float64) for s in samples]))
    return float(np.median(dist[dist > 0]))


def linear_reference(X, Y, kernel):
    """Gretton et al. (2012) linear-time MMD^2 from the dense oracle's kernel values."""
    h = min(len(X), len(Y)) // 2
    x1, x2, y1, y2 = X[0:2 * h:2], X[1:2 * h:2], Y[0:2 * h:2], Y[1:2 * h:2]
    k = lambda A, B: kernel_matrix(A, B, kernel).diagonal()
    return (k(x1, x2) + k(y1, y2) - k(x1, y2) - k(x2, y1)).mean()


def reference(estimator, X, Y, kernel):
    """The dense float64 value of ``estimator`` ("unbiased", "biased", "linear")."""
    X, Y = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(Y, dtype=torch.float64)
    if estimator == "linear":
        return linear_reference(X, Y, kernel)
    return mmd2_reference(X, Y, kernel, estimator)


def close(value, ref, rtol=RTOL):
    """|value - ref| <= rtol |ref| (ref well away from 0 in every case below)."""
    value, ref = float(value), float(ref)
    return abs(value - ref) <= rtol * abs(ref)


def numpy_pair(n, m, d, shift=0.7, seed=0):
    """float64 numpy samples from an explicit Generator; Y shifted along the first axis."""
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    Y[:, 0] += shift
    return X, Y


# (kernel=, bandwidth=, the spec the estimator must use given the pooled sample)
KERNEL_CASES = [
    pytest.param("gaussian", 1.3, lambda X, Y: Gaussian(1.3), id="gaussian-1.3"),
    pytest.param("gaussian", None, lambda X, Y: Gaussian(scipy_median(X, Y)), id="gaussian-median-default"),
    pytest.param("rbf", "median", lambda X, Y: Gaussian(scipy_median(X, Y)), id="rbf-median"),
    pytest.param("laplace", 0.8, lambda X, Y: Laplace(0.8), id="laplace"),
    pytest.param("energy", None, lambda X, Y: Energy(), id="energy"),
    pytest.param(Energy(exponent=1.5), None, lambda X, Y: Energy(exponent=1.5), id="energy-b1.5"),
    pytest.param(RationalQuadratic(alpha=2.0), 1.5, lambda X, Y: RationalQuadratic(1.5, alpha=2.0), id="rq"),
    pytest.param("imq", 1.1, lambda X, Y: IMQ(1.1), id="imq"),
    pytest.param("polynomial", None, lambda X, Y: Polynomial(gamma=1.0 / X.shape[1]), id="polynomial"),
    pytest.param("gaussian", [0.5, 1.0, 2.0], lambda X, Y: Mixture.of(Gaussian, [0.5, 1.0, 2.0]),
                 id="gaussian-bandwidth-list"),
    pytest.param(Mixture.of(Laplace, [0.5, 2.0], weights=[1.0, 3.0]), None,
                 lambda X, Y: Mixture.of(Laplace, [0.5, 2.0], weights=[1.0, 3.0]), id="mixture-spec"),
]

SHAPES = [  # (n, m, d)
    pytest.param((2, 3, 1), id="n2-m3-d1"),
    pytest.param((13, 8, 3), id="n13-m8-d3"),
    pytest.param((17, 29, 2), id="n17-m29-d2"),
    pytest.param((40, 33, 7), id="n40-m33-d7"),
]

ESTIMATORS = [
    pytest.param(mmd2_unbiased, "unbiased", id="unbiased"),
    pytest.param(mmd2_biased, "biased", id="biased"),
    pytest.param(mmd2_linear, "linear", id="linear"),
]


# -- float64 against the dense oracle --------------------------------------------------

@pytest.mark.parametrize("fn, estimator", ESTIMATORS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel, bandwidth, spec", KERNEL_CASES)
def test_mmd2_float64_matches_dense(fn, estimator, shape, kernel, bandwidth, spec, budget, kernel_matmul_parts):
    """Within budget(float64, n + m + d + 5, sum |parts| / |MMD^2|) (mmd2_error_model) of the dense oracle;
    measured here: at most 0.23 of that budget over the table (1.6 u sum |parts|; relative errors up to
    7.9e-13, at conditioning 1e5 for the linear estimator near 0)."""
    X, Y = numpy_pair(*shape)
    value = fn(X, Y, kernel=kernel, bandwidth=bandwidth)
    assert type(value) is float
    terms, cond, _ = mmd2_error_model(X, Y, spec(X, Y), estimator, kernel_matmul_parts)
    assert close(value, reference(estimator, X, Y, spec(X, Y)), rtol=budget(torch.float64, terms, cond))
    assert value == mmd2(X, Y, kernel, bandwidth, estimator=estimator)


@pytest.mark.parametrize("exponent", [1.0, 0.5, 1.5])
@pytest.mark.parametrize("shape", SHAPES)
def test_energy_distance_float64_matches_dense_and_dcor(shape, exponent, budget, kernel_matmul_parts):
    """Every float64 value within the MMD^2 budget (mmd2_error_model) of the others; measured here, as a
    fraction of it: oracle 0.11 (V) / 0.06 (U), dcor 0.11 / 0.05, energy_distance_reference 0.04,
    energy_distance(unbiased) against mmd2_unbiased 0 (the same sums)."""
    X, Y = numpy_pair(*shape)
    spec = Energy(exponent=exponent)
    rtol_v = budget(torch.float64, *mmd2_error_model(X, Y, spec, "biased", kernel_matmul_parts)[:2])
    rtol_u = budget(torch.float64, *mmd2_error_model(X, Y, spec, "unbiased", kernel_matmul_parts)[:2])
    value = energy_distance(X, Y, exponent=exponent)
    assert close(value, mmd2_reference(torch.tensor(X), torch.tensor(Y), spec, "biased"), rtol_v)
    assert close(value, dcor.energy_distance(X, Y, exponent=exponent), rtol_v)
    if exponent == 1.0:
        assert close(value, energy_distance_reference(torch.tensor(X), torch.tensor(Y)), rtol_v)
    unbiased = energy_distance(X, Y, unbiased=True, exponent=exponent)
    assert close(unbiased, dcor.energy_distance(X, Y, exponent=exponent, estimation_stat="u_statistic"), rtol_u)
    assert close(unbiased, mmd2_unbiased(X, Y, kernel=spec), rtol_u)


ONE_D = [  # (n, m, rounding): rounding to 1 decimal makes ties within and across samples
    pytest.param(2, 2, None, id="n2-m2"),
    pytest.param(7, 12, None, id="n7-m12"),
    pytest.param(301, 157, None, id="n301-m157"),
    pytest.param(60, 45, 1, id="n60-m45-ties"),
]


@pytest.mark.parametrize("n, m, rounding", ONE_D)
def test_energy_distance_1d_scipy_and_sort_path(n, m, rounding, budget, kernel_matmul_parts):
    """d = 1 takes the O(n log n) sort path: scipy's value squared, and the blocked path's value, within the
    MMD^2 budget (mmd2_error_model; it bounds the sort path's sum of n + m signed terms too). Measured here,
    as a fraction of it: scipy and dcor 0.09, the blocked path 0.03 (V and U; 1.3e-14 relative at most)."""
    X, Y = numpy_pair(n, m, 1, shift=0.4)
    if rounding is not None:
        X, Y = X.round(rounding), Y.round(rounding)
    rtol_v = budget(torch.float64, *mmd2_error_model(X, Y, Energy(), "biased", kernel_matmul_parts)[:2])
    rtol_u = budget(torch.float64, *mmd2_error_model(X, Y, Energy(), "unbiased", kernel_matmul_parts)[:2])
    value = energy_distance(X, Y)
    assert close(value, scipy.stats.energy_distance(X[:, 0], Y[:, 0]) ** 2, rtol_v)
    assert close(value, dcor.energy_distance(X, Y), rtol_v)
    # the blocked sweep on the same data: biased MMD^2 of the distance kernel
    assert close(value, mmd2_biased(X, Y, kernel="energy"), rtol_v)
    assert close(energy_distance(X, Y, unbiased=True), mmd2_unbiased(X, Y, kernel="energy"), rtol_u)
    # (n,) means d = 1
    assert energy_distance(X[:, 0], Y[:, 0]) == value


DELTA_CASES = [  # (n, m, t): P = delta_0 in R^d, Q = delta_t
    pytest.param(2, 2, (3.0,), id="d1-t3"),
    pytest.param(5, 3, (-0.25,), id="d1-t-neg"),
    pytest.param(4, 7, (3.0, 4.0), id="d2-|t|5"),
    pytest.param(3, 2, (1.0, -2.0, 2.0, 0.0, 4.0), id="d5-|t|5"),
]


@pytest.mark.parametrize("unbiased", [False, True], ids=["V", "U"])
@pytest.mark.parametrize("n, m, t", DELTA_CASES)
def test_energy_distance_delta_closed_form(n, m, t, unbiased):
    """P = delta_0, Q = delta_t: energy distance 2|t| (Gretton's Cramer-GAN example); d/dt = 2 t/|t|.

    Every within-sample pair coincides, so this also checks the zero gradient
    at duplicate points on both the sort (d = 1) and the blocked path.
    """
    t = torch.tensor(t, dtype=torch.float64)
    X = torch.zeros(n, len(t), dtype=torch.float64, requires_grad=True)
    Y = t.repeat(m, 1).requires_grad_()
    value = energy_distance(X, Y, unbiased=unbiased)
    assert math.isclose(float(value.detach()), 2 * float(t.norm()), rel_tol=1e-12)
    value.backward()
    unit = t / t.norm()
    assert torch.isfinite(X.grad).all() and torch.isfinite(Y.grad).all()
    assert torch.allclose(Y.grad, (2 / m) * unit.expand(m, -1), rtol=1e-12, atol=1e-15)
    assert torch.allclose(X.grad, (-2 / n) * unit.expand(n, -1), rtol=1e-12, atol=1e-15)
    assert energy_distance(X.detach().numpy(), Y.detach().numpy(), unbiased=unbiased) == pytest.approx(
        2 * float(t.norm()), rel=1e-12)


@pytest.mark.parametrize("bandwidth", [2.0, "median"])
def test_mixture_with_an_energy_component_takes_a_bandwidth(bandwidth, gen):
    """The bandwidth goes to the Gaussian component; the energy one has none and is kept as it is.

    MMD^2 is linear in the kernel, so the mixture equals the sum of the two MMDs.
    """
    X = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    Y = torch.randn(25, 3, generator=gen, dtype=torch.float64) + 0.5
    h = 2.0 if bandwidth == 2.0 else float(median_bandwidth(X, Y))
    mix = Mixture(components=(Gaussian(), Energy(exponent=0.5)))
    expected = float(mmd2_reference(X, Y, Gaussian(h)) + mmd2_reference(X, Y, Energy(exponent=0.5)))
    assert float(mmd2_unbiased(X, Y, kernel=mix, bandwidth=bandwidth)) == pytest.approx(expected, rel=1e-12)


# -- statistics: a closed form ------------------------------------------------------

def gaussian_mmd2(d, s, mu, h):
    """Population MMD^2 of N(0, s^2 I_d) vs N(mu, s^2 I_d) under k = exp(-|x - y|^2 / (2 h^2)).

    x - x' ~ N(0, 2 s^2 I) and x - y ~ N(-mu, 2 s^2 I); per coordinate
    E exp(-Z^2 / (2 h^2)) = (h^2 / (h^2 + v))^(1/2) exp(-m^2 / (2 (h^2 + v))) for
    Z ~ N(m, v). With a = h^2 + 2 s^2:
    MMD^2 = 2 (h^2 / a)^(d/2) (1 - exp(-|mu|^2 / (2 a))).
    """
    a = h * h + 2 * s * s
    return 2 * (h * h / a) ** (d / 2) * (1 - math.exp(-float(np.sum(np.square(mu))) / (2 * a)))


GAUSSIAN_CASES = [  # (d, s, mu, h)
    pytest.param(1, 1.0, [1.0], 1.0, id="d1"),
    pytest.param(5, 0.7, [0.3] * 5, 2.0, id="d5"),
    pytest.param(3, 1.5, [0.0, 0.0, 2.5], 0.8, id="d3-narrow-kernel"),
]


@pytest.mark.parametrize("d, s, mu, h", GAUSSIAN_CASES)
def test_mmd2_unbiased_gaussians_closed_form(d, s, mu, h, gen):
    """The mean of R unbiased estimates lies within 4 standard errors of the population MMD^2.

    The U-statistic is unbiased, so the mean of R independent replicates has
    expectation MMD^2 and standard error sd / sqrt(R) (sd estimated from the
    replicates); 4 standard errors is a two-sided t_{R-1} level of about 1e-3.
    """
    R, n, m = 24, 300, 250
    mu_t = torch.tensor(mu, dtype=torch.float64)
    est = []
    for _ in range(R):
        X = s * torch.randn(n, d, generator=gen, dtype=torch.float64)
        Y = s * torch.randn(m, d, generator=gen, dtype=torch.float64) + mu_t
        est.append(float(mmd2_unbiased(X, Y, bandwidth=h)))
    est = np.array(est)
    truth = gaussian_mmd2(d, s, mu, h)
    se = est.std(ddof=1) / math.sqrt(R)
    assert truth > 10 * se  # the case is informative: the signal is far above the noise
    assert abs(est.mean() - truth) <= 4 * se


# -- float32 against float64 --------------------------------------------------------

FLOAT32_CASES = [  # (function, keyword arguments, the estimator, the spec given the float64 points)
    pytest.param(mmd2_unbiased, {"kernel": "gaussian"}, "unbiased", lambda X, Y: Gaussian(median_bandwidth(X, Y)),
                 id="unbiased-gaussian-median"),
    pytest.param(mmd2_unbiased, {"kernel": "laplace", "bandwidth": 2.0}, "unbiased", lambda X, Y: Laplace(2.0),
                 id="unbiased-laplace"),
    pytest.param(mmd2_unbiased, {"kernel": "energy"}, "unbiased", lambda X, Y: Energy(), id="unbiased-energy"),
    pytest.param(mmd2_unbiased, {"kernel": "imq", "bandwidth": [1.0, 3.0]}, "unbiased",
                 lambda X, Y: Mixture.of(IMQ, [1.0, 3.0]), id="unbiased-imq-mixture"),
    pytest.param(mmd2_biased, {"kernel": "gaussian", "bandwidth": 2.0}, "biased", lambda X, Y: Gaussian(2.0),
                 id="biased-gaussian"),
    pytest.param(mmd2_linear, {"kernel": "gaussian", "bandwidth": 2.0}, "linear", lambda X, Y: Gaussian(2.0),
                 id="linear-gaussian"),
    pytest.param(energy_distance, {}, "biased", lambda X, Y: Energy(), id="energy-distance"),
    pytest.param(energy_distance, {"unbiased": True}, "unbiased", lambda X, Y: Energy(),
                 id="energy-distance-unbiased"),
]


@pytest.mark.parametrize("d", [1, 5, 16])
@pytest.mark.parametrize("fn, kwargs, estimator, spec", FLOAT32_CASES)
def test_float32_far_from_origin(fn, kwargs, estimator, spec, d, budget, kernel_matmul_parts):
    """Points centred at 1e4: float32 within budget(float32, d + 5, row_conditioning) + budget(float64, terms,
    conditioning) (mmd2_error_model: float32 entries, float64 sums) of float64 on the same points. Measured
    here: at most 0.21 of that budget (relative errors 6e-9 to 3e-7; before, a flat 1e-4)."""
    X, Y = make_pair(300, 257, d, shift=1.0, centre=1e4, dtype=torch.float32, seed=3)
    value = fn(X, Y, **kwargs)
    ref = fn(X.double(), Y.double(), **kwargs)
    assert value.dtype == torch.float32
    terms, cond, row_cond = mmd2_error_model(X, Y, spec(X.double(), Y.double()), estimator, kernel_matmul_parts)
    assert close(value, ref, rtol=budget(torch.float32, d + 5, row_cond) + budget(torch.float64, terms, cond))


@pytest.mark.parametrize("centre", [0.0, pytest.param(1e4, marks=pytest.mark.slow)])
def test_energy_distance_float32_n2000_d16(centre):
    """Issue 2's done-means: float32 energy distance at n = m = 2000, d = 16 within 1e-4 of float64.

    The float64 values are the engine's (checked against the dense oracle
    above) and, for the V-statistic, dcor's.
    """
    X, Y = make_pair(2000, 2000, 16, shift=0.5, centre=centre, dtype=torch.float32, seed=7)
    X64, Y64 = X.double(), Y.double()
    ref = energy_distance(X64, Y64)
    assert close(ref, dcor.energy_distance(X64.numpy(), Y64.numpy()))
    assert close(energy_distance(X, Y), ref, rtol=1e-4)
    assert close(energy_distance(X, Y, unbiased=True), energy_distance(X64, Y64, unbiased=True), rtol=1e-4)


# For d > 2 the engine's norm expansion leaves ~eps |x|^2 of rounding in t where
# x = y, which sqrt would turn into ~sqrt(eps) |x| per coincident pair (before the
# fix: 1.8e-4 and 9.5e-4 relative error on this bootstrap resample in float32 for
# Energy and Laplace at d = 16). Kernels with a cusp at 0 now take t from direct
# differences below NEAR times the rounding bound (exactly 0 at x = y); these cases guard that.


@pytest.mark.parametrize("kernel, d", [
    pytest.param(Gaussian(2.0), 3, id="gaussian-d3"),
    pytest.param(Gaussian(2.0), 16, id="gaussian-d16"),
    pytest.param(Energy(), 2, id="energy-d2"),
    pytest.param(Laplace(2.0), 2, id="laplace-d2"),
    pytest.param(Energy(), 16, id="energy-d16"),
    pytest.param(Laplace(2.0), 16, id="laplace-d16"),
])
def test_float32_with_duplicate_points(kernel, d, budget, kernel_matmul_parts):
    """mmd2_unbiased on a bootstrap resample (most points repeated), float32 within the budget of
    test_float32_far_from_origin (mmd2_error_model) of float64: 6e-6 to 2.6e-5 here, so the 1.8e-4 / 9.5e-4
    of the pre-fix cusp rounding fail it. Measured here: 3e-7 to 1.3e-6 relative, at most 0.17 of the budget
    (gaussian-d3; the others 0.04-0.11)."""
    gen = torch.Generator().manual_seed(1234)
    base = torch.randn(300, d, generator=gen, dtype=torch.float64) + 3.0
    X = base[torch.randint(0, 300, (1000,), generator=gen)].float()
    Y = base[torch.randint(0, 300, (900,), generator=gen)].float()
    Y[:, 0] += 0.3
    terms, cond, row_cond = mmd2_error_model(X, Y, kernel, "unbiased", kernel_matmul_parts)
    rtol = budget(torch.float32, d + 5, row_cond) + budget(torch.float64, terms, cond)
    assert close(mmd2_unbiased(X, Y, kernel=kernel), mmd2_unbiased(X.double(), Y.double(), kernel=kernel), rtol)


# -- gradients ----------------------------------------------------------------------

GRAD_KERNELS = [
    pytest.param(Gaussian(1.3), id="gaussian"),
    pytest.param(Laplace(0.8), id="laplace"),
    pytest.param(Energy(), id="energy"),
    pytest.param(RationalQuadratic(1.5, alpha=2.0), id="rq"),
    pytest.param(IMQ(1.1), id="imq"),
    pytest.param(Polynomial(degree=2), id="polynomial"),
    pytest.param(Mixture.of(Gaussian, [0.5, 2.0]), id="mixture"),
]

GRAD_ESTIMATORS = [  # (our estimator on a spec, the dense float64 formula, the estimator)
    pytest.param(lambda X, Y, k: mmd2_unbiased(X, Y, kernel=k), lambda X, Y, k: mmd2_reference(X, Y, k, "unbiased"),
                 "unbiased", id="mmd2_unbiased"),
    pytest.param(lambda X, Y, k: mmd2_biased(X, Y, kernel=k), lambda X, Y, k: mmd2_reference(X, Y, k, "biased"),
                 "biased", id="mmd2_biased"),
    pytest.param(lambda X, Y, k: mmd2_linear(X, Y, kernel=k), linear_reference, "linear", id="mmd2_linear"),
]


def grads(fn, X, Y, g):
    """(value, dX, dY) of g * fn(X, Y) on fresh float64 leaves."""
    X, Y = X.detach().clone().requires_grad_(), Y.detach().clone().requires_grad_()
    value = fn(X, Y)
    (g * value).backward()
    return value.detach(), X.grad, Y.grad


def grad_bounds(X, Y, spec, estimator, g, parts, budget):
    """Absolute float64 error bounds of grads(): (value, dX, dY). The value: mmd2_error_model's budget. The
    gradients: g MMD^2 = sum_ij (g W)_ij (K I)_ij, so kernel_matmul_parts(Z, None, V = I, G = g W) gives the
    rms sizes of the rounded parts of the pooled gradient and their terms; the bound is
    budget(float64, terms, ||size||) normwise over the rows of X and of Y (absolute: no atol where the
    gradient is exactly 0)."""
    X, Y = X.detach(), Y.detach()
    n, Z = len(X), torch.cat([X, Y])
    W, eye = estimator_weights(estimator, n, len(Y)), torch.eye(len(Z), dtype=torch.float64)
    _, (size, terms), _, _ = parts(Z, None, eye, W * float(g), spec)
    vterms, cond, _ = mmd2_error_model(X, Y, spec, estimator, parts)
    value = abs(float((W * kernel_matrix(Z, Z, spec)).sum()))
    return (budget(torch.float64, vterms, cond) * value, budget(torch.float64, terms, float(size[:n].norm())),
            budget(torch.float64, terms, float(size[n:].norm())))


def assert_grads_close(ours, ref, bounds):
    """Each of (value, dX, dY) finite and within its absolute bound (grad_bounds)."""
    for a, b, bound in zip(ours, ref, bounds):
        assert torch.isfinite(a).all()
        assert float((a - b).detach().norm()) <= bound


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", GRAD_KERNELS)
@pytest.mark.parametrize("ours, dense, estimator", GRAD_ESTIMATORS)
def test_mmd2_gradients_match_dense_autograd(ours, dense, estimator, kernel, shape, gen, budget, kernel_matmul_parts):
    """Within grad_bounds; measured here: gradients at most 0.27 of their budget (relative 2.8e-15 at most),
    values 0.09 (before, a flat 1e-7 relative)."""
    X, Y = make_pair(*shape, shift=0.7, dtype=torch.float64, seed=11)
    g = torch.randn((), generator=gen, dtype=torch.float64)  # random upstream gradient
    assert_grads_close(grads(lambda X, Y: ours(X, Y, kernel), X, Y, g),
                       grads(lambda X, Y: dense(X, Y, kernel), X, Y, g),
                       grad_bounds(X, Y, kernel, estimator, g, kernel_matmul_parts, budget))


@pytest.mark.parametrize("unbiased", [False, True], ids=["V", "U"])
@pytest.mark.parametrize("exponent", [1.0, 1.5])
@pytest.mark.parametrize("shape", SHAPES)
def test_energy_distance_gradients_match_dense_autograd(shape, exponent, unbiased, gen, budget, kernel_matmul_parts):
    """Within grad_bounds; measured here: gradients at most 0.41 of their budget, values 0.19."""
    X, Y = make_pair(*shape, shift=0.7, dtype=torch.float64, seed=12)
    g = torch.randn((), generator=gen, dtype=torch.float64)
    est = "unbiased" if unbiased else "biased"
    assert_grads_close(grads(lambda X, Y: energy_distance(X, Y, unbiased, exponent), X, Y, g),
                       grads(lambda X, Y: mmd2_reference(X, Y, Energy(exponent=exponent), est), X, Y, g),
                       grad_bounds(X, Y, Energy(exponent=exponent), est, g, kernel_matmul_parts, budget))


def mmd_case(estimator, name, k):
    """(ours, dense, estimator, spec) for one estimator and kernel, with k bound now (no late binding)."""
    fn = {"unbiased": mmd2_unbiased, "biased": mmd2_biased, "linear": mmd2_linear}[estimator]
    return pytest.param(lambda X, Y: fn(X, Y, kernel=k), lambda X, Y: reference(estimator, X, Y, k),
                        estimator, k, id=f"mmd2_{estimator}-{name}")


DUPLICATE_CASES = [  # Energy and Laplace through every estimator
    mmd_case(est, name, k) for est in ("unbiased", "biased", "linear")
    for name, k in (("energy", Energy()), ("laplace", Laplace(0.8)))
] + [
    pytest.param(lambda X, Y: energy_distance(X, Y), lambda X, Y: mmd2_reference(X, Y, Energy(), "biased"),
                 "biased", Energy(), id="energy_distance"),
    pytest.param(lambda X, Y: energy_distance(X, Y, unbiased=True),
                 lambda X, Y: mmd2_reference(X, Y, Energy(), "unbiased"), "unbiased", Energy(),
                 id="energy_distance-unbiased"),
]


@pytest.mark.parametrize("d", [1, 2, 4])
@pytest.mark.parametrize("ours, dense, estimator, spec", DUPLICATE_CASES)
def test_duplicate_points_give_finite_gradients(ours, dense, estimator, spec, d, gen, budget, kernel_matmul_parts):
    """|x - y| is not differentiable at x = y: the convention is slope 0 there, never NaN. Within grad_bounds
    (coincident pairs are exact parts); measured here: gradients at most 0.22 of the budget, values 0.07
    (the linear estimator's 0-0.03)."""
    a = torch.randn(4, d, generator=gen, dtype=torch.float64)
    X = torch.cat([a[:1], a[:1], a[1:3], a[1:2]])  # x0 = x1 (a linear-estimator pair), x2 = x4
    Y = torch.cat([a[2:4], a[:1], a[3:4]])        # y0 = x3, y2 = x0, y1 = y3
    g = torch.randn((), generator=gen, dtype=torch.float64)
    assert_grads_close(grads(ours, X, Y, g), grads(dense, X, Y, g),
                       grad_bounds(X, Y, spec, estimator, g, kernel_matmul_parts, budget))
    # every point identical: all pairs coincide and the gradient is exactly zero
    Z = torch.ones(4, d, dtype=torch.float64)
    _, gX, gY = grads(ours, Z, Z[:3], g)
    assert torch.equal(gX, torch.zeros_like(gX)) and torch.equal(gY, torch.zeros_like(gY))


# -- witness ------------------------------------------------------------------------

def witness_reference(X, Y, T, kernel):
    """mean_i k(t, x_i) - mean_j k(t, y_j) densely; Energy as |t|^b + |x|^b - |t - x|^b in full."""
    X, Y, T = (torch.as_tensor(A, dtype=torch.float64) for A in (X, Y, T))
    f = kernel_matrix(T, X, kernel).mean(1) - kernel_matrix(T, Y, kernel).mean(1)
    if isinstance(kernel, Energy):  # the norm terms the spec leaves out: |t|^b cancels, |x|^b does not
        b = kernel.exponent
        norm = lambda A: A.norm(dim=1) ** b
        f = (norm(T)[:, None] + norm(X)[None, :] + kernel_matrix(T, X, kernel)).mean(1) \
            - (norm(T)[:, None] + norm(Y)[None, :] + kernel_matrix(T, Y, kernel)).mean(1)
    return f


WITNESS_CASES = [  # (n, m, k, d)
    pytest.param((2, 3, 1, 1), id="n2-m3-k1-d1"),
    pytest.param((13, 8, 9, 3), id="n13-m8-k9-d3"),
    pytest.param((20, 31, 17, 2), id="n20-m31-k17-d2"),
]


def witness_bounds(X, Y, T, G, kernel, parts, budget):
    """Absolute float64 normwise bounds of (f, dX, dY, dT) of witness() with upstream G: f = K(T, Z) w with
    w = (1/n, -1/m), so kernel_matmul_parts(T, Z, w, G) gives the rms sizes and terms of f and of its
    gradients; for Energy the reference sums the full kernel |t|^b + |x|^b - |t - x|^b, so those norms are
    parts of f too (without them energy-b1.5 measures 1.0x its budget)."""
    n, m = len(X), len(Y)
    Z = torch.cat([X, Y])
    w = torch.cat([torch.full((n,), 1.0 / n), torch.full((m,), -1.0 / m)]).double()[:, None]
    (f, tf), (gT, tT), (gZ, tZ), _ = parts(T, Z, w, G[:, None], kernel)
    if isinstance(kernel, Energy):
        norm = lambda A: A.norm(dim=1) ** kernel.exponent  # noqa: E731
        f = (f ** 2 + ((norm(T)[:, None] + norm(Z)[None, :]) ** 2 * w.T ** 2).sum(1, keepdim=True)).sqrt()
    bound = lambda terms, size: budget(torch.float64, terms, float(size.norm()))  # noqa: E731
    return bound(tf, f), bound(tZ, gZ[:n]), bound(tZ, gZ[n:]), bound(tT, gT)


@pytest.mark.parametrize("shape", WITNESS_CASES)
@pytest.mark.parametrize("kernel", GRAD_KERNELS + [pytest.param(Energy(exponent=1.5), id="energy-b1.5")])
def test_witness_matches_dense_formula(kernel, shape, gen, budget, kernel_matmul_parts):
    """Within witness_bounds; measured here: f at most 0.23 of its bound (numpy's largest element 0.22), the
    gradients 0.45 (energy-b1.5's dT; the others <= 0.33)."""
    n, m, k, d = shape
    X, Y = make_pair(n, m, d, shift=0.7, dtype=torch.float64, seed=5)
    X = X + 2.0  # far from 0, so the Energy constant E|X| - E|Y| is clearly nonzero
    Y = Y + 2.0
    T = torch.randn(k, d, generator=gen, dtype=torch.float64) + 2.0
    G = torch.randn(k, generator=gen, dtype=torch.float64)

    leaves = [A.clone().requires_grad_() for A in (X, Y, T)]
    f = witness(*leaves, kernel=kernel)
    (f * G).sum().backward()
    ref_leaves = [A.clone().requires_grad_() for A in (X, Y, T)]
    ref = witness_reference(*ref_leaves, kernel)
    (ref * G).sum().backward()

    assert f.shape == (k,) and f.dtype == torch.float64
    bf, bX, bY, bT = witness_bounds(X, Y, T, G, kernel, kernel_matmul_parts, budget)
    assert_grads_close([f] + [a.grad for a in leaves], [ref] + [b.grad for b in ref_leaves], (bf, bX, bY, bT))
    # numpy in -> numpy out, same values
    f_np = witness(X.numpy(), Y.numpy(), T.numpy(), kernel=kernel)
    assert isinstance(f_np, np.ndarray) and f_np.shape == (k,)
    np.testing.assert_allclose(f_np, ref.detach().numpy(), rtol=0, atol=bf)


def test_witness_energy_is_the_cramer_critic():
    """For Energy, f(t) = E|t - Y| - E|t - X| + E|X| - E|Y| (docstring), checked by hand in 1-D."""
    X, Y, T = np.array([[1.0], [3.0]]), np.array([[-2.0]]), np.array([[0.0], [2.0]])
    # t = 0: E|t-Y| = 2, E|t-X| = 2, E|X| = 2, E|Y| = 2 -> 0;  t = 2: 4 - 1 + 0 -> 3
    np.testing.assert_allclose(witness(X, Y, T, kernel="energy"), [0.0, 3.0], atol=1e-12)


@pytest.mark.parametrize("b, c", [(0.5, 0.1), (1.0, 0.5), (1.5, 2.0)])
def test_energy_offset_is_the_smoothed_full_kernel(b, c):
    """Energy(b, offset=c) is the full kernel k = A(x) + A(y) - (|x - y|^2 + c^2)^(b/2) - c^b,
    A(x) = (|x|^2 + c^2)^(b/2), written out here in float64: its V- and U-statistics and witness
    equal those of the dense matrix, the matrix is positive semidefinite (the docstring's claim), and
    c -> 0 approaches the energy kernel."""
    g = torch.Generator().manual_seed(5)
    X, Y, T = (torch.randn(s, 3, generator=g, dtype=torch.float64) + sh for s, sh in ((40, 0.0), (30, 0.5), (7, 0.2)))
    A = lambda P: (P.square().sum(1) + c * c) ** (b / 2)  # noqa: E731
    full = lambda P, Q: A(P)[:, None] + A(Q)[None] - (torch.cdist(P, Q) ** 2 + c * c) ** (b / 2) - c ** b  # noqa: E731
    kxx, kyy, kxy = full(X, X), full(Y, Y), full(X, Y)
    spec = Energy(exponent=b, offset=c)
    assert not spec.cusp_at_zero and Energy(exponent=b).cusp_at_zero
    assert float(mmd2_biased(X, Y, kernel=spec)) == pytest.approx(float(kxx.mean() + kyy.mean() - 2 * kxy.mean()),
                                                                  rel=1e-14)  # 1.2e-15 seen
    off = lambda K: (K.sum() - K.diagonal().sum()) / (K.shape[0] * (K.shape[0] - 1))  # noqa: E731
    assert float(mmd2_unbiased(X, Y, kernel=spec)) == pytest.approx(float(off(kxx) + off(kyy) - 2 * kxy.mean()),
                                                                     rel=1e-14)  # 2.1e-15 seen
    torch.testing.assert_close(witness(X, Y, T, kernel=spec), full(T, X).mean(1) - full(T, Y).mean(1),
                               rtol=1e-14, atol=4e-15)  # 1.1e-15 seen
    Z = torch.cat([X, Y, T])
    eig = torch.linalg.eigvalsh(full(Z, Z))
    assert eig.min() > -1e-12 * eig.max()
    near = float(mmd2_unbiased(X, Y, kernel=Energy(exponent=b, offset=1e-6)))  # (no self-pairs: they move by c^b)
    assert near == pytest.approx(float(mmd2_unbiased(X, Y, kernel=Energy(exponent=b))), rel=1e-12)  # 3e-13 seen


def test_energy_offset_pull_vanishes_as_points_meet():
    """With an offset the gradient of -(|x - y|^2 + c^2)^(b/2) in x is b (x - y) (|x - y|^2 + c^2)^(b/2 - 1):
    linear in x - y near 0 (no cusp), where the energy kernel's stays |x - y|^(b - 1) large."""
    y = torch.zeros(1, 2, dtype=torch.float64)
    for r in (1e-3, 1e-6):
        x = torch.tensor([[r, 0.0]], dtype=torch.float64, requires_grad=True)
        smooth, = torch.autograd.grad(mmd2_biased(x, y, kernel=Energy(exponent=0.5, offset=0.1)), x)
        cusp, = torch.autograd.grad(mmd2_biased(x, y, kernel=Energy(exponent=0.5)), x)
        # MMD^2_V of one point each = -2 k(x, y) (the self-pairs are constants): d/dx = 2 b (x - y) (...)^(b/2 - 1)
        assert float(smooth[0, 0]) == pytest.approx(2 * 0.5 * r * (r * r + 0.01) ** (0.25 - 1), rel=1e-12)
        assert float(cusp[0, 0]) == pytest.approx(2 * 0.5 * r ** (0.5 - 1), rel=1e-12)


# -- median heuristic ---------------------------------------------------------------

MEDIAN_CASES = [  # (n, m or None, d, duplicates)
    pytest.param(2, None, 1, False, id="n2-one-distance"),
    pytest.param(4, None, 1, False, id="n4-even-count"),
    pytest.param(13, 8, 3, False, id="pooled-n13-m8"),
    pytest.param(9, 6, 2, True, id="duplicates-ignored"),
]


@pytest.mark.parametrize("n, m, d, duplicates", MEDIAN_CASES)
def test_median_bandwidth_matches_scipy(n, m, d, duplicates):
    X, Y = numpy_pair(n, m or 2, d)
    if duplicates:
        X[1] = X[0]
        Y[0] = X[2]
    samples = (X,) if m is None else (X, Y)
    value = median_bandwidth(*samples)
    assert type(value) is float
    assert value == pytest.approx(scipy_median(*samples), rel=1e-14)
    # torch input (float32 too) gives the same float
    assert median_bandwidth(*(torch.tensor(s) for s in samples)) == pytest.approx(value, rel=1e-14)


def test_median_bandwidth_subsamples_evenly_and_deterministically():
    X, _ = numpy_pair(30, 2, 2)
    idx = np.linspace(0, 29, 7).astype(int)  # evenly spaced indices, truncated
    assert median_bandwidth(X, max_points=7) == pytest.approx(scipy_median(X[idx]), rel=1e-14)
    assert median_bandwidth(X, max_points=7) == median_bandwidth(X, max_points=7)
    assert median_bandwidth(X, max_points=30) == pytest.approx(scipy_median(X), rel=1e-14)


# -- input and output conventions ---------------------------------------------------

ALL_ESTIMATORS = [  # (function, its estimator and kernel for the error model)
    pytest.param(lambda X, Y: mmd2_unbiased(X, Y, bandwidth=1.0), "unbiased", Gaussian(1.0), id="mmd2_unbiased"),
    pytest.param(lambda X, Y: mmd2_biased(X, Y, bandwidth=1.0), "biased", Gaussian(1.0), id="mmd2_biased"),
    pytest.param(lambda X, Y: mmd2_linear(X, Y, bandwidth=1.0), "linear", Gaussian(1.0), id="mmd2_linear"),
    pytest.param(lambda X, Y: mmd2(X, Y, "laplace", 1.0, estimator="biased"), "biased", Laplace(1.0),
                 id="mmd2-laplace"),
    pytest.param(lambda X, Y: energy_distance(X, Y), "biased", Energy(), id="energy_distance"),
    pytest.param(lambda X, Y: energy_distance(X, Y, unbiased=True), "unbiased", Energy(),
                 id="energy_distance-unbiased"),
]


def dtype_budget(dtype, X, Y, estimator, spec, parts, budget):
    """Relative budget of a `dtype` MMD^2 against float64 on the same points (mmd2_error_model): float64
    entries and sums; float32 / half: float32 entries (row_conditioning, d + 5 terms) with float64 sums, and
    half rounds the result once more (budget(dtype))."""
    X, Y = torch.as_tensor(X).detach().double(), torch.as_tensor(Y).detach().double()
    terms, cond, row_cond = mmd2_error_model(X, Y, spec, estimator, parts)
    if dtype == torch.float64:
        return budget(torch.float64, terms, cond)
    low = budget(torch.float32, X.shape[1] + 5, row_cond) + budget(torch.float64, terms, cond)
    return low if dtype == torch.float32 else low + budget(dtype)


@pytest.mark.parametrize("fn, estimator, spec", ALL_ESTIMATORS)
def test_numpy_in_float_out(fn, estimator, spec, budget, kernel_matmul_parts):
    """float32 numpy input: within dtype_budget (on the float32 points) of float64 on the unrounded ones,
    the input's rounding (u |x|) being inside the entry model's T. Measured here: 7e-8 to 7.5e-7
    relative, at most 0.13 of the budget (energy_distance; before, a flat 1e-5)."""
    X, Y = numpy_pair(9, 7, 2)
    value = fn(X, Y)
    assert type(value) is float
    assert fn(X.tolist(), Y.tolist()) == value  # nested lists are array-likes
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    rtol = dtype_budget(torch.float32, X32, Y32, estimator, spec, kernel_matmul_parts, budget)
    assert close(fn(X32, Y32), value, rtol)
    Xi, Yi = np.round(3 * X).astype(np.int64), np.round(3 * Y).astype(np.int64)  # ints are cast
    assert fn(Xi, Yi) == pytest.approx(fn(Xi.astype(np.float64), Yi.astype(np.float64)), rel=1e-14)


DTYPES = [  # dtype -> tolerance: dtype_budget
    pytest.param(torch.float64, id="float64"),
    pytest.param(torch.float32, id="float32"),
    pytest.param(torch.float16, id="float16"),
    pytest.param(torch.bfloat16, id="bfloat16"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn, estimator, spec", ALL_ESTIMATORS)
def test_torch_in_tensor_out_keeps_dtype_and_device(fn, estimator, spec, dtype, budget, kernel_matmul_parts):
    """The value within dtype_budget of float64 on the rounded points (before: 1e-12, 1e-5, 2e-2, 5e-2).
    Measured here, as a fraction of it: float64 0 (the same sums), float32 <= 0.09, float16 <= 0.49,
    bfloat16 <= 0.39."""
    X, Y = numpy_pair(9, 7, 2, shift=1.5)
    Xt = torch.tensor(X, dtype=dtype, requires_grad=True)
    Yt = torch.tensor(Y, dtype=dtype)
    value = fn(Xt, Yt)
    assert isinstance(value, torch.Tensor)
    assert value.shape == () and value.dtype == dtype and value.device == Xt.device
    assert value.requires_grad  # differentiable
    value.backward()
    assert Xt.grad.dtype == dtype and torch.isfinite(Xt.grad).all()
    # the same number as the float64 computation on the rounded points, to the dtype's precision
    rtol = dtype_budget(dtype, Xt, Yt, estimator, spec, kernel_matmul_parts, budget)
    assert close(value.detach(), fn(Xt.detach().double().numpy(), Yt.double().numpy()), rtol)
    # a numpy sample next to a tensor: the result follows the tensor
    assert isinstance(fn(X, torch.tensor(Y)), torch.Tensor)


@pytest.mark.parametrize("fn, estimator, spec", ALL_ESTIMATORS)
def test_1d_input_means_d_equals_1(fn, estimator, spec):
    X, Y = numpy_pair(8, 11, 1)
    assert fn(X[:, 0], Y[:, 0]) == fn(X, Y)
    Xt, Yt = torch.tensor(X[:, 0]), torch.tensor(Y[:, 0])
    assert torch.equal(fn(Xt, Yt), fn(Xt[:, None], Yt[:, None]))


def test_witness_1d_and_mixed_inputs():
    X, Y = numpy_pair(8, 11, 1)
    T = np.linspace(-2, 2, 5)
    f = witness(X[:, 0], Y[:, 0], T, bandwidth=1.0)
    assert isinstance(f, np.ndarray) and f.shape == (5,)
    np.testing.assert_array_equal(f, witness(X, Y, T[:, None], bandwidth=1.0))
    ft = witness(torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32), T, bandwidth=1.0)
    assert isinstance(ft, torch.Tensor) and ft.dtype == torch.float32 and ft.shape == (5,)
    np.testing.assert_allclose(ft.numpy(), f, rtol=1e-5, atol=1e-6)
