"""Time and traffic of the sharded MMD^2 primitive against one process on the same cores.

    python bench/ring_timing.py --size 200000 --dim 16                           # one process (all threads)
    torchrun --nproc-per-node 2 bench/ring_timing.py --size 200000 --dim 16      # the ring (set OMP_NUM_THREADS=1)

Both time ``block_sums`` of the pooled sample (the Gaussian MMD^2's one sweep,
forward) on X, Y = make_pair(n, n, d): one process on the whole sample, or
each rank on its contiguous half of X and of Y through
:class:`mmdkit.kernels.RingBackend`. Prints one JSON line (rank 0): seconds
(best of ``--rounds``), the MMD^2, threads, world size and the bytes each rank
sent around the ring (``bytes_sent``, max over ranks) next to (n + m) d x 4,
the size of the pooled sample.
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist

from mmdkit.estimators import mmd2_from_sums
from mmdkit.kernels import Gaussian, RingBackend, TorchBackend
from mmdkit.kernels.reference import make_pair


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=200_000, help="n = m")
    ap.add_argument("--dim", type=int, default=16, help="d")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    X, Y = make_pair(a.size, a.size, a.dim, shift=0.1)
    spec = Gaussian(float(a.dim) ** 0.5)
    if world > 1:
        dist.init_process_group("gloo")
        r = dist.get_rank()
        X, Y = X[r * a.size // world:(r + 1) * a.size // world], Y[r * a.size // world:(r + 1) * a.size // world]
        engine = RingBackend(TorchBackend())
    else:
        engine = TorchBackend()
    Z, sizes = torch.cat([X, Y]), (X.shape[0], Y.shape[0])
    best, value = float("inf"), None
    for _ in range(a.rounds):
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        S = engine.block_sums(Z, sizes, spec, exclude_diagonal=True)
        best = min(best, time.perf_counter() - t0)
        value = float(mmd2_from_sums(S[0, 0], S[0, 1], S[1, 1], a.size, a.size, True))
    sent = getattr(engine, "bytes_sent", 0) // a.rounds
    if world > 1:
        box = torch.tensor([sent, best * 1e6], dtype=torch.float64)
        dist.all_reduce(box, op=dist.ReduceOp.MAX)
        sent, best = int(box[0]), float(box[1]) / 1e6
    if world == 1 or dist.get_rank() == 0:
        print(json.dumps(dict(n=a.size, m=a.size, d=a.dim, world_size=world, threads=torch.get_num_threads(),
                              seconds=round(best, 3), mmd2=value, bytes_sent=sent,
                              pooled_bytes=2 * a.size * a.dim * 4)))
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
