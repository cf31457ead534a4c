"""energy_distance (V-statistic): the blocked engine against a dense torch
reference (three cdist matrices), forward and forward + backward, float32;
and the exact O(n log n) d = 1 path."""
import pytest
import torch

import mmdkit
import sketch
from mmdkit.kernels.reference import make_pair
from benchutil import bench_pair_statistic, record, sizes

NS = sizes([1000, 4000, 10000, 20000], [500])
DS = sizes([2, 16, 64], [2, 16])


def dense_energy_distance(X, Y):
    """2 E|X-Y| - E|X-X'| - E|Y-Y'| from three cdist matrices."""
    return 2 * torch.cdist(X, Y).mean() - torch.cdist(X, X).mean() - torch.cdist(Y, Y).mean()


IMPLS = {
    "engine": lambda X, Y: mmdkit.energy_distance(X, Y, backend="torch"),
    "dense": dense_energy_distance,
    "sketch": sketch.energy_distance,  # issue 16's hand-written baseline
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("d", DS)
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_energy_distance(benchmark, matmul_gflops, impl, n, d, mode):
    if impl == "sketch" and mode != "fwd":
        pytest.skip("the sketch has no backward")
    bench_pair_statistic(benchmark, matmul_gflops, IMPLS[impl], impl, n, d, mode)


@pytest.mark.parametrize("n", sizes([10**5, 10**6], [10**4]))
def test_energy_distance_1d_sorted(benchmark, matmul_gflops, n):
    X, Y = make_pair(n, n, 1, shift=0.1)
    benchmark.pedantic(lambda: mmdkit.energy_distance(X, Y), rounds=3, warmup_rounds=1)
    record(benchmark, matmul_gflops, n=n, m=n, d=1, dtype=X.dtype, backend="sort",
           pairs=(2 * n) ** 2 / 2, flops=0)
