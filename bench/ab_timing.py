"""A/B timing of whichever mmdkit build is importable, at the issue-12 sizes; prints JSON.

Compare two commits on one host, one after the other:

    pip install --no-deps --target /tmp/old <worktree of the old commit>
    PYTHONPATH=/tmp/old .venv/bin/python bench/ab_timing.py > old.json
    .venv/bin/python bench/ab_timing.py > new.json

Each case: the minimum over rounds (5; 3 at n = 10000; 2 for the tests, 1 for the aggregated
test) after one warm-up, 2 threads, float32 statistics with bandwidth 4.0 on the torch engine,
tests with their defaults on float64 numpy input.
"""
import json
import sys
import time

import torch

import mmdkit
from mmdkit.kernels.reference import make_pair


def best(f, rounds):
    f()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    torch.set_num_threads(2)
    out = {}
    mmd = lambda X, Y: mmdkit.mmd2_unbiased(X, Y, bandwidth=4.0, backend="torch")  # noqa: E731
    energy = lambda X, Y: mmdkit.energy_distance(X, Y, backend="torch")  # noqa: E731
    for n in (4000, 10000):
        for d in (2, 3, 16, 64):
            X, Y = make_pair(n, n, d, shift=0.5)
            Xr, Yr = X.clone().requires_grad_(), Y.clone().requires_grad_()
            r = 3 if n == 10000 else 5
            for name, f in (("mmd2", mmd), ("energy", energy)):
                out[f"{name} fwd n={n} d={d}"] = best(lambda f=f, X=X, Y=Y: f(X, Y), r)
                grad = lambda f=f, X=Xr, Y=Yr: torch.autograd.grad(f(X, Y), [X, Y])  # noqa: E731
                out[f"{name} fwd+bwd n={n} d={d}"] = best(grad, r)
    for n in (500, 2000):
        X, Y = (A.numpy() for A in make_pair(n, n, 16, shift=0.05, dtype=torch.float64))
        tests = {"mmd_test": lambda X=X, Y=Y: mmdkit.mmd_test(X, Y, seed=0, progress=False),
                 "energy_test": lambda X=X, Y=Y: mmdkit.energy_test(X, Y, seed=0, progress=False),
                 "mmd_test aggregated": lambda X=X, Y=Y: mmdkit.mmd_test(X, Y, aggregate=True, seed=0, progress=False)}
        for name, f in tests.items():
            out[f"{name} n={n} d=16 P=1000 f64"] = best(f, 1 if "aggregated" in name else 2)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
