"""cross_mmd_test: the statistic against a dense float64 oracle on the documented split, invariances,
bad input, seeds, and (slow) its normal calibration and power."""
import math

import numpy as np
import pytest
import torch

from mmdkit import Energy, Gaussian, IMQ, Laplace, Mixture, Polynomial, RationalQuadratic, median_bandwidth
from mmdkit.cross_mmd import cross_mmd_test
from mmdkit.kernels.reference import kernel_matrix, make_pair

EPS32 = torch.finfo(torch.float32).eps


def split_from_seed(seed, n, m):
    """The documented split: randperm of the smaller size, then of the larger (shared when n == m);
    the first n // 2 (m // 2) entries index the evaluation halves."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randperm(min(n, m), generator=g)
    large = small if n == m else torch.randperm(max(n, m), generator=g)
    px, py = (small, large) if n <= m else (large, small)
    return px[:n // 2], px[n // 2:], py[:m // 2], py[m // 2:]


def oracle(X, Y, spec, seed):
    """(T, xMMD^2, s, mean |k|) from dense float64 blocks, in the authors' four-matrix form."""
    x1, x2, y1, y2 = split_from_seed(seed, X.shape[0], Y.shape[0])
    X1, X2, Y1, Y2 = X[x1], X[x2], Y[y1], Y[y2]
    Kxx, Kxy, Kyx, Kyy = (kernel_matrix(A, B, spec) for A, B in ((X1, X2), (X1, Y2), (Y1, X2), (Y1, Y2)))
    a = Kxx.mean(1) - Kxy.mean(1)  # witness of (X2, Y2) at each point of X1
    b = Kyx.mean(1) - Kyy.mean(1)
    u = a.mean() - b.mean()
    s = torch.sqrt(((a - a.mean()) ** 2).mean() / len(a) + ((b - b.mean()) ** 2).mean() / len(b))
    scale = torch.cat([K.abs().flatten() for K in (Kxx, Kxy, Kyx, Kyy)]).mean()
    return float(u / s), float(u), float(s), float(scale)


CASES = [  # (id, n, m, d, spec, shift)
    ("gauss-n40-m40-d3", 40, 40, 3, Gaussian(1.2), 0.0),
    ("gauss-n4-m5-d2-smallest", 4, 5, 2, Gaussian(0.9), 0.5),
    ("laplace-n37-m52-d1", 37, 52, 1, Laplace(0.7), 0.3),
    ("energy-n61-m30-d17", 61, 30, 17, Energy(), 0.5),
    ("energy1.5-n33-m33-d5", 33, 33, 5, Energy(exponent=1.5), 0.0),
    ("rq-n29-m45-d4", 29, 45, 4, RationalQuadratic(2.0, alpha=0.5), 0.4),
    ("imq-n50-m23-d2", 50, 23, 2, IMQ(1.5), 0.2),
    ("poly-n26-m31-d3", 26, 31, 3, Polynomial(degree=2, gamma=0.3), 0.6),
    ("mixture-n45-m38-d6", 45, 38, 6, Mixture.of(Gaussian, [0.5, 2.0, 4.0]), 0.5),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_statistic_matches_dense_float64_oracle(case):
    _, n, m, d, spec, shift = case
    X, Y = make_pair(n, m, d, shift=shift, dtype=torch.float64, seed=n + m, centre=1.0)
    res = cross_mmd_test(X, Y, kernel=spec, seed=7, alternative="two-sided")
    t, _, _, _ = oracle(X, Y, spec, 7)
    assert res.statistic == pytest.approx(t, rel=1e-12, abs=1e-12)
    assert res.pvalue == pytest.approx(math.erfc(abs(t) / math.sqrt(2)), rel=1e-10, abs=1e-300)


FLOAT32 = [  # (id, spec, centre): data far from the origin too, where the engine centres
    ("gauss-median", "gaussian", 0.0),
    ("gauss-median-centre10", "gaussian", 10.0),
    ("laplace-2", Laplace(2.0), 10.0),
    ("energy", Energy(), 0.0),
    ("energy-centre100", Energy(), 100.0),
]


@pytest.mark.parametrize("case", FLOAT32, ids=[c[0] for c in FLOAT32])
@pytest.mark.parametrize("shift", [0.0, 0.8])
def test_float32_within_float32_rounding_of_the_float64_oracle(case, shift):
    """Budget: |T32 - T| <= eps32 x mean|k| / s, one float32 rounding of a mean of kernel values in
    units of the standard error (measured 0.00-0.20 of it on these 10 cases, 0.00-0.19 on 54 cases
    with n = 301, m = 257: Gaussian, Laplace, energy, centres 0, 10, 100)."""
    _, kernel, centre = case
    X, Y = make_pair(141, 113, 7, shift=shift, dtype=torch.float32, seed=3, centre=centre)
    res = cross_mmd_test(X, Y, kernel=kernel, seed=11)
    spec = res.kernel  # the median bandwidth the test resolved, so the oracle uses the same kernel
    t, _, s, scale = oracle(X.double(), Y.double(), spec, 11)
    assert abs(res.statistic - t) <= EPS32 * scale / s
    if shift:
        assert t > 3  # the alternative: T far from 0


def test_triton_backend_within_float32_rounding_of_the_oracle():
    """The same engine call on the Triton backend (TRITON_INTERPRET=1 on the CPU, set by conftest.py)."""
    pytest.importorskip("triton")
    X, Y = make_pair(37, 29, 3, shift=0.8, dtype=torch.float32, seed=4, centre=2.0)
    res = cross_mmd_test(X, Y, kernel=Gaussian(1.5), seed=2, backend="triton")
    t, _, s, scale = oracle(X.double(), Y.double(), Gaussian(1.5), 2)
    assert res.backend == "triton"
    assert abs(res.statistic - t) <= EPS32 * scale / s


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(dtype):
    """The witness is not rounded back to the input dtype: float32 rounding of the (rounded) inputs' T."""
    X, Y = make_pair(90, 70, 4, shift=0.8, dtype=dtype, seed=6)
    res = cross_mmd_test(X, Y, kernel=Laplace(2.0), seed=1)
    t, _, s, scale = oracle(X.double(), Y.double(), Laplace(2.0), 1)
    assert abs(res.statistic - t) <= EPS32 * scale / s


def test_median_bandwidth_is_taken_on_the_pooled_second_halves():
    X, Y = make_pair(50, 41, 3, shift=0.3, dtype=torch.float64, seed=5)
    res = cross_mmd_test(X, Y, seed=3)
    _, x2, _, y2 = split_from_seed(3, 50, 41)
    assert res.bandwidth == pytest.approx(median_bandwidth(X[x2], Y[y2]), rel=1e-14)
    assert res.kernel == Gaussian(res.bandwidth)


@pytest.mark.parametrize("n, m", [(40, 40), (33, 58), (71, 20)])
def test_swapping_the_samples_leaves_the_test_unchanged(n, m):
    """xMMD^2 is symmetric in (P, Q): f changes sign and so does the roles' difference."""
    X, Y = make_pair(n, m, 4, shift=0.4, dtype=torch.float64, seed=1)
    a = cross_mmd_test(X, Y, seed=5, alternative="two-sided")
    b = cross_mmd_test(Y, X, seed=5, alternative="two-sided")
    assert b.statistic == pytest.approx(a.statistic, rel=1e-12)
    assert b.pvalue == pytest.approx(a.pvalue, rel=1e-10)
    g, le = cross_mmd_test(X, Y, seed=5, alternative="greater"), cross_mmd_test(X, Y, seed=5, alternative="less")
    assert g.pvalue + le.pvalue == pytest.approx(1.0, abs=1e-14)
    assert a.pvalue == pytest.approx(2 * min(g.pvalue, le.pvalue), rel=1e-12)


def test_result_fields_seed_and_types():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(60, 2)), rng.normal(size=(45, 2))
    r1, r2 = cross_mmd_test(X, Y, seed=3), cross_mmd_test(X, Y, seed=3)
    assert type(r1.statistic) is float and type(r1.pvalue) is float
    assert (r1.statistic, r1.pvalue) == (r2.statistic, r2.pvalue)
    assert cross_mmd_test(X, Y, seed=4).statistic != r1.statistic  # another split
    assert cross_mmd_test(X, Y, seed=torch.Generator().manual_seed(3)).statistic == r1.statistic
    rt = cross_mmd_test(torch.from_numpy(X), torch.from_numpy(Y), seed=3)
    assert rt.statistic == r1.statistic
    assert cross_mmd_test(X, Y, seed=np.random.default_rng(1)).statistic == pytest.approx(
        cross_mmd_test(X, Y, seed=np.random.default_rng(1)).statistic, rel=0)
    assert r1.null_distribution.shape == (0,) and r1.n_permutations == 0 and not r1.exact
    assert (r1.test, r1.method, r1.backend, r1.alternative) == ("cross_mmd", "streamed", "torch", "greater")
    assert 0.0 <= r1.pvalue <= 1.0
    assert r1.pvalue == pytest.approx(0.5 * math.erfc(r1.statistic / math.sqrt(2)), rel=1e-12)


@pytest.mark.parametrize("X, Y, kw, err, match", [
    (np.zeros((3, 2)), np.ones((6, 2)), {}, ValueError, "`X` needs at least 4"),
    (np.zeros((6, 2)), np.ones((3, 2)), {}, ValueError, "`Y` needs at least 4"),
    (np.zeros((6, 2)), np.ones((6, 3)), {}, ValueError, "same number of columns"),
    (np.array([[0.0], [np.nan], [1.0], [2.0]]), np.ones((5, 1)), {}, ValueError, "`X` contains 1 NaN"),
    (np.zeros((6, 1)), np.array([0.0, 1.0, np.inf, 2.0]), {}, ValueError, "`Y` contains 1 NaN"),
    (np.zeros((6, 2)), np.ones((6, 2)), {"alternative": "bigger"}, ValueError, "`alternative`"),
    (np.zeros((6, 2)), np.ones((6, 2)), {"bandwidth": -1.0}, ValueError, "`bandwidth`"),
    (np.zeros((6, 2)), np.ones((6, 2)), {"kernel": "nope"}, ValueError, "`kernel`"),
    (np.zeros((6, 2)), np.ones((6, 2)), {"seed": -1}, ValueError, "`seed`"),
    (np.zeros((6, 2)), np.ones((6, 2)), {"backend": "cuda"}, ValueError, "`backend`"),
    (np.zeros((6, 2)), np.zeros((6, 2)), {}, ValueError, "all points"),  # median of identical points
    (np.zeros((6, 2)), np.zeros((6, 2)), {"bandwidth": 1.0}, ValueError, "witness .* is constant"),
], ids=["n3", "m3", "d-mismatch", "nan", "inf", "alternative", "bandwidth<=0", "kernel-name", "seed<0",
        "backend", "identical-median", "identical-float-bw"])
def test_bad_input_names_the_argument(X, Y, kw, err, match):
    with pytest.raises(err, match=match):
        cross_mmd_test(X, Y, **kw)


def _null_pvalues(reps, n, m, d, shift, alternative="greater"):
    g = torch.Generator().manual_seed(2024)
    out = np.empty(reps)
    for r in range(reps):
        X = torch.randn(n, d, generator=g)  # float32: the engine's fast path; calibration is not about rounding
        Y = torch.randn(m, d, generator=g)
        Y[:, 0] += shift
        out[r] = cross_mmd_test(X, Y, seed=r, alternative=alternative).pvalue
    return out


@pytest.mark.slow
@pytest.mark.parametrize("n, m, alternative", [(200, 200, "greater"), (300, 500, "greater"),
                                               (200, 200, "two-sided")])
def test_type_one_error_within_three_standard_errors(n, m, alternative):
    """Gaussian d = 5 under H0, median bandwidth: rejections at alpha = 0.05 over R = 1000 samples.

    The normal calibration is asymptotic; smaller unequal halves run slightly liberal
    (measured 0.058 +- 0.004 at n = 150, m = 250 over 3000 samples), so the n != m case is 300, 500."""
    reps, alpha = 1000, 0.05
    rate = float(np.mean(_null_pvalues(reps, n, m, 5, 0.0, alternative) <= alpha))
    assert abs(rate - alpha) <= 3 * math.sqrt(alpha * (1 - alpha) / reps), rate


@pytest.mark.slow
def test_power_near_one_under_a_clear_mean_shift():
    """Y shifted by 0.8 along one axis (d = 5, n = m = 200): the cross-MMD test rejects almost always."""
    power = float(np.mean(_null_pvalues(100, 200, 200, 5, 0.8) <= 0.05))
    assert power >= 0.95, power
