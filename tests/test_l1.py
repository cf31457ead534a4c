"""The L1-norm Laplace kernel (MMDAgg's and MMD-FUSE's "Laplace"): specs, engine tiles, backends.

Every engine result is checked against the dense float64 oracle of
``kernels/reference.py``, which forms |x - y|_1 from direct differences, and
against scipy's cityblock distance.
"""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import mmdkit
from mmdkit.kernels import Gaussian, Laplace, Mixture, PermutationSums, blocked, get_backend
from mmdkit.kernels.reference import kernel_matrix, mmd2_reference

L1 = Laplace(0.8, norm="l1")


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 5 x 7 (symmetric 6): ragged edges and many tiles on small inputs."""
    monkeypatch.setattr(blocked, "TILE_ROWS", 5)
    monkeypatch.setattr(blocked, "TILE_COLS", 7)
    monkeypatch.setattr(blocked, "TILE_SYM", 6)


def data(n, m, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype),
            (torch.randn(m, d, generator=g, dtype=torch.float64) + 0.3).to(dtype))


def test_spec_checks_and_the_three_laplace_kernels():
    with pytest.raises(ValueError, match="`norm` of Laplace"):
        Laplace(1.0, norm="l3")
    with pytest.raises(ValueError, match="share one distance"):
        Mixture(components=(Gaussian(1.0), Laplace(1.0, norm="l1")))
    assert Laplace(1.0).norm == Gaussian(1.0).norm == "l2"
    assert Mixture.of(Laplace(norm="l1"), [1.0, 2.0]).norm == "l1"
    x, y = np.array([[0.0, 1.0, 2.0]]), np.array([[1.0, -1.0, 2.5]])
    l1, l2 = 3.5, math.sqrt(1 + 4 + 0.25)
    for spec, expected in [(Laplace(2.0), math.exp(-l2 / 2)),                            # mmdkit's
                           (Laplace(2.0, norm="l1"), math.exp(-l1 / 2)),                 # MMDAgg's, lambda = 2
                           (Laplace(2.0 / math.sqrt(2), norm="l1"), math.exp(-math.sqrt(2) * l1 / 2))]:  # FUSE's
        assert float(kernel_matrix(torch.tensor(x), torch.tensor(y), spec)) == pytest.approx(expected, rel=1e-14)


@pytest.mark.usefixtures("small_tiles")
@pytest.mark.parametrize("d", [1, 4, 9])
@pytest.mark.parametrize("mode", ["xy", "sym", "sym-exclude"])
def test_kernel_matmul_matches_scipy_cityblock(d, mode, budget, kernel_matmul_parts):
    """Elementwise within the error model (tests/conftest.py; before: rtol 1e-12, ~300x the errors): K V
    within budget(float64, terms, 1) x the rms size of its parts (kernel_matmul_parts; V has both signs);
    K.T 1 is a sum of positive terms, conditioning 1: budget(float64, terms) x |K.T 1| (the rms size there
    is exceeded 1.2x). Measured here: K V at most 0.30 of its bound (3.4e-15 relative), K.T 1 0.5 (6.4e-16)."""
    X, Y = data(17, 23, d)
    V = torch.randn(23 if mode == "xy" else 17, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    B = Y if mode == "xy" else X
    K = np.exp(-cdist(X.numpy(), B.numpy(), "cityblock") / L1.bandwidth)
    if mode.endswith("exclude"):
        np.fill_diagonal(K, 0.0)
    got = blocked.kernel_matmul(X, Y if mode == "xy" else None, V, L1, mode.endswith("exclude"))
    G = torch.ones(got.shape, dtype=torch.float64)
    (size, terms), _, _, (_, gv_terms) = kernel_matmul_parts(X, Y if mode == "xy" else None, V, G, L1,
                                                            mode.endswith("exclude"))
    err = np.abs(got.numpy() - K @ V.numpy())
    assert (err <= budget(torch.float64, terms) * size.numpy()).all(), err.max()
    # the gradient with respect to V is K.T @ G, with no gradient in the points needed
    Vg = V.clone().requires_grad_()
    blocked.kernel_matmul(X, Y if mode == "xy" else None, Vg, L1, mode.endswith("exclude")).sum().backward()
    np.testing.assert_allclose(Vg.grad.numpy(), K.T @ np.ones((K.shape[0], 3)), rtol=budget(torch.float64, gv_terms))


@pytest.mark.usefixtures("small_tiles")
@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float64, 1e-14, 1e-15), (torch.float32, 1e-7, 1e-8)])
def test_statistics_match_the_dense_oracle(dtype, rtol, atol):
    """Tolerances about 3x the errors measured (float32: 2.7e-8 relative, witness 3e-9)."""
    X, Y = data(19, 14, 5, dtype=dtype)
    for est in ("unbiased", "biased"):
        ref = float(mmd2_reference(X, Y, L1, est))
        got = float(mmdkit.mmd2(X, Y, kernel=L1, estimator=est))
        # relative to the size of the terms summed (the MMD is a difference of O(1) means)
        assert abs(got - ref) <= rtol * float(kernel_matrix(X, X, L1).mean())
    w = mmdkit.witness(X, Y, X[:4], kernel=L1)
    Kx, Ky = kernel_matrix(X[:4], X, L1).mean(1), kernel_matrix(X[:4], Y, L1).mean(1)
    np.testing.assert_allclose(w.double().numpy(), (Kx - Ky).numpy(), rtol=0, atol=atol)


def test_permutation_sums_group_norms_and_equal_dense_float64(monkeypatch):
    """Gaussians (L2 tile) and L1 Laplaces (L1 tile) in one operator: each equals its dense oracle,
    and so do the sums of k^2 (``square_sums``)."""
    monkeypatch.setattr(blocked, "PERM_TILE_DENSE", 64)
    monkeypatch.setattr(blocked, "PERM_TILE_STREAM", 96)
    g = torch.Generator().manual_seed(3)
    Z = torch.randn(150, 6, generator=g, dtype=torch.float64)
    E = torch.randn(150, 4, generator=g, dtype=torch.float64)
    specs = [Gaussian(1.0), Laplace(2.0, norm="l1"), Gaussian(3.0), Laplace(5.0, norm="l1")]
    for op in (PermutationSums(Z, specs, 2**40), PermutationSums(Z, specs, 0)):
        for (q, u, S), spec in zip(op(E), specs):
            K = kernel_matrix(Z, Z, spec).fill_diagonal_(0)
            torch.testing.assert_close(q, (E * (K @ E)).sum(0), rtol=1e-11, atol=1e-10)
            torch.testing.assert_close(u, E.T @ K.sum(1), rtol=1e-11, atol=1e-10)
            torch.testing.assert_close(S, K.sum(), rtol=1e-12, atol=0)
        squares = [(kernel_matrix(Z, Z, s).fill_diagonal_(0) ** 2).sum() for s in specs]
        torch.testing.assert_close(op.square_sums(), torch.stack(squares), rtol=1e-12, atol=0)


def test_gradient_in_the_points_raises_not_silently_wrong():
    X, Y = data(8, 9, 3)
    X.requires_grad_()
    with pytest.raises(NotImplementedError, match="L1-norm"):
        mmdkit.mmd2_unbiased(X, Y, kernel=L1).backward()
    with pytest.raises(NotImplementedError, match="L1-norm"):
        mmdkit.witness(X, Y, Y[:3], kernel=L1).sum().backward()


def test_triton_backend_runs_l1_on_the_blocked_engine():
    pytest.importorskip("triton")
    X, Y = data(11, 7, 4, dtype=torch.float32)
    V = torch.ones(7, 1)
    tb = get_backend("triton", X.device, X.dtype)
    torch.testing.assert_close(tb.kernel_matmul(X, Y, V, L1), blocked.kernel_matmul(X, Y, V, L1), rtol=0, atol=0)
    torch.testing.assert_close(tb.block_sums(torch.cat([X, Y]), (11, 7), L1), blocked.block_sums(
        torch.cat([X, Y]), (11, 7), L1), rtol=0, atol=0)
    Z = torch.cat([X, Y])
    specs = [L1, Laplace(0.5)]
    torch.testing.assert_close(tb.permutation_sums(Z, specs, 0).square_sums(),
                               PermutationSums(Z, specs, 2**30).square_sums(), rtol=1.5e-7, atol=0)  # 4.6e-8 measured
    from mmdkit.kernels.triton_engine import kernel_terms
    with pytest.raises(ValueError, match="L2 distance tiles only"):
        kernel_terms(L1)
