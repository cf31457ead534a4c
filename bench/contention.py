"""Issue 27's scaling and shared-core figures in one run: every engine sweep and the blocked sketch on
1 thread, on the default threads, and on the default threads beside one busy process; prints Markdown.

    .venv/bin/python bench/contention.py [--size 10000] [--dim 16] [--rounds 3] [--scaling-size 20000]

Quiet-machine times are the minimum over ``--rounds`` after one warm-up; times beside the busy
process are the median (it makes single times noisy, and its luckiest round says little). The busy
process is a pure-Python loop (``python -c "while True: pass"``) started before the shared-core rows
and killed after them. The ratio columns compare with the same sweep's 1-thread time on the quiet
machine, measured in the same run (issue 27's goals: shared <= 1.3x of it; at ``--scaling-size``,
2 threads >= 1.7x faster than 1).
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import sketch  # noqa: E402
from mmdkit import energy_distance, mmd2_unbiased  # noqa: E402
from mmdkit.kernels import Energy, Gaussian, PermutationSums, kernel_matmul  # noqa: E402
from mmdkit.kernels.reference import make_pair  # noqa: E402
try:
    from mmdkit.kernels.workers import engine_threads  # noqa: E402
except ImportError:  # an engine before the worker threads (for before/after tables): torch's own threads
    engine_threads = torch.get_num_threads

BANDWIDTH = 4.0  # h of the Gaussian rows (issue 27's table)


def with_grad(f):
    """f(X, Y) and the gradient in both inputs (one forward and one backward sweep)."""
    def run(X, Y):
        Xr, Yr = X.clone().requires_grad_(), Y.clone().requires_grad_()
        return torch.autograd.grad(f(Xr, Yr), [Xr, Yr])
    return run


def cases(n: int, d: int, perm_n: int, perm_b: int):
    """(name, dtype, callable of (X, Y)): every engine sweep, forward and backward, both float dtypes."""
    out = []
    for dt in (torch.float32, torch.float64):
        tag = "f32" if dt == torch.float32 else "f64"
        mmd = lambda X, Y: mmd2_unbiased(X, Y, bandwidth=BANDWIDTH, backend="torch")  # noqa: E731
        energy = lambda X, Y: energy_distance(X, Y, backend="torch")  # noqa: E731
        witness = lambda X, Y: kernel_matmul(X, Y, torch.ones(len(Y), 1, dtype=Y.dtype), Gaussian(BANDWIDTH)).sum()  # noqa: E731,E501
        out += [(f"block_sums: mmd2_unbiased fwd {tag}", dt, mmd),
                (f"block_sums: energy_distance fwd {tag}", dt, energy),
                (f"block_sums: mmd2_unbiased fwd+bwd {tag}", dt, with_grad(mmd)),
                (f"kernel_matmul: K(X, Y) 1 fwd+bwd {tag}", dt, with_grad(witness))]

        def perm(X, Y, dt=dt):  # the permutation product: build + one call with perm_b label columns
            Z = torch.cat([X[:perm_n // 2], Y[:perm_n - perm_n // 2]])
            E = (torch.rand(perm_n, perm_b, generator=torch.Generator().manual_seed(0)) < 0.5).to(dt)
            for budget in (2**40, 0):  # dense (cached tiles) and streamed
                PermutationSums(Z, [Gaussian(BANDWIDTH), Energy()], budget)(E)
        out.append((f"PermutationSums: N={perm_n}, B={perm_b}, 2 kernels {tag}", dt, perm))
    out += [("sketch: mmd2_unbiased f32", torch.float32, lambda X, Y: sketch.mmd2_unbiased(X, Y, BANDWIDTH)),
            ("sketch: energy_distance f32", torch.float32, sketch.energy_distance)]
    return out


def seconds(f, X, Y, rounds: int, reduce=min) -> float:
    """``reduce`` (min, or statistics.median) of ``rounds`` timed calls after one warm-up."""
    f(X, Y)  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        f(X, Y)
        times.append(time.perf_counter() - start)
    return reduce(times)


def busy():
    """One competing process: a pure-Python busy loop (what a notebook or a CI neighbour does to a core)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def table(n: int, d: int, rounds: int, perm_n: int, perm_b: int, default: int) -> list[str]:
    """Rows: 1 thread, default threads, default threads beside a busy process, and the two ratios."""
    rows = [f"| sweep | 1 thread s | {default} threads s | {default} threads + busy s | busy / 1 thread "
            f"| 1 / {default} threads |", "|---|---|---|---|---|---|"]
    X32, Y32 = make_pair(n, n, d, shift=0.5)
    for name, dt, f in cases(n, d, perm_n, perm_b):
        X, Y = X32.to(dt), Y32.to(dt)
        torch.set_num_threads(1)
        one = seconds(f, X, Y, rounds)
        torch.set_num_threads(default)
        many = seconds(f, X, Y, rounds)
        proc = busy()
        try:
            time.sleep(0.2)
            shared = seconds(f, X, Y, rounds, statistics.median)
        finally:
            proc.kill()
            proc.wait()
        rows.append(f"| {name} | {one:.3f} | {many:.3f} | {shared:.3f} | {shared / one:.2f}x | {one / many:.2f}x |")
        print(rows[-1], flush=True)
    return rows


def scaling(n: int, d: int, rounds: int, default: int) -> list[str]:
    """Quiet machine, n = m = ``n``: 1 thread against the default threads (Gaussian and energy, forward)."""
    rows = [f"| statistic (n = m = {n}, d = {d}, f32) | 1 thread s | {default} threads s | speed-up |",
            "|---|---|---|---|"]
    X, Y = make_pair(n, n, d, shift=0.5)
    for name, f in (("mmd2_unbiased", lambda X, Y: mmd2_unbiased(X, Y, bandwidth=BANDWIDTH, backend="torch")),
                    ("energy_distance", lambda X, Y: energy_distance(X, Y, backend="torch"))):
        torch.set_num_threads(1)
        one = seconds(f, X, Y, rounds)
        torch.set_num_threads(default)
        many = seconds(f, X, Y, rounds)
        rows.append(f"| {name} | {one:.3f} | {many:.3f} | {one / many:.2f}x |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--size", type=int, default=10_000, help="n = m of the shared-core table")
    a.add_argument("--dim", type=int, default=16)
    a.add_argument("--rounds", type=int, default=3)
    a.add_argument("--perm-size", type=int, default=4000, help="N of the permutation product")
    a.add_argument("--perm-columns", type=int, default=200, help="label columns B of the permutation product")
    a.add_argument("--scaling-size", type=int, default=20_000, help="n = m of the scaling rows (0: skip)")
    args = a.parse_args(argv)
    default = torch.get_num_threads()
    print(f"torch {torch.__version__}, {default} default threads, engine workers {engine_threads()}\n")
    table(args.size, args.dim, args.rounds, args.perm_size, args.perm_columns, default)
    if args.scaling_size:
        print()
        scaling(args.scaling_size, args.dim, args.rounds, default)
    torch.set_num_threads(default)


if __name__ == "__main__":
    main()
