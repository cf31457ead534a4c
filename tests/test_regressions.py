"""Regressions of what a new user met (issue 27, item 4): each case here failed before its fix.

Values are checked against independent float64 references (``kernels/reference.py``'s dense
oracle, a numpy median heuristic, scipy's 1-D energy distance) with tolerances from an error
model written beside them.
"""
import re
import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from mmdkit import (
    Energy, Gaussian, Laplace, energy_distance, energy_test, fuse_test, kid, learned_kernel_test, median_bandwidth,
    mmd2_biased, mmd2_unbiased, mmd_test, witness,
)
from mmdkit.deep_kernel import LearnedKernel
from mmdkit.fuse import fuse_bandwidths
from mmdkit.kernels.reference import energy_distance_reference, kernel_matrix, make_pair, mmd2_reference

EPS32 = torch.finfo(torch.float32).eps
EPS64 = torch.finfo(torch.float64).eps
# scales where float32 squared distances left the float32 range (1e-21, 1e19: under/overflow of t alone;
# 1e-25, 1e20: of the data's squares too)
SCALES = [1e-25, 1e-21, 1e19, 1e20]


def named(exc, name):
    """pytest.raises(exc) whose message names ``name`` in backticks."""
    return pytest.raises(exc, match=re.escape(f"`{name}`"))


def median64(*samples) -> float:
    """The median heuristic in float64 numpy: median of the nonzero pairwise distances of the pooled sample."""
    Z = np.concatenate([np.asarray(A, np.float64).reshape(len(A), -1) for A in samples])
    d = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))[np.triu_indices(len(Z), 1)]
    return float(np.median(d[d > 0]))


# -- 1. learned_kernel_test and the caller's autograd graph ---------------------------------------------

def test_learned_kernel_test_leaves_the_callers_graph():
    X0, Y0 = make_pair(40, 40, 2, shift=1.0)
    kw = dict(width=8, n_permutations=50, seed=0)
    ref = learned_kernel_test(X0, Y0, epochs=2, **kw)
    leaf = X0.clone().requires_grad_(True)
    res = learned_kernel_test(leaf * 1.0, Y0.clone().requires_grad_(True), epochs=2, **kw)  # as X[:500]
    assert leaf.grad is None
    assert (res.statistic, res.pvalue) == (ref.statistic, ref.pvalue)
    np.testing.assert_array_equal(res.criterion, ref.criterion)
    learned_kernel_test(leaf, Y0, epochs=1, **kw)  # a leaf: its .grad stays None
    assert leaf.grad is None


# -- 2a. a NaN statistic gets no p-value ------------------------------------------------------------------

class _NaNFeatures(torch.nn.Module):
    def forward(self, Z):
        return Z * float("nan")


def test_nan_statistic_gets_nan_pvalue_and_a_warning():
    X, Y = make_pair(30, 25, 2, shift=0.0)
    # Gaussian(1e-30): every off-diagonal kernel value is 0 (or the engine's floor e x tiny), so FUSE's
    # normalised MMD is 0 / 0 for some relabellings: NaN, which the count null >= observed used to skip
    with pytest.warns(RuntimeWarning, match="p-value"):
        res = fuse_test(X, Y, kernel=[Gaussian(1e-30), Gaussian(1.0)], n_permutations=50, seed=0)
    assert not np.isfinite(res.null_distribution).all()
    assert np.isnan(res.pvalue) and res.reject is False
    k = LearnedKernel(_NaNFeatures())
    with pytest.warns(RuntimeWarning, match="p-value"):
        res = mmd_test(X, Y, kernel=k, n_permutations=50, seed=0)
    assert np.isnan(res.statistic) and np.isnan(res.pvalue)


# -- 2b. statistics at extreme scales (float32) -----------------------------------------------------------

def _pair(d=3):
    return make_pair(60, 50, d, shift=0.5, dtype=torch.float64, seed=1)


# MMD^2 error model: each kernel mean carries about eps32 x (t / h^2 ~ 10) relative error from the rounded
# data and distance tile, and three means of values <= 1 enter: 64 eps32 (7.6e-6) absolute.
# Measured: <= 1e-8 at every scale here.
MMD_TOL = 64 * EPS32


@pytest.mark.parametrize("scale", SCALES, ids=lambda s: f"{s:g}")
def test_mmd2_unbiased_is_scale_free_in_float32(scale):
    X, Y = _pair()
    ref = mmd2_reference(X, Y, Gaussian(median64(X, Y)))  # float64 at scale 1
    value = mmd2_unbiased((X * scale).float(), (Y * scale).float())
    assert abs(float(value) - float(ref)) <= MMD_TOL, (float(value), float(ref))
    ref = mmd2_reference(X, Y, Laplace(1.5))
    value = mmd2_unbiased((X * scale).float(), (Y * scale).float(), kernel="laplace", bandwidth=1.5 * scale)
    assert abs(float(value) - float(ref)) <= MMD_TOL, (float(value), float(ref))


@pytest.mark.parametrize("scale", SCALES, ids=lambda s: f"{s:g}")
def test_median_bandwidth_is_scale_equivariant(scale):
    X, Y = _pair()
    h = median_bandwidth((X * scale).float(), (Y * scale).float())
    assert h / scale == pytest.approx(median64(X, Y), rel=4 * EPS32)  # the data's rounding: eps32 / 2 per entry


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("scale", SCALES, ids=lambda s: f"{s:g}")
def test_energy_distance_is_homogeneous_in_float32(scale, d):
    X, Y = _pair(d)
    ref = float(energy_distance_reference(X, Y))  # float64, scale 1; k(cx, cy) = c k(x, y)
    if d == 1:
        assert ref == pytest.approx(scipy.stats.energy_distance(X[:, 0], Y[:, 0]) ** 2, rel=1e-12)
    value = float(energy_distance((X * scale).float(), (Y * scale).float()))
    # means of distances ~2.4 (d = 3), four of them: 256 eps32 x 2.4 absolute at scale 1. Measured: <= 1e-7.
    assert abs(value / scale - ref) <= 256 * EPS32 * 2.4, (value / scale, ref)
    ref = float(mmd2_reference(X, Y, Energy(exponent=0.5)))
    value = float(mmd2_unbiased((X * scale).float(), (Y * scale).float(), kernel=Energy(exponent=0.5)))
    assert abs(value / scale ** 0.5 - ref) <= 256 * EPS32 * 2.4, (value / scale ** 0.5, ref)


@pytest.mark.parametrize("scale", SCALES, ids=lambda s: f"{s:g}")
def test_tests_are_scale_free_in_float32(scale):
    X, Y = _pair()
    X32, Y32 = X.float(), Y.float()
    Xs, Ys = (X * scale).float(), (Y * scale).float()
    n, m = X.shape[0], Y.shape[0]
    B = 200
    # one null value within rounding of the observed one may change side: one count of 1 / (B + 1)
    p_tol = 1 / (B + 1) + 1e-12

    one, res = (mmd_test(A, C, n_permutations=B, seed=0) for A, C in ((X32, Y32), (Xs, Ys)))
    assert abs(res.statistic - float(mmd2_reference(X, Y, Gaussian(median64(X, Y))))) <= MMD_TOL
    assert abs(res.pvalue - one.pvalue) <= p_tol and res.bandwidth / scale == pytest.approx(one.bandwidth, rel=1e-6)

    one, res = (energy_test(A, C, n_permutations=B, seed=0) for A, C in ((X32, Y32), (Xs, Ys)))
    ref = float(energy_distance_reference(X, Y)) * n * m / (n + m)
    assert abs(res.statistic / scale - ref) <= 256 * EPS32 * 2.4 * n * m / (n + m)
    assert abs(res.pvalue - one.pvalue) <= p_tol
    np.testing.assert_allclose(res.null_distribution / scale, one.null_distribution, rtol=1e-4, atol=1e-4)

    one64 = fuse_test(X, Y, n_permutations=B, seed=0)  # FUSE is scale-invariant: its value at scale 1
    one, res = (fuse_test(A, C, n_permutations=B, seed=0) for A, C in ((X32, Y32), (Xs, Ys)))
    assert res.statistic == pytest.approx(one64.statistic, rel=1e-4)  # one32 is 2e-6 from it
    assert abs(res.pvalue - one.pvalue) <= p_tol and res.reject == one.reject
    np.testing.assert_allclose(np.array(res.bandwidth) / scale, one.bandwidth, rtol=1e-5)


@pytest.mark.parametrize("scale", [1e-25, 1e20], ids=lambda s: f"{s:g}")
def test_gradients_at_extreme_scales(scale):
    X, Y = _pair()
    Xr = X.clone().requires_grad_(True)
    mmd2_reference(Xr, Y, Gaussian(1.5)).backward()  # float64 at scale 1
    Xs = (X * scale).float().requires_grad_(True)
    mmd2_unbiased(Xs, (Y * scale).float(), bandwidth=1.5 * scale).backward()
    # d/d(sX) MMD^2(sX, sY; s h) = (1 / s) d/dX MMD^2(X, Y; h); float32 error ~ 1e-6 of the largest entry
    g = Xs.grad.double() * scale
    assert torch.isfinite(g).all()
    assert (g - Xr.grad).abs().max() <= 1e-4 * Xr.grad.abs().max()


def test_witness_at_an_extreme_scale():
    X, Y = _pair()
    T = X[:7]
    scale = 1e20
    ref = (kernel_matrix(T, X, Gaussian(1.5)).mean(1) - kernel_matrix(T, Y, Gaussian(1.5)).mean(1)).numpy()
    f = witness(*(A.numpy().astype(np.float32) * np.float32(scale) for A in (X, Y, T)), bandwidth=1.5 * scale)
    np.testing.assert_allclose(f, ref, atol=MMD_TOL)


# -- 3. tied (discrete) data --------------------------------------------------------------------------------

def test_fuse_test_on_discrete_data_with_mostly_zero_distances():
    rng = np.random.default_rng(0)
    X, Y = (rng.random((200, 1)) < .1) * 1., (rng.random((200, 1)) < .3) * 1.
    res = fuse_test(X, Y, n_permutations=200, seed=0)
    assert all(h > 0 for h in res.bandwidth)
    assert res.pvalue < 0.01 and res.reject  # 10% against 30% ones, 200 points each
    # the zeros take the median of the nonzero distances when more than half the distances are 0
    Z = np.concatenate([X, Y])[:, 0]
    dist = np.abs(Z[:, None] - Z[None])[np.triu_indices(len(Z), 0)]  # upper triangle with its diagonal
    assert np.median(dist) == 0
    dist = np.where(dist == 0, np.median(dist[dist > 0]), dist)
    dist.sort()
    lo, hi = dist[int(dist.size * 0.05)] / 2, dist[int(dist.size * 0.95)] * 2
    np.testing.assert_allclose(fuse_bandwidths(X, Y, count=3), [lo, (lo + hi) / 2, hi], rtol=1e-12)


def test_median_bandwidth_on_mostly_tied_data():
    Z = np.r_[np.zeros(100), np.ones(3)]  # 4950 + 3 zero distances, 300 ones
    assert median_bandwidth(Z) == 1.0
    assert mmd_test(Z[:50], Z[50:], n_permutations=20, seed=0).bandwidth == 1.0


# -- 4. smaller ones --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel,bandwidth", [("gaussian", 1.5e154), ("gaussian", 1e300), ("rq", 1e300),
                                              ("imq", 1e300), ("laplace", 1e-160)])
def test_extreme_bandwidths_need_no_overflow(kernel, bandwidth):
    X, Y = _pair()
    Xr = X.clone().requires_grad_(True)
    value = mmd2_unbiased(Xr, Y, kernel=kernel, bandwidth=bandwidth)
    value.backward()
    # Gaussian, RQ, IMQ: k = 1 - O(t / h^2) with t / h^2 <= 1e-300: MMD^2 = 0 to float64 rounding;
    # Laplace(1e-160): k(x, y) = 0 for x != y, and the unbiased MMD^2 leaves out the diagonal: exactly 0
    assert abs(float(value.detach())) <= 1e-300 and torch.isfinite(Xr.grad).all()


def test_float64_data_at_1e154_with_the_median_bandwidth():
    X, Y = _pair()
    ref = float(mmd2_reference(X, Y, Gaussian(median64(X, Y))))
    assert float(mmd2_unbiased(X * 1e154, Y * 1e154)) == pytest.approx(ref, rel=1e-10)
    assert float(mmd2_unbiased(X * 1e-160, Y * 1e-160)) == pytest.approx(ref, rel=1e-10)
    assert median_bandwidth(X * 1e154, Y * 1e154) / 1e154 == pytest.approx(median64(X, Y), rel=1e-12)
    tiny = mmd2_unbiased(X * 1e-310, Y * 1e-310, bandwidth=1.5e-310)  # subnormal data: scaled by 2^1020 at most
    assert float(tiny) == pytest.approx(float(mmd2_reference(X, Y, Gaussian(1.5))), rel=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_kid_on_a_device_this_torch_lacks():
    X, Y = _pair()
    with named(ValueError, "device"):
        kid(X, Y, subsets=None, device="cuda")
    with named(ValueError, "device"):
        kid(X, Y, subsets=None, device="nonsense")


@pytest.mark.parametrize("seed", [2**64, 2**70, -1])
def test_seed_out_of_range_is_named(seed):
    X, Y = _pair()
    with named(ValueError, "seed"):
        mmd_test(X, Y, n_permutations=10, seed=seed)


def test_largest_seed_runs():
    X, Y = _pair()
    a, b = (mmd_test(X, Y, n_permutations=30, seed=2**64 - 1).pvalue for _ in range(2))
    assert a == b


def test_integer_tensors_become_float64_like_numpy_ints():
    # points above 2^24: distinct in float64, merged in float32 (2^25 + 1 rounds to 2^25)
    a = np.array([[0], [2**25], [2**25 + 1], [7]])
    b = np.array([[1], [2**25 + 3], [5], [2**25 + 2]])
    ref = float(mmd2_reference(torch.from_numpy(a).double(), torch.from_numpy(b).double(), Laplace(2.0)))
    value = mmd2_unbiased(torch.from_numpy(a), torch.from_numpy(b), kernel="laplace", bandwidth=2.0)
    assert value.dtype == torch.float64
    assert float(value) == pytest.approx(ref, rel=1e-12)
    assert mmd2_unbiased(a, b, kernel="laplace", bandwidth=2.0) == pytest.approx(ref, rel=1e-12)
    assert mmd2_unbiased(torch.from_numpy(a) > 5, torch.from_numpy(b) > 5).dtype == torch.float64


def test_read_only_arrays_give_no_warning():
    X, Y = (A.numpy() for A in _pair())
    ro = X.copy()
    ro.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mmd2_unbiased(ro, Y) == mmd2_unbiased(X, Y)
        assert energy_distance(ro, Y) == energy_distance(X, Y)
    assert not ro.flags.writeable


@pytest.mark.parametrize("scalar", [3.0, np.float64(3.0), 3, torch.tensor(3.0)], ids=["float", "np", "int", "0-d"])
def test_a_scalar_is_not_a_sample(scalar):
    X, Y = _pair(1)  # d = 1: a scalar read as one point of one column would pass as a sample
    with named(ValueError, "X"):
        mmd2_biased(scalar, Y)
    with named(ValueError, "Y"):
        mmd2_biased(X[:, 0], scalar)
