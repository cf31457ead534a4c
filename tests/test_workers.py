"""The engine's worker threads (kernels/workers.py): thread count, lanes, and sweeps on 1 and 2 workers.

A sweep on w workers splits its tiles into w lanes; each lane accumulates its tiles in its own
buffers and the lanes are added in lane order. Every tile is computed bitwise alike whatever the
lane, so the results differ from one worker's only by the reassociation of each output element's
sum over its tiles:
    |sum on 2 lanes - sum on 1 lane| <= 2 (T + 1) u sum_tiles |partial|
(each order within (T + 1) u sum |partial| of the exact sum: T tile partials plus the lane sum,
Higham's gamma_n), u the unit roundoff of the accumulator. With positive kernels and weights,
sum |partial| is the result itself. The float64 block sums are added in tile order, so they are
bitwise equal on any number of workers.
"""
import threading

import pytest
import torch

from mmdkit import energy_distance, mmd2_unbiased, mmd_test
from mmdkit.kernels import Energy, Gaussian, Laplace, PermutationSums, block_sums, kernel_matmul, workers
from mmdkit.kernels.blocked import TILE_COLS, TILE_SYM

U32 = 2.0 ** -24


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
    seen = workers.run_lanes(lambda jobs: (torch.get_num_threads(), A.clone().addmm_(k, V)), [1.0, 1.0], threads=2)
    assert [count for count, _ in seen] == [1, 1]
    assert all(torch.equal(out, single) for _, out in seen)


def test_run_lanes_returns_lane_results_in_order_propagates_errors_and_nests():
    out = workers.run_lanes(lambda jobs: jobs, [1.0] * 5, threads=2)
    assert out == workers.lanes([1.0] * 5, 2)
    assert workers.run_lanes(lambda jobs: jobs, [1.0] * 5, threads=1) == [[0, 1, 2, 3, 4]]
    assert workers.run_lanes(lambda jobs: jobs, [1.0] * 5, device="meta", threads=2) == [[0, 1, 2, 3, 4]]

    def fail(jobs):
        raise ValueError(f"lane {jobs}")
    with pytest.raises(ValueError, match="lane"):
        workers.run_lanes(fail, [1.0, 1.0], threads=2)
    # a sweep started on a worker runs inline there (no deadlock on a full pool)
    inner = workers.run_lanes(lambda jobs: workers.run_lanes(lambda j: j, [1.0] * 3, threads=2), [1.0, 1.0],
                              threads=2)
    assert inner == [[[0, 1, 2]], [[0, 1, 2]]]


# ------------------------------------------------------------------------------ sweeps on 1 and 2 workers

KERNELS = [Gaussian(2.0), Energy(), Laplace(1.5)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: type(k).__name__)
def test_block_sums_are_bitwise_equal_on_one_and_two_workers(kernel, dtype, threads, gen):
    Z = torch.randn(2 * TILE_SYM + 37, 5, generator=gen, dtype=dtype)  # 3 chunks, 6 tiles, ragged
    sizes = (TILE_SYM + 3, TILE_SYM + 34)
    one = on(1, block_sums, Z, sizes, kernel, True)
    two = on(2, block_sums, Z, sizes, kernel, True)
    assert torch.equal(one, two)
    n = sizes[0]
    assert on(1, energy_distance, Z[:n], Z[n:]) == on(2, energy_distance, Z[:n], Z[n:])


@pytest.mark.parametrize("symmetric", [True, False], ids=["XX", "XY"])
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: type(k).__name__)
def test_kernel_matmul_on_two_workers_is_a_reassociation_of_one(kernel, symmetric, threads, gen):
    X = torch.randn(2 * TILE_SYM + 11, 6, generator=gen)
    Y = None if symmetric else torch.randn(2 * TILE_COLS + 7, 6, generator=gen)
    V = torch.rand(len(X) if symmetric else len(Y), 3, generator=gen) + 0.5  # positive weights
    one = on(1, kernel_matmul, X, Y, V, kernel, symmetric)
    two = on(2, kernel_matmul, X, Y, V, kernel, symmetric)
    T = 3  # tiles per output row: 3 chunks of TILE_SYM rows (XX), 3 of TILE_COLS columns (XY)
    bound = 2 * (T + 1) * U32 * one.abs()
    err = (two - one).abs()
    assert (err <= bound).all(), float((err / one.abs()).max())  # measured 1.6e-7 relative (bound 4.8e-7)
    assert err.max() > 0 or T == 1  # the lanes do reassociate (else this test would check nothing)


def test_gradients_on_two_workers_match_one_within_the_reassociation_bound(threads, gen):
    """block_sums' gradient sweep: D[b, i] = sum_j k'_ij [1, z_j] over the tiles of block b (T <= 2 here),
    so |delta g_i| <= 2 (T + 1) u * 2 sum_j |w_ij| |k'_ij| (|z_i| + |z_j|), g_i = 2 sum_j w_ij k'_ij (z_i - z_j)."""
    X = torch.randn(TILE_SYM + 100, 4, generator=gen, dtype=torch.float32)
    Y = torch.randn(TILE_SYM + 60, 4, generator=gen, dtype=torch.float32) + 0.2

    def grad(count):
        torch.set_num_threads(count)
        Xr = X.clone().requires_grad_()
        (g,) = torch.autograd.grad(mmd2_unbiased(Xr, Y, kernel=Gaussian(2.0)), Xr)
        return g.double()

    one, two = grad(1), grad(2)
    Z = torch.cat([X, Y]).double()
    Z = Z - Z.mean(0)  # the engine's centred points
    n, m = len(X), len(Y)
    dk = torch.exp(-torch.cdist(Z[:n], Z) ** 2 / 8) / 8  # |k'| = k / (2 h^2), h = 2
    w = torch.cat([torch.full((n,), 2.0 / (n * (n - 1))), torch.full((m,), 2.0 / (n * m))])  # |(G + G')_{b_i b_j}|
    A = dk * w
    scale = 2 * (Z[:n].norm(dim=1) * A.sum(1) + A @ Z.norm(dim=1))
    T = 2
    err = (two - one).abs().amax(1)
    assert (err <= 2 * (T + 1) * U32 * scale).all(), float((err / scale).max())


@pytest.mark.parametrize("budget", [2**40, 0], ids=["dense", "streamed"])
def test_permutation_sums_on_two_workers(budget, threads, gen):
    """q (row by row, rows added in row order) is bitwise equal. K0 1 adds the (bitwise equal) float32 row
    and column sums of T tiles in float64, and u = E' K0 1 adds C chunks of 64 rows: both reassociate
    float64 sums of same-signed terms, |delta| <= 2 (T + C + 2) u64 |value|."""
    Z = torch.randn(4200, 5, generator=gen)  # 5 dense rows of 1024 (or 3 streamed of 2048)
    E = (torch.rand(4200, 37, generator=gen) < 0.5).float()
    specs = [Gaussian(1.0), Energy()]
    one = on(1, lambda: PermutationSums(Z, specs, budget)(E))
    two = on(2, lambda: PermutationSums(Z, specs, budget)(E))
    T, C, u64 = 5, -(-4200 // 64), 2.0 ** -53
    for (q1, u1, s1), (q2, u2, s2) in zip(one, two):
        assert torch.equal(q1, q2)
        assert ((u2 - u1).abs() <= 2 * (T + C + 2) * u64 * u1.abs()).all()  # measured ~1e-15 relative
        assert abs(float(s2 - s1)) <= 2 * (T + C + 2) * u64 * abs(float(s1))


def test_the_same_seed_gives_the_same_pvalue_on_one_and_two_workers(threads, gen):
    X, Y = torch.randn(900, 3, generator=gen), torch.randn(800, 3, generator=gen) + 0.05
    r1 = on(1, mmd_test, X, Y, n_permutations=300, seed=3)
    r2 = on(2, mmd_test, X, Y, n_permutations=300, seed=3)
    assert r1.pvalue == r2.pvalue and r1.statistic == r2.statistic
