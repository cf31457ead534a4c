"""The permutation stream: a keyed bijection pi_b of [0, N) per permutation b (Feistel network).

Checked against a plain-Python restatement of the network (Python integers,
explicit modulo 2^32), for being a bijection, for not depending on how
permutations and rows are batched, and for uniformity of the labellings it
induces (chi-square over all C(N, n) subsets of tiny pools, inclusion
frequencies of single points and pairs on a larger one).
"""
import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2

import mmdkit
from mmdkit._permutations import FEISTEL_ROUNDS, generator, permutation_key, permute

M32 = 0xFFFFFFFF


def mix32(x):
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def pi(key, b, i, N):
    """pi_b(i) in plain Python integers."""
    h = max(1, ((N - 1).bit_length() + 1) // 2)
    mask = (1 << h) - 1
    base = mix32(mix32(b ^ int(key[0])) ^ int(key[1]))
    keys = [mix32(base ^ mix32(r + 1)) for r in range(FEISTEL_ROUNDS)]
    y = i
    while True:
        L, R = y >> h, y & mask
        for k in keys:
            L, R = R, L ^ (mix32(R ^ k) & mask)
        y = (L << h) | R
        if y < N:
            return y


KEY = permutation_key(generator(0))


@pytest.mark.parametrize("N", [1, 2, 3, 7, 64, 65, 1000, 5003])
def test_bijection_and_plain_python_restatement(N):
    P = permute(KEY, np.arange(20), np.arange(N), N)
    assert P.dtype == np.int64 and P.shape == (20, N)
    assert all((np.sort(row) == np.arange(N)).all() for row in P)
    for b in (0, 7, 19):
        cols = range(N) if N < 100 else [0, 1, N // 2, N - 1]
        assert [int(P[b, i]) for i in cols] == [pi(KEY, b, i, N) for i in cols]


def test_batching_of_permutations_and_rows_changes_nothing():
    N = 333
    full = permute(KEY, np.arange(50), np.arange(N), N)
    assert (permute(KEY, np.arange(17, 40), np.arange(N), N) == full[17:40]).all()
    assert (permute(KEY, np.arange(50), np.arange(100, 250), N) == full[:, 100:250]).all()
    other = permute(permutation_key(generator(1)), np.arange(50), np.arange(N), N)
    assert (other != full).mean() > 0.9


@pytest.mark.parametrize("N, n", [(6, 3), (7, 2), (10, 5), (13, 4)])
def test_labellings_of_tiny_pools_are_uniform(N, n):
    """Chi-square over all C(N, n) subsets, 100 000 draws: with 6 rounds instead of 12 p < 1e-30."""
    B = 100_000
    labels = permute(KEY, np.arange(B), np.arange(N), N) < n
    counts = Counter((labels * (1 << np.arange(N))).sum(1).tolist())
    K = math.comb(N, n)
    assert len(counts) == K
    obs = np.array(list(counts.values()))
    assert chi2.sf(((obs - B / K) ** 2 / (B / K)).sum(), K - 1) > 1e-3


def test_inclusion_frequencies_of_points_and_pairs():
    """P(i labelled X) = n/N and P(i and j) = n(n-1)/(N(N-1)), within 4.5 binomial SE for every point/pair."""
    N, n, B = 40, 15, 20_000
    lab = (permute(KEY, np.arange(B), np.arange(N), N) < n).astype(float)
    p1 = n / N
    assert np.abs(lab.mean(0) - p1).max() <= 4.5 * math.sqrt(p1 * (1 - p1) / B)
    p2 = n * (n - 1) / (N * (N - 1))
    pairs = (lab.T @ lab) / B
    off = pairs[~np.eye(N, dtype=bool)]
    assert np.abs(off - p2).max() <= 4.5 * math.sqrt(p2 * (1 - p2) / B)


def test_tests_use_the_stream_and_batches_do_not_change_pvalues():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(30, 2)), rng.normal(size=(25, 2)) + 0.3
    a = mmdkit.mmd_test(X, Y, bandwidth=1.0, n_permutations=99, seed=11)
    b = mmdkit.mmd_test(X, Y, bandwidth=1.0, n_permutations=99, seed=11, batch=7)
    assert a.pvalue == b.pvalue  # the same draws; products of other widths round differently (1e-13)
    np.testing.assert_allclose(a.null_distribution, b.null_distribution, rtol=1e-12, atol=1e-15)
    # the null distribution is the statistic of the labellings pi_b(i) < n, b = 0..98
    labels = permute(permutation_key(generator(11)), np.arange(99), np.arange(55), 55) < 30
    Z = np.concatenate([X, Y])
    ref = [float(mmdkit.mmd2_unbiased(Z[lab], Z[~lab], bandwidth=1.0)) for lab in labels[:5]]
    np.testing.assert_allclose(a.null_distribution[:5], ref, rtol=1e-10)


@pytest.mark.parametrize("N", [2, 3, 5, 13, 100, 1000, 2049, 5003])
def test_walk_by_table_equals_cycle_walking(N):
    """The two walks of permute (lookups in the tail's table, for many rows; the network again, for few)
    give the same values on the same first pass, for all rows and for a scattered few."""
    from mmdkit._permutations import _U32, _feistel_rows, _round_keys, _walk, _walk_by_table
    h = max(1, ((N - 1).bit_length() + 1) // 2)
    keys = _round_keys(KEY, np.arange(5, 45))
    for idx in (np.arange(N), np.random.default_rng(N).choice(N, size=max(1, N // 9), replace=False)):
        a = _feistel_rows(idx.astype(_U32), keys, h)
        b = a.copy()
        with np.errstate(over="ignore"):
            _walk(a, keys, h, N)
            _walk_by_table(b, keys, h, N)
        assert (a < N).all() and np.array_equal(a, b)
