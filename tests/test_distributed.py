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


def launch(world: int, data: Path, out: Path, timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """P worker processes with the torchrun environment; their exit codes and output are all collected."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(world),
               OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(data), str(out)], env=dict(env, RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(world)]
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
             "energy_test": mmdkit.energy_test(X, Y, n_permutations=99, seed=5)}
    for r, res in enumerate(ranks):
        for name, value in expected.items():  # the terms summed are O(1): rounding of a few 1e-16 each
            assert abs(res[name] - value) <= 1e-13, (r, name)
        for name, t in tests.items():
            assert res[name]["pvalue"] == t.pvalue, (r, name)
            np.testing.assert_allclose(res[name]["null"], t.null_distribution, rtol=1e-10, atol=1e-13)
            assert res[name]["statistic"] == pytest.approx(t.statistic, rel=1e-12, abs=1e-14)
        assert res["mmd_test"]["bandwidth"] == pytest.approx(tests["mmd_test"].bandwidth, rel=1e-14)
    # each rank: the gradient of the global statistic with respect to its own rows; witness at its own points
    gx = np.concatenate([np.array(res["grad_x"]).reshape(-1, 3) for res in ranks])
    gy = np.concatenate([np.array(res["grad_y"]).reshape(-1, 3) for res in ranks])
    np.testing.assert_allclose(gx, Xt.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gy, Yt.grad.numpy(), rtol=1e-10, atol=1e-14)
    w = np.concatenate([res["witness"] for res in ranks])
    np.testing.assert_allclose(w, mmdkit.witness(X, Y, T, bandwidth=0.8), rtol=1e-12, atol=1e-15)
    we = np.concatenate([res["witness_energy"] for res in ranks])
    np.testing.assert_allclose(we, mmdkit.witness(X, Y, T, kernel="energy"), rtol=1e-12, atol=1e-13)
