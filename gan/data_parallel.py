"""Data-parallel GMMN training with one global MMD over every rank's batch (torch.distributed).

Each rank generates its share of the batch and holds its share of the real
points; the loss is the unbiased MMD^2 between *all* generated and *all*
real points (:mod:`mmdkit.distributed`), whose gradient reaches each rank
through its own generated rows. The generator's gradient is the sum of the
ranks' parts (all-reduce SUM, not DDP's mean: the loss is one global
function, not a mean of per-rank losses), so every rank takes the same step,
and the run equals one process training on the whole batch.

    torchrun --nproc-per-node 2 -m mmdkit.gan train-dp --data ring8 --steps 500 --out runs/gmmn-dp

Without a process group (a plain ``python -m mmdkit.gan train-dp``) the same
loop runs on one process with :func:`mmdkit.mmd2_unbiased`.
"""
from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

import mmdkit
from mmdkit import Gaussian, Mixture
from mmdkit import distributed as sharded
from mmdkit.gan.data import get_dataset
from mmdkit.gan.models import Generator

__all__ = ["train_data_parallel"]


def train_data_parallel(data: str = "ring8", steps: int = 500, batch_size: int = 512, seed: int = 0,
                        lr: float = 1e-3, bandwidths=(0.05, 0.1, 0.2, 0.5, 1.0), dtype=torch.float32,
                        out: str | Path | None = None, progress: bool = True) -> dict:
    """Train a GMMN (generator + global MMD^2 loss with a Gaussian mixture kernel) on ``batch_size``
    points per step split over the ranks of the default process group (or one process without one).

    The global batch is drawn from one generator seeded by ``seed`` on every
    rank and each rank keeps its contiguous slice (so the run is the same for
    any number of ranks); bandwidths are in units of the data's scale.
    Returns (and writes to ``out/metrics.json`` on rank 0) the loss history,
    ``world_size`` and the generator's final parameters' checksum.
    """
    from tqdm.auto import tqdm

    group = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if group else (0, 1)
    toy = get_dataset(data)
    kernel = Mixture.of(Gaussian, [h * toy.scale for h in bandwidths])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = Generator().to(dtype)
    opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.9))
    g = torch.Generator().manual_seed(seed + 1)
    lo, hi = rank * batch_size // world, (rank + 1) * batch_size // world
    history = []
    for _ in tqdm(range(steps), disable=not progress or rank != 0, desc=f"GMMN on {world} rank(s)"):
        z = torch.randn(batch_size, G.z_dim, generator=g, dtype=torch.float64).to(dtype)
        real = toy.sample(batch_size, g).to(dtype)
        fake = G(z[lo:hi])
        if group:
            loss = sharded.mmd2_unbiased(fake, real[lo:hi], kernel=kernel)
        else:
            loss = mmdkit.mmd2_unbiased(fake, real, kernel=kernel)
        opt.zero_grad()
        loss.backward()
        if group:
            for p in G.parameters():
                dist.all_reduce(p.grad)  # the global loss's gradient: the sum of the ranks' parts
        opt.step()
        history.append(float(loss.detach()))
    result = dict(world_size=world, steps=steps, batch_size=batch_size, data=data, loss=history,
                  params=[p.detach().double().flatten().tolist() for p in G.parameters()])
    if out is not None and rank == 0:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "metrics.json").write_text(json.dumps(result))
    return result


def main(args) -> int:
    """``python -m mmdkit.gan train-dp`` (under torchrun when WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo", timeout=timedelta(seconds=args.timeout))
    try:
        res = train_data_parallel(args.data, args.steps, args.batch_size, args.seed, args.lr,
                                  dtype=getattr(torch, args.dtype), out=args.out, progress=not args.no_progress)
        if res["world_size"] == 1 or dist.get_rank() == 0:
            print(json.dumps({k: (v[-1] if k == "loss" else v) for k, v in res.items() if k != "params"}))
    finally:
        if world > 1:
            dist.destroy_process_group()
    return 0
