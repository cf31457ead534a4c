"""The permutation tests' speed goals in one run: each test against its bare upper-triangle GEMMs.

    .venv/bin/python bench/perm_ratios.py [--rounds 5] [--only fuse]

The reference is the permutation product's own tile products with no kernel and no labels: for
each kernel, the engine's dense upper tiles of the pooled sample (``blocked.tiles`` over
``blocked.dense_tile(N)`` rows) times an (N, P + 1) block, i.e. about N^2 / 2 x (P + 1) x 2 flops per
kernel, in the test's dtype. Cases (n = m): ``energy_test`` at 1000, d = 16, P = 1000, and the
aggregated test (MMDAgg, the paper's grid of 10 Gaussians) at 500, d = 1, B1 = B2 = 2000; float32
tensors and float64 numpy arrays (issue 16); MMD-FUSE at the paper's speed setting, n = 500, d = 10,
2000 permutations, 20 kernels, float32 (issue 14). Rounds interleave test and reference; the ratios
are of the minima and of the medians after a warm-up, 2 threads; dcor's energy test is timed once
beside it where dcor is installed, in a child process: importing dcor (numba) into the timing process
made torch's two-thread elementwise passes ~2x slower on this host (``sqrt_`` of a 500 x 500 tile
93 -> 188 us; one thread unchanged), which inflated the test's time by ~1.5x (bench/RESULTS.md).
"""
import argparse
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import mmdkit
from mmdkit.kernels import blocked
from mmdkit.kernels.reference import make_pair


def bare_gemms(N, P, kernels, dtype):
    """The reference: per kernel, the dense upper tiles times an (N, P + 1) block, its columns padded
    to the engine's alignment (at odd widths such as 1001 the GEMMs run up to ~1.5x slower)."""
    g = torch.Generator().manual_seed(0)
    rows = blocked._ranges(N, blocked.dense_tile(N))
    tiles = [(i0, i1, j0, j1, torch.rand(i1 - i0, j1 - j0, generator=g, dtype=dtype))
             for i0, i1, j0, j1, _ in blocked.tiles(rows)]
    width = -(-(P + 1) // blocked.LABEL_ALIGN) * blocked.LABEL_ALIGN
    E = torch.rand(N, width, generator=g, dtype=dtype)
    acc = torch.zeros(N, width, dtype=dtype)

    def run():
        for _ in range(kernels):
            for i0, i1, j0, j1, k in tiles:
                acc[i0:i1].addmm_(k, E[j0:j1])
    return run


DCOR = """
import sys, time, numpy as np, dcor
X, Y = np.load(sys.argv[1]), np.load(sys.argv[2])
start = time.perf_counter()
dcor.homogeneity.energy_test(X, Y, num_resamples=1000, random_state=0)
print(time.perf_counter() - start)
"""


def dcor_seconds(X, Y, tmp):
    """dcor's energy test on float64 copies of X and Y, timed in a child process (None without dcor)."""
    paths = [f"{tmp}/{name}.npy" for name in "XY"]
    for path, v in zip(paths, (X, Y)):
        np.save(path, np.asarray(v, dtype=np.float64))
    run = subprocess.run([sys.executable, "-c", DCOR, *paths], capture_output=True, text=True)
    return float(run.stdout) if run.returncode == 0 else None


def cases():
    for dtype in (torch.float32, torch.float64):
        X, Y = make_pair(1000, 1000, 16, shift=0.1, dtype=dtype)
        if dtype == torch.float64:
            X, Y = X.numpy(), Y.numpy()
        yield (f"energy_test n=m=1000 d=16 P=1000 {str(dtype)[6:]}",
               lambda X=X, Y=Y: mmdkit.energy_test(X, Y, n_permutations=1000, seed=0, progress=False),
               bare_gemms(2000, 1000, 1, dtype), (X, Y))
        X, Y = make_pair(500, 500, 1, shift=0.2, dtype=dtype)
        if dtype == torch.float64:
            X, Y = X.numpy(), Y.numpy()
        yield (f"MMDAgg n=m=500 d=1 10 kernels B1=B2=2000 {str(dtype)[6:]}",
               lambda X=X, Y=Y: mmdkit.mmd_test(X, Y, aggregate=True, seed=0, progress=False),
               bare_gemms(1000, 4000, 10, dtype), None)
    X, Y = make_pair(500, 500, 10, shift=0.2, dtype=torch.float32)
    yield ("MMD-FUSE n=m=500 d=10 20 kernels P=2000 float32",
           lambda: mmdkit.fuse_test(X, Y, n_permutations=2000, seed=0, progress=False),
           bare_gemms(1000, 2000, 20, torch.float32), None)


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--rounds", type=int, default=5)
    a.add_argument("--only", default="", help="run the cases whose name contains this (case-insensitive)")
    args = a.parse_args(argv)
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp()
    print("| case | test s | bare GEMMs s | test / GEMMs (minima) | (medians) | dcor s | dcor / test |")
    print("|---|---|---|---|---|---|---|")
    for name, test, bare, energy_data in cases():
        if args.only.lower() not in name.lower():
            continue
        times: list[list[float]] = [[], []]
        for r in range(args.rounds + 1):
            for i, f in enumerate((test, bare)):
                start = time.perf_counter()
                f()
                if r:
                    times[i].append(time.perf_counter() - start)
        best = [min(t) for t in times]
        med = [float(np.median(t)) for t in times]
        dc = "-"
        if energy_data is not None:
            dc = dcor_seconds(*energy_data, tmp) or "-"
        ratio = "-" if dc == "-" else f"{dc / best[0]:.0f}x"
        dcs = dc if dc == "-" else f"{dc:.2f}"
        print(f"| {name} | {best[0]:.3f} | {best[1]:.3f} | {best[0] / best[1]:.2f}x | {med[0] / med[1]:.2f}x | {dcs} "
              f"| {ratio} |", flush=True)


if __name__ == "__main__":
    main()
