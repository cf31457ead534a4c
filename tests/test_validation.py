"""Every bad input of DESIGN.md gets a ValueError/TypeError that names the argument in backticks.

Tables of (bad input, error type, pattern of the message); each is run
through every public estimator it applies to. Backend problems (an explicit
backend="triton" that cannot run) raise a ValueError that says why.
"""
import re

import numpy as np
import pytest
import torch

from mmdkit import (
    IMQ, Energy, Gaussian, Laplace, Mixture, Polynomial, RationalQuadratic, energy_distance, median_bandwidth, mmd2,
    mmd2_biased, mmd2_linear, mmd2_unbiased, witness,
)
from mmdkit.kernels import backends

rng = np.random.default_rng(0)
GOOD_X, GOOD_Y = rng.normal(size=(6, 2)), rng.normal(size=(5, 2))

ESTIMATORS = [  # every public statistic of two samples
    pytest.param(lambda X, Y, **kw: mmd2_unbiased(X, Y, **kw), id="mmd2_unbiased"),
    pytest.param(lambda X, Y, **kw: mmd2_biased(X, Y, **kw), id="mmd2_biased"),
    pytest.param(lambda X, Y, **kw: mmd2_linear(X, Y, **kw), id="mmd2_linear"),
    pytest.param(lambda X, Y, **kw: energy_distance(X, Y, **kw), id="energy_distance"),
    pytest.param(lambda X, Y, **kw: witness(X, Y, Y[:3], **kw), id="witness"),
]
KERNEL_ESTIMATORS = [p for p in ESTIMATORS if p.id != "energy_distance"]  # the ones with kernel=/bandwidth=


def raises(exc, *names):
    """pytest.raises(exc) whose message must name each argument in backticks."""
    return pytest.raises(exc, match=".*".join(re.escape(f"`{n}`") for n in names))


def with_nan(A, value=np.nan):
    A = A.copy()
    A[1, 0] = value
    return A


BAD_SAMPLES = [  # (X, Y, exception, argument names the message must contain)
    pytest.param(GOOD_X, rng.normal(size=(5, 3)), ValueError, ("X", "Y"), id="mismatched-d"),
    pytest.param(GOOD_X, rng.normal(size=5), ValueError, ("X", "Y"), id="mismatched-d-1d-Y"),
    pytest.param(np.empty((0, 2)), GOOD_Y, ValueError, ("X",), id="empty-X"),
    pytest.param(GOOD_X, np.empty((0, 2)), ValueError, ("Y",), id="empty-Y"),
    pytest.param(np.empty((6, 0)), np.empty((5, 0)), ValueError, ("X",), id="zero-columns"),
    pytest.param(np.array([]), GOOD_Y[:, :1], ValueError, ("X",), id="empty-1d"),
    pytest.param(rng.normal(size=(6, 2, 2)), GOOD_Y, ValueError, ("X",), id="3d-array"),
    pytest.param(np.float64(3.0), GOOD_Y, ValueError, ("X",), id="scalar"),
    pytest.param(with_nan(GOOD_X), GOOD_Y, ValueError, ("X",), id="nan-X"),
    pytest.param(GOOD_X, with_nan(GOOD_Y, np.inf), ValueError, ("Y",), id="inf-Y"),
    pytest.param(GOOD_X, with_nan(GOOD_Y, -np.inf), ValueError, ("Y",), id="minus-inf-Y"),
    pytest.param(torch.tensor(with_nan(GOOD_X)), torch.tensor(GOOD_Y), ValueError, ("X",), id="nan-tensor"),
    pytest.param(np.array([["a", "b"], ["c", "d"]]), GOOD_Y, TypeError, ("X",), id="strings"),
    pytest.param([["a", "b"], ["c", "d"]], GOOD_Y, TypeError, ("X",), id="list-of-strings"),
    pytest.param(GOOD_X.astype(complex), GOOD_Y, TypeError, ("X",), id="complex-numpy"),
    pytest.param(torch.tensor(GOOD_X, dtype=torch.complex64), torch.tensor(GOOD_Y), TypeError, ("X",),
                 id="complex-tensor"),
    pytest.param(GOOD_X, np.array([[1.0, None]] * 5, dtype=object), TypeError, ("Y",), id="object-Y"),
    pytest.param([[1.0, 2.0], [3.0]], GOOD_Y, TypeError, ("X",), id="ragged-list"),
    pytest.param(None, GOOD_Y, TypeError, ("X",), id="None"),
    pytest.param(np.array(["2020-01-01"] * 6, dtype="datetime64[D]"), GOOD_Y[:, :1], TypeError, ("X",),
                 id="datetime"),
]


@pytest.mark.parametrize("fn", ESTIMATORS)
@pytest.mark.parametrize("X, Y, exc, names", BAD_SAMPLES)
def test_bad_samples(fn, X, Y, exc, names):
    with raises(exc, *names):
        fn(X, Y)


def test_values_that_can_be_cast_are_accepted():
    """Ints and bools (numpy or torch) are cast to float64, not refused (float32 would merge ints above 2^24)."""
    Xi, Yi = np.arange(12).reshape(6, 2), np.arange(10).reshape(5, 2) + 3
    assert mmd2_biased(Xi, Yi, bandwidth=2.0) == pytest.approx(mmd2_biased(Xi * 1.0, Yi * 1.0, bandwidth=2.0))
    value = mmd2_biased(torch.tensor(Xi), torch.tensor(Yi), bandwidth=2.0)
    assert value.dtype == torch.float64
    assert energy_distance(np.array([True, False, True]), np.array([False, False])) == pytest.approx(
        energy_distance([1.0, 0.0, 1.0], [0.0, 0.0]))


FEWER_THAN_TWO = [  # (estimator, needs two points)
    pytest.param(lambda X, Y: mmd2_unbiased(X, Y, bandwidth=1.0), id="mmd2_unbiased"),
    pytest.param(lambda X, Y: mmd2_linear(X, Y, bandwidth=1.0), id="mmd2_linear"),
    pytest.param(lambda X, Y: mmd2(X, Y, bandwidth=1.0, estimator="unbiased"), id="mmd2-unbiased"),
    pytest.param(lambda X, Y: energy_distance(X, Y, unbiased=True), id="energy_distance-unbiased"),
]


@pytest.mark.parametrize("fn", FEWER_THAN_TWO)
def test_fewer_than_two_points_for_unbiased(fn):
    with raises(ValueError, "X"):
        fn(GOOD_X[:1], GOOD_Y)
    with raises(ValueError, "Y"):
        fn(GOOD_X, GOOD_Y[:1])


def test_one_point_is_fine_for_v_statistics():
    """The V-statistics are defined for n = m = 1: energy distance 2|x - y|, MMD^2 2 - 2k(x, y)."""
    x, y = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])
    assert energy_distance(x, y) == pytest.approx(10.0)
    assert mmd2_biased(x, y, bandwidth=1.0) == pytest.approx(2 - 2 * np.exp(-12.5))


BAD_BANDWIDTHS = [  # (bandwidth, exception, argument named)
    pytest.param(0.0, ValueError, "bandwidth", id="zero"),
    pytest.param(-1.0, ValueError, "bandwidth", id="negative"),
    pytest.param(0, ValueError, "bandwidth", id="zero-int"),
    pytest.param(float("nan"), ValueError, "bandwidth", id="nan"),
    pytest.param(float("inf"), ValueError, "bandwidth", id="inf"),
    pytest.param("1.0", ValueError, "bandwidth", id="numeric-string"),
    pytest.param("Median", ValueError, "bandwidth", id="misspelt-median"),
    pytest.param(True, TypeError, "bandwidth", id="bool"),
    pytest.param(1j, TypeError, "bandwidth", id="complex"),
    pytest.param(torch.tensor(1.0), TypeError, "bandwidth", id="tensor"),
    pytest.param({"h": 1.0}, TypeError, "bandwidth", id="dict"),
    pytest.param([], ValueError, "bandwidth", id="empty-list"),
    pytest.param([1.0, -2.0], ValueError, "bandwidth[1]", id="list-with-negative"),
    pytest.param([1.0, float("nan")], ValueError, "bandwidth[1]", id="list-with-nan"),
    pytest.param([0.5, "a"], TypeError, "bandwidth[1]", id="list-with-string"),
]


@pytest.mark.parametrize("fn", KERNEL_ESTIMATORS)
@pytest.mark.parametrize("bandwidth, exc, name", BAD_BANDWIDTHS)
def test_bad_bandwidth(fn, bandwidth, exc, name):
    with raises(exc, name):
        fn(GOOD_X, GOOD_Y, kernel="gaussian", bandwidth=bandwidth)


BAD_SPECS = [  # (constructor, exception, argument named): every parameter is checked where the spec is built
    pytest.param(lambda: Gaussian(0.0), ValueError, "bandwidth", id="gaussian-zero"),
    pytest.param(lambda: Laplace(-1.0), ValueError, "bandwidth", id="laplace-negative"),
    pytest.param(lambda: Gaussian(float("nan")), ValueError, "bandwidth", id="gaussian-nan"),
    pytest.param(lambda: Gaussian("1.0"), TypeError, "bandwidth", id="gaussian-string"),
    pytest.param(lambda: Mixture.of(Gaussian, [1.0, -0.5]), ValueError, "bandwidth", id="mixture-negative-component"),
    pytest.param(lambda: RationalQuadratic(1.0, alpha=-0.5), ValueError, "alpha", id="rq-negative-alpha"),
    pytest.param(lambda: RationalQuadratic(1.0, alpha=0.0), ValueError, "alpha", id="rq-zero-alpha"),
    pytest.param(lambda: IMQ(1.0, beta=0.5), ValueError, "beta", id="imq-positive-beta"),
    pytest.param(lambda: IMQ(1.0, beta=0.0), ValueError, "beta", id="imq-zero-beta"),
    pytest.param(lambda: Polynomial(degree=0), ValueError, "degree", id="poly-degree-0"),
    pytest.param(lambda: Polynomial(degree=1.5), TypeError, "degree", id="poly-degree-1.5"),
    pytest.param(lambda: Polynomial(degree=True), TypeError, "degree", id="poly-degree-bool"),
    pytest.param(lambda: Polynomial(gamma=-1.0), ValueError, "gamma", id="poly-negative-gamma"),
    pytest.param(lambda: Polynomial(coef0=-1.0), ValueError, "coef0", id="poly-negative-coef0"),
    pytest.param(lambda: Energy(exponent=2.0), ValueError, "exponent", id="energy-exponent-2"),
    pytest.param(lambda: Energy(offset=-0.1), ValueError, "offset", id="energy-negative-offset"),
    pytest.param(lambda: Energy(offset=float("nan")), ValueError, "offset", id="energy-nan-offset"),
    pytest.param(lambda: Mixture(components=(Gaussian(1.0),), weights=(-1.0,)), ValueError, "weights[0]",
                 id="mixture-negative-weight"),
    pytest.param(lambda: Mixture(components=(Gaussian(1.0), Polynomial())), ValueError, "components",
                 id="mixture-with-a-dot-kernel"),
]


@pytest.mark.parametrize("build, exc, name", BAD_SPECS)
def test_bad_kernel_parameters_raise_where_the_spec_is_built(build, exc, name):
    with raises(exc, name):
        build()


BAD_KERNELS = [  # (kernel=, bandwidth=, exception, argument named)
    pytest.param("gausian", None, ValueError, "kernel", id="unknown-name"),
    pytest.param("", None, ValueError, "kernel", id="empty-name"),
    pytest.param(3, None, TypeError, "kernel", id="number"),
    pytest.param(None, None, TypeError, "kernel", id="None"),
    pytest.param(np.exp, None, TypeError, "kernel", id="a-function"),
    pytest.param("energy", 1.0, ValueError, "bandwidth", id="bandwidth-for-energy"),
    pytest.param("energy", "median", ValueError, "bandwidth", id="median-for-energy"),
    pytest.param(Energy(), [1.0, 2.0], ValueError, "bandwidth", id="bandwidth-list-for-energy"),
    pytest.param("polynomial", 2.0, ValueError, "bandwidth", id="bandwidth-for-polynomial"),
    pytest.param(Polynomial(degree=2), [1.0], ValueError, "bandwidth", id="bandwidth-list-for-polynomial"),
    pytest.param(Mixture.of(Gaussian, [1.0, 2.0]), [1.0, 2.0], ValueError, "bandwidth",
                 id="bandwidth-list-for-a-mixture"),
]


@pytest.mark.parametrize("fn", KERNEL_ESTIMATORS)
@pytest.mark.parametrize("kernel, bandwidth, exc, name", BAD_KERNELS)
def test_bad_kernel(fn, kernel, bandwidth, exc, name):
    with raises(exc, name):
        fn(GOOD_X, GOOD_Y, kernel=kernel, bandwidth=bandwidth)


def test_bad_spec_parameters():
    with raises(ValueError, "exponent"):
        Energy(exponent=2.0)
    with raises(ValueError, "exponent"):
        Energy(exponent=0.0)
    with raises(ValueError, "bandwidth"):   # positional: the unused bandwidth, not the exponent
        Energy(0.5)
    with raises(ValueError, "components"):
        Mixture(components=())
    with raises(ValueError, "components"):
        Mixture(components=(Gaussian(1.0), Polynomial()))
    with raises(ValueError, "weights"):
        Mixture.of(Gaussian, [1.0, 2.0], weights=[1.0])


@pytest.mark.parametrize("exponent", [0.0, 2.0, -1.0, float("nan")])
@pytest.mark.parametrize("d", [1, 2])
def test_energy_distance_bad_exponent(exponent, d):
    with raises(ValueError, "exponent"):
        energy_distance(GOOD_X[:, :d], GOOD_Y[:, :d], exponent=exponent)


@pytest.mark.parametrize("estimator", ["quadratic", "Unbiased", "", None])
def test_bad_estimator_name(estimator):
    with raises(ValueError, "estimator"):
        mmd2(GOOD_X, GOOD_Y, bandwidth=1.0, estimator=estimator)


@pytest.mark.parametrize("backend", ["cuda", "Torch", "", None])
@pytest.mark.parametrize("fn, d", [pytest.param(p.values[0], d, id=f"{p.id}-d{d}") for p in ESTIMATORS for d in (1, 2)])
def test_bad_backend_name(fn, d, backend):
    """Checked on every path, also energy distance's d = 1 sort path that runs no engine."""
    with raises(ValueError, "backend"):
        fn(GOOD_X[:, :d], GOOD_Y[:, :d], backend=backend)


@pytest.mark.parametrize("precision", ["fp32", "TF32", None])
def test_bad_precision_name(precision):
    with raises(ValueError, "precision"):
        mmd2_unbiased(GOOD_X, GOOD_Y, bandwidth=1.0, precision=precision)
    with raises(ValueError, "precision"):
        energy_distance(GOOD_X[:, :1], GOOD_Y[:, :1], precision=precision)


# -- an explicit backend="triton" that cannot run raises and says why ------------------
# (a ValueError naming `backend` like every other bad argument)

@pytest.mark.parametrize("fn", ESTIMATORS)
def test_triton_on_cpu_without_interpreter(fn, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    X, Y = torch.tensor(GOOD_X, dtype=torch.float32), torch.tensor(GOOD_Y, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"`backend`.*triton.*CUDA.*TRITON_INTERPRET=1"):
        fn(X, Y, backend="triton")


@pytest.mark.parametrize("fn", ESTIMATORS)
def test_triton_when_triton_cannot_be_imported(fn, monkeypatch):
    monkeypatch.setattr(backends, "_triton_engine",
                        lambda: (None, "triton could not be imported (mocked); install mmdkit[triton]"))
    X, Y = torch.tensor(GOOD_X, dtype=torch.float32), torch.tensor(GOOD_Y, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"`backend`.*triton.*cannot run.*install mmdkit\[triton\]"):
        fn(X, Y, backend="triton")
    # "auto" falls back to the torch engine instead
    assert torch.isfinite(torch.as_tensor(fn(X, Y, backend="auto"))).all()


def test_triton_refuses_float64(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ValueError, match=r"`backend`.*triton.*float64"):
        mmd2_unbiased(torch.tensor(GOOD_X), torch.tensor(GOOD_Y), bandwidth=1.0, backend="triton")


# -- witness and median heuristic -------------------------------------------------------

BAD_POINTS = [  # T for witness(GOOD_X, GOOD_Y, T)
    pytest.param(rng.normal(size=(3, 3)), ValueError, id="wrong-d"),
    pytest.param(np.empty((0, 2)), ValueError, id="empty"),
    pytest.param(with_nan(rng.normal(size=(3, 2))), ValueError, id="nan"),
    pytest.param(np.array([["a", "b"]]), TypeError, id="strings"),
    pytest.param(rng.normal(size=(3, 2, 1)), ValueError, id="3d"),
]


@pytest.mark.parametrize("T, exc", BAD_POINTS)
def test_witness_bad_points(T, exc):
    with raises(exc, "T"):
        witness(GOOD_X, GOOD_Y, T, bandwidth=1.0)


@pytest.mark.parametrize("X, Y, kwargs, exc, name", [
    pytest.param(np.ones((4, 2)), None, {}, ValueError, "bandwidth", id="all-points-identical"),
    pytest.param(np.ones((4, 2)), np.ones((3, 2)), {}, ValueError, "bandwidth", id="pooled-identical"),
    pytest.param(GOOD_X, rng.normal(size=(3, 3)), {}, ValueError, "Y", id="mismatched-d"),
    pytest.param(GOOD_X, None, {"max_points": 1}, ValueError, "max_points", id="max_points-1"),
    pytest.param(GOOD_X, None, {"max_points": 2.5}, TypeError, "max_points", id="max_points-float"),
    pytest.param(GOOD_X, None, {"max_points": True}, TypeError, "max_points", id="max_points-bool"),
    pytest.param(with_nan(GOOD_X), None, {}, ValueError, "X", id="nan"),
    pytest.param(np.empty((0, 2)), None, {}, ValueError, "X", id="empty"),
])
def test_median_bandwidth_bad_input(X, Y, kwargs, exc, name):
    with raises(exc, name):
        median_bandwidth(X, Y, **kwargs)


def test_median_default_on_identical_points_names_bandwidth():
    """The default bandwidth ("median") cannot be formed; the message says which argument to pass."""
    with raises(ValueError, "bandwidth"):
        mmd2_unbiased(np.ones((4, 2)), np.ones((3, 2)))
    assert mmd2_unbiased(np.ones((4, 2)), np.ones((3, 2)), bandwidth=1.0) == pytest.approx(0.0, abs=1e-12)


def test_nothing_is_silently_reshaped():
    """(n,) means d = 1; (n, d, 1), (1, n) against (m, 1) and the like are refused, not squeezed."""
    with raises(ValueError, "X"):
        mmd2_biased(GOOD_X[:, :, None], GOOD_Y[:, :, None], bandwidth=1.0)
    with raises(ValueError, "X", "Y"):
        mmd2_biased(GOOD_X[:, 0][None, :], GOOD_Y[:, :1], bandwidth=1.0)


def test_finite_check_is_exact_when_the_sum_overflows():
    """check_finite first sums each tensor: a finite sum proves it finite; an overflowing sum of finite
    values must still pass, and a NaN or inf anywhere must still be found and counted."""
    from mmdkit._validation import check_finite
    big = torch.full((64, 3), 3e38)  # finite, but its float32 sum is inf
    check_finite(X=big)
    for bad in (float("nan"), float("inf"), -float("inf")):
        T = big.clone()
        T[17, 2] = bad
        with pytest.raises(ValueError, match=r"`T` contains 1 NaN or infinite"):
            check_finite(T=T)
    mixed = torch.tensor([[float("inf")], [-float("inf")]])  # the sum is NaN
    with pytest.raises(ValueError, match=r"`M` contains 2 NaN or infinite"):
        check_finite(M=mixed)
