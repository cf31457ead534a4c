"""The README's first command: MMD, energy distance and a witness heatmap on built-in data.

    python -m mmdkit.demo [--out runs/demo] [--n 2000] [--seed 0]

Draws two 2-D samples that differ in a way a mean test would miss (same mean,
Y is a ring around X's blob), prints the statistics with what they mean, and
writes the witness heatmap to OUT/witness.png.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

import mmdkit
from mmdkit.plotting import plot_witness


def demo_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """X ~ N(0, I); Y ~ a noisy ring of radius 2 (mean 0 too); X2 ~ N(0, I) again."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    theta = 2 * math.pi * torch.rand(n, generator=g)
    Y = 2 * torch.stack([theta.cos(), theta.sin()], 1) + 0.3 * torch.randn(n, 2, generator=g)
    X2 = torch.randn(n, 2, generator=g)
    return X, Y, X2


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo", help="folder for witness.png")
    ap.add_argument("--n", type=int, default=2000, help="points per sample")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    X, Y, X2 = demo_data(a.n, a.seed)
    h = mmdkit.median_bandwidth(X, Y)
    print(f"mmdkit {mmdkit.__version__} demo: n = m = {a.n} points in 2-D")
    print("  X ~ N(0, I);  Y ~ ring of radius 2;  X' ~ N(0, I) (a second draw of P)")
    print(f"  Gaussian kernel, median-heuristic bandwidth h = {h:.3f}\n")
    t0 = time.perf_counter()
    rows = [
        ("MMD^2 unbiased (X, Y)", mmdkit.mmd2_unbiased(X, Y, bandwidth=h)),
        ("MMD^2 unbiased (X, X')", mmdkit.mmd2_unbiased(X, X2, bandwidth=h)),
        ("MMD^2 biased   (X, Y)", mmdkit.mmd2_biased(X, Y, bandwidth=h)),
        ("MMD^2 linear   (X, Y)", mmdkit.mmd2_linear(X, Y, bandwidth=h)),
        ("energy distance (X, Y)", mmdkit.energy_distance(X, Y)),
        ("energy distance (X, X')", mmdkit.energy_distance(X, X2)),
    ]
    dt = time.perf_counter() - t0
    for name, v in rows:
        print(f"  {name:<26} {float(v): .5f}")
    print(f"\n  ({dt:.2f} s for all six on {torch.get_num_threads()} CPU threads)")
    print("\nWhat it means: MMD^2 is 0 exactly when P = Q (for a characteristic kernel);")
    print("the unbiased estimate scatters around 0 for two draws of the same P (X, X')")
    print("and is clearly positive for X vs Y, although their means agree.")
    print("Energy distance (Szekely-Rizzo, dcor's convention) reads the same way.")
    if hasattr(mmdkit, "mmd_test"):
        r = mmdkit.mmd_test(X[:500], Y[:500], bandwidth=h, n_permutations=500, seed=a.seed, progress=False)
        r0 = mmdkit.mmd_test(X[:500], X2[:500], bandwidth=h, n_permutations=500, seed=a.seed, progress=False)
        print(f"\nPermutation test (n = m = 500, 500 permutations): p = {r.pvalue:.4f} for X vs Y, "
              f"p = {r0.pvalue:.4f} for X vs X'")
    path = out / "witness.png"
    plot_witness(X[:1000], Y[:1000], path, bandwidth=h, title="Witness: red = more X (blob), blue = more Y (ring)")
    print(f"\nWrote the witness heatmap to {path}")


if __name__ == "__main__":
    main()
