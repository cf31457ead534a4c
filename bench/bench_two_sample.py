"""Permutation two-sample tests: energy_test against dcor.homogeneity.energy_test
(same float64 data, same number of permutations) and mmd_test alone, at the
issue's sizes (``MMDKIT_BENCH=full``): n = m in {500, 2000}, d = 16, P = 1000,
and n = m = 20000, d = 8, P = 100 (time and peak RSS in a fresh process).

dcor's time for P permutations is measured with 0 and ``DCOR_RESAMPLES``
permutations and extrapolated linearly, t(P) = t(0) + P (t(R) - t(0)) / R,
when P > R; ``extra_info`` says so (``dcor_extrapolated_from``). At n = 20000
dcor would need a 40000^2 float64 distance matrix (12.8 GB), so it is skipped.

Also runnable as a script (the fresh-process measurement):

    python bench/bench_two_sample.py --test mmd --n 20000 --d 8 --permutations 100
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchutil import peak_rss_mib, sizes

DCOR_RESAMPLES = 20
SHIFT = 0.05  # a small mean shift: the p-value is informative, not 1/(P+1) at every size

GRID = sizes([(500, 16, 1000), (2000, 16, 1000)], [(200, 4, 50)])
BIG = sizes([(20000, 8, 100)], [(1000, 8, 20)])


def _data(n, d, dtype):
    from mmdkit.kernels.reference import make_pair
    import torch
    X, Y = make_pair(n, n, d, shift=SHIFT, dtype=torch.float64)
    return X.numpy().astype(dtype), Y.numpy().astype(dtype)


def _mmdkit_run(test, X, Y, P):
    import mmdkit
    f = mmdkit.energy_test if test == "energy" else mmdkit.mmd_test
    return f(X, Y, n_permutations=P, seed=0, progress=False)


def _dcor_seconds(X, Y, P):
    """(seconds for P permutations, resamples actually run)."""
    import dcor
    R = min(P, DCOR_RESAMPLES)
    t0 = time.perf_counter()
    dcor.homogeneity.energy_test(X, Y, num_resamples=0, random_state=0)
    fixed = time.perf_counter() - t0
    t0 = time.perf_counter()
    dcor.homogeneity.energy_test(X, Y, num_resamples=R, random_state=0)
    with_r = time.perf_counter() - t0
    if R == P:
        return with_r, R
    return fixed + P * max(with_r - fixed, 0.0) / R, R


def _info(benchmark, *, test, impl, n, d, P, dtype, seconds, **extra):
    N = 2 * n
    benchmark.extra_info.update(dict(
        test=test, backend=impl, n=n, m=n, d=d, n_permutations=P, dtype=dtype, seconds=seconds,
        permutations_per_s=P / seconds if seconds else None,
        # the engine's half product: N^2 / 2 kernel values times (P + 1) columns, 2 flops each
        gflops=N * N * (P + 1) / seconds / 1e9 if seconds and impl == "mmdkit" else None,
        load_average=os.getloadavg()[0], **extra))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n, d, P", GRID, ids=[f"n{n}-d{d}-P{P}" for n, d, P in GRID])
@pytest.mark.parametrize("test", ["energy", "mmd"])
def test_mmdkit(benchmark, test, n, d, P, dtype):
    X, Y = _data(n, d, dtype)
    out = {}

    def run():
        t0 = time.perf_counter()
        out["res"] = _mmdkit_run(test, X, Y, P)
        out["seconds"] = time.perf_counter() - t0

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    if "res" not in out:
        run()
    res = out["res"]
    assert res.n_permutations == P and 0 < res.pvalue <= 1
    _info(benchmark, test=test, impl="mmdkit", n=n, d=d, P=P, dtype=dtype, seconds=out["seconds"],
          method=res.method, pvalue=res.pvalue, statistic=res.statistic)


@pytest.mark.parametrize("n, d, P", GRID, ids=[f"n{n}-d{d}-P{P}" for n, d, P in GRID])
def test_dcor_energy(benchmark, n, d, P):
    pytest.importorskip("dcor")
    X, Y = _data(n, d, "float64")
    out = {}

    def run():
        out["seconds"], out["resamples"] = _dcor_seconds(X, Y, P)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    if "seconds" not in out:
        run()
    _info(benchmark, test="energy", impl="dcor", n=n, d=d, P=P, dtype="float64", seconds=out["seconds"],
          dcor_extrapolated_from=None if out["resamples"] == P else out["resamples"])


@pytest.mark.parametrize("n, d, P", BIG, ids=[f"n{n}-d{d}-P{P}" for n, d, P in BIG])
def test_mmd_test_large_fresh_process(benchmark, n, d, P):
    """Time and peak RSS of mmd_test in a process of its own (float32 data)."""
    args = [sys.executable, str(Path(__file__)), "--test", "mmd", "--n", str(n), "--d", str(d),
            "--permutations", str(P)]
    out = {}

    def run():
        out.update(json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout))

    benchmark.pedantic(run, rounds=1, iterations=1)
    if not out:
        run()
    benchmark.extra_info.update(out, backend="mmdkit", load_average=os.getloadavg()[0])
    assert out["n_permutations"] == P and out["peak_rss_mib"] > 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", choices=["mmd", "energy"], default="mmd")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--permutations", type=int, default=100)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    X, Y = _data(a.n, a.d, a.dtype)
    before = peak_rss_mib()
    t0 = time.perf_counter()
    res = _mmdkit_run(a.test, X, Y, a.permutations)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    print(json.dumps(dict(test=a.test, n=a.n, m=a.n, d=a.d, n_permutations=res.n_permutations, dtype=a.dtype,
                          seconds=round(seconds, 3), peak_rss_mib=round(peak, 1),
                          rss_before_mib=round(before, 1), method=res.method, pvalue=res.pvalue,
                          statistic=res.statistic, load_average=os.getloadavg()[0])))


if __name__ == "__main__":
    main()
