"""Power of relative_mmd_test (issue 29 item 2): rejection rates of "A is closer than B" at alpha = 0.05.

    .venv/bin/python bench/relative_power.py [--replicates 200] [--out bench/RELATIVE_POWER.md]

X ~ N(0, I_3); A shifted by ``da`` along e1, B by ``db`` along e2 (so A is closer when da < db, and the
two are equally close, a boundary of H0, when da = db); n points in each sample, Gaussian kernel with
the median bandwidth. Each finished (n, da, db) appends one row to the table, and a rerun skips the rows
already there, so the study resumes where it stopped.
"""
import argparse
import math
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from mmdkit import relative_mmd_test

SIZES = (50, 100, 200)
SHIFTS = ((0.5, 0.5), (0.4, 0.6), (0.3, 0.7), (0.0, 0.5))  # (da, db)
HEADER = ("| n | da | db | replicates | rejection rate at 0.05 | s.e. |\n"
          "|---|---|---|---|---|---|\n")


def rate(n: int, da: float, db: float, replicates: int) -> float:
    """Share of replicates (seeds 0 .. replicates - 1) whose p-value is <= 0.05."""
    hits = 0
    for seed in tqdm(range(replicates), desc=f"n={n} da={da} db={db}", leave=False, disable=None):
        g = torch.Generator().manual_seed(seed)
        X, A, B = (torch.randn(n, 3, generator=g, dtype=torch.float64) for _ in range(3))
        A[:, 0] += da
        B[:, 1] += db
        hits += relative_mmd_test(X, A, B).pvalue <= 0.05
    return hits / replicates


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--replicates", type=int, default=200)
    a.add_argument("--out", default=str(Path(__file__).parent / "RELATIVE_POWER.md"))
    args = a.parse_args(argv)
    out = Path(args.out)
    if not out.exists():
        out.write_text("# relative_mmd_test: rejection rates\n\nMade by `.venv/bin/python bench/relative_power.py`"
                       " (see its docstring for the setup).\n\n" + HEADER)
    done = out.read_text()
    for n in SIZES:
        for da, db in SHIFTS:
            key = f"| {n} | {da} | {db} | {args.replicates} |"
            if key in done:
                continue
            p = rate(n, da, db, args.replicates)
            with out.open("a") as f:
                f.write(f"{key} {p:.3f} | {math.sqrt(p * (1 - p) / args.replicates):.3f} |\n")
            print(key, f"{p:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
