"""KID (mmdkit.kid): the subset protocol and the exact full-sample value with its standard error.

The default is a smoke size; ``MMDKIT_BENCH=full`` runs Inception-feature size,
50k x 2048 per sample: 100 subsets of 1000 (the published protocol), and the
exact value over all 10^5 pooled points (one engine sweep: the row sums of k
and of k^2 from each dot tile). Pairs/s and GFLOP/s count 2 d flops per pair (the dot
tile) and the pairs each protocol sweeps. References in the same run:

* torchmetrics' ``KernelInceptionDistance.compute()`` on the same features
  (an Identity feature extractor; its own subset loop of dense matrices);
* the exact sweep's bare GEMMs: the same upper tiles of the pooled sample,
  Z_i @ Z_j.T, with no kernel applied and no reduction;
* peak RSS of the exact value in a fresh process (``peak_memory.py --stat kid_exact``).
"""
import sys
import warnings
from pathlib import Path

import pytest
import torch

import mmdkit
from mmdkit.kernels.reference import make_pair
from benchutil import fresh_process, record, sizes

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


@pytest.mark.parametrize("n,d", SHAPES, ids=[f"n{n}-d{d}" for n, d in SHAPES])
def test_kid_subsets_torchmetrics(benchmark, matmul_gflops, n, d):
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    X, Y = make_pair(n, n, d, shift=0.1)
    subsets, size = SUBSETS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will save all extracted features in buffer"
        metric = tm_kid.KernelInceptionDistance(feature=torch.nn.Identity(), subsets=subsets, subset_size=size)
    metric.update(X, real=True)
    metric.update(Y, real=False)
    benchmark.pedantic(metric.compute, **_rounds(n))
    pairs = subsets * (2 * size) ** 2 / 2
    record(benchmark, matmul_gflops, n=n, m=n, d=d, dtype=X.dtype, backend="torchmetrics", pairs=pairs,
           flops=pairs * 2 * d, method="subsets", subsets=subsets, subset_size=size)


@pytest.mark.parametrize("n,d", SHAPES, ids=[f"n{n}-d{d}" for n, d in SHAPES])
def test_kid_exact_bare_gemms(benchmark, matmul_gflops, n, d):
    """The exact sweep's tile products with no kernel: Z_i @ Z_j.T over the same upper tiles."""
    from mmdkit.kernels import blocked
    X, Y = make_pair(n, n, d, shift=0.1)
    Z = torch.cat([X, Y])
    rows = blocked._ranges(2 * n, blocked.TILE_SYM)

    def run():
        for i0, i1, j0, j1, _ in blocked.tiles(rows):
            Z[i0:i1] @ Z[j0:j1].T

    benchmark.pedantic(run, **_rounds(n))
    pairs = (2 * n) ** 2 / 2
    record(benchmark, matmul_gflops, n=n, m=n, d=d, dtype=Z.dtype, backend="bare GEMMs", pairs=pairs,
           flops=pairs * 2 * d, method="exact tiles")


@pytest.mark.parametrize("n,d", SHAPES, ids=[f"n{n}-d{d}" for n, d in SHAPES])
def test_kid_exact_peak_memory(benchmark, n, d):
    script = Path(__file__).with_name("peak_memory.py")
    out = fresh_process(benchmark, [sys.executable, str(script), "--stat", "kid_exact", "--n", str(n), "--d", str(d)])
    assert out["n"] == n and out["peak_rss_mib"] > 0
