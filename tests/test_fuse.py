"""MMD-FUSE against a dense float64 oracle of the authors' formulas (github.com/antoninschrab/mmdfuse).

The oracle below restates, in numpy on full matrices, what the reference
code computes: the bandwidths from the sorted pooled distances (upper
triangle with the diagonal, zeros replaced by the median, lambda from half
the 5% to twice the 95% order statistic), the kernels exp(-(D / lambda)^2 / 2)
(L2) and exp(-sqrt(2) D_1 / lambda) (L1), each permuted MMD as the code's
three quadratic forms V10' K V10, V01' K V01, V11' K V11 with the larger
sample first, divided by ||K0||_F and multiplied by sqrt(n (n - 1)), and a
log-mean-exp over the kernels.
"""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

import mmdkit
from mmdkit import Energy, Gaussian, IMQ, Laplace, Mixture, RationalQuadratic, fuse_test
from mmdkit._permutations import generator, permutation_key, permute
from mmdkit.fuse import fuse_bandwidths
from mmdkit.kernels.reference import kernel_matrix


def oracle_lambdas(Z, metric, count=10):
    D = cdist(Z, Z, metric)
    dist = D[np.triu_indices(Z.shape[0])]
    dist = dist + (dist == 0) * np.median(dist)
    dd = np.sort(dist)
    return np.linspace(dd[int(np.floor(len(dd) * 0.05))] / 2, dd[int(np.floor(len(dd) * 0.95))] * 2, count)


def oracle_kernels(Z, count=10):
    out = []
    for metric in ("cityblock", "euclidean"):
        D = cdist(Z, Z, metric)
        for lam in oracle_lambdas(Z, metric, count):
            d = D / lam
            out.append(np.exp(-d * np.sqrt(2)) if metric == "cityblock" else np.exp(-d ** 2 / 2))
    return out


def oracle_fuse(Kmats, in_x, lam_mult=1.0):
    """FUSE for one labelling; ``in_x`` the boolean labels of the first sample."""
    big = in_x if in_x.sum() >= (~in_x).sum() else ~in_x
    m, n = big.sum(), (~big).sum()  # the code's m >= n
    v10, v01 = big.astype(float), -(~big).astype(float)
    v11 = v10 + v01
    M = []
    for K in Kmats:
        K = K.copy()
        np.fill_diagonal(K, 0)
        stat = (v10 @ K @ v10 * (n - m + 1) * (n - 1) / (m * (m - 1)) + v01 @ K @ v01 * (m - n + 1) / m
                + v11 @ K @ v11 * (n - 1) / m)
        M.append(stat / np.sqrt((K ** 2).sum()) * np.sqrt(n * (n - 1)))
    return logsumexp(lam_mult * np.array(M), b=1 / len(M))


def labellings(seed, n, m, count):
    """The identity and the package's permutations: i is labelled X when pi_b(i) < n (the keyed bijection)."""
    N = n + m
    pis = permute(permutation_key(generator(seed)), np.arange(count), np.arange(N), N)
    return [np.arange(N) < n] + list(pis < n)


def data(n, m, d, shift, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) + shift


@pytest.mark.parametrize("n, m, d", [(23, 31, 3), (30, 17, 1), (12, 12, 5)])
def test_statistic_null_and_pvalue_equal_the_dense_oracle(n, m, d):
    X, Y = data(n, m, d, 0.4, n + m)
    Z = np.concatenate([X, Y])
    res = fuse_test(X, Y, n_permutations=40, seed=7)
    Kmats = oracle_kernels(Z)
    values = np.array([oracle_fuse(Kmats, lab) for lab in labellings(7, n, m, 40)])
    assert res.test == "fuse" and len(res.kernel) == 20 and res.n_permutations == 40
    np.testing.assert_allclose(res.statistic, values[0], rtol=1e-12)
    np.testing.assert_allclose(res.null_distribution, values[1:], rtol=1e-12, atol=1e-12)
    assert res.pvalue == (1 + np.count_nonzero(values[1:] >= values[0] * (1 - 1e-9))) / 41
    assert res.reject == (res.pvalue <= 0.05)
    # the collection: Laplace on L1 with h = lambda / sqrt(2), Gaussian with h = lambda
    np.testing.assert_allclose([s.bandwidth * math.sqrt(2) for s in res.kernel[:10]],
                               oracle_lambdas(Z, "cityblock"), rtol=1e-13)
    np.testing.assert_allclose(res.bandwidth[10:], oracle_lambdas(Z, "euclidean"), rtol=1e-13)
    assert all(s.norm == "l1" for s in res.kernel[:10]) and all(isinstance(s, Gaussian) for s in res.kernel[10:])


def test_lambda_multiplier_and_own_collection_match_the_oracle():
    X, Y = data(20, 25, 2, 0.0, 1)
    Z = np.concatenate([X, Y])
    specs = [Gaussian(0.5), Gaussian(2.0), Laplace(1.0)]
    res = fuse_test(X, Y, kernel=specs, n_permutations=10, seed=3, lambda_multiplier=0.3)
    Kmats = [kernel_matrix(torch.tensor(Z), torch.tensor(Z), s).numpy() for s in specs]
    values = [oracle_fuse(Kmats, lab, 0.3) for lab in labellings(3, 20, 25, 10)]
    np.testing.assert_allclose([res.statistic, *res.null_distribution], values, rtol=1e-12, atol=1e-13)
    mix = fuse_test(X, Y, kernel=Mixture.of(Gaussian, [0.5, 2.0]), n_permutations=10, seed=3)
    two = fuse_test(X, Y, kernel=specs[:2], n_permutations=10, seed=3)
    assert mix.statistic == two.statistic and mix.pvalue == two.pvalue


def test_float32_within_rounding_of_float64_and_same_seed_same_pvalue():
    X, Y = data(40, 35, 4, 0.3, 2)
    r64 = fuse_test(X, Y, n_permutations=100, seed=5)
    r32 = fuse_test(torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32),
                    n_permutations=100, seed=5)
    assert isinstance(r32.statistic, float)
    # the permuted MMDs are O(1/n) differences of O(1) sums: float32 tiles, float64 sums
    np.testing.assert_allclose(r32.null_distribution, r64.null_distribution, rtol=0, atol=2e-4)
    assert abs(r32.statistic - r64.statistic) <= 2e-4
    assert fuse_test(X, Y, n_permutations=100, seed=5).pvalue == r64.pvalue


def test_fuse_bandwidths_public_function():
    X, Y = data(15, 9, 3, 0.0, 4)
    Z = np.concatenate([X, Y])
    np.testing.assert_allclose(fuse_bandwidths(X, Y, "l1", 4), oracle_lambdas(Z, "cityblock", 4), rtol=1e-13)
    np.testing.assert_allclose(fuse_bandwidths(X, Y), oracle_lambdas(Z, "euclidean"), rtol=1e-13)


@pytest.mark.parametrize("spec", [Gaussian(0.7), Laplace(1.3), Laplace(1.3, norm="l1"),
                                  RationalQuadratic(0.9, alpha=0.6), IMQ(1.1, beta=-0.7)], ids=repr)
def test_square_is_the_spec_of_k_squared(spec):
    """Relative rounding of exp(a) is about |a| eps (1.4e-14 measured at a = -70): rtol 5e-14."""
    Z = torch.randn(9, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(kernel_matrix(Z, Z, spec.square()), kernel_matrix(Z, Z, spec) ** 2,
                               rtol=5e-14, atol=0)


def test_bad_input():
    X, Y = data(10, 10, 2, 0.0, 0)
    with pytest.raises(ValueError, match="needs a bandwidth"):
        fuse_test(X, Y, kernel=[Gaussian()])
    with pytest.raises(ValueError, match="cannot be normalised"):
        fuse_test(X, Y, kernel=[Energy()])
    with pytest.raises(TypeError, match="`kernel` must be"):
        fuse_test(X, Y, kernel="gaussian")
    with pytest.raises(ValueError, match="`alpha`"):
        fuse_test(X, Y, alpha=1.5)
    with pytest.raises(ValueError, match="`lambda_multiplier`"):
        fuse_test(X, Y, lambda_multiplier=0)
    with pytest.raises(ValueError, match="`n_bandwidths`"):
        fuse_test(X, Y, n_bandwidths=1)
    with pytest.raises(ValueError, match="`X` needs at least 2"):
        fuse_test(X[:1], Y)
    with pytest.raises(ValueError, match="coincide"):
        fuse_test(np.zeros((5, 2)), np.zeros((4, 2)))


@pytest.mark.slow
def test_type_one_error_and_power():
    """Level: rejections at alpha = 0.05 over 400 null repetitions within alpha +- 3 SE (a permutation test
    is exact, so neither liberal nor conservative: STYLE item 8's two-sided band); power on a mean shift."""
    reps, alpha = 400, 0.05
    rejections = sum(fuse_test(*data(40, 40, 2, 0.0, 100 + r), n_permutations=200, seed=r).reject
                     for r in range(reps))
    assert abs(rejections / reps - alpha) <= 3 * math.sqrt(alpha * (1 - alpha) / reps), rejections / reps
    power = np.mean([fuse_test(*data(40, 40, 2, 0.8, 900 + r), n_permutations=200, seed=r).reject
                     for r in range(50)])
    median = np.mean([mmdkit.mmd_test(*data(40, 40, 2, 0.8, 900 + r), n_permutations=200, seed=r).pvalue <= alpha
                      for r in range(50)])
    assert power >= 0.9 and power >= median - 0.1
