"""Issue 16's CPU goals in one run: the engine against the blocked sketch (bench/sketch.py) and
naive dense torch, float32, 2 threads; prints a Markdown table of times and ratios.

    .venv/bin/python bench/sketch_ratios.py [--rounds 5] [--only energy]

Rounds interleave the implementations so host drift hits all of them alike, in an order rotated
each round (dense torch's gigabyte allocations slow whatever runs right after them); each time is
the minimum over rounds after one warm-up, and the sketch's ratio is also given as the median over
rounds of the same round's sketch / engine times.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import mmdkit  # noqa: E402
import sketch  # noqa: E402
from bench_energy_distance import dense_energy_distance  # noqa: E402
from bench_mmd2_unbiased import BANDWIDTH, dense_mmd2_unbiased  # noqa: E402
from mmdkit.kernels.reference import make_pair  # noqa: E402

ENGINE = {
    "energy_distance": lambda X, Y: mmdkit.energy_distance(X, Y, backend="torch"),
    "mmd2_unbiased": lambda X, Y: mmdkit.mmd2_unbiased(X, Y, bandwidth=BANDWIDTH, backend="torch"),
}
SKETCH = {"energy_distance": sketch.energy_distance,
          "mmd2_unbiased": lambda X, Y: sketch.mmd2_unbiased(X, Y, BANDWIDTH)}
DENSE = {"energy_distance": dense_energy_distance, "mmd2_unbiased": dense_mmd2_unbiased}
# (statistic, n, d, mode): the sizes of issue 16's "Done means"
CASES = [("energy_distance", 10000, 64, "fwd"), ("energy_distance", 20000, 16, "fwd"),
         ("mmd2_unbiased", 20000, 16, "fwd"), ("mmd2_unbiased", 10000, 64, "fwd"),
         ("mmd2_unbiased", 4000, 64, "fwd+bwd")]


def with_grad(f):
    def run(X, Y):
        Xr, Yr = X.clone().requires_grad_(), Y.clone().requires_grad_()
        return torch.autograd.grad(f(Xr, Yr), [Xr, Yr])
    return run


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--rounds", type=int, default=5)
    a.add_argument("--only", default="", help="run the cases whose statistic name contains this")
    args = a.parse_args(argv)
    torch.set_num_threads(2)
    print("| statistic | n = m | d | mode | engine s | sketch s | dense s | engine vs sketch (minima) "
          "| (paired median) | engine vs dense |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for stat, n, d, mode in CASES:
        if args.only not in stat:
            continue
        X, Y = make_pair(n, n, d, shift=0.5)
        impls = {"engine": ENGINE[stat], "sketch": SKETCH[stat], "dense": DENSE[stat]}
        if mode == "fwd+bwd":
            impls = {"engine": with_grad(ENGINE[stat]), "dense": with_grad(DENSE[stat])}
        times = {k: [] for k in impls}
        names = list(impls)
        for r in range(args.rounds + 1):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotated: none always follows dense
                f = impls[name]
                start = time.perf_counter()
                f(X, Y)
                if r:  # round 0 is the warm-up
                    times[name].append(time.perf_counter() - start)
        e, s, dn = (min(times[k]) if k in times else None for k in ("engine", "sketch", "dense"))
        # the median over rounds of sketch / engine in the same round: robust to a slow stretch of the host
        paired = statistics.median(a / b for a, b in zip(times["sketch"], times["engine"])) if s else None
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        ratio = lambda v, e=e: "-" if v is None else f"{v / e:.2f}x"  # noqa: E731
        paired = "-" if paired is None else f"{paired:.2f}x"
        print(f"| {stat} | {n} | {d} | {mode} | {e:.3f} | {fmt(s)} | {dn:.3f} | {ratio(s)} | {paired} | {ratio(dn)} |",
              flush=True)


if __name__ == "__main__":
    main()
