"""Permutation two-sample tests: exact enumeration against brute force on the
float64 reference and against scipy's permutation_test, randomized against
exact, dcor's energy test, seed reproducibility across input types, paths,
batches and backends, MMDAgg's invariants, power, type-I error (slow), bad input."""
import dataclasses
import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch

import mmdkit
from mmdkit import Energy, Gaussian, Laplace, Mixture, bandwidth_grid, energy_test, mmd_test
from mmdkit.kernels import PermutationSums, blocked
from mmdkit.kernels.reference import energy_distance_reference, kernel_matrix, mmd2_reference

dcor = pytest.importorskip("dcor")

TIE = 100 * np.finfo(np.float64).eps  # scipy's relative tie tolerance in float64


def sample(rng, n, m, d, shift=0.0, dtype=np.float64):
    X = rng.normal(size=(n, d))
    Y = rng.normal(size=(m, d))
    Y[:, 0] += shift
    return X.astype(dtype), Y.astype(dtype)


def brute_null(X, Y, stat):
    """stat of every split of the pooled sample into n and m points, the identity first."""
    Z = torch.as_tensor(np.vstack([X, Y]), dtype=torch.float64)
    n, N = len(X), len(X) + len(Y)
    out = []
    for c in itertools.combinations(range(N), n):
        mask = torch.zeros(N, dtype=torch.bool)
        mask[list(c)] = True
        out.append(float(stat(Z[mask], Z[~mask])))
    return np.array(out)


def brute_pvalue(null, obs, alternative):
    gamma = TIE * abs(obs)
    greater = np.mean(null >= obs - gamma)
    less = np.mean(null <= obs + gamma)
    return {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]


# -- exact tests against brute force on the float64 reference -------------------------

EXACT_CASES = [  # (n, m, d, shift), readable ids
    pytest.param(2, 2, 1, 0.0, id="n2-m2-d1"),
    pytest.param(3, 4, 1, 0.5, id="n3-m4-d1"),
    pytest.param(4, 4, 2, 0.3, id="n4-m4-d2-symmetric"),
    pytest.param(5, 4, 3, 1.0, id="n5-m4-d3"),
    pytest.param(6, 3, 5, 0.0, id="n6-m3-d5"),
]
KERNELS = [Gaussian(bandwidth=1.3), Laplace(bandwidth=0.7), Energy()]


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
@pytest.mark.parametrize("n, m, d, shift", EXACT_CASES)
def test_exact_mmd_test_matches_brute_force(n, m, d, shift, kernel, alternative):
    X, Y = sample(np.random.default_rng(n * 100 + m * 10 + d), n, m, d, shift)
    res = mmd_test(X, Y, kernel=kernel, n_permutations=10**6, alternative=alternative)
    null = brute_null(X, Y, lambda A, B: mmd2_reference(A, B, kernel))
    assert res.exact and res.n_permutations == math.comb(n + m, n) == null.size
    np.testing.assert_allclose(res.null_distribution, null, rtol=1e-12, atol=1e-14)
    assert res.statistic == mmdkit.mmd2_unbiased(X, Y, kernel=kernel)
    assert res.statistic == pytest.approx(null[0], rel=1e-12, abs=1e-15)
    assert res.pvalue == pytest.approx(brute_pvalue(null, null[0], alternative), abs=1e-15)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("n, m, d, shift", EXACT_CASES)
def test_exact_energy_test_matches_brute_force(n, m, d, shift, alternative):
    X, Y = sample(np.random.default_rng(7 + n + m + d), n, m, d, shift)
    res = energy_test(X, Y, n_permutations=10**6, alternative=alternative)
    null = brute_null(X, Y, lambda A, B: energy_distance_reference(A, B) * len(A) * len(B) / (len(A) + len(B)))
    np.testing.assert_allclose(res.null_distribution, null, rtol=1e-12, atol=1e-14)
    assert res.pvalue == pytest.approx(brute_pvalue(null, null[0], alternative), abs=1e-15)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_exact_pvalue_equals_scipy_permutation_test(alternative):
    """scipy's own exact permutation test with the reference statistic: same p-value."""
    X, Y = sample(np.random.default_rng(3), 4, 5, 1, 0.4)
    kernel = Gaussian(bandwidth=0.9)
    stat = lambda x, y: float(mmd2_reference(torch.tensor(x)[:, None], torch.tensor(y)[:, None], kernel))
    ref = scipy.stats.permutation_test((X[:, 0], Y[:, 0]), stat, permutation_type="independent",
                                       vectorized=False, n_resamples=np.inf, alternative=alternative)
    res = mmd_test(X, Y, kernel=kernel, n_permutations=200, alternative=alternative)
    assert res.exact
    assert res.pvalue == pytest.approx(ref.pvalue, abs=1e-15)
    np.testing.assert_allclose(np.sort(res.null_distribution), np.sort(ref.null_distribution), rtol=1e-12)


def test_randomized_agrees_with_exact():
    X, Y = sample(np.random.default_rng(11), 7, 7, 2, 1.5)  # C(14, 7) = 3432 splits
    exact = mmd_test(X, Y, bandwidth=1.0, n_permutations=3432)
    rand = mmd_test(X, Y, bandwidth=1.0, n_permutations=3000, seed=0)
    assert exact.exact and not rand.exact and rand.n_permutations == 3000
    p = exact.pvalue
    assert 0.02 < p < 0.9  # a case where the comparison means something
    assert abs(rand.pvalue - p) < 4 * math.sqrt(p * (1 - p) / 3000) + 1 / 3001


# -- statistics: mmd2_unbiased, energy_distance, dcor ---------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
def test_statistic_is_mmd2_unbiased(dtype, as_torch):
    X, Y = sample(np.random.default_rng(0), 40, 33, 3, 0.2, dtype)
    if as_torch:
        X, Y = torch.from_numpy(X), torch.from_numpy(Y)
    res = mmd_test(X, Y, bandwidth=1.5, n_permutations=50, seed=0)
    assert res.statistic == float(mmdkit.mmd2_unbiased(X, Y, bandwidth=1.5))
    assert res.kernel == Gaussian(bandwidth=1.5) and res.bandwidth == 1.5 and res.test == "mmd"


def test_median_bandwidth_and_mixture_are_recorded():
    X, Y = sample(np.random.default_rng(1), 30, 30, 2)
    res = mmd_test(X, Y, n_permutations=20, seed=0)
    assert res.bandwidth == pytest.approx(mmdkit.median_bandwidth(X, Y))
    mix = mmd_test(X, Y, bandwidth=[0.5, 2.0], n_permutations=20, seed=0)
    assert isinstance(mix.kernel, Mixture) and mix.bandwidth == (0.5, 2.0)
    assert mix.statistic == mmdkit.mmd2_unbiased(X, Y, bandwidth=[0.5, 2.0])


@pytest.mark.parametrize("exponent", [1.0, 0.5, 1.5])
@pytest.mark.parametrize("n, m, d", [(40, 40, 3), (37, 25, 1), (20, 31, 6)])
def test_energy_statistic_matches_dcor(n, m, d, exponent):
    X, Y = sample(np.random.default_rng(n + m + d), n, m, d, 0.3)
    res = energy_test(X, Y, exponent=exponent, n_permutations=10, seed=0)
    ref = dcor.homogeneity.energy_test_statistic(X, Y, exponent=exponent)
    assert res.statistic == pytest.approx(float(ref), rel=1e-10)
    assert res.statistic == float(mmdkit.energy_distance(X, Y, exponent=exponent)) * n * m / (n + m)


@pytest.mark.parametrize("shift", [0.0, 0.35])
def test_energy_pvalue_matches_dcor_within_monte_carlo_error(shift):
    X, Y = sample(np.random.default_rng(5), 30, 26, 3, shift)
    P = 3000
    ours = energy_test(X, Y, n_permutations=P, seed=1)
    ref = dcor.homogeneity.energy_test(X, Y, num_resamples=P, random_state=2)
    p = (ours.pvalue + ref.pvalue) / 2
    # two independent Monte Carlo estimates of the same p-value
    assert abs(ours.pvalue - ref.pvalue) < 4 * math.sqrt(2 * p * (1 - p) / P) + 2 / P
    np.testing.assert_allclose(ours.statistic, float(ref.statistic), rtol=1e-10)


# -- reproducibility ------------------------------------------------------------------

def test_same_seed_same_pvalue_across_input_types_paths_and_batches():
    X, Y = sample(np.random.default_rng(2), 60, 45, 3, 0.25)
    runs = {
        "numpy": mmd_test(X, Y, bandwidth=2.0, n_permutations=300, seed=7),
        "torch": mmd_test(torch.from_numpy(X), torch.from_numpy(Y), bandwidth=2.0, n_permutations=300, seed=7),
        "mixed": mmd_test(X, torch.from_numpy(Y), bandwidth=2.0, n_permutations=300, seed=7),
        "generator": mmd_test(X, Y, bandwidth=2.0, n_permutations=300, seed=torch.Generator().manual_seed(7)),
        "streamed": mmd_test(X, Y, bandwidth=2.0, n_permutations=300, seed=7, memory_budget=0),
        "batch7": mmd_test(X, Y, bandwidth=2.0, n_permutations=300, seed=7, batch=7),
        "streamed-batch1": mmd_test(X, Y, bandwidth=2.0, n_permutations=300, seed=7, batch=1, memory_budget=0),
    }
    base = runs["numpy"]
    assert base.method == "dense" and runs["streamed"].method == "streamed"
    for name, r in runs.items():
        assert r.pvalue == base.pvalue, name
        np.testing.assert_allclose(r.null_distribution, base.null_distribution, rtol=1e-12, atol=1e-15,
                                   err_msg=name)
    assert not np.array_equal(mmd_test(X, Y, bandwidth=2.0, n_permutations=300, seed=8).null_distribution,
                              base.null_distribution)


def test_float32_input_same_pvalue_for_numpy_and_torch():
    X, Y = sample(np.random.default_rng(4), 50, 50, 4, 0.2, np.float32)
    a = energy_test(X, Y, n_permutations=200, seed=3)
    b = energy_test(torch.from_numpy(X), torch.from_numpy(Y), n_permutations=200, seed=3)
    c = energy_test(X, Y, n_permutations=200, seed=3, memory_budget=0)
    assert a.pvalue == b.pvalue == c.pvalue
    # float32 null vs the float64 one: same permutations, rounding-level differences only
    d = energy_test(X.astype(np.float64), Y.astype(np.float64), n_permutations=200, seed=3)
    np.testing.assert_allclose(a.null_distribution, d.null_distribution, rtol=1e-4)


def test_same_pvalue_on_the_triton_backend():
    pytest.importorskip("triton")
    pytest.importorskip("mmdkit.kernels.triton_engine")
    X, Y = sample(np.random.default_rng(6), 13, 11, 3, 0.5, np.float32)
    a = mmd_test(X, Y, bandwidth=1.5, n_permutations=40, seed=5, backend="torch")
    b = mmd_test(X, Y, bandwidth=1.5, n_permutations=40, seed=5, backend="triton")
    assert b.backend == "triton" and b.method == "streamed"
    assert a.pvalue == b.pvalue
    np.testing.assert_allclose(a.null_distribution, b.null_distribution, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("d", [2, 3], ids=["d2-direct", "d3-matmul"])
def test_dense_and_streamed_operators_equal_the_engine_and_the_reference(d, monkeypatch):
    """q = diag(E' K0 E), u = E' K0 1 and S = 1' K0 1 from the dense tiles and the
    streamed sweep (several tiles, ragged edges, two batches) against kernel_matmul
    and the dense float64 reference."""
    monkeypatch.setattr(blocked, "PERM_TILE_DENSE", 256)
    monkeypatch.setattr(blocked, "PERM_TILE_STREAM", 384)
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(700, d, generator=g, dtype=torch.float64)
    batches = [torch.randn(700, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    specs = [Gaussian(bandwidth=h) for h in (0.5, 1.0, 3.0)]
    dense = PermutationSums(Z, specs, 2**40)
    streamed = PermutationSums(Z, specs, 0)
    assert dense.method == "dense" and streamed.method == "streamed" and streamed.tiles > 1
    for E in batches:
        got = [dense(E), streamed(E)]
        for s, spec in enumerate(specs):
            T = blocked.kernel_matmul(Z, None, E, spec, exclude_diagonal=True)
            K = kernel_matrix(Z, Z, spec).fill_diagonal_(0)
            q_ref, u_ref, S_ref = (E * (K @ E)).sum(0), E.T @ K.sum(1), K.sum()
            for q, u, S in (got[0][s], got[1][s]):
                torch.testing.assert_close(q, q_ref, rtol=1e-10, atol=1e-9)
                torch.testing.assert_close(q, (E * T).sum(0), rtol=1e-10, atol=1e-9)
                torch.testing.assert_close(u, u_ref, rtol=1e-10, atol=1e-9)
                torch.testing.assert_close(S, S_ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_label_block_is_multiplied_in_place_and_its_pad_never_reaches_the_sums(dtype):
    """A label_block view goes into the product uncopied (its rows are aligned); the sums equal those of
    the same labels as a plain contiguous tensor bit for bit, even with NaN in the pad columns
    (columns of a product never mix), and both equal the dense float64 reference."""
    g = torch.Generator().manual_seed(1)
    Z = torch.randn(300, 4, generator=g, dtype=dtype)
    labels = torch.where(torch.rand(300, 21, generator=g) < 0.5, 150.0, -150.0).to(dtype)
    E = blocked.label_block(300, 21, dtype)
    E.copy_(labels)
    assert E.stride() == (32, 1) and blocked._aligned(E).data_ptr() == E.data_ptr()
    assert blocked._aligned(E[7:]).data_ptr() == E[7:].data_ptr()  # row slices stay aligned (the ring's own rows)
    shifted = blocked._aligned(E[:, 1:])  # a column slice starts 4 or 8 bytes in: copied into aligned rows
    assert shifted.data_ptr() % 64 == 0 and torch.equal(shifted[:, :20], E[:, 1:])
    E.as_strided((300, 32), (32, 1))[:, 21:] = float("nan")
    specs = [Gaussian(bandwidth=1.0), Energy()]
    got, plain = PermutationSums(Z, specs, 2**30)(E), PermutationSums(Z, specs, 2**30)(labels.contiguous())
    Z64, L64 = Z.double(), labels.double()
    for s, spec in enumerate(specs):
        K = kernel_matrix(Z64, Z64, spec).fill_diagonal_(0)
        ref = ((L64 * (K @ L64)).sum(0), L64.T @ K.sum(1), K.sum())
        rtol = 1e-10 if dtype == torch.float64 else 1e-5  # float32: 3.9e-6 measured
        for a, b, r in zip(got[s], plain[s], ref):
            assert torch.equal(a, b)
            torch.testing.assert_close(a, r, rtol=rtol, atol=0)


# -- MMDAgg ---------------------------------------------------------------------------

def test_aggregate_single_tests_share_the_permutations_of_mmd_test():
    X, Y = sample(np.random.default_rng(8), 40, 35, 2, 0.4)
    hs = [0.3, 1.0, 3.0]
    agg = mmd_test(X, Y, bandwidth=hs, aggregate=True, n_permutations=300, seed=4)
    assert agg.test == "mmdagg" and agg.bandwidth == tuple(hs) and len(agg.per_bandwidth) == 3
    for h, b in zip(hs, agg.per_bandwidth):
        single = mmd_test(X, Y, bandwidth=h, n_permutations=300, seed=4)
        assert b.bandwidth == h
        assert b.statistic == single.statistic == mmdkit.mmd2_unbiased(X, Y, bandwidth=h)
        assert b.pvalue == single.pvalue  # the first set is the single test's permutations
        np.testing.assert_allclose(b.null_distribution, single.null_distribution, rtol=1e-12)
    thresholds = {b.threshold for b in agg.per_bandwidth}
    assert len(thresholds) == 1  # uniform weights: one u w for all
    u = 3 * thresholds.pop()
    assert agg.reject == any(b.pvalue <= u / 3 for b in agg.per_bandwidth)
    assert agg.statistic == pytest.approx(min(3 * b.pvalue for b in agg.per_bandwidth))
    if agg.pvalue <= agg.alpha:
        assert agg.reject


def test_aggregate_level_correction_by_hand():
    """u from the paper's bisection equals the largest u whose empirical rejection
    rate on the second set is <= alpha, found here on the per-permutation minimum
    p-values t_b: the bisection stops just below the first jump above alpha."""
    X, Y = sample(np.random.default_rng(9), 30, 30, 2, 0.0)
    res = mmd_test(X, Y, bandwidth="grid", aggregate=True, n_permutations=400, seed=2, alpha=0.1)
    L = len(res.per_bandwidth)
    u = res.per_bandwidth[0].threshold * L
    t = np.sort(res.null_distribution)
    k = int(np.floor(0.1 * t.size))  # at most k of the second set may reject
    assert np.count_nonzero(t <= u) <= k
    assert u <= t[k] + 1e-9
    assert 0 < u <= L


def test_aggregate_grid_and_mixture_kernel():
    X, Y = sample(np.random.default_rng(10), 50, 40, 3, 1.0)
    grid = bandwidth_grid(X, Y)
    assert len(grid) == 10 and all(a < b for a, b in zip(grid, grid[1:]))
    a = mmd_test(X, Y, aggregate=True, n_permutations=200, seed=0)
    b = mmd_test(X, Y, kernel=Mixture.of(Gaussian, grid), aggregate=True, n_permutations=200, seed=0,
                 memory_budget=0)
    assert a.bandwidth == pytest.approx(grid) and a.reject and b.reject
    assert a.pvalue == b.pvalue and a.method == "dense" and b.method == "streamed"
    for x, y in zip(a.per_bandwidth, b.per_bandwidth):
        assert x.pvalue == y.pvalue and x.threshold == y.threshold


# -- power, progress, result type -----------------------------------------------------------

def test_power_on_a_mean_shift():
    X, Y = sample(np.random.default_rng(12), 100, 90, 2, 1.0)
    assert mmd_test(X, Y, n_permutations=200, seed=0).pvalue == 1 / 201
    assert energy_test(X, Y, n_permutations=200, seed=0).pvalue == 1 / 201
    # MMDAgg's combined p-value counts the second set's permutations whose smallest single p-value ties the
    # floor 1 / (B1 + 1): about L / (B1 + 1) of them under H0 (5% for 10 bandwidths and B1 = 200), so the
    # p-value of even the strongest evidence sits near L / (B1 + 1). B1 = 2000 (the paper's) puts it at 0.5%.
    agg = mmd_test(X, Y, aggregate=True, n_permutations=2000, seed=0, kernel="laplace")
    assert agg.reject and agg.statistic == pytest.approx(10 / 2001, rel=1e-12) and agg.pvalue <= 0.01
    # and nothing under the null on the same sizes
    X0, Y0 = sample(np.random.default_rng(13), 100, 90, 2, 0.0)
    assert mmd_test(X0, Y0, n_permutations=200, seed=0).pvalue > 0.01


def test_progress_bar(capsys):
    X, Y = sample(np.random.default_rng(14), 20, 20, 2)
    mmd_test(X, Y, n_permutations=50, seed=0, progress=True, batch=10)
    assert "mmd_test" in capsys.readouterr().err
    mmd_test(X, Y, n_permutations=50, seed=0, progress=False, batch=10)
    mmd_test(X, Y, n_permutations=50, seed=0, batch=10)  # fast: no bar
    assert capsys.readouterr().err == ""


def test_result_is_frozen_and_prints_briefly():
    X, Y = sample(np.random.default_rng(15), 10, 10, 1)
    res = mmd_test(X, Y, n_permutations=30, seed=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.pvalue = 0.0
    assert "pvalue=" in repr(res) and len(repr(res)) < 400
    assert isinstance(res.statistic, float) and isinstance(res.null_distribution, np.ndarray)
    assert res.null_distribution.shape == (30,) and res.null_distribution.dtype == np.float64


# -- type-I error (slow) ------------------------------------------------------------------------

def _rejection_rate(run, R, alpha, seed):
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(R):
        X, Y = sample(rng, 25, 20, 2)
        hits += run(X, Y, r) <= alpha
    return hits / R


@pytest.mark.slow
@pytest.mark.parametrize("test", ["mmd", "energy", "mmdagg"])
def test_type_one_error(test):
    R, alpha = 400, 0.05
    runs = {
        "mmd": lambda X, Y, r: mmd_test(X, Y, n_permutations=199, seed=r).pvalue,
        "energy": lambda X, Y, r: energy_test(X, Y, n_permutations=199, seed=r).pvalue,
        "mmdagg": lambda X, Y, r: 0.0 if mmd_test(X, Y, aggregate=True, n_permutations=199, seed=r,
                                                  alpha=alpha).reject else 1.0,
    }
    rate = _rejection_rate(runs[test], R, alpha, seed={"mmd": 1, "energy": 2, "mmdagg": 3}[test])
    assert abs(rate - alpha) <= 3 * math.sqrt(alpha * (1 - alpha) / R), rate


# -- bad input ----------------------------------------------------------------------------------

X0, Y0 = np.zeros((5, 2)) + np.arange(5)[:, None], np.ones((4, 2)) + np.arange(4)[:, None]

BAD = [
    pytest.param(dict(n_permutations=0), ValueError, "n_permutations", id="zero-permutations"),
    pytest.param(dict(n_permutations=2.5), TypeError, "n_permutations", id="float-permutations"),
    pytest.param(dict(alternative="bigger"), ValueError, "alternative", id="alternative"),
    pytest.param(dict(seed="abc"), TypeError, "seed", id="seed-string"),
    pytest.param(dict(seed=-1), ValueError, "seed", id="seed-negative"),
    pytest.param(dict(batch=0), ValueError, "batch", id="batch-zero"),
    pytest.param(dict(memory_budget=-1), ValueError, "memory_budget", id="budget-negative"),
    pytest.param(dict(progress="yes"), TypeError, "progress", id="progress"),
    pytest.param(dict(bandwidth="grid"), ValueError, "aggregate", id="grid-without-aggregate"),
    pytest.param(dict(bandwidth=-1.0), ValueError, "bandwidth", id="bandwidth-negative"),
    pytest.param(dict(aggregate=True, kernel="energy"), ValueError, "bandwidth", id="aggregate-energy"),
    pytest.param(dict(aggregate=True, alternative="less"), ValueError, "alternative", id="aggregate-less"),
    pytest.param(dict(aggregate=True, alpha=1.5), ValueError, "alpha", id="aggregate-alpha"),
    pytest.param(dict(aggregate=True, bandwidth=1.0), ValueError, "bandwidth", id="aggregate-one-float"),
    pytest.param(dict(aggregate="yes"), TypeError, "aggregate", id="aggregate-type"),
    pytest.param(dict(backend="cuda"), ValueError, "backend", id="backend"),
    pytest.param(dict(precision="half"), ValueError, "precision", id="precision"),
]


@pytest.mark.parametrize("kwargs, error, word", BAD)
def test_bad_arguments(kwargs, error, word):
    with pytest.raises(error, match=word):
        mmd_test(X0, Y0, **kwargs)


@pytest.mark.parametrize("X, Y, word", [
    pytest.param(np.full((5, 2), np.nan), Y0, "NaN", id="nan"),
    pytest.param(X0, np.ones((4, 3)), "columns", id="mismatched-d"),
    pytest.param(X0[:1], Y0, "at least 2", id="one-point"),
    pytest.param(np.zeros((0, 2)), Y0, "empty", id="empty"),
    pytest.param(np.array([["a", "b"]]), Y0, "numbers", id="strings"),
])
def test_bad_samples(X, Y, word):
    with pytest.raises((ValueError, TypeError), match=word):
        mmd_test(X, Y)
    if word != "at least 2":
        with pytest.raises((ValueError, TypeError), match=word):
            energy_test(X, Y)


@pytest.mark.parametrize("kwargs, error, word", [
    pytest.param(dict(exponent=2.0), ValueError, "exponent", id="exponent-2"),
    pytest.param(dict(exponent="one"), TypeError, "exponent", id="exponent-string"),
    pytest.param(dict(precision="half"), ValueError, "precision", id="precision"),
])
def test_bad_energy_arguments(kwargs, error, word):
    with pytest.raises(error, match=word):
        energy_test(X0, Y0, **kwargs)


def test_energy_test_allows_single_points_and_rejects_a_gpu_generator():
    res = energy_test([[0.0]], [[1.0]], n_permutations=10)
    assert res.exact and res.n_permutations == 2 and res.pvalue == 1.0  # both splits tie
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU"):
            energy_test(X0, Y0, seed=torch.Generator(device="cuda"))
