"""Sharded statistics over torch.distributed: each rank passes its rows, every rank gets the global value.

Call these on every rank of a process group (gloo on CPUs, NCCL on GPUs)
with that rank's rows of X and of Y (any sizes; a rank may hold none of one
sample). The result on every rank is what the single-process function
returns on the gathered data, where X is the ranks' X shards concatenated
in rank order and Y the same way (float64: equal up to rounding, the sums
being ordered differently; p-values equal for the same seed):

Under ``torchrun --nproc-per-node 2 script.py`` (X_mine, Y_mine: this rank's rows):

>>> import torch.distributed as dist                      # doctest: +SKIP
>>> from mmdkit import distributed as sharded             # doctest: +SKIP
>>> dist.init_process_group("gloo")                       # doctest: +SKIP
>>> sharded.mmd2_unbiased(X_mine, Y_mine)                 # doctest: +SKIP
>>> sharded.mmd_test(X_mine, Y_mine, seed=0).pvalue       # doctest: +SKIP

The first is the MMD^2 of all ranks' rows, on every rank; the second equals
``mmdkit.mmd_test(X, Y, seed=0).pvalue`` on the gathered X and Y.

The statistics run on :class:`mmdkit.kernels.ring.RingBackend` (shards
travel a ring; labels of permutations are computed locally from the seed).
Validation is global: every rank checks its rows, then all ranks agree on
the first error (naming the rank) before any collective could wait for a
rank that has failed; arguments that must agree (kernel, bandwidth, seed,
...) are compared across ranks. The bandwidth "median" uses the same
subsample of the gathered data as one process (by global index).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from mmdkit._permutations import generator, null_statistics, pvalue
from mmdkit._validation import as_tensor, check_int, spec_of
from mmdkit.bandwidth import _median_distance, resolve_kernel
from mmdkit.estimators import mmd2_from_sums
from mmdkit.kernels import Energy, Mixture, RingBackend, compute_dtype, get_backend
from mmdkit.results import TwoSampleTestResult
from mmdkit.two_sample import ALTERNATIVES, DEFAULT_MEMORY_BUDGET

__all__ = ["mmd2", "mmd2_unbiased", "mmd2_biased", "mmd2_linear", "energy_distance", "witness", "mmd_test",
           "energy_test"]

MEDIAN_POINTS = 2000  # as mmdkit.bandwidth.resolve_kernel


def _group_ok(group) -> None:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("mmdkit.distributed needs an initialised process group "
                           "(torch.distributed.init_process_group, e.g. under torchrun)")


def _shard(A, name: str) -> tuple[Tensor, bool]:
    """A local shard as a float tensor (rows, d); zero rows allowed (a rank may hold none of a sample)."""
    if isinstance(A, Tensor) and A.ndim == 2 and A.shape[0] == 0:
        return (A if A.is_floating_point() else A.to(torch.get_default_dtype())), False
    if not isinstance(A, Tensor) and np.ndim(A) == 2 and np.shape(A)[0] == 0:
        arr = np.asarray(A)
        return torch.from_numpy(arr.astype(arr.dtype if arr.dtype.kind == "f" else np.float64)), True
    return as_tensor(A, name)


def _setup(X, Y, group, min_n: int, backend: str, precision: str, points=None, **must_agree):
    """Validated local shards, global sizes and the ring backend (collectives: two all-gathers).

    ``points`` (a rank's evaluation points T, or None) are validated in the same agreement,
    and come back as the last of the returned values (with "all inputs were numpy").
    """
    _group_ok(group)
    err, Xt, Yt, Tt, numpy_in = None, None, None, None, False
    try:
        Xt, xn = _shard(X, "X")
        Yt, yn = _shard(Y, "Y")
        numpy_in = xn and yn
        if Xt.shape[1] != Yt.shape[1]:
            raise ValueError(f"`X` and `Y` must have the same number of columns (d), got {Xt.shape[1]} and "
                             f"{Yt.shape[1]}")
        dtype = torch.promote_types(Xt.dtype, Yt.dtype)
        Xt, Yt = Xt.to(dtype), Yt.to(dtype)
        named = [("X", Xt), ("Y", Yt)]
        if points is not None:
            Tt, tn = _shard(points, "T")
            if Tt.shape[1] != Xt.shape[1]:
                raise ValueError(f"`T` must have d = {Xt.shape[1]} columns like `X`, got {Tt.shape[1]}")
            Tt, numpy_in = Tt.to(Xt.device, dtype), numpy_in and tn
            named.append(("T", Tt))
        for name, A in named:
            bad = int((~torch.isfinite(A.detach())).sum())
            if bad:
                raise ValueError(f"`{name}` contains {bad} NaN or infinite value(s)")
    except (TypeError, ValueError) as e:
        err = str(e)
    shape = None if err else (int(Xt.shape[1]), str(Xt.dtype), numpy_in)
    # d, dtype and the kind of input must agree; a failing rank sends its error instead
    everyone = [None] * dist.get_world_size(group)
    dist.all_gather_object(everyone, (err, shape, None if err else (int(Xt.shape[0]), int(Yt.shape[0])),
                                      must_agree), group=group)
    for r, (e, *_rest) in enumerate(everyone):
        if e is not None:
            raise ValueError(f"rank {r}: {e}")
    for what, pos in (("d, dtype and input type (numpy or torch)", 1), ("arguments", 3)):
        vals = [w[pos] for w in everyone]
        if any(v != vals[0] for v in vals):
            if pos == 3:
                diff = [k for k in vals[0] if any(v.get(k) != vals[0][k] for v in vals)]
                raise ValueError(f"{', '.join(f'`{k}`' for k in diff)} must be the same on every rank, got "
                                 f"{[{k: v[k] for k in diff} for v in vals]}")
            raise ValueError(f"{what} must be the same on every rank, got {vals}")
    sizes = np.array([w[2] for w in everyone])
    n, m = int(sizes[:, 0].sum()), int(sizes[:, 1].sum())
    for name, total in (("X", n), ("Y", m)):
        if total < min_n:
            raise ValueError(f"`{name}` (gathered over the ranks) needs at least {min_n} points, got {total}")
    ring = RingBackend(get_backend(backend, Xt.device, Xt.dtype, precision), group)
    if points is not None:
        return Xt, Yt, numpy_in, n, m, ring, Tt
    return Xt, Yt, numpy_in, n, m, ring


def _median(Xt: Tensor, Yt: Tensor, n: int, m: int, ring: RingBackend) -> float:
    """The median heuristic on the single process's subsample of the gathered data (by global index)."""
    layout = ring.layout((Xt.shape[0], Yt.shape[0]), Xt.device)
    N = n + m
    want = set(torch.linspace(0, N - 1, MEDIAN_POINTS).long().tolist()) if N > MEDIAN_POINTS else None
    idx = layout.global_index(ring.rank)
    Z = torch.cat([Xt, Yt]).detach().cpu()
    keep = [i for i, g in enumerate(idx) if want is None or int(g) in want]
    parts = [None] * ring.world
    dist.all_gather_object(parts, (idx[keep], Z[keep].numpy()), group=ring.group)
    gi = np.concatenate([p[0] for p in parts])
    rows = np.concatenate([p[1] for p in parts])[np.argsort(gi, kind="stable")]
    return _median_distance(torch.from_numpy(rows), MEDIAN_POINTS)


def _spec(kernel, bandwidth, Xt, Yt, n, m, ring):
    """The resolved spec; bandwidth=None / 'median' from the gathered data."""
    spec = spec_of(kernel)
    if (bandwidth is None and spec.needs_bandwidth) or (isinstance(bandwidth, str) and bandwidth == "median"):
        bandwidth = _median(Xt, Yt, n, m, ring)
    return resolve_kernel(spec, bandwidth, Xt if Xt.shape[0] else Yt, None)


def _out(value: Tensor, numpy_in: bool, dtype):
    return float(value.detach()) if numpy_in else value.to(dtype)


def _gathered(A: Tensor, ring: RingBackend) -> Tensor:
    """The gathered sample on every rank, this rank's rows as they are (differentiable), the others detached."""
    parts = [None] * ring.world
    dist.all_gather_object(parts, A.detach().cpu().numpy(), group=ring.group)
    return torch.cat([A if r == ring.rank else torch.from_numpy(p).to(A) for r, p in enumerate(parts)])


def mmd2(X, Y, kernel="gaussian", bandwidth=None, estimator: str = "unbiased", group=None, backend: str = "auto",
         precision: str = "ieee"):
    """:func:`mmdkit.mmd2` of the gathered X and Y, from this rank's rows; differentiable in them.

    The gradient on each rank is that of the global statistic with respect to
    its own rows. "unbiased" and "biased" run on the ring; "linear" (O(N d))
    gathers the samples on every rank (O(N d) traffic, like the ring) and pairs
    rows by global index as one process does.
    """
    from mmdkit.estimators import ESTIMATORS, _mmd2
    if estimator not in ESTIMATORS:
        raise ValueError(f"`estimator` must be one of {ESTIMATORS}, got {estimator!r}")
    unbiased = estimator == "unbiased"
    Xt, Yt, numpy_in, n, m, ring = _setup(X, Y, group, 1 if estimator == "biased" else 2, backend, precision,
                                          kernel=repr(kernel), bandwidth=repr(bandwidth), estimator=estimator)
    spec = _spec(kernel, bandwidth, Xt, Yt, n, m, ring)
    if estimator == "linear":
        value = _mmd2(_gathered(Xt, ring), _gathered(Yt, ring), spec, "linear", ring.local)
        return _out(value, numpy_in, Xt.dtype)
    S = ring.block_sums(torch.cat([Xt, Yt]), (Xt.shape[0], Yt.shape[0]), spec, exclude_diagonal=unbiased)
    return _out(mmd2_from_sums(S[0, 0], S[0, 1], S[1, 1], n, m, unbiased), numpy_in, Xt.dtype)


def mmd2_unbiased(X, Y, kernel="gaussian", bandwidth=None, group=None, backend: str = "auto"):
    """:func:`mmdkit.mmd2_unbiased` of the gathered data (see :func:`mmd2`)."""
    return mmd2(X, Y, kernel, bandwidth, "unbiased", group, backend)


def mmd2_biased(X, Y, kernel="gaussian", bandwidth=None, group=None, backend: str = "auto"):
    """:func:`mmdkit.mmd2_biased` of the gathered data (see :func:`mmd2`)."""
    return mmd2(X, Y, kernel, bandwidth, "biased", group, backend)


def mmd2_linear(X, Y, kernel="gaussian", bandwidth=None, group=None, backend: str = "auto"):
    """:func:`mmdkit.mmd2_linear` of the gathered data (pairs by global index; see :func:`mmd2`)."""
    return mmd2(X, Y, kernel, bandwidth, "linear", group, backend)


def energy_distance(X, Y, unbiased: bool = False, exponent: float = 1.0, group=None, backend: str = "auto"):
    """:func:`mmdkit.energy_distance` of the gathered data (the pairwise sweep also for d = 1)."""
    Xt, Yt, numpy_in, n, m, ring = _setup(X, Y, group, 2 if unbiased else 1, backend, "ieee",
                                          unbiased=unbiased, exponent=exponent)
    spec = Energy(exponent=float(exponent))
    S = ring.block_sums(torch.cat([Xt, Yt]), (Xt.shape[0], Yt.shape[0]), spec, exclude_diagonal=unbiased)
    return _out(mmd2_from_sums(S[0, 0], S[0, 1], S[1, 1], n, m, unbiased), numpy_in, Xt.dtype)


def witness(X, Y, T, kernel="gaussian", bandwidth=None, group=None, backend: str = "auto"):
    """:func:`mmdkit.witness` of the gathered X, Y at this rank's points T (its own values; differentiable in T,
    not in X and Y; numpy out when X, Y and T are all numpy)."""
    Xt, Yt, numpy_in, n, m, ring, Tt = _setup(X, Y, group, 1, backend, "ieee", points=T, kernel=repr(kernel),
                                              bandwidth=repr(bandwidth))
    spec = _spec(kernel, bandwidth, Xt, Yt, n, m, ring)
    dt = compute_dtype(Xt.dtype)
    v = torch.cat([torch.full((Xt.shape[0], 1), 1.0 / n, dtype=torch.float64),
                   torch.full((Yt.shape[0], 1), -1.0 / m, dtype=torch.float64)]).to(Xt.device, dt)
    f = ring.kernel_matmul(Tt, torch.cat([Xt, Yt]), v, spec)[:, 0]
    f = f + _global_energy_offset(spec, Xt, Yt, n, m, ring)
    if Tt.shape[0] == 0 and Tt.requires_grad:  # a rank without points: still part of T's graph (zero gradient)
        f = f + Tt.sum() * 0
    out = f.to(Xt.dtype)
    return out.detach().numpy() if numpy_in else out


def _global_energy_offset(spec, Xt, Yt, n, m, ring) -> Tensor:
    """sum over Energy components of w (E||X||^b - E||Y||^b) over the gathered samples."""
    parts = spec.weighted if isinstance(spec, Mixture) else ((spec, 1.0),)
    total = torch.zeros((), dtype=torch.float64, device=Xt.device)
    for c, w in parts:
        if isinstance(c, Energy):
            s = torch.stack([c.anchor(Xt.detach().double()).sum(), c.anchor(Yt.detach().double()).sum()])
            ring.all_reduce(s)
            total = total + w * (s[0] / n - s[1] / m)
    return total


def _heads(Xt: Tensor, Yt: Tensor, rows: int, ring: RingBackend) -> tuple[Tensor, Tensor]:
    """The first ``rows`` rows of the gathered X and of the gathered Y, on every rank."""
    layout = ring.layout((Xt.shape[0], Yt.shape[0]), Xt.device)
    before = layout.sizes[:ring.rank].sum(0)
    mine = [A.detach().cpu()[:max(0, rows - int(b))].numpy() for A, b in ((Xt, before[0]), (Yt, before[1]))]
    parts = [None] * ring.world
    dist.all_gather_object(parts, mine, group=ring.group)
    return tuple(torch.from_numpy(np.concatenate([p[i] for p in parts])[:rows]).to(Xt.device) for i in (0, 1))


def _aggregated(Xt, Yt, n, m, ring, kernel, bandwidth, count, alpha, gen, batch, memory_budget, progress):
    """MMDAgg (:func:`mmdkit.aggregated.aggregated_test`) on the ring: its grid from the gathered first rows."""
    from mmdkit.aggregated import aggregated_test
    from mmdkit.bandwidth import GRID_POINTS, GRID_SIZE, _grid
    if not isinstance(kernel, Mixture) and (bandwidth is None or (isinstance(bandwidth, str) and bandwidth == "grid")):
        spec = spec_of(kernel)
        if isinstance(spec, Mixture) or not spec.has_bandwidth:
            raise ValueError(f"`bandwidth`='grid' needs a kernel with a bandwidth, got {spec.name}")
        bandwidth = list(_grid(*_heads(Xt, Yt, GRID_POINTS, ring), spec, GRID_SIZE, GRID_POINTS))
    return aggregated_test(Xt, Yt, kernel, bandwidth, count, alpha, "greater", gen, batch, ring, memory_budget,
                           progress, sizes=(n, m))


def _test(X, Y, spec_fn, unbiased, scale, test, n_permutations, seed, alternative, group, backend, batch,
          memory_budget, progress, aggregate=None, **agree):
    if not isinstance(alternative, str) or alternative not in ALTERNATIVES:
        raise ValueError(f"`alternative` must be one of {ALTERNATIVES}, got {alternative!r}")
    count = check_int(n_permutations, "n_permutations", 1)
    _group_ok(group)
    if seed is None:  # rank 0's entropy, broadcast
        box = [int(torch.randint(0, 2**62, (1,)).item()) if dist.get_rank(group) == 0 else None]
        dist.broadcast_object_list(box, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
        seed = box[0]
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be None or an int on a process group, got {type(seed).__name__}")
    Xt, Yt, numpy_in, n, m, ring = _setup(X, Y, group, 2 if unbiased else 1, backend, "ieee",
                                          n_permutations=count, seed=int(seed), alternative=alternative,
                                          batch=batch, **agree)
    show = progress if dist.get_rank(group) == 0 else False
    if aggregate is not None:  # (kernel, bandwidth, alpha) of MMDAgg
        res = _aggregated(Xt, Yt, n, m, ring, *aggregate[:2], count, aggregate[2], generator(int(seed)), batch,
                          memory_budget, show)
        return dataclasses.replace(res, backend=f"ring({ring.local.name})")
    spec = spec_fn(Xt, Yt, n, m, ring)
    scale = n * m / (n + m) if scale is None else scale
    exact = math.comb(n + m, n) <= count
    count = math.comb(n + m, n) if exact else count
    with torch.no_grad():
        S = ring.block_sums(torch.cat([Xt, Yt]), (Xt.shape[0], Yt.shape[0]), spec, exclude_diagonal=unbiased)
        statistic = float(mmd2_from_sums(S[0, 0], S[0, 1], S[1, 1], n, m, unbiased)) * scale
        observed, null, op = null_statistics(torch.cat([Xt, Yt]), n, m, [spec], ring, unbiased, generator(int(seed)),
                                             count, exact, batch, memory_budget, show, test,
                                             sizes=(Xt.shape[0], Yt.shape[0]))
    null, observed = null[0] * scale, observed[0] * scale
    return TwoSampleTestResult(
        statistic=statistic, pvalue=pvalue(null, observed, alternative, exact, op.dtype), null_distribution=null,
        n_permutations=count, exact=exact, kernel=spec, bandwidth=getattr(spec, "bandwidth", None),
        backend=f"ring({ring.local.name})", method=op.method, alternative=alternative, test=test)


def mmd_test(X, Y, kernel="gaussian", bandwidth=None, n_permutations: int | None = None, seed=None,
             alternative: str = "greater", group=None, backend: str = "auto", batch: int | None = None,
             memory_budget: int = DEFAULT_MEMORY_BUDGET, aggregate: bool = False, alpha: float = 0.05,
             progress: bool | None = None) -> TwoSampleTestResult:
    """:func:`mmdkit.mmd_test` of the gathered data; the same seed gives the same p-value as one process.

    ``seed`` None draws one on rank 0 and broadcasts it. Permutation labels are
    computed on each rank from (seed, permutation, global row); they never travel.
    ``aggregate=True`` is MMDAgg, its "grid" from the gathered data's first rows.
    """
    if n_permutations is None:  # as mmdkit.mmd_test
        from mmdkit.aggregated import PAPER_PERMUTATIONS
        n_permutations = PAPER_PERMUTATIONS if aggregate else 1000
    return _test(X, Y, lambda Xt, Yt, n, m, ring: _spec(kernel, bandwidth, Xt, Yt, n, m, ring), True, 1.0, "mmd",
                 n_permutations, seed, alternative, group, backend, batch, memory_budget, progress,
                 aggregate=(kernel, bandwidth, alpha) if aggregate else None, kernel=repr(kernel),
                 bandwidth=repr(bandwidth), alpha=alpha, aggregated=bool(aggregate))


def energy_test(X, Y, exponent: float = 1.0, n_permutations: int = 1000, seed=None, alternative: str = "greater",
                group=None, backend: str = "auto", batch: int | None = None,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, progress: bool | None = None) -> TwoSampleTestResult:
    """:func:`mmdkit.energy_test` of the gathered data (statistic n m / (n + m) x energy distance)."""
    return _test(X, Y, lambda *_: Energy(exponent=float(exponent)), False, None, "energy", n_permutations, seed,
                 alternative, group, backend, batch, memory_budget, progress, exponent=exponent)
