"""MMDAgg as its authors' code runs it (Schrab et al., JMLR 2023; mmdagg/np.py of antoninschrab/mmdagg-paper).

* The bandwidth collection: a float64 re-statement of the paper's rule
  (scipy distances between the first 500 rows of X and of Y, the 5% order
  statistic or the minimum, the clamps 0.1 and 0.3, 10 geometric steps from
  lambda_min / 2 to 2 lambda_max) against :func:`mmdkit.bandwidth_grid`, on
  shapes that reach each branch of the rule.
* The kernels: mmdkit's statistic at the grid's h equals the paper's
  exp(-D^2 / lambda^2) and exp(-D_1 / lambda) statistics, written densely here.
* The span on the paper's exp1bis data (perturbed uniform, d = 1, n = m = 500).
* The level correction (Steps 2-3 of the paper's code) re-stated here and run
  on the statistics mmd_test computed.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import mmdkit
import mmdkit.aggregated as aggregated
from mmdkit import IMQ, Gaussian, Laplace, RationalQuadratic, bandwidth_grid, mmd_test

# -- the paper's rule, re-stated in float64 ------------------------------------------------


def paper_lambdas(X, Y, metric: str, count: int = 10, rows: int = 500):
    """(lambdas, branch): the paper's collection from the X-vs-Y distances of the first ``rows`` rows."""
    D = np.sort(cdist(np.asarray(X, np.float64)[:rows], np.asarray(Y, np.float64)[:rows], metric).ravel())
    if D[0] >= 0.1:
        branch, small = "min", D[0]
    else:
        q = D[math.floor(0.05 * D.size)]  # 0-based order statistic, no interpolation
        branch, small = ("q05" if q >= 0.1 else "q05-clamped"), max(q, 0.1)
    large = max(D[-1], 0.3)
    branch += "/max-clamped" if D[-1] < 0.3 else ""
    lo, hi = small / 2, 2 * large
    ratio = (hi / lo) ** (1 / (count - 1))
    return np.array([lo * ratio ** i for i in range(count)]), branch


def sample(rng, n, m, d, scale=1.0, shift=0.0):
    return rng.uniform(0, scale, (n, d)), rng.uniform(0, scale, (m, d)) + shift


def shape_data(name):
    n, m, d, scale, shift = SHAPES[name]
    return sample(np.random.default_rng(sum(map(ord, name))), n, m, d, scale, shift)


# (n, m, d, scale, shift): unit cube data (q05 branch), tiny data (both clamps), spread-out
# small samples (min branch), more rows than the 500 used, n = 2.
SHAPES = {
    "unit-d1": (80, 50, 1, 1.0, 0.0),
    "unit-d3-n!=m": (37, 64, 3, 1.0, 0.2),
    "unit-d5": (41, 40, 5, 1.0, 0.0),
    "tiny-d2": (30, 45, 2, 0.05, 0.0),
    "spread-d4": (6, 9, 4, 40.0, 0.0),
    "shifted-d2": (25, 20, 2, 1.0, 3.0),
    "rows-over-500": (700, 530, 2, 1.0, 0.0),
    "n=2": (2, 3, 2, 1.0, 0.5),
}

# kernel -> (distance, lambda / h): the paper's Gaussian exp(-D^2 / lambda^2) is mmdkit's
# exp(-D^2 / (2 h^2)) at h = lambda / sqrt(2); its Laplace exp(-D_1 / lambda) is Laplace(lambda, "l1").
KERNELS = {
    "gaussian": ("gaussian", "euclidean", math.sqrt(2)),
    "laplace-l1": (Laplace(norm="l1"), "cityblock", 1.0),
    "imq": (IMQ(), "euclidean", 1.0),
    "rq": (RationalQuadratic(), "euclidean", math.sqrt(2)),
}


@pytest.mark.parametrize("kernel", KERNELS, ids=list(KERNELS))
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_grid_is_the_papers_collection(shape, kernel):
    spec, metric, per_h = KERNELS[kernel]
    X, Y = shape_data(shape)
    lam, _ = paper_lambdas(X, Y, metric)
    h = np.array(bandwidth_grid(X, Y, kernel=spec))
    np.testing.assert_allclose(h * per_h, lam, rtol=1e-13, atol=0)
    # torch input, float32, other count: the same rule (distances of the float32 values, in float64)
    Xt, Yt = torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    lam4, _ = paper_lambdas(Xt.double().numpy(), Yt.double().numpy(), metric, count=4)
    np.testing.assert_allclose(np.array(bandwidth_grid(Xt, Yt, count=4, kernel=spec)) * per_h, lam4, rtol=1e-13)


def test_the_shapes_reach_every_branch_of_the_rule():
    """The table above is only a test of the rule if it reaches each of its branches."""
    branches = {name: paper_lambdas(*shape_data(name), "euclidean")[1] for name in SHAPES}
    assert {"min", "q05", "q05-clamped", "q05-clamped/max-clamped"} <= set(branches.values()), branches


def test_laplace_in_one_dimension_is_the_papers_l1_laplace():
    X, Y = sample(np.random.default_rng(2), 90, 70, 1)
    assert bandwidth_grid(X, Y, kernel="laplace") == bandwidth_grid(X, Y, kernel=Laplace(norm="l1"))
    np.testing.assert_allclose(bandwidth_grid(X, Y, kernel="laplace"), paper_lambdas(X, Y, "cityblock")[0],
                               rtol=1e-13)


def test_grid_kernels_are_the_papers_kernels():
    """mmd2_unbiased at the grid's h equals the unbiased MMD^2 of the paper's kernels at its lambda,
    written densely in float64: Gaussian exp(-D^2 / lambda^2), Laplace exp(-D_1 / lambda)."""
    X, Y = sample(np.random.default_rng(3), 40, 33, 3, 1.0, 0.3)
    Z = np.concatenate([X, Y])

    def paper_mmd2(K):
        n = len(X)
        Kxx, Kyy, Kxy = K[:n, :n], K[n:, n:], K[:n, n:]
        return ((Kxx.sum() - np.trace(Kxx)) / (n * (n - 1)) + (Kyy.sum() - np.trace(Kyy)) / (len(Y) * (len(Y) - 1))
                - 2 * Kxy.mean())

    for make, metric, form in [(Gaussian, "euclidean", lambda D, lam: np.exp(-(D / lam) ** 2)),
                               (lambda h=None: Laplace(h, norm="l1"), "cityblock", lambda D, lam: np.exp(-D / lam))]:
        D = cdist(Z, Z, metric)
        lams, _ = paper_lambdas(X, Y, metric)
        for h, lam in zip(bandwidth_grid(X, Y, kernel=make()), lams):
            assert mmdkit.mmd2_unbiased(X, Y, kernel=make(h)) == pytest.approx(paper_mmd2(form(D, lam)), rel=1e-9,
                                                                              abs=1e-13)


# -- the span on the paper's exp1bis data ---------------------------------------------------

def _G(t):
    """The paper's bump pair G (Section 5.4): +bump on (-1, -1/2), -bump on (-1/2, 0)."""
    out = np.zeros_like(t)
    a, b = (t > -1) & (t < -0.5), (t > -0.5) & (t < 0)
    out[a] = np.exp(-1 / (1 - (4 * t[a] + 3) ** 2))
    out[b] = -np.exp(-1 / (1 - (4 * t[b] + 1) ** 2))
    return out


def perturbed_uniform(rng, n, p, c=2.7, s=1.0):
    """n points of the paper's perturbed uniform density on [0, 1] (d = 1), by rejection."""
    theta = rng.choice([-1.0, 1.0], p)
    top = 1 + c * p ** -s * math.exp(-1)
    out = np.empty(0)
    while out.size < n:
        x, y = rng.uniform(0, 1, 4 * n), rng.uniform(0, top, 4 * n)
        f = 1 + c * p ** -s * sum(theta[j] * _G(p * x - (j + 1)) for j in range(p))
        out = np.concatenate([out, x[y <= f]])
    return out[:n, None]


def test_span_on_exp1bis_data():
    """exp1bis (Gaussian, d = 1, n = m = 500, perturbations 1-4): lambda spans [0.05, 2 max|x - y|].
    Measured over 40 seeds x 4 perturbations: lambda_min = 0.05 always (the 5% distance, about 0.025,
    is clamped to 0.1), lambda_max in [1.985, 1.9996]; the former grid (q05 / 2 to 2 max over the
    nonzero distances) spanned lambda in [0.016, 0.019] to [2.81, 2.83]."""
    for seed, p in [(0, 1), (1, 2), (2, 3), (3, 4)]:
        rng = np.random.default_rng(seed)
        X, Y = perturbed_uniform(rng, 500, p), rng.uniform(0, 1, (500, 1))
        lam = np.array(bandwidth_grid(X, Y)) * math.sqrt(2)  # Gaussian h -> the paper's lambda
        assert lam.size == 10 and lam[0] == pytest.approx(0.05, rel=1e-14)
        assert 1.98 <= lam[-1] <= 2.0
        np.testing.assert_allclose(lam[1:] / lam[:-1], (lam[-1] / lam[0]) ** (1 / 9), rtol=1e-12)  # geometric
        assert lam[-1] == pytest.approx(2 * np.abs(X - Y.T).max(), rel=1e-14)


# -- the level correction: Steps 2-3 of the paper's code ---------------------------------------

def paper_steps_2_3(observed, null, B1, alpha, bisection_steps=50):
    """u, single p-values and decisions, as the paper's code computes them from M = [B1 perms | identity | B2 perms].

    The quantile of bandwidth l at u is the entry ceil((B1 + 1)(1 - u w_l)) (1-based) of the sorted
    first set with the identity; P_u is the share of the B2 others exceeding the quantile of some l."""
    L = observed.size
    weights = np.full(L, 1.0 / L)
    first = np.sort(np.concatenate([null[:, :B1], observed[:, None]], axis=1), axis=1)
    second = null[:, B1:]

    def quantiles(u):
        return np.array([first[i, int(np.ceil((B1 + 1) * (1 - u * weights[i]))) - 1] for i in range(L)])

    u_low, u_high = 0.0, float(np.min(1 / weights))
    for _ in range(bisection_steps):
        u = (u_high + u_low) / 2
        exceed = np.zeros(second.shape[1], bool)
        for i, q in enumerate(quantiles(u)):
            exceed |= second[i] > q
        if exceed.sum() / second.shape[1] <= alpha:
            u_low = u
        else:
            u_high = u
    u = u_low
    p = np.array([np.mean(first[i] >= observed[i]) for i in range(L)])
    return u, p, p <= u * weights, observed > quantiles(u)


# (seed, n, m, shift, alpha): null and borderline alternatives, n != m and n = m
LEVEL_CASES = {
    "null": (20, 50, 40, 0.0, 0.05),
    "borderline": (21, 45, 45, 0.18, 0.05),
    "borderline-alpha0.2": (22, 40, 55, 0.15, 0.2),
    "ties-n=4-m=5": (24, 4, 5, 0.6, 0.2),  # 126 labellings: the 400 draws repeat them, ties everywhere
}


def test_level_correction_is_the_papers(monkeypatch):
    """On each case, u, the single p-values and every decision equal the paper's Steps 2-3 run on the
    statistics mmd_test computed (B1 = B2 = 200); the cases reach both decisions and a mixed one."""
    seen = []
    real = aggregated.null_statistics

    def recording(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(aggregated, "null_statistics", recording)
    B1, decisions = 300, set()
    for case, (seed, n, m, shift, alpha) in LEVEL_CASES.items():
        X, Y = sample(np.random.default_rng(seed), n, m, 2, 1.0, shift)
        res = mmd_test(X, Y, aggregate=True, n_permutations=B1, seed=seed, alpha=alpha)
        observed, null, _ = seen[-1]
        assert null.shape == (10, 2 * B1), case
        u, p, reject, reject_by_quantile = paper_steps_2_3(observed, null, B1, alpha)
        np.testing.assert_array_equal(reject, reject_by_quantile)  # the paper's code asserts this too
        assert [b.threshold for b in res.per_bandwidth] == pytest.approx(u / 10 * np.ones(10), rel=1e-15), case
        assert [b.pvalue for b in res.per_bandwidth] == pytest.approx(p, rel=1e-15), case
        assert [b.reject for b in res.per_bandwidth] == reject.tolist(), case
        assert res.reject == bool(reject.any()), case
        decisions |= set(reject.tolist()) | {("mixed", len(set(reject.tolist())))}
        # the identity's statistics are the paper's Gaussian MMD at its lambdas (dense float64)
        lams, _ = paper_lambdas(X, Y, "euclidean")
        Z = np.concatenate([X, Y])
        D2 = cdist(Z, Z, "sqeuclidean")
        for obs, lam in zip(observed, lams):
            K = np.exp(-D2 / lam ** 2)
            np.fill_diagonal(K, 0)
            ref = K[:n, :n].sum() / (n * (n - 1)) + K[n:, n:].sum() / (m * (m - 1)) - 2 * K[:n, n:].mean()
            assert obs == pytest.approx(ref, rel=1e-9, abs=1e-12), case
    assert {True, False, ("mixed", 2)} <= decisions


def test_defaults_are_the_papers():
    """B3 = 50 bisection steps and uniform weights (one threshold u / L for all bandwidths)."""
    assert aggregated.BISECTION_STEPS == 50 and aggregated.PAPER_PERMUTATIONS == 2000
    X, Y = sample(np.random.default_rng(5), 30, 25, 1, 1.0, 0.3)
    res = mmd_test(X, Y, aggregate=True, n_permutations=100, seed=0, kernel="laplace")
    assert len(res.per_bandwidth) == 10 and len({b.threshold for b in res.per_bandwidth}) == 1
    assert res.bandwidth == bandwidth_grid(X, Y, kernel="laplace")


@pytest.mark.parametrize("kwargs, match", [
    pytest.param(dict(kernel="energy"), "`kernel`", id="energy"),
    pytest.param(dict(kernel=mmdkit.Mixture.of(Gaussian, [1.0, 2.0])), "`kernel`", id="mixture"),
    pytest.param(dict(count=1), "`count`", id="count-1"),
    pytest.param(dict(max_points=0), "`max_points`", id="max-points-0"),
])
def test_bad_grid_arguments(kwargs, match):
    X, Y = sample(np.random.default_rng(6), 5, 5, 2)
    with pytest.raises(ValueError, match=match):
        bandwidth_grid(X, Y, **kwargs)
