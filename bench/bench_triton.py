"""kernel_matmul K(X, Y) @ V on CUDA: the Triton engine against the blocked torch engine, forward
and forward + backward, float32 ("ieee", "tf32" and "tf32x3") and bfloat16. Skips cleanly without CUDA.

p = 1 and p = 2 take the row-reduction forward (ROWS), p = 100 the K @ V dot. Estimates of these times
on an H100, from instruction counts of the compiled SASS, are in bench/ROOFLINE.md.
"""
import pytest
import torch

from mmdkit.kernels import blocked
from mmdkit.kernels.reference import make_pair
from mmdkit.kernels.specs import Energy, Gaussian
from benchutil import record, sizes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

NS = sizes([10**4, 10**5], [4096])
DS = sizes([3, 64], [3])
PS = sizes([1, 2, 100], [1])  # 1: kernel sums / row sums; 2: block_sums of two samples; 100: permutations
# (backend, dtype, precision)
VARIANTS = [("torch", torch.float32, None), ("triton", torch.float32, "ieee"), ("triton", torch.float32, "tf32"),
            ("triton", torch.float32, "tf32x3"), ("triton", torch.bfloat16, "ieee")]
KERNELS = {"gaussian": Gaussian(bandwidth=1.0), "energy": Energy()}


def _engine(backend, precision):
    """kernel_matmul of the backend with the precision bound (torch has none)."""
    if backend == "torch":
        return blocked.kernel_matmul
    from mmdkit.kernels import triton_engine
    return lambda X, Y, V, k: triton_engine.kernel_matmul(X, Y, V, k, precision=precision)


@pytest.mark.parametrize("variant", VARIANTS, ids=[f"{b}-{str(d)[6:]}-{p or 'fp32'}" for b, d, p in VARIANTS])
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("d", DS)
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_kernel_matmul_cuda(benchmark, matmul_gflops, mode, n, d, p, kernel, variant):
    backend, dtype, precision = variant
    X, Y = (A.cuda() for A in make_pair(n, n, d, shift=0.5, dtype=dtype))
    V = torch.randn(n, p, device="cuda", dtype=dtype)
    f, spec = _engine(backend, precision), KERNELS[kernel]
    if mode == "fwd":
        run = lambda: f(X, Y, V, spec)  # noqa: E731
    else:
        Xr, Yr = X.clone().requires_grad_(), Y.clone().requires_grad_()
        run = lambda: torch.autograd.grad(f(Xr, Yr, V, spec).sum(), [Xr, Yr])  # noqa: E731

    def timed():
        out = run()
        torch.cuda.synchronize()
        return out

    timed()  # compile / autotune outside the timing
    benchmark.pedantic(timed, rounds=3, warmup_rounds=1)
    pairs = n * n
    record(benchmark, matmul_gflops, n=n, m=n, d=d, dtype=dtype, backend=backend, pairs=pairs,
           flops=pairs * 2 * (d + p), mode=mode, p=p, kernel=kernel, precision=precision or "fp32")
