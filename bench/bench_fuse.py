"""MMD-FUSE (mmdkit.fuse_test) at the paper's speed setting against its bare GEMMs in the same run.

``MMDKIT_BENCH=full``: n = m = 500, d = 10, 2000 permutations, the default
collection of 20 kernels (10 L1 Laplace, 10 Gaussian), float32; Biggs et al.
(2023) report 2.95 s on a CPU for their JAX implementation (paper, Section 6;
a different machine, so it is quoted, not compared). The reference is the
permutation product's own tile products with no kernel applied: for each of
the 20 kernels, the upper tiles of the pooled sample (``blocked.tiles`` over
the engine's dense tile rows) times the (N, P + 1) label block, i.e. about
20 x N^2 / 2 x (P + 1) x 2 flops. The ratio fuse / bare is the overhead of
everything else: bandwidths, kernel tiles, k^2 normalisers, labels.
"""
import torch

from benchutil import sizes

SETTING = sizes((500, 10, 2000), (100, 10, 200))  # (n = m, d, permutations)
KERNELS = 20


def _data():
    from mmdkit.kernels.reference import make_pair
    n, d, _ = SETTING
    return make_pair(n, n, d, shift=0.2, dtype=torch.float32)


def test_fuse_paper_setting(benchmark):
    import mmdkit
    X, Y = _data()
    n, d, P = SETTING
    res = benchmark.pedantic(lambda: mmdkit.fuse_test(X, Y, n_permutations=P, seed=0, progress=False),
                             rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(n=n, m=n, d=d, n_permutations=P, kernels=len(res.kernel), dtype="float32",
                                method=res.method, pvalue=res.pvalue)


def test_fuse_bare_gemms(benchmark):
    """The same tile products with no kernel: random (BM, BN) tiles times the label block."""
    from mmdkit.kernels import blocked
    n, d, P = SETTING
    N = 2 * n
    g = torch.Generator().manual_seed(0)
    rows = blocked._ranges(N, blocked.dense_tile(N))
    tiles = [(i0, i1, j0, j1, torch.rand(i1 - i0, j1 - j0, generator=g))
             for i0, i1, j0, j1, _ in blocked.tiles(rows)]
    E = torch.rand(N, P + 1, generator=g)
    acc = torch.zeros(N, P + 1)

    def run():
        for _ in range(KERNELS):
            for i0, i1, j0, j1, k in tiles:
                acc[i0:i1].addmm_(k, E[j0:j1])

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    flops = KERNELS * sum(2 * (i1 - i0) * (j1 - j0) * (P + 1) for i0, i1, j0, j1, _ in tiles)
    benchmark.extra_info.update(n=n, m=n, d=d, n_permutations=P, kernels=KERNELS, dtype="float32", flops=flops,
                                tiles=len(tiles))


def test_mmdagg_paper_setting(benchmark):
    """MMDAgg at its default (the perturbed-uniform setting of Schrab et al.: d = 1, n = m = 500, 10 Gaussian
    bandwidths of the paper's grid, B1 = B2 = 2000, B3 = 50); smoke: n = m = 100, B1 = B2 = 200."""
    import mmdkit
    from mmdkit.kernels.reference import make_pair
    n, P = sizes((500, None), (100, 200))
    X, Y = make_pair(n, n, 1, shift=0.2, dtype=torch.float32)
    res = benchmark.pedantic(lambda: mmdkit.mmd_test(X, Y, aggregate=True, n_permutations=P, seed=0, progress=False),
                             rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(n=n, m=n, d=1, n_permutations=res.n_permutations, kernels=len(res.bandwidth),
                                dtype="float32", method=res.method, pvalue=res.pvalue)
