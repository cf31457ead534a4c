"""Permutations and p-values: the pieces every permutation test shares.

Relabelling b of the pooled indices 0..N-1 is a keyed pseudo-random
bijection pi_b of [0, N) (:func:`permute`: a Feistel network on 32-bit
words with cycle-walking); point i is labelled X when pi_b(i) < n. So the
label of global row i under permutation b is a function of (key, b, i)
alone: any subset of rows (a shard of a process group, a batch of
permutations) gets the same labels without the others, and the same seed
gives the same draws on every backend and every number of processes. The
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

import numpy as np
import torch
from torch import Tensor

from mmdkit._progress import Progress
from mmdkit.estimators import mmd2_from_sums
from mmdkit.kernels import Backend, KernelSpec

__all__ = ["generator", "permutation_key", "permute", "null_statistics", "pvalue", "tolerance"]

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


# Rounds of the Feistel network: 12 make the labellings of tiny pools (N = 6 .. 13) pass a chi-square test
# of uniformity over 200 000 draws (p >= 0.17); 6 fail it (p < 1e-38). tests/test_permutations.py checks this.
FEISTEL_ROUNDS = 12
CHUNK = 1 << 15  # elements hashed at a time (the temporaries stay in L2)
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
    """(FEISTEL_ROUNDS, B, 1) uint32 round keys of the permutations numbered ``perms``."""
    b = np.asarray(perms).astype(_U32)
    tmp = np.empty_like(b)
    with np.errstate(over="ignore"):
        base = _mix32(_mix32(b ^ key[0], tmp) ^ key[1], tmp)
        rounds = [_mix32(base ^ _mix32(np.full_like(b, r + 1), tmp), tmp) for r in range(FEISTEL_ROUNDS)]
    return np.stack(rounds)[:, :, None]


def _feistel(v: np.ndarray, keys: np.ndarray, h: int) -> np.ndarray:
    """One pass of the keyed Feistel network on 2h-bit values ``v`` (B', C) with round keys (R, B', 1)."""
    mask = _U32((1 << h) - 1)
    L, R = v >> _U32(h), v & mask
    t, tmp = np.empty_like(R), np.empty_like(R)
    for kr in keys:
        np.bitwise_xor(R, kr, out=t)
        _mix32(t, tmp)
        t &= mask
        t ^= L
        L, R, t = R, t, L  # (L, R) <- (R, L ^ F(R)); the old L's buffer is reused
    return (L << _U32(h)) | R


def permute(key: np.ndarray, perms: np.ndarray, idx: np.ndarray, N: int) -> np.ndarray:
    """pi_b(i) for every permutation b in ``perms`` and index i in ``idx``: (B, len(idx)) int64.

    pi_b is a bijection of [0, N) (N <= 2^32): a balanced Feistel network of
    FEISTEL_ROUNDS rounds on 2h bits (2^(2h) >= N, round function a keyed
    32-bit hash), applied again to values >= N until they fall in [0, N)
    (cycle-walking keeps it a bijection). Exact integer arithmetic: the same
    numbers on every machine, whatever the batching of ``perms`` and ``idx``.
    """
    if not 1 <= N <= 2**32:
        raise ValueError(f"permutations of N = {N} points: N must lie in [1, 2^32]")
    h = max(1, ((N - 1).bit_length() + 1) // 2)
    keys = _round_keys(key, perms)  # (rounds, B, 1)
    y = _feistel_rows(np.asarray(idx, dtype=_U32), keys, h)
    with np.errstate(over="ignore"):
        tail = (1 << (2 * h)) - N  # values the network can reach outside [0, N)
        if tail and tail <= 2 * max(y.shape[1], 1):
            _walk_by_table(y, keys, h, N)
        else:
            _walk(y, keys, h, N)
    return y.astype(np.int64)


def _feistel_rows(idx: np.ndarray, keys: np.ndarray, h: int) -> np.ndarray:
    """(B, len(idx)) uint32: the network of permutation b (keys[:, b]) on every index, in cache-sized row blocks."""
    y = np.empty((keys.shape[1], idx.size), _U32)
    step = max(1, CHUNK // max(idx.size, 1))
    with np.errstate(over="ignore"):
        for r0 in range(0, y.shape[0], step):
            y[r0:r0 + step] = _feistel(np.broadcast_to(idx, (min(step, y.shape[0] - r0), idx.size)),
                                       keys[:, r0:r0 + step], h)
    return y


def _walk(y: np.ndarray, keys: np.ndarray, h: int, N: int) -> None:
    """Cycle-walking in place: apply the network again to the values >= N until they fall in [0, N)."""
    rows, cols = np.nonzero(y >= N)
    while rows.size:  # ~1 more pass for a few values (2^(2h) < 4 N)
        v = _feistel(y[rows, cols][:, None], keys[:, rows], h)[:, 0]
        y[rows, cols] = v
        keep = v >= N
        rows, cols = rows[keep], cols[keep]


def _walk_by_table(y: np.ndarray, keys: np.ndarray, h: int, N: int) -> None:
    """:func:`_walk` with the same result, for many indices per permutation: the network's values on the
    whole tail [N, 2^(2h)) once per permutation (contiguous rows, the fast path), then the walks as
    lookups in that table (no network evaluations on scattered values)."""
    tail, cols = (1 << (2 * h)) - N, y.shape[1]
    table = _feistel_rows(np.arange(N, N + tail, dtype=_U32), keys, h).reshape(-1)  # one step from each tail value
    pos = np.flatnonzero(y >= N)  # flat positions in y still walking
    v = y.reshape(-1)[pos].astype(np.int64)
    base = pos // cols * tail - N  # table[base + v] = one step from v under the row's permutation
    while pos.size:
        v = table[base + v]
        done = v < N
        y.reshape(-1)[pos[done]] = v[done]
        keep = ~done
        pos, v, base = pos[keep], v[keep], base[keep]


def _x_masks(gen: torch.Generator, n: int, N: int, count: int, exact: bool, batch: int, rows: np.ndarray):
    """Boolean (B, len(rows)) blocks: True where a point of ``rows`` (global indices) is labelled X.

    Exact: all C(N, n) subsets in lexicographic order (the identity first).
    Random: relabelling b labels i as X when pi_b(i) < n (:func:`permute`), so a
    block of permutations never depends on the batching, nor on which rows a
    process holds.
    """
    if exact:
        combos = itertools.combinations(range(N), n)
        while block := list(itertools.islice(combos, batch)):
            mask = np.zeros((len(block), N), bool)
            np.put_along_axis(mask, np.array(block), True, axis=1)
            yield mask[:, rows]
        return
    key = permutation_key(gen)
    for b0 in range(0, count, batch):
        yield permute(key, np.arange(b0, min(b0 + batch, count)), rows, N) < n


def _labels(mask: np.ndarray, n: int, m: int, dtype: torch.dtype) -> Tensor:
    """Label matrix (N, B) on the CPU: m on the X-labelled points, -n elsewhere (a transposed view)."""
    E = torch.full(mask.shape, float(-n), dtype=dtype)
    E.masked_fill_(torch.from_numpy(mask), float(m))
    return E.T


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
    rows = getattr(op, "label_rows", None)
    rows = np.arange(N) if rows is None else rows
    item = torch.finfo(op.dtype).bits // 8
    if batch is None:
        batch = max(16, LABEL_BYTES // (2 * N * item))
    batch = min(batch, count + 1)
    bar = Progress((count + 1) * op.tiles, progress, desc)
    draws = _x_masks(gen, n, N, count, exact, batch, rows)
    identity = _labels((rows < n)[None], n, m, op.dtype)
    observed = np.empty(len(specs))
    null = np.empty((len(specs), count))
    done, first = 0, True
    try:
        while first or done < count:
            E = _labels(next(draws), n, m, op.dtype)
            take = E.shape[1]
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
