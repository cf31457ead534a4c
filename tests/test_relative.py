"""relative_mmd_test against a dense float64 restatement, its symmetries, its level on a boundary of H0 over
R = 400 replicates (slow), its power, and bad input."""
import math

import numpy as np
import pytest
import torch

from mmdkit import Gaussian, relative_mmd_test
from mmdkit.kernels import get_backend
from mmdkit.relative import relative_statistic


def samples(n, m1, m2, d=3, da=0.3, db=0.3, seed=0, dtype=torch.float64):
    """X ~ N(0, I); A and B shifted by da along e1 and db along e2 (equally close when da == db)."""
    g = torch.Generator().manual_seed(seed)
    X, A, B = (torch.randn(k, d, generator=g, dtype=dtype) for k in (n, m1, m2))
    A[:, 0] += da
    B[:, 1] += db
    return X, A, B


def dense(X, A, B, h):
    """(T, D, s) from dense float64 Gaussian kernel matrices, written from the formulas of the docstring."""
    k = lambda P, Q: torch.exp(-torch.cdist(P.double(), Q.double()) ** 2 / (2 * h * h))  # noqa: E731
    n, m1, m2 = len(X), len(A), len(B)
    off = lambda K: K - torch.diag(torch.diag(K))  # noqa: E731
    Kxx, Kaa, Kbb, Kxa, Kxb = off(k(X, X)), off(k(A, A)), off(k(B, B)), k(X, A), k(X, B)
    u = lambda Kss, Ktt, Kst, ns, nt: (Kss.sum() / (ns * (ns - 1)) + Ktt.sum() / (nt * (nt - 1))  # noqa: E731
                                        - 2 * Kst.sum() / (ns * nt))
    D = float(u(Kxx, Kbb, Kxb, n, m2) - u(Kxx, Kaa, Kxa, n, m1))
    hx = 2 * (Kxa.mean(1) - Kxb.mean(1))
    ha = 2 * (Kaa.sum(1) / (m1 - 1) - Kxa.mean(0))
    hb = 2 * (Kbb.sum(1) / (m2 - 1) - Kxb.mean(0))
    s = math.sqrt(float(hx.var() / n + ha.var() / m1 + hb.var() / m2))
    return D / s, D, s


@pytest.mark.parametrize("n, m1, m2", [(60, 50, 40), (3, 3, 4), (900, 800, 700)], ids=["60-50-40", "3-3-4", "big"])
def test_equals_the_dense_float64_formulas(n, m1, m2):
    """float64: D and s come from sums of ~N^2 kernel values of size ~1, D ~ 1e-2. Worst case of the model:
    2 u64 N / |D| = 2 x 1.1e-16 x 2400 / 0.016 = 3e-11 (a random walk over the blocked sums); both codes
    sum the same points' kernel values, so most of it cancels: measured 2.4e-15 (60-50-40), 0 (3-3-4),
    2.1e-14 (big) here. Tolerance 2e-13, ~10x the largest."""
    X, A, B = samples(n, m1, m2, da=0.2, db=0.5)
    got = relative_statistic(X, A, B, Gaussian(1.3), get_backend("torch"))
    ref = dense(X, A, B, 1.3)
    assert got == pytest.approx(ref, rel=2e-13, abs=0)
    res = relative_mmd_test(X, A, B, bandwidth=1.3)
    assert res.statistic == got[0] and res.test == "relative_mmd" and res.n_permutations == 0
    assert res.pvalue == pytest.approx(0.5 * math.erfc(got[0] / math.sqrt(2)), rel=1e-15)


def test_swapping_a_and_b_negates_t_and_flips_the_alternative():
    X, A, B = samples(300, 250, 280, da=0.1, db=1.0, seed=1)
    r, s = relative_mmd_test(X, A, B), relative_mmd_test(X, B, A)
    assert s.statistic == pytest.approx(-r.statistic, rel=1e-12)
    assert r.pvalue == pytest.approx(relative_mmd_test(X, B, A, alternative="less").pvalue, rel=1e-12)
    assert relative_mmd_test(X, A, B, alternative="two-sided").pvalue == pytest.approx(2 * min(r.pvalue, 1 - r.pvalue))
    assert r.pvalue < 1e-3 < 1 - 1e-3 < s.pvalue  # power: A (0.1) is clearly closer than B (1.0)
    # float32 inputs: float32 kernel values (t rounded at ~(d + 2) u32 |z|^2 ~ 15 u32), products summed in
    # float64, so the roundings average over the ~N^2 / 2 = 3e5 pairs: relative error of T ~ 15 u32 /
    # sqrt(3e5) x (1 / |D| ~ 10) = 1.6e-8. Measured 2.5e-9 here.
    r32 = relative_mmd_test(*(T.float() for T in (X, A, B)))
    assert r32.statistic == pytest.approx(r.statistic, rel=3e-8)
    assert relative_mmd_test(X.numpy(), A.numpy(), B.numpy()).statistic == r.statistic


@pytest.mark.slow
def test_level_on_a_boundary_of_the_null():
    """A and B equally far from X (shifts of 0.5 along two axes): P(reject at 0.05) within alpha + 3 s.e.
    over R = 400 replicates, s.e. = sqrt(alpha (1 - alpha) / R) = 0.011 (the level is asymptotic: n = 150).
    Measured here: 0.045 (19 s)."""
    R, alpha = 400, 0.05
    rejections = sum(relative_mmd_test(*samples(150, 150, 150, da=0.5, db=0.5, seed=r)).pvalue <= alpha
                     for r in range(R))
    assert rejections / R <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / R), rejections / R
    assert rejections / R >= alpha - 3 * math.sqrt(alpha * (1 - alpha) / R), rejections / R  # not conservative


def test_bad_input_and_the_degenerate_case():
    X, A, B = samples(10, 10, 10)
    with pytest.raises(ValueError, match="`reference` and `B`"):
        relative_mmd_test(X, A, B[:, :2])
    with pytest.raises(ValueError, match="`A`"):
        relative_mmd_test(X, A[:2], B)
    with pytest.raises(ValueError, match="`alternative`"):
        relative_mmd_test(X, A, B, alternative="bigger")
    same = torch.ones(5, 2, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="variance estimate is 0"):
        res = relative_mmd_test(same, same.clone(), same.clone(), bandwidth=1.0)
    assert math.isnan(res.statistic) and math.isnan(res.pvalue)
    assert np.isfinite(relative_mmd_test(X, A, B).pvalue)
