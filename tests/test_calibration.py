"""Calibration of the permutation p-values under H0, by a Kolmogorov-Smirnov test.

R small tests on samples from one distribution (n, m in 10..15, d = 2, P = 99
permutations, explicit seeds) must give uniform p-values. A permutation
p-value lies on the grid k / (P + 1); under H0 the rank k is uniform on
1..P + 1, so p - U / (P + 1) with U ~ Uniform(0, 1) is exactly Uniform(0, 1)
and the KS test at level 0.001 is exact, in both directions. The same KS test
must reject p-values broken on purpose, conservative (too large) and
anti-conservative (too small): that is what makes a pass mean something.

Public API only (``from mmdkit import mmd_test, energy_test``). The type-I
error rate of all three tests at alpha = 0.05 (R = 400, slow) is in
test_two_sample.py; the aggregated test's p-value is checked here, slow.
"""
import functools

import numpy as np
import pytest
import scipy.stats
import torch

from mmdkit import energy_test, mmd_test

R, P = 800, 99  # replicates and permutations per test: about 4 s per test on one core
KS_LEVEL = 0.001
TESTS = {"mmd": mmd_test, "energy": energy_test}
SEEDS = {"mmd": 11, "energy": 12}
AGG_R, AGG_SEED = 600, 13  # aggregated (n, m in 10..15, P = 99): about 16 s on one core, slow

# Broken p-value rules (id -> rule). The power rules move the KS distance to the
# uniform by 0.12, the factors of 2 by 0.5; the KS critical distance at level
# 0.001 is 1.95 / sqrt(R) = 0.069, so with R = 800 each is caught with
# probability > 0.999 (simulated; milder p^0.8 and p^1.25 about 0.95).
BROKEN = {
    "conservative-p^0.7": lambda p: p ** 0.7,
    "anti-conservative-p^1.4": lambda p: p ** 1.4,
    "conservative-2p": lambda p: np.minimum(2 * p, 1.0),
    "anti-conservative-p/2": lambda p: p / 2,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """n + m <= 30 points: threads only add overhead (and contention on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def null_pvalues(test, R, P, seed, sizes=(10, 15), **kwargs):
    """p-values of R tests on pairs of standard normal samples in d = 2, n and m drawn in sizes."""
    rng = np.random.default_rng(seed)
    p = np.empty(R)
    for r in range(R):
        n, m = (int(k) for k in rng.integers(sizes[0], sizes[1] + 1, size=2))
        X, Y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
        p[r] = test(X, Y, n_permutations=P, seed=r, progress=False, **kwargs).pvalue
    return p


@functools.cache
def pvalues(name):
    """The default suite's replicates, computed once per test and shared by the cases below."""
    p = null_pvalues(TESTS[name], R, P, SEEDS[name])
    p.flags.writeable = False
    return p


def ks_pvalue(p, P, seed, alternative="two-sided"):
    """KS p-value of randomized permutation p-values against Uniform(0, 1).

    "greater": only p-values stochastically smaller than uniform (anti-conservative) reject."""
    u = np.random.default_rng(seed).uniform(size=p.shape)
    return scipy.stats.kstest(p - u / (P + 1), "uniform", alternative=alternative).pvalue


@pytest.mark.parametrize("name", list(TESTS))
def test_pvalues_are_uniform_under_h0(name):
    p = pvalues(name)
    k = p * (P + 1)
    assert np.allclose(k, np.round(k)) and k.min() >= 1 and k.max() <= P + 1  # the grid k / (P + 1)
    ks = ks_pvalue(p, P, SEEDS[name])
    assert ks > KS_LEVEL, f"{name}: KS p-value {ks:.3g}, mean p {p.mean():.3f}, P(p <= 0.05) {np.mean(p <= 0.05):.3f}"


@pytest.mark.parametrize("rule", list(BROKEN))
@pytest.mark.parametrize("name", list(TESTS))
def test_ks_rejects_broken_pvalues(name, rule):
    """The calibration test has power: it fails on p-values that are off in either direction."""
    ks = ks_pvalue(BROKEN[rule](pvalues(name)), P, SEEDS[name])
    assert ks <= KS_LEVEL, f"{name}, {rule}: KS p-value {ks:.3g} does not reject"


@pytest.mark.slow
def test_aggregated_pvalue_is_not_anticonservative():
    """MMDAgg's p-value (1 + #{t_b <= t}) / (1 + B2) ranks t = min_l p_l / w_l among its copies
    on the second permutation set. Those take their single p-values against the first set,
    which holds the observed statistic but not them, so t_b can be 0 while t >= L / (B1 + 1),
    and ties count against the test: the p-value is conservative (P(p <= 0.05) about 0.02 at
    B = 99). Validity is what must hold, so the KS test is one-sided."""
    p = null_pvalues(mmd_test, AGG_R, P, AGG_SEED, aggregate=True)
    ks = ks_pvalue(p, P, AGG_SEED, alternative="greater")
    assert ks > KS_LEVEL, f"KS p-value {ks:.3g}, P(p <= 0.05) {np.mean(p <= 0.05):.3f}"
    broken = ks_pvalue(BROKEN["anti-conservative-p^1.4"](p), P, AGG_SEED, alternative="greater")
    assert broken <= KS_LEVEL, f"KS p-value {broken:.3g} does not reject p^1.4"
