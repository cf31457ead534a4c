"""The engine's CPU threads: tiles run on worker threads that the engine schedules itself.

Why: torch's intra-op parallelism opens one OpenMP parallel region per op, and
a tile loop issues thousands of small ops. When another process holds one of
the cores, each region's barrier spin-waits for the thread that lost its core,
and a sweep ran 20-30x slower than on one thread (issue 27's host; 4-13x on
this one, bench/RESULTS.md, "Shared cores"). Here each worker is a thread with one intra-op thread (its
BLAS calls and elementwise passes run inline, no parallel region, no barrier),
whole tiles are the unit of work, and the calling thread sleeps on the
workers' futures: a worker that loses its core delays only its own tiles.

* :func:`engine_threads` is the number of workers: torch's thread count, cut to
  the process's CPU affinity and its cgroup CPU quota when those are lower,
  unless the user set the count (``torch.set_num_threads``, ``OMP_NUM_THREADS``
  or ``MKL_NUM_THREADS``), which wins.
* :func:`lanes` splits weighted jobs into LANES (8) lanes of about equal cost,
  deterministically (a lane's jobs in order); :func:`run_lanes` queues them on
  the workers, which take the next lane as they finish one (so a worker that
  lost its core does less), and yields the lanes' results in lane order for the
  caller to add in that order: the result is the same, bit for bit, on 1 to 8
  workers, and never depends on timing.
* :func:`sweep` decorates each engine operation: the calling thread's own ops
  run on one intra-op thread while it lasts, and nested operations reuse its
  worker count.

The pool starts at the first multi-lane sweep and is rebuilt when the worker count changes; a forked
child forgets its parent's (whose threads it does not have). Each lane in flight holds its own
accumulators, so a sweep's peak memory is a few outputs rather than one.
"""
from __future__ import annotations

import functools
import heapq
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

__all__ = ["LANES", "engine_threads", "cpu_limit", "cgroup_quota", "lanes", "lane_count", "run_lanes", "sweep"]

# torch's intra-op thread count when this module was imported: a different count later means the
# user called torch.set_num_threads, and their count wins over affinity and quota.
_TORCH_DEFAULT = torch.get_num_threads()
_ENV_SET = any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))

# A sweep's tiles are split into this many lanes (more for more workers: :func:`lane_count`), each with
# its own accumulators, added in lane order: the same lanes, so the same result, on 1 to LANES workers.
LANES = 8

LIMIT_TTL = 1.0  # seconds a read of the CPU limit is reused
_limit: tuple[float, int] | None = None  # (when, cpu_limit())

_local = threading.local()  # .worker: True on the pool's threads; .threads: the count of the running sweep
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def cgroup_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs allowed by the cgroup CPU quota of this process (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us``), the smallest along its cgroup path; None without a quota (or where none can be
    read). ``root``: the cgroup mount; ``membership``: the process's ``/proc/<pid>/cgroup``."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        v2 = controllers == ""
        if not (v2 or "cpu" in controllers.split(",")):
            continue
        base = root if v2 else next((root / c for c in (controllers, "cpu", "cpu,cpuacct")
                                     if (root / c).is_dir()), None)
        if base is None:
            continue
        parts = Path(path).parts[1:]  # the cgroup and each ancestor up to the mount root
        for depth in range(len(parts), -1, -1):
            folder = base.joinpath(*parts[:depth])
            try:
                if v2:
                    quota, period = (folder / "cpu.max").read_text().split()
                else:
                    quota = (folder / "cpu.cfs_quota_us").read_text().strip()
                    period = (folder / "cpu.cfs_period_us").read_text().strip()
            except (OSError, ValueError):
                continue
            if quota not in ("max", "-1") and float(period) > 0:
                found.append(float(quota) / float(period))
    return min(found) if found else None


def cpu_limit() -> int:
    """The CPUs this process may use: its affinity, cut to its cgroup quota (rounded down, at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_quota()
    if quota is not None:
        # rounded down: a worker beyond the quota only waits for its share and the sweep for that worker
        cpus = min(cpus, max(1, math.floor(quota + 1e-9)))
    return max(1, cpus)


def engine_threads() -> int:
    """Worker threads of the engine's sweeps: torch's thread count, at most :func:`cpu_limit` unless the
    user set the count (``torch.set_num_threads`` after import, or ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``)."""
    threads = torch.get_num_threads()
    if threads != _TORCH_DEFAULT or _ENV_SET:
        return threads
    return min(threads, _recent_cpu_limit())


def _recent_cpu_limit() -> int:
    """:func:`cpu_limit`, read again at most every LIMIT_TTL seconds (its file reads cost ~60 us, ~5% of a
    small statistic; affinity and quotas change rarely)."""
    global _limit
    now = time.monotonic()
    if _limit is None or now - _limit[0] >= LIMIT_TTL:
        _limit = (now, cpu_limit())
    return _limit[1]


def lanes(costs: list[float], count: int) -> list[list[int]]:
    """Job indices in ``count`` lanes of about equal cost (longest job first to the lightest lane; ties by
    index), each lane in ascending order. Deterministic: a function of ``costs`` and ``count`` alone."""
    count = max(1, min(count, len(costs)))
    heap = [(0.0, lane) for lane in range(count)]
    out: list[list[int]] = [[] for _ in range(count)]
    for job in sorted(range(len(costs)), key=lambda j: (-costs[j], j)):
        load, lane = heapq.heappop(heap)
        out[lane].append(job)
        heapq.heappush(heap, (load + costs[job], lane))
    return [sorted(jobs) for jobs in out if jobs]


def _start_worker() -> None:
    """Pool thread initialiser: one intra-op thread here (this thread's OpenMP and MKL settings)."""
    _local.worker, _local.threads = True, 1
    # torch initialises a thread's count lazily, from the process-wide count, at its first parallel op;
    # done after set_num_threads(1), that would undo it once the caller restores the process-wide count
    torch.get_num_threads()  # the lazy initialisation, now
    torch.set_num_threads(1)


def _forget_pool() -> None:
    """In a forked child: the parent's workers do not exist there, so its pool would never run a lane."""
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _get_pool(size: int) -> ThreadPoolExecutor:
    """The shared pool with ``size`` workers (rebuilt when the size changes)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=True)
            main = torch.get_num_threads()
            _pool, _pool_size = ThreadPoolExecutor(size, "mmdkit-engine", initializer=_start_worker), size
            # start every worker now, then restore the process-wide count their set_num_threads(1) changed
            # (it seeds threads started later; this thread's own count never changed)
            barrier = threading.Barrier(size)
            for f in [_pool.submit(barrier.wait) for _ in range(size)]:
                f.result()
            torch.set_num_threads(main)
        return _pool


def _run(fn, jobs):
    with torch.no_grad():  # grad mode is per thread; the sweeps work on detached tensors
        return fn(jobs)


def sweep(fn):
    """Decorator of an engine operation: the worker count is decided once, at the outermost operation (nested
    ones, e.g. a backward's sweeps, reuse it), and the calling thread runs its own ops (centring, factors,
    the lanes' sum) on one intra-op thread meanwhile: its OpenMP regions would spin-wait on shared cores too."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if getattr(_local, "threads", None) is not None:  # nested, or on a worker
            return fn(*args, **kwargs)
        threads = engine_threads()
        before = torch.get_num_threads()
        _local.threads = threads
        if threads > 1:
            torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            _local.threads = None
            if threads > 1:
                torch.set_num_threads(before)
    return run


def lane_count(threads: int) -> int:
    """Lanes of a sweep on ``threads`` workers: LANES, or the next multiple of it for more workers."""
    return -(-max(threads, 1) // LANES) * LANES


def run_lanes(fn, costs: list[float], device: torch.device | str = "cpu", threads: int | None = None):
    """fn(jobs) for each lane of :func:`lanes` (costs, :func:`lane_count`), in lane order, as an iterator.

    ``fn`` takes a lane's job indices (ascending) and returns that lane's partial result. The lanes
    are queued in order on the engine's workers, which take the next lane as they finish one (a
    worker that lost its core takes fewer); the caller reduces the results in lane order as they
    come, so the result is the same on any number of workers up to LANES. Sequential on the
    calling thread with one thread (``threads``: default :func:`engine_threads`) or on a worker;
    one lane of all jobs on a non-CPU device.
    """
    if not costs:
        return iter(())
    if torch.device(device).type != "cpu":
        return iter([fn(list(range(len(costs))))])
    if threads is None:  # inside a :func:`sweep`: its count (else this thread's)
        threads = getattr(_local, "threads", None) or engine_threads()
    parts = lanes(costs, lane_count(threads))
    if getattr(_local, "worker", False) or threads <= 1 or len(parts) == 1:
        return (fn(jobs) for jobs in parts)
    pool = _get_pool(threads)
    futures = [pool.submit(_run, fn, jobs) for jobs in parts]
    return (f.result() for f in futures)
