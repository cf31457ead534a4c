"""One rank of the sharded-statistics tests (tests/test_distributed.py launches P of these).

    python tests/distributed_worker.py DATA.npz OUT_DIR  (env: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)

DATA holds X, Y, T and the shard plan (rows of X, of Y and of T per rank);
each rank computes every sharded statistic on its rows and writes
OUT_DIR/rank<r>.json. Not collected by pytest (no test_ prefix).
"""
import json
import os
import sys
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from mmdkit import Laplace
from mmdkit import distributed as sharded


def fault(mode: str, rank: int, X, Y) -> None:
    """One bad rank (rank 1): every live rank must end with a clear error (printed, exit status 1)."""
    seed, bandwidth, dtype = 0, None, np.float64
    if rank == 1:
        if mode == "d":
            X, Y = X[:, :2], Y[:, :2]
        elif mode == "nan":
            X = X.copy()
            X[0, 0] = np.nan
        elif mode == "seed":
            seed = 4
        elif mode == "kernel":
            bandwidth = 2.0
        elif mode == "dtype":
            dtype = np.float32
        elif mode == "die":
            os._exit(3)
    try:
        sharded.mmd_test(X.astype(dtype), Y.astype(dtype), bandwidth=bandwidth, n_permutations=50, seed=seed)
    except Exception as e:  # noqa: BLE001 (the test reads what each rank reports)
        print(f"ERROR {type(e).__name__}: {e}", flush=True)
        # os._exit, not sys.exit: a process leaving with its gloo group alive can abort in the group's
        # destructor at interpreter exit ("terminate called without an active exception", status -6; seen
        # once under load), which would hide the status this test reads. The error is already printed.
        os._exit(1)
    print("OK (no error)", flush=True)


def main():
    data, out = sys.argv[1], sys.argv[2]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    timeout = float(os.environ.get("MMDKIT_TEST_TIMEOUT", "60"))
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=timeout))
    except Exception as e:  # noqa: BLE001 (a rank that never joins: the others time out here)
        print(f"ERROR {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    z = np.load(data)
    cut = lambda A, plan: A[int(plan[:rank].sum()):int(plan[:rank + 1].sum())]  # noqa: E731
    X, Y, T = cut(z["X"], z["px"]), cut(z["Y"], z["py"]), cut(z["T"], z["pt"])
    if os.environ.get("MMDKIT_TEST_FAULT"):
        return fault(os.environ["MMDKIT_TEST_FAULT"], rank, X, Y)
    Xt, Yt = torch.tensor(X, requires_grad=True), torch.tensor(Y, requires_grad=True)
    res = {}
    v = sharded.mmd2_unbiased(Xt, Yt)
    v.backward()
    res["mmd2_unbiased"] = float(v)
    res["grad_x"], res["grad_y"] = Xt.grad.tolist(), Yt.grad.tolist()
    res["mmd2_biased_laplace"] = sharded.mmd2_biased(X, Y, kernel=Laplace(1.3))
    Xl = torch.tensor(X, requires_grad=True)
    lin = sharded.mmd2_linear(Xl, torch.tensor(Y), bandwidth=0.9)
    lin.backward()
    res["mmd2_linear"], res["grad_linear"] = float(lin), Xl.grad.tolist()
    res["energy_v"] = sharded.energy_distance(X, Y)
    res["energy_u"] = sharded.energy_distance(X, Y, unbiased=True, exponent=1.5)
    Tt = torch.tensor(T, requires_grad=True)
    w = sharded.witness(X, Y, Tt, bandwidth=0.8)
    (w * w).sum().backward()
    res["witness"], res["grad_t"] = w.detach().tolist(), Tt.grad.tolist()
    res["witness_energy"] = np.asarray(sharded.witness(X, Y, T, kernel="energy")).tolist()
    for name, r in (("mmd_test", sharded.mmd_test(X, Y, n_permutations=199, seed=3, batch=50)),
                    ("energy_test", sharded.energy_test(X, Y, n_permutations=99, seed=5)),
                    ("mmdagg", sharded.mmd_test(X, Y, aggregate=True, n_permutations=99, seed=2))):
        res[name] = dict(statistic=r.statistic, pvalue=r.pvalue, null=r.null_distribution.tolist(),
                         bandwidth=r.bandwidth, reject=r.reject)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
