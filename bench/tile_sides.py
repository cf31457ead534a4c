"""The symmetric tile side (``kernels.blocked.TILE_SYM``) swept on this CPU: the median over interleaved
rounds of t(768) / t(side), energy_distance and mmd2_unbiased, 2 threads, float32
(bench/RESULTS.md, "Tile side on a second CPU").

    .venv/bin/python bench/tile_sides.py [--rounds 6]
"""
import argparse
import statistics
import time

import torch

import mmdkit
from mmdkit.kernels import blocked
from mmdkit.kernels.reference import make_pair

SIDES = (256, 384, 512, 768, 1024)
CASES = (("energy_distance", 20000, 16), ("energy_distance", 10000, 64), ("mmd2_unbiased", 10000, 64))


def call(stat, X, Y):
    if stat == "energy_distance":
        return mmdkit.energy_distance(X, Y, backend="torch")
    return mmdkit.mmd2_unbiased(X, Y, bandwidth=4.0, backend="torch")


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--rounds", type=int, default=6)
    args = a.parse_args(argv)
    torch.set_num_threads(2)
    default = blocked.TILE_SYM
    print("| call | " + " | ".join(map(str, SIDES)) + " |")
    print("|---" * (len(SIDES) + 1) + "|")
    try:
        for stat, n, d in CASES:
            X, Y = make_pair(n, n, d, shift=0.5)
            call(stat, X, Y)  # warm-up
            times = {s: [] for s in SIDES}
            for r in range(args.rounds):
                for side in (SIDES if r % 2 else SIDES[::-1]):  # reversed every other round
                    blocked.TILE_SYM = side
                    start = time.perf_counter()
                    call(stat, X, Y)
                    times[side].append(time.perf_counter() - start)
            ref = times[768]
            cells = [f"{statistics.median(a / b for a, b in zip(ref, times[s])):.2f}"
                     + (f" ({min(ref):.3f} s)" if s == 768 else "") for s in SIDES]
            print(f"| {stat} {n} x {d} | " + " | ".join(cells) + " |", flush=True)
    finally:
        blocked.TILE_SYM = default


if __name__ == "__main__":
    main()
