"""The engine's worker threads (kernels/workers.py): thread count, lanes, and sweeps on 1 and 2 workers.

A sweep splits its tiles into LANES (8) fixed lanes; each lane accumulates its tiles in its own
buffers on one intra-op thread, and the lanes are added in lane order. Which worker runs a lane
changes nothing, so every result is the same, bit for bit, on 1 and 2 workers (and on up to 8):
no tolerance is needed, and none is used. The float64 reference checks of these sweeps are in
tests/test_engine.py; here the property is the equality, and that the lanes really ran in parallel.
"""
import threading

import pytest
import torch

from mmdkit import energy_distance, mmd2_unbiased, mmd_test
from mmdkit.kernels import Energy, Gaussian, Laplace, PermutationSums, block_sums, kernel_matmul, workers
from mmdkit.kernels.blocked import TILE_COLS, TILE_SYM


@pytest.fixture
def threads():
    """Run the body with torch's thread count set by the test; restore it after."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def on(count, f, *args, **kwargs):
    torch.set_num_threads(count)
    return f(*args, **kwargs)


# ------------------------------------------------------------------------------------ thread count


def test_lanes_are_balanced_deterministic_and_ordered():
    costs = [5.0, 1.0, 1.0, 3.0, 2.0, 2.0, 4.0]
    parts = workers.lanes(costs, 2)
    assert parts == workers.lanes(costs, 2)
    assert sorted(j for p in parts for j in p) == list(range(len(costs)))
    assert all(p == sorted(p) for p in parts)
    loads = [sum(costs[j] for j in p) for p in parts]
    assert max(loads) - min(loads) <= max(costs)  # greedy longest-first: within one job of balance
    assert workers.lanes(costs, 1) == [list(range(len(costs)))]
    assert len(workers.lanes([1.0, 1.0], 8)) == 2  # never more lanes than jobs


@pytest.mark.parametrize("content, expected", [
    ("max 100000\n", None), ("150000 100000\n", 1.5), ("50000 100000\n", 0.5), ("200000 50000", 4.0)])
def test_cgroup_v2_quota(tmp_path, content, expected):
    (tmp_path / "proc").write_text("0::/box/job\n")
    (tmp_path / "box" / "job").mkdir(parents=True)
    (tmp_path / "box" / "job" / "cpu.max").write_text(content)
    assert workers.cgroup_quota(tmp_path, tmp_path / "proc") == expected


def test_cgroup_quota_takes_the_smallest_along_the_path_and_reads_v1(tmp_path):
    (tmp_path / "proc").write_text("0::/box/job\n")
    (tmp_path / "box" / "job").mkdir(parents=True)
    (tmp_path / "box" / "cpu.max").write_text("100000 100000\n")  # the parent allows 1 CPU
    (tmp_path / "box" / "job" / "cpu.max").write_text("300000 100000\n")
    assert workers.cgroup_quota(tmp_path, tmp_path / "proc") == 1.0
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct" / "ci").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "ci" / "cpu.cfs_quota_us").write_text("250000\n")
    (v1 / "cpu,cpuacct" / "ci" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "proc1").write_text("5:memory:/ci\n4:cpu,cpuacct:/ci\n")
    assert workers.cgroup_quota(v1, tmp_path / "proc1") == 2.5
    (tmp_path / "proc2").write_text("4:cpu,cpuacct:/ci\n")
    (v1 / "cpu,cpuacct" / "ci" / "cpu.cfs_quota_us").write_text("-1\n")
    assert workers.cgroup_quota(v1, tmp_path / "proc2") is None
    assert workers.cgroup_quota(tmp_path, tmp_path / "missing") is None


def test_quota_below_the_cores_cuts_the_workers_and_set_num_threads_wins(monkeypatch, threads):
    monkeypatch.setattr(workers, "_TORCH_DEFAULT", 2)
    monkeypatch.setattr(workers, "_ENV_SET", False)
    monkeypatch.setattr(workers, "LIMIT_TTL", 0.0)  # read the (patched) limit on every call
    monkeypatch.setattr(workers, "_limit", None)  # and leave no patched reading cached after the test
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {0, 1})
    threads(2)
    monkeypatch.setattr(workers, "cgroup_quota", lambda: 1.5)  # rounded down: 1 worker
    assert workers.cpu_limit() == 1 and workers.engine_threads() == 1
    monkeypatch.setattr(workers, "cgroup_quota", lambda: None)
    assert workers.cpu_limit() == 2 and workers.engine_threads() == 2
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {1})  # taskset -c 1
    assert workers.engine_threads() == 1
    threads(3)  # the user's torch.set_num_threads wins over affinity and quota
    assert workers.engine_threads() == 3
    threads(1)
    assert workers.engine_threads() == 1


def test_workers_leave_the_callers_thread_counts_alone(threads, gen):
    threads(2)
    X, Y = torch.randn(2 * TILE_SYM, 3, generator=gen), torch.randn(TILE_SYM + 5, 3, generator=gen)
    mmd2_unbiased(X, Y, kernel="gaussian", bandwidth=1.0)  # runs on the pool
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert torch.get_num_threads() == 2 and seen == [2]  # a thread started later gets the process's count


def test_each_worker_runs_one_intra_op_thread(threads, gen):
    """A worker's ops run inline: one OpenMP/MKL thread each (else each worker would open its own parallel
    regions, the spin-waits this design removes). A float32 addmm whose product MKL splits differently on
    2 threads shows it: on a worker it equals the 1-thread result bitwise."""
    k, V, A = (torch.rand(s, generator=gen) for s in ((1024, 1024), (1024, 48), (1024, 48)))
    threads(1)
    single = A.clone().addmm_(k, V)
    threads(2)
    seen = list(workers.run_lanes(lambda jobs: (torch.get_num_threads(), A.clone().addmm_(k, V)), [1.0, 1.0],
                                  threads=2))
    assert [count for count, _ in seen] == [1, 1]
    assert all(torch.equal(out, single) for _, out in seen)


def _sweep_in_child(queue):
    torch.set_num_threads(2)
    Z = torch.randn(3 * TILE_SYM, 4, generator=torch.Generator().manual_seed(0))
    queue.put(float(block_sums(Z, (len(Z),), Gaussian(1.0))[0, 0]))


def test_a_forked_child_runs_sweeps_on_workers_of_its_own(threads):
    """A child forked after the pool exists (a DataLoader worker, multiprocessing's fork) gets a new pool:
    the parent's worker threads are not in the child, and lanes queued on them would wait forever."""
    import multiprocessing
    threads(2)
    Z = torch.randn(3 * TILE_SYM, 4, generator=torch.Generator().manual_seed(0))
    here = float(block_sums(Z, (len(Z),), Gaussian(1.0))[0, 0])  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_sweep_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
    assert queue.get(timeout=5) == here  # the same lanes, the same sum


def test_run_lanes_returns_lane_results_in_order_propagates_errors_and_nests():
    costs = [3.0, 1.0, 2.0, 2.0, 1.0, 1.0, 4.0, 1.0, 1.0, 2.0, 1.0]
    fixed = workers.lanes(costs, workers.LANES)
    assert len(fixed) == workers.LANES
    for count in (1, 2, 3):  # the same lanes, in the same order, on any number of workers up to LANES
        assert list(workers.run_lanes(lambda jobs: jobs, costs, threads=count)) == fixed
    assert workers.lane_count(9) == 16 and workers.lane_count(1) == workers.LANES
    assert list(workers.run_lanes(lambda jobs: jobs, [1.0] * 5, device="meta", threads=2)) == [[0, 1, 2, 3, 4]]

    def fail(jobs):
        raise ValueError(f"lane {jobs}")
    with pytest.raises(ValueError, match="lane"):
        list(workers.run_lanes(fail, [1.0, 1.0], threads=2))
    # a sweep started on a worker runs its lanes there, in order (no deadlock on a full pool)
    inner = workers.run_lanes(lambda jobs: list(workers.run_lanes(lambda j: j, [1.0] * 3, threads=2)), [1.0, 1.0],
                              threads=2)
    assert list(inner) == [[[0], [1], [2]]] * 2


# ------------------------------------------------------------------------------ sweeps on 1 and 2 workers

KERNELS = [Gaussian(2.0), Energy(), Laplace(1.5)]


@pytest.fixture
def spy():
    """The threads that ran lanes on the pool during the test (none when the sweeps ran on the caller)."""
    seen = set()
    original = workers._run

    def run(fn, jobs):
        seen.add(threading.get_ident())
        return original(fn, jobs)
    workers._run = run
    yield seen
    workers._run = original


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: type(k).__name__)
def test_block_sums_and_their_gradient_are_the_same_on_one_and_two_workers(kernel, dtype, threads, spy, gen):
    Z = torch.randn(2 * TILE_SYM + 37, 5, generator=gen, dtype=dtype)  # 3 chunks + the block cut: 10 tiles
    sizes = (TILE_SYM + 3, TILE_SYM + 34)

    def run(count):
        torch.set_num_threads(count)
        Zr = Z.clone().requires_grad_()
        S = block_sums(Zr, sizes, kernel, True)
        (g,) = torch.autograd.grad((S * torch.tensor([[1.0, -2.0], [-2.0, 3.0]], dtype=S.dtype)).sum(), Zr)
        return S, g

    (S1, g1), (S2, g2) = run(1), run(2)
    assert len(spy) == 2  # the 2-worker run used both workers (the 1-thread run none)
    assert torch.equal(S1, S2) and torch.equal(g1, g2)
    n = sizes[0]
    assert on(1, energy_distance, Z[:n], Z[n:]) == on(2, energy_distance, Z[:n], Z[n:])


@pytest.mark.parametrize("symmetric", [True, False], ids=["XX", "XY"])
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: type(k).__name__)
def test_kernel_matmul_and_its_gradient_are_the_same_on_one_and_two_workers(kernel, symmetric, threads, spy, gen):
    X = torch.randn(2 * TILE_SYM + 11, 6, generator=gen)
    Y = None if symmetric else torch.randn(2 * TILE_COLS + 7, 6, generator=gen)
    V = torch.randn(len(X) if symmetric else len(Y), 3, generator=gen)
    G = torch.randn(len(X), 3, generator=gen)  # a random upstream gradient

    def run(count):
        torch.set_num_threads(count)
        Xr, Vr = X.clone().requires_grad_(), V.clone().requires_grad_()
        Yr = None if Y is None else Y.clone().requires_grad_()
        out = kernel_matmul(Xr, Yr, Vr, kernel, symmetric)
        grads = torch.autograd.grad(out, [Xr, Vr] + ([] if Yr is None else [Yr]), G)
        return [out, *grads]

    one, two = run(1), run(2)
    assert len(spy) == 2
    assert all(torch.equal(a, b) for a, b in zip(one, two))


@pytest.mark.parametrize("budget", [2**40, 0], ids=["dense", "streamed"])
def test_permutation_sums_are_the_same_on_one_and_two_workers(budget, threads, spy, gen):
    Z = torch.randn(4200, 5, generator=gen)  # 5 dense rows of 1024 (or 3 streamed of 2048)
    E = (torch.rand(4200, 37, generator=gen) < 0.5).float()
    specs = [Gaussian(1.0), Energy()]

    def run(count):
        torch.set_num_threads(count)
        op = PermutationSums(Z, specs, budget)
        return [*op(E), *op(E), op.square_sums()]  # the first call also builds K0 1

    one, two = run(1), run(2)
    assert len(spy) == 2
    for a, b in zip(one, two):
        assert all(torch.equal(x, y) for x, y in zip(a, b)) if isinstance(a, tuple) else torch.equal(a, b)


def test_the_same_seed_gives_the_same_test_on_one_and_two_workers(threads, gen):
    X, Y = torch.randn(900, 3, generator=gen), torch.randn(800, 3, generator=gen) + 0.05
    r1 = on(1, mmd_test, X, Y, n_permutations=300, seed=3)
    r2 = on(2, mmd_test, X, Y, n_permutations=300, seed=3)
    assert r1.pvalue == r2.pvalue and r1.statistic == r2.statistic
    assert torch.equal(torch.as_tensor(r1.null_distribution), torch.as_tensor(r2.null_distribution))
