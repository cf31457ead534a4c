"""Permutations and p-values: the pieces every permutation test shares.

Relabellings are drawn on the CPU from a torch.Generator (the same seed gives
the same draws on every backend), written as label matrices E (N, B) with
e_i = m on the points labelled X and -n elsewhere (integers, exact in every
float dtype), and pushed through the engine's permutation product
(``Backend.permutation_sums``: q = diag(E' K0 E), u = E' K0 1, S = 1' K0 1 with
K0 the kernel matrix of the pooled sample, zero diagonal). With a = (e + n) / N
the indicator of the X-labelled points, the block sums of each relabelling are

    Sxx = (q + 2 n u + n^2 S) / N^2,   Syy = (q - 2 m u + m^2 S) / N^2,   Sxy = (u + n S) / N - Sxx,

and :func:`mmdkit.estimators.mmd2_from_sums` turns them into the statistic,
so a batch of B permutations costs one (N x N) @ (N x B) product.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from mmdkit._progress import Progress
from mmdkit.estimators import mmd2_from_sums
from mmdkit.kernels import Backend, KernelSpec

__all__ = ["generator", "null_statistics", "pvalue", "tolerance"]

LABEL_BYTES = 64 * 2**20  # automatic batch: label and product blocks of about this size


def generator(seed) -> torch.Generator:
    """A CPU torch.Generator from ``seed``: None (fresh entropy), an int, a torch or numpy Generator."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError(f"`seed` must be a CPU torch.Generator (permutations are drawn on the CPU "
                             f"so every backend sees the same ones), got one on {seed.device}")
        return seed
    g = torch.Generator()
    if seed is None:
        g.seed()
    elif isinstance(seed, np.random.Generator):
        g.manual_seed(int(seed.integers(2**63)))
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {seed}")
        g.manual_seed(int(seed))
    else:
        raise TypeError(f"`seed` must be None, an int or a torch.Generator, got {type(seed).__name__}")
    return g


def _x_indices(gen: torch.Generator, n: int, N: int, count: int, exact: bool):
    """Indices of the X-labelled points of each relabelling: all C(N, n) subsets in
    lexicographic order (the identity first) when exact, else the first n entries of
    one torch.randperm(N) per permutation (so batching never changes the draws)."""
    if exact:
        yield from (torch.tensor(c) for c in itertools.combinations(range(N), n))
    else:
        for _ in range(count):
            yield torch.randperm(N, generator=gen)[:n]


def _labels(rows: list[Tensor], n: int, m: int, dtype: torch.dtype) -> Tensor:
    """Label matrix (N, B) on the CPU: m on the X-labelled points, -n elsewhere (a transposed view)."""
    E = torch.full((len(rows), n + m), float(-n), dtype=dtype)
    if rows:
        E.scatter_(1, torch.stack(rows), float(m))  # row-wise scatter: contiguous writes
    return E.T


def null_statistics(Z: Tensor, n: int, m: int, specs: list[KernelSpec], engine: Backend, unbiased: bool,
                    gen: torch.Generator, count: int, exact: bool, batch: int | None, memory_budget: int,
                    progress: bool | None, desc: str):
    """MMD^2 (``unbiased`` or the V-statistic of K0) of the identity labelling and of every permutation.

    Returns (observed (S,), null (S, count), operator) for the S specs. The
    identity goes through the same product as the permutations, so its value
    is the one the p-value compares.
    """
    N = n + m
    op = engine.permutation_sums(Z, specs, memory_budget)
    item = torch.finfo(op.dtype).bits // 8
    if batch is None:
        batch = max(16, LABEL_BYTES // (2 * N * item))
    batch = min(batch, count + 1)
    bar = Progress((count + 1) * op.tiles, progress, desc)
    draws = _x_indices(gen, n, N, count, exact)
    identity = torch.tensor([float(m)] * n + [float(-n)] * m, dtype=op.dtype)[:, None]
    observed = np.empty(len(specs))
    null = np.empty((len(specs), count))
    done, first = 0, True
    try:
        while first or done < count:
            take = min(count - done, batch - first)
            E = _labels([next(draws) for _ in range(take)], n, m, op.dtype)
            if first:
                E = torch.cat([identity, E], 1)
            for s, (q, u, total) in enumerate(op(E.to(device=Z.device), bar)):
                Sxx = (q + 2 * n * u + n * n * total) / N**2
                Syy = (q - 2 * m * u + m * m * total) / N**2
                Sxy = (u + n * total) / N - Sxx
                values = mmd2_from_sums(Sxx, Sxy, Syy, n, m, unbiased).cpu().numpy()
                if first:
                    observed[s], values = values[0], values[1:]
                null[s, done:done + take] = values
            done, first = done + take, False
    finally:
        bar.close()
    return observed, null, op


def tolerance(values, dtype: torch.dtype):
    """scipy's tie tolerance: 100 eps |value| (eps of the dtype the null was computed in)."""
    return np.abs(values) * (100 * torch.finfo(dtype).eps)


def pvalue(null: np.ndarray, observed: float, alternative: str, exact: bool, dtype) -> float:
    """(adj + #{null at least as extreme}) / (adj + P), adj = 0 for an exact test (scipy's rule)."""
    adj = 0 if exact else 1
    gamma = tolerance(observed, dtype)
    greater = (np.count_nonzero(null >= observed - gamma) + adj) / (null.size + adj)
    less = (np.count_nonzero(null <= observed + gamma) + adj) / (null.size + adj)
    p = {"greater": greater, "less": less, "two-sided": 2 * min(greater, less)}[alternative]
    return float(min(max(p, 0.0), 1.0))
