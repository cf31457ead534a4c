"""Benchmark fixtures (helpers that bench files import live in benchutil.py)."""
import time

import pytest
import torch


@pytest.fixture(scope="session")
def matmul_gflops():
    """This machine's float32 matmul rate (GFLOP/s) on a (4096, 66) x (66, 4096) product,
    the shape of the distance tile at d = 64, measured once per run."""
    a, b = torch.randn(4096, 66), torch.randn(66, 4096)
    a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 4096 * 4096 * 66 / best / 1e9
