"""KID (mmdkit.kid): the subset protocol and the exact full-sample value with its standard error.

The default is a smoke size; ``MMDKIT_BENCH=full`` runs Inception-feature size,
50k x 2048 per sample: 100 subsets of 1000 (the published protocol), and the
exact value over all 10^5 pooled points (one engine sweep: the row sums of k
and of k^2 from each dot tile). Pairs/s and GFLOP/s count 2 d flops per pair (the dot
tile) and the pairs each protocol sweeps.
"""
import pytest

import mmdkit
from mmdkit.kernels.reference import make_pair
from benchutil import record, sizes

SHAPES = sizes([(50_000, 2048)], [(2000, 64)])
SUBSETS = sizes((100, 1000), (5, 500))  # (subsets, subset_size)


def _rounds(n):
    return dict(rounds=1, warmup_rounds=0) if n >= 10_000 else dict(rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("n,d", SHAPES, ids=[f"n{n}-d{d}" for n, d in SHAPES])
def test_kid_subsets(benchmark, matmul_gflops, n, d):
    X, Y = make_pair(n, n, d, shift=0.1)
    subsets, size = SUBSETS
    res = benchmark.pedantic(lambda: mmdkit.kid(X, Y, subsets=subsets, subset_size=size, seed=0), **_rounds(n))
    pairs = subsets * (2 * size) ** 2 / 2  # one symmetric sweep of each pooled subset
    record(benchmark, matmul_gflops, n=n, m=n, d=d, dtype=X.dtype, backend=getattr(res, "backend", "auto"),
           pairs=pairs, flops=pairs * 2 * d, method="subsets", subsets=subsets, subset_size=size)


@pytest.mark.parametrize("n,d", SHAPES, ids=[f"n{n}-d{d}" for n, d in SHAPES])
def test_kid_exact(benchmark, matmul_gflops, n, d):
    X, Y = make_pair(n, n, d, shift=0.1)
    res = benchmark.pedantic(lambda: mmdkit.kid(X, Y, subsets=None), **_rounds(n))
    pairs = (2 * n) ** 2 / 2  # one symmetric sweep of the pooled sample
    record(benchmark, matmul_gflops, n=n, m=n, d=d, dtype=X.dtype, backend=getattr(res, "backend", "auto"),
           pairs=pairs, flops=pairs * 2 * d, method="exact")
