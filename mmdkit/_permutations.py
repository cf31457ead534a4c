"""Permutations and p-values: the pieces every permutation test shares.

Relabelling b of the pooled indices 0..N-1 gives each index a keyed 32-bit
score s_b(i) (:func:`x_masks`: SCORE_ROUNDS keyed rounds of a bijective
integer hash, so s_b is injective on [0, N)) and labels X the n points of
smallest score; :func:`permute` gives the ranks pi_b(i) of the scores, the
bijection of [0, N) whose values below n are those points. So the labels of
permutation b are a function of (key, b, N, n) alone: any subset of rows (a
shard of a process group) or batch of permutations gets the same labels
without the others, and the same seed gives the same draws on every backend
and every number of processes. Drawing a labelling costs a hash per index
and a selection (``np.partition``) per permutation. The
key (two 32-bit words) is drawn from the seed's torch.Generator. The labels
are written as label matrices E (N, B) with
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
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from mmdkit._progress import Progress
from mmdkit.estimators import mmd2_from_sums
from mmdkit.kernels import Backend, KernelSpec, label_block

__all__ = ["generator", "permutation_key", "permute", "x_masks", "null_statistics", "all_finite", "pvalue",
           "tolerance"]

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
        if not 0 <= seed < 2**64:  # torch.Generator.manual_seed's range
            raise ValueError(f"`seed` must be a non-negative integer below 2^64, got {seed}")
        g.manual_seed(int(seed))
    else:
        raise TypeError(f"`seed` must be None, an int or a torch.Generator, got {type(seed).__name__}")
    return g


# Rounds of the keyed hash. The labellings of tiny pools (N = 6 .. 13) pass the chi-square test of
# uniformity in tests/test_permutations.py (100 000 draws) with one round already (p >= 0.17); the second
# is a margin.
SCORE_ROUNDS = 2
CHUNK = 1 << 16  # elements hashed at a time (two uint32 blocks: 512 KiB, an L2; 1 << 15 was 1.1x slower)
_U32 = np.uint32


def _mix32(x: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """A 32-bit integer hash with full avalanche (Wellons' "lowbias32"), in place on uint32 ``x``."""
    x ^= np.right_shift(x, _U32(16), out=tmp)
    x *= _U32(0x7FEB352D)  # uint32 products wrap modulo 2^32 (numpy's defined unsigned arithmetic)
    x ^= np.right_shift(x, _U32(15), out=tmp)
    x *= _U32(0x846CA68B)
    x ^= np.right_shift(x, _U32(16), out=tmp)
    return x


def permutation_key(gen: torch.Generator) -> np.ndarray:
    """The two 32-bit key words of a permutation stream, drawn from ``gen``."""
    return torch.randint(0, 2**32, (2,), generator=gen, dtype=torch.int64).numpy().astype(_U32)


def _round_keys(key: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """(SCORE_ROUNDS, B, 1) uint32 round keys of the permutations numbered ``perms``."""
    b = np.asarray(perms).astype(_U32)
    tmp = np.empty_like(b)
    with np.errstate(over="ignore"):
        base = _mix32(_mix32(b ^ key[0], tmp) ^ key[1], tmp)
        rounds = [_mix32(base ^ _mix32(np.full_like(b, r + 1), tmp), tmp) for r in range(SCORE_ROUNDS)]
    return np.stack(rounds)[:, :, None]


def _score_blocks(keys: np.ndarray, N: int):
    """(r0, block): the (R, N) uint32 scores s_b(i) = mix(... mix(mix(i ^ k_1) ^ k_2) ...) of every index
    i < N for permutations r0 .. r0 + R - 1 of ``keys``, in blocks of about CHUNK scores (they stay in
    cache for the selection); each block is overwritten by the next."""
    idx = np.arange(N, dtype=_U32)
    step = max(1, min(CHUNK // N, keys.shape[1]))
    buf, tmp = np.empty((step, N), _U32), np.empty((step, N), _U32)
    with np.errstate(over="ignore"):
        for r0 in range(0, keys.shape[1], step):
            rows = min(step, keys.shape[1] - r0)
            block, t = buf[:rows], tmp[:rows]
            np.copyto(block, idx)
            for kr in keys[:, r0:r0 + step]:
                block ^= kr
                _mix32(block, t)
            yield r0, block


def x_masks(key: np.ndarray, perms: np.ndarray, rows: np.ndarray | None, N: int, n: int) -> np.ndarray:
    """Boolean (B, len(rows)): True where relabelling b labels point ``rows[j]`` X, i.e. where s_b(i) is
    among the n smallest of s_b(0), ..., s_b(N - 1) (no ties: s_b is injective). ``rows`` None: all N."""
    if not 1 <= n <= N <= 2**32:
        raise ValueError(f"labellings of n = {n} of N = {N} points: need 1 <= n <= N <= 2^32")
    keys = _round_keys(key, perms)
    out = np.empty((keys.shape[1], N if rows is None else len(rows)), bool)

    def fill(p0: int, p1: int) -> None:  # relabellings p0 .. p1 - 1 into out[p0:p1]
        for r0, s in _score_blocks(keys[:, p0:p1], N):
            kth = np.partition(s, n - 1, axis=1)[:, n - 1:n]  # the n-th smallest score of each relabelling
            np.less_equal(s if rows is None else s[:, rows], kth, out=out[p0 + r0:p0 + r0 + s.shape[0]])

    # numpy's hash and selection release the GIL: split the relabellings over torch's threads (each part
    # is computed as it would be alone, so the labels never depend on the split)
    parts = max(1, min(torch.get_num_threads(), keys.shape[1], keys.shape[1] * N // (2 * CHUNK)))
    bounds = np.linspace(0, keys.shape[1], parts + 1).astype(int)
    if parts == 1:
        fill(0, keys.shape[1])
    else:
        list(_pool(parts).map(fill, bounds[:-1], bounds[1:]))
    return out


_POOL: dict = {}  # the label threads: workers, pool and the process that made them


def _pool(workers: int) -> ThreadPoolExecutor:
    """A thread pool of at least ``workers`` threads, reused; a new one in a forked child, whose copy of
    the parent's pool has no threads."""
    if _POOL.get("pid") != os.getpid() or _POOL["workers"] < workers:
        _POOL.update(pid=os.getpid(), workers=workers,
                     pool=ThreadPoolExecutor(workers, thread_name_prefix="mmdkit-labels"))
    return _POOL["pool"]


def permute(key: np.ndarray, perms: np.ndarray, idx: np.ndarray, N: int) -> np.ndarray:
    """pi_b(i), the rank of s_b(i) among s_b(0..N-1), for every b in ``perms`` and i in ``idx``: (B, len(idx))
    int64. pi_b is a bijection of [0, N), and pi_b(i) < n exactly where :func:`x_masks` labels i X."""
    if not 1 <= N <= 2**32:
        raise ValueError(f"permutations of N = {N} points: N must lie in [1, 2^32]")
    keys = _round_keys(key, perms)
    order = np.empty((keys.shape[1], N), np.int64)
    for r0, s in _score_blocks(keys, N):
        order[r0:r0 + s.shape[0]] = np.argsort(s, axis=1)
    ranks = np.empty(order.shape, np.int64)
    np.put_along_axis(ranks, order, np.arange(N, dtype=np.int64)[None], axis=1)
    return ranks[:, idx]


def _x_masks(gen: torch.Generator, n: int, N: int, count: int, exact: bool, batch: int, rows: np.ndarray | None):
    """Boolean (B, len(rows)) blocks: True where a point of ``rows`` (global indices; None: all) is labelled X.

    Exact: all C(N, n) subsets in lexicographic order (the identity first).
    Random: :func:`x_masks` of relabellings b0 .. b0 + B - 1, so a block of
    permutations never depends on the batching, nor on which rows a process holds.
    """
    if exact:
        combos = itertools.combinations(range(N), n)
        while block := list(itertools.islice(combos, batch)):
            mask = np.zeros((len(block), N), bool)
            np.put_along_axis(mask, np.array(block), True, axis=1)
            yield mask if rows is None else mask[:, rows]
        return
    key = permutation_key(gen)
    for b0 in range(0, count, batch):
        yield x_masks(key, np.arange(b0, min(b0 + batch, count)), rows, N, n)


def _labels(mask: np.ndarray, n: int, m: int, dtype: torch.dtype, first: np.ndarray | None = None) -> Tensor:
    """Label matrix (N, B) on the CPU, contiguous: m on the X-labelled points, -n elsewhere.

    ``mask`` is (B, N); ``first``, a boolean (N,) labelling, becomes an extra column 0 (the identity).
    """
    lead = 0 if first is None else 1
    E = label_block(mask.shape[1], lead + mask.shape[0], dtype)  # rows aligned: the engine takes it uncopied
    if first is not None:
        E[:, 0].copy_(torch.from_numpy(first))
    E[:, lead:].copy_(torch.from_numpy(mask).T)
    return E.mul_(m + n).sub_(n)  # 1 -> m, 0 -> -n (integers: exact in every float dtype)


def null_statistics(Z: Tensor, n: int, m: int, specs: list[KernelSpec], engine: Backend, unbiased: bool,
                    gen: torch.Generator, count: int, exact: bool, batch: int | None, memory_budget: int,
                    progress: bool | None, desc: str, sizes: tuple[int, int] | None = None):
    """MMD^2 (``unbiased`` or the V-statistic of K0) of the identity labelling and of every permutation.

    Returns (observed (S,), null (S, count), operator) for the S specs. The
    identity goes through the same product as the permutations, so its value
    is the one the p-value compares. On a sharded backend Z is this process's
    rows, ``sizes`` its X and Y row counts and n, m the global sample sizes;
    the operator names the global rows (``op.label_rows``) its labels cover.
    """
    N = n + m
    op = engine.permutation_sums(Z, specs, memory_budget, sizes)
    rows = getattr(op, "label_rows", None)  # None: all N
    item = torch.finfo(op.dtype).bits // 8
    if batch is None:
        batch = max(16, LABEL_BYTES // (2 * N * item))
    batch = min(batch, count + 1)
    bar = Progress((count + 1) * op.tiles, progress, desc)
    draws = _x_masks(gen, n, N, count, exact, batch, rows)
    identity = (np.arange(N) if rows is None else rows) < n
    observed = np.empty(len(specs))
    null = np.empty((len(specs), count))
    done, first = 0, True
    try:
        while first or done < count:
            mask = next(draws)
            take = mask.shape[0]
            E = _labels(mask, n, m, op.dtype, identity if first else None)
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


def all_finite(observed, null: np.ndarray) -> bool:
    """True when the statistic(s) and every permutation value are finite; else False with a RuntimeWarning."""
    if np.isfinite(observed).all() and np.isfinite(null).all():
        return True
    warnings.warn(f"no p-value (NaN): of the test statistic(s) {np.asarray(observed).ravel()[:4]} and their "
                  f"{null.size} permutation values, {np.count_nonzero(~np.isfinite(observed))} and "
                  f"{np.count_nonzero(~np.isfinite(null))} are not finite", RuntimeWarning, stacklevel=4)
    return False


def pvalue(null: np.ndarray, observed: float, alternative: str, exact: bool, dtype) -> float:
    """(adj + #{null at least as extreme}) / (adj + P), adj = 0 for an exact test (scipy's rule).

    NaN, with a RuntimeWarning, when the statistic or a permutation value is not finite: no count of
    comparisons with a NaN is a p-value (scipy's tests likewise return NaN where the statistic is
    undefined, as ``pearsonr`` on constant input, rather than raise).
    """
    if not all_finite(observed, null):
        return math.nan
    adj = 0 if exact else 1
    gamma = tolerance(observed, dtype)
    greater = (np.count_nonzero(null >= observed - gamma) + adj) / (null.size + adj)
    less = (np.count_nonzero(null <= observed + gamma) + adj) / (null.size + adj)
    p = {"greater": greater, "less": less, "two-sided": 2 * min(greater, less)}[alternative]
    return float(min(max(p, 0.0), 1.0))
