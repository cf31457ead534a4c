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


def main():
    data, out = sys.argv[1], sys.argv[2]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    z = np.load(data)
    cut = lambda A, plan: A[int(plan[:rank].sum()):int(plan[:rank + 1].sum())]  # noqa: E731
    X, Y, T = cut(z["X"], z["px"]), cut(z["Y"], z["py"]), cut(z["T"], z["pt"])
    Xt, Yt = torch.tensor(X, requires_grad=True), torch.tensor(Y, requires_grad=True)
    res = {}
    v = sharded.mmd2_unbiased(Xt, Yt)
    v.backward()
    res["mmd2_unbiased"] = float(v)
    res["grad_x"], res["grad_y"] = Xt.grad.tolist(), Yt.grad.tolist()
    res["mmd2_biased_laplace"] = sharded.mmd2_biased(X, Y, kernel=Laplace(1.3))
    res["energy_v"] = sharded.energy_distance(X, Y)
    res["energy_u"] = sharded.energy_distance(X, Y, unbiased=True, exponent=1.5)
    res["witness"] = np.asarray(sharded.witness(X, Y, T, bandwidth=0.8)).tolist()
    res["witness_energy"] = np.asarray(sharded.witness(X, Y, T, kernel="energy")).tolist()
    for name, r in (("mmd_test", sharded.mmd_test(X, Y, n_permutations=199, seed=3, batch=50)),
                    ("energy_test", sharded.energy_test(X, Y, n_permutations=99, seed=5))):
        res[name] = dict(statistic=r.statistic, pvalue=r.pvalue, null=r.null_distribution.tolist(),
                         bandwidth=r.bandwidth)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
