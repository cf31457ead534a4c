"""Sharded statistics (mmdkit.distributed) on gloo process groups of 2 and 3 CPU ranks.

Each rank is a separate process (tests/distributed_worker.py) holding uneven
shards (n != m, a rank with no X rows, a rank with no Y rows); every rank's
result must equal the single-process result on the gathered data: float64
values to rounding, gradients of each rank's own rows, the same p-values
and null distributions for the same seed.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mmdkit
from mmdkit import Laplace

WORKER = Path(__file__).with_name("distributed_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, data: Path, out: Path, timeout: float = 240, ranks=None, **extra_env):
    """Worker processes (``ranks``, default all) with the torchrun environment; every exit code and output is
    collected (no process kills the others, so each reports what it saw)."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(world),
               OMP_NUM_THREADS="1", **extra_env)
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(data), str(out)], env=dict(env, RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in (range(world) if ranks is None else ranks)]
    done = []
    for p in procs:
        stdout, _ = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout))
    return done


PLANS = {  # rows of X, Y and T per rank: n = 40, m = 30, a rank without X rows, one without Y rows
    2: ([17, 23], [30, 0], [4, 3]),
    3: ([0, 25, 15], [12, 0, 18], [2, 0, 5]),
}


@pytest.mark.parametrize("world", [2, 3])
def test_every_statistic_equals_the_single_process_result(world, tmp_path):
    rng = np.random.default_rng(world)
    X, Y, T = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.4, rng.normal(size=(7, 3))
    px, py, pt = (np.array(p) for p in PLANS[world])
    np.savez(tmp_path / "data.npz", X=X, Y=Y, T=T, px=px, py=py, pt=pt)
    runs = launch(world, tmp_path / "data.npz", tmp_path)
    for r, run in enumerate(runs):
        assert run.returncode == 0, f"rank {r} failed:\n{run.stdout}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]

    Xt, Yt = torch.tensor(X, requires_grad=True), torch.tensor(Y, requires_grad=True)
    ref = mmdkit.mmd2_unbiased(Xt, Yt)
    ref.backward()
    expected = {
        "mmd2_unbiased": float(ref.detach()),
        "mmd2_biased_laplace": mmdkit.mmd2_biased(X, Y, kernel=Laplace(1.3)),
        "energy_v": mmdkit.energy_distance(X, Y),
        "energy_u": mmdkit.energy_distance(X, Y, unbiased=True, exponent=1.5),
    }
    tests = {"mmd_test": mmdkit.mmd_test(X, Y, n_permutations=199, seed=3),
             "energy_test": mmdkit.energy_test(X, Y, n_permutations=99, seed=5),
             "mmdagg": mmdkit.mmd_test(X, Y, aggregate=True, n_permutations=99, seed=2)}
    for r, res in enumerate(ranks):
        for name, value in expected.items():  # the terms summed are O(1): rounding of a few 1e-16 each
            assert abs(res[name] - value) <= 1e-13, (r, name)
        for name, t in tests.items():
            assert res[name]["pvalue"] == t.pvalue, (r, name)
            np.testing.assert_allclose(res[name]["null"], t.null_distribution, rtol=1e-10, atol=1e-13)
            assert res[name]["statistic"] == pytest.approx(t.statistic, rel=1e-12, abs=1e-14)
        assert res["mmd_test"]["bandwidth"] == pytest.approx(tests["mmd_test"].bandwidth, rel=1e-14)
        assert res["mmdagg"]["bandwidth"] == pytest.approx(list(tests["mmdagg"].bandwidth), rel=1e-14)
        assert res["mmdagg"]["reject"] == tests["mmdagg"].reject
    # each rank: the gradient of the global statistic with respect to its own rows; witness at its own points
    Xl = torch.tensor(X, requires_grad=True)
    lin = mmdkit.mmd2_linear(Xl, torch.tensor(Y), bandwidth=0.9)
    lin.backward()
    for res in ranks:
        assert res["mmd2_linear"] == pytest.approx(float(lin.detach()), rel=1e-12, abs=1e-15)
    gl = np.concatenate([np.array(res["grad_linear"]).reshape(-1, 3) for res in ranks])
    np.testing.assert_allclose(gl, Xl.grad.numpy(), rtol=1e-12, atol=1e-15)
    gx = np.concatenate([np.array(res["grad_x"]).reshape(-1, 3) for res in ranks])
    gy = np.concatenate([np.array(res["grad_y"]).reshape(-1, 3) for res in ranks])
    np.testing.assert_allclose(gx, Xt.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gy, Yt.grad.numpy(), rtol=1e-10, atol=1e-14)
    Tt = torch.tensor(T, requires_grad=True)
    wt = mmdkit.witness(X, Y, Tt, bandwidth=0.8)
    (wt * wt).sum().backward()
    w = np.concatenate([res["witness"] for res in ranks])
    np.testing.assert_allclose(w, wt.detach().numpy(), rtol=1e-12, atol=1e-15)
    gt = np.concatenate([np.array(res["grad_t"]).reshape(-1, 3) for res in ranks])
    np.testing.assert_allclose(gt, Tt.grad.numpy(), rtol=1e-11, atol=1e-15)
    we = np.concatenate([res["witness_energy"] for res in ranks])
    np.testing.assert_allclose(we, mmdkit.witness(X, Y, T, kernel="energy"), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("fault, message", [
    ("d", "d, dtype and input type"),
    ("nan", "rank 1: `X` contains 1 NaN"),
    ("seed", "`seed` must be the same on every rank"),
    ("kernel", "`bandwidth` must be the same on every rank"),
    ("dtype", "d, dtype and input type"),
])
def test_bad_input_on_one_rank_is_a_clear_error_on_every_rank(fault, message, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", X=rng.normal(size=(20, 3)), Y=rng.normal(size=(16, 3)), T=np.zeros((0, 3)),
             px=np.array([9, 11]), py=np.array([8, 8]), pt=np.array([0, 0]))
    runs = launch(2, tmp_path / "data.npz", tmp_path, timeout=60, MMDKIT_TEST_FAULT=fault)
    for r, run in enumerate(runs):
        assert run.returncode == 1 and message in run.stdout, (r, run.stdout)


def test_a_rank_that_dies_or_never_joins_ends_every_live_rank_within_the_timeout(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", X=rng.normal(size=(20, 3)), Y=rng.normal(size=(16, 3)), T=np.zeros((0, 3)),
             px=np.array([9, 11]), py=np.array([8, 8]), pt=np.array([0, 0]))
    t0 = time.monotonic()
    died = launch(2, tmp_path / "data.npz", tmp_path, timeout=60, MMDKIT_TEST_FAULT="die", MMDKIT_TEST_TIMEOUT="8")
    assert died[1].returncode == 3
    assert died[0].returncode == 1 and "ERROR" in died[0].stdout, died[0].stdout
    alone = launch(2, tmp_path / "data.npz", tmp_path, timeout=60, ranks=[0], MMDKIT_TEST_TIMEOUT="5")
    assert alone[0].returncode == 1 and "ERROR" in alone[0].stdout, alone[0].stdout
    assert time.monotonic() - t0 < 45  # both within their timeouts (8 s, 5 s) plus process start-up


def test_torchrun_cli_prints_the_single_process_result_once(tmp_path):
    """``torchrun --nproc-per-node 2 -m mmdkit test A.npy B.npy --seed 0 --json`` from outside the repository."""
    rng = np.random.default_rng(5)
    np.save(tmp_path / "a.npy", rng.normal(size=(45, 2)))
    np.save(tmp_path / "b.npy", rng.normal(size=(38, 2)) + 0.3)
    for extra in ([], ["--test", "energy"], ["--aggregate", "--permutations", "200"]):
        args = ["test", "a.npy", "b.npy", "--seed", "0", "--json"] + extra
        one = subprocess.run([sys.executable, "-m", "mmdkit"] + args, cwd=tmp_path, capture_output=True, text=True)
        two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                              "-m", "mmdkit"] + args, cwd=tmp_path, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert one.returncode == 0 and two.returncode == 0, two.stderr
        a, b = json.loads(one.stdout), json.loads(two.stdout)  # one JSON document: printed by rank 0 only
        assert b.pop("world_size") == 2 and "world_size" not in a
        assert b.pop("backend").startswith("ring(") and a.pop("backend") == "torch"
        assert b["pvalue"] == a["pvalue"] and b["statistic"] == pytest.approx(a["statistic"], rel=1e-12)
        assert (b["n"], b["m"], b["d"]) == (a["n"], a["m"], a["d"]) == (45, 38, 2)


def test_data_parallel_gmmn_equals_one_process_on_the_whole_batch(tmp_path):
    """``torchrun ... -m mmdkit.gan train-dp``: 2 ranks, each half the batch, one global MMD; the generator after
    8 Adam steps equals the one-process run's (float64; sums in another order round differently)."""
    args = ["-m", "mmdkit.gan", "train-dp", "--steps", "8", "--batch-size", "96", "--dtype", "float64",
            "--no-progress"]
    one = subprocess.run([sys.executable] + args + ["--out", "one"], cwd=tmp_path, capture_output=True, text=True)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
                         + args + ["--out", "two"], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert (a["world_size"], b["world_size"]) == (1, 2)
    # measured: losses 6e-16 relative, parameters 7e-17 absolute
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=2e-15, atol=0)
    for p, q in zip(b["params"], a["params"]):
        np.testing.assert_allclose(p, q, rtol=0, atol=3e-16)
    assert a["loss"][-1] < a["loss"][0]
