"""The permutation stream: keyed scores s_b(i) per permutation b; the n smallest are labelled X.

Checked against a plain-Python restatement of the hash (Python integers,
explicit modulo 2^32), for the ranks being a bijection, for not depending on
how permutations and rows are batched, and for uniformity of the labellings it
induces (chi-square over all C(N, n) subsets of tiny pools, inclusion
frequencies of single points and pairs on a larger one).
"""
import math
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chi2

import mmdkit
from mmdkit._permutations import SCORE_ROUNDS, generator, permutation_key, permute, x_masks

M32 = 0xFFFFFFFF


def mix32(x):
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def scores(key, b, N):
    """s_b(0), ..., s_b(N - 1) in plain Python integers."""
    base = mix32(mix32(b ^ int(key[0])) ^ int(key[1]))
    keys = [mix32(base ^ mix32(r + 1)) for r in range(SCORE_ROUNDS)]
    out = []
    for i in range(N):
        for k in keys:
            i = mix32(i ^ k)
        out.append(i)
    return out


KEY = permutation_key(generator(0))


@pytest.mark.parametrize("N", [1, 2, 3, 7, 64, 65, 1000, 5003])
def test_ranks_are_a_bijection_and_restate_in_plain_python(N):
    P = permute(KEY, np.arange(20), np.arange(N), N)
    assert P.dtype == np.int64 and P.shape == (20, N)
    assert all((np.sort(row) == np.arange(N)).all() for row in P)
    for b in (0, 7, 19):
        s = scores(KEY, b, N)
        assert len(set(s)) == N  # injective: no ties to break
        assert P[b].tolist() == np.argsort(np.argsort(s)).tolist()


@pytest.mark.parametrize("N, n", [(1, 1), (2, 1), (7, 3), (7, 7), (1000, 1), (1000, 600), (5003, 2500)])
def test_x_masks_are_the_ranks_below_n_on_any_rows(N, n):
    P = permute(KEY, np.arange(30), np.arange(N), N)
    assert (x_masks(KEY, np.arange(30), np.arange(N), N, n) == (P < n)).all()
    rows = np.random.default_rng(N).permutation(N)[: max(1, N // 3)]
    assert (x_masks(KEY, np.arange(30), rows, N, n) == (P[:, rows] < n)).all()
    assert (x_masks(KEY, np.arange(30), np.arange(N), N, n).sum(1) == n).all()


def test_no_permutations_give_empty_blocks():
    assert x_masks(KEY, np.arange(0), None, 9, 4).shape == (0, 9)
    assert permute(KEY, np.arange(0), np.arange(9), 9).shape == (0, 9)


def test_bad_label_counts_are_refused():
    with pytest.raises(ValueError, match="n = 0 of N = 5"):
        x_masks(KEY, np.arange(3), np.arange(5), 5, 0)
    with pytest.raises(ValueError, match="n = 6 of N = 5"):
        x_masks(KEY, np.arange(3), np.arange(5), 5, 6)


def test_batching_of_permutations_and_rows_changes_nothing():
    N = 333
    full = permute(KEY, np.arange(50), np.arange(N), N)
    assert (permute(KEY, np.arange(17, 40), np.arange(N), N) == full[17:40]).all()
    assert (permute(KEY, np.arange(50), np.arange(100, 250), N) == full[:, 100:250]).all()
    other = permute(permutation_key(generator(1)), np.arange(50), np.arange(N), N)
    assert (other != full).mean() > 0.9


@pytest.mark.parametrize("N, n", [(6, 3), (7, 2), (10, 5), (13, 4)])
def test_labellings_of_tiny_pools_are_uniform(N, n):
    """Chi-square over all C(N, n) subsets, 100 000 draws (every subset drawn; p >= 0.29 measured)."""
    B = 100_000
    labels = x_masks(KEY, np.arange(B), np.arange(N), N, n)
    counts = Counter((labels * (1 << np.arange(N))).sum(1).tolist())
    K = math.comb(N, n)
    assert len(counts) == K
    obs = np.array(list(counts.values()))
    assert chi2.sf(((obs - B / K) ** 2 / (B / K)).sum(), K - 1) > 1e-3


def test_inclusion_frequencies_of_points_and_pairs():
    """P(i labelled X) = n/N and P(i and j) = n(n-1)/(N(N-1)), within 4.5 binomial SE for every point/pair."""
    N, n, B = 40, 15, 20_000
    lab = x_masks(KEY, np.arange(B), np.arange(N), N, n).astype(float)
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
    # the null distribution is the statistic of the labellings x_masks, b = 0..98
    labels = x_masks(permutation_key(generator(11)), np.arange(99), np.arange(55), 55, 30)
    Z = np.concatenate([X, Y])
    ref = [float(mmdkit.mmd2_unbiased(Z[lab], Z[~lab], bandwidth=1.0)) for lab in labels[:5]]
    np.testing.assert_allclose(a.null_distribution[:5], ref, rtol=1e-10)


def test_label_threads_change_nothing_and_survive_a_fork():
    """x_masks splits large blocks over torch's threads: the labels equal the one-thread ones bit for bit,
    and a forked child (whose copy of the pool has no threads) still draws them, with a pool of its own."""
    import multiprocessing
    import torch

    from mmdkit import _permutations

    key, perms = permutation_key(generator(3)), np.arange(500)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = x_masks(key, perms, None, 2000, 700)
        torch.set_num_threads(2)
        two = x_masks(key, perms, None, 2000, 700)
    finally:
        torch.set_num_threads(threads)
    assert _permutations._POOL["workers"] >= 2  # the split ran
    assert np.array_equal(one, two) and (one.sum(1) == 700).all()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as child:
        got = child.apply_async(_two_thread_masks, (key, perms)).get(timeout=60)
    assert np.array_equal(got, one)


def _two_thread_masks(key, perms):
    import torch
    torch.set_num_threads(2)
    return x_masks(key, perms, None, 2000, 700)
