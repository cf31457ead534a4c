"""mmd2_unbiased (Gaussian): the blocked engine against a dense torch reference
(cdist + exp, three n x m matrices), forward and forward + backward, float32."""
import pytest
import torch

import mmdkit
import sketch
from benchutil import bench_pair_statistic, sizes

NS = sizes([1000, 4000, 10000, 20000], [500])
DS = sizes([2, 16, 64], [2, 16])
BANDWIDTH = 4.0


def dense_mmd2_unbiased(X, Y, h=BANDWIDTH):
    """The obvious torch code: three full kernel matrices from cdist."""
    k = lambda A, B: torch.exp(-torch.cdist(A, B) ** 2 / (2 * h * h))
    n, m = X.shape[0], Y.shape[0]
    Kxx, Kyy, Kxy = k(X, X), k(Y, Y), k(X, Y)
    return ((Kxx.sum() - Kxx.diagonal().sum()) / (n * (n - 1))
            + (Kyy.sum() - Kyy.diagonal().sum()) / (m * (m - 1)) - 2 * Kxy.mean())


IMPLS = {
    "engine": lambda X, Y: mmdkit.mmd2_unbiased(X, Y, bandwidth=BANDWIDTH, backend="torch"),
    "dense": dense_mmd2_unbiased,
    "sketch": lambda X, Y: sketch.mmd2_unbiased(X, Y, BANDWIDTH),  # issue 16's hand-written baseline
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("d", DS)
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_mmd2_unbiased(benchmark, matmul_gflops, impl, n, d, mode):
    if impl == "sketch" and mode != "fwd":
        pytest.skip("the sketch has no backward")
    bench_pair_statistic(benchmark, matmul_gflops, IMPLS[impl], impl, n, d, mode)


SMALL_BANDWIDTH = 0.05  # most exp arguments far below log(tiny): torch's slow exp path unless clamped
IMPLS_SMALL = {
    "engine": lambda X, Y: mmdkit.mmd2_unbiased(X, Y, bandwidth=SMALL_BANDWIDTH, backend="torch"),
    "dense": lambda X, Y: dense_mmd2_unbiased(X, Y, h=SMALL_BANDWIDTH),
}


@pytest.mark.parametrize("impl", list(IMPLS_SMALL))
@pytest.mark.parametrize("n", sizes([4000], [500]))
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_mmd2_unbiased_small_bandwidth(benchmark, matmul_gflops, impl, n, mode):
    """A bandwidth far below the data's spread (GMMN-style mixtures): underflowing kernel values."""
    bench_pair_statistic(benchmark, matmul_gflops, IMPLS_SMALL[impl], impl, n, 2, mode)
