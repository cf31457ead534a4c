"""mmd2_unbiased (Gaussian): the blocked engine against a dense torch reference
(cdist + exp, three n x m matrices), forward and forward + backward, float32."""
import pytest
import torch

import mmdkit
from mmdkit.kernels.reference import make_pair
from benchutil import record, sizes

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
}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("d", DS)
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_mmd2_unbiased(benchmark, matmul_gflops, impl, n, d, mode):
    X, Y = make_pair(n, n, d, shift=0.5)
    f = IMPLS[impl]
    if mode == "fwd":
        run = lambda: f(X, Y)
    else:
        Xr, Yr = X.clone().requires_grad_(), Y.clone().requires_grad_()
        run = lambda: torch.autograd.grad(f(Xr, Yr), [Xr, Yr])
    benchmark.pedantic(run, rounds=3 if n >= 10000 else 5, warmup_rounds=1)
    pairs = (2 * n) ** 2 / 2  # distinct pairs of the pooled sample (engine uses symmetry)
    record(benchmark, matmul_gflops, n=n, m=n, d=d, dtype=X.dtype, backend=impl, pairs=pairs,
           flops=pairs * 2 * (d + 2), mode=mode)
