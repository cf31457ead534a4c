"""Shared benchmark helpers (grid selection, extra_info). ``MMDKIT_BENCH=full``
runs the issues' full grids; the default is a smoke grid that CI runs with
``--benchmark-disable`` so the benchmarks never rot."""
import os
import resource
from pathlib import Path

FULL = os.environ.get("MMDKIT_BENCH") == "full"


def sizes(full, smoke):
    """The parameter grid for this run."""
    return full if FULL else smoke

def record(benchmark, matmul_gflops, *, n, m, d, dtype, backend, pairs, flops, **extra):
    """Store shape, dtype, backend, pairs/s and effective GFLOP/s in extra_info."""
    stats = benchmark.stats.stats if benchmark.stats is not None else None
    info = dict(n=n, m=m, d=d, dtype=str(dtype).replace("torch.", ""), backend=backend, **extra)
    if stats is not None and getattr(stats, "min", 0):
        info["pairs_per_s"] = pairs / stats.min
        info["gflops"] = flops / stats.min / 1e9
        info["gflops_vs_matmul"] = info["gflops"] / matmul_gflops
    benchmark.extra_info.update(info)


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not inherit the parent's peak across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_pair_statistic(benchmark, matmul_gflops, f, impl, n, d, mode):
    """Time ``f(X, Y)`` (mode "fwd") or it and its gradients ("fwd+bwd") on make_pair(n, n, d)
    and record pairs/s and GFLOP/s (2 (d + 2) flops per distinct pooled pair)."""
    import torch
    from mmdkit.kernels.reference import make_pair

    X, Y = make_pair(n, n, d, shift=0.5)
    if mode == "fwd":
        run = lambda: f(X, Y)
    else:
        Xr, Yr = X.clone().requires_grad_(), Y.clone().requires_grad_()
        run = lambda: torch.autograd.grad(f(Xr, Yr), [Xr, Yr])
    benchmark.pedantic(run, rounds=3 if n >= 10000 else 5, warmup_rounds=1)
    pairs = (2 * n) ** 2 / 2  # distinct pairs of the pooled sample (the engine uses symmetry)
    record(benchmark, matmul_gflops, n=n, m=n, d=d, dtype=X.dtype, backend=impl, pairs=pairs,
           flops=pairs * 2 * (d + 2), mode=mode)


def fresh_process(benchmark, args) -> dict:
    """Run ``args`` (a script printing one JSON line) once under ``benchmark`` in a fresh process
    (peak RSS needs a process of its own); its JSON goes into extra_info and is returned."""
    import json
    import subprocess
    out = {}

    def run():
        out.update(json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout))

    benchmark.pedantic(run, rounds=1, iterations=1)
    if not out:  # --benchmark-disable still calls run once
        run()
    benchmark.extra_info.update(out)
    return out
