"""The ring's overhead: sharded MMD^2 on 2 gloo ranks x 1 thread against 1 process x 2 threads.

``MMDKIT_BENCH=full``: n = m = 2 x 10^5, d = 16 (the issue's size); the
default is a smoke size. Each side runs in fresh processes
(``bench/ring_timing.py``); the ratio ring / single is the overhead on this
machine, ``bytes_sent`` the traffic each rank sent. Results: bench/DISTRIBUTED.md.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from benchutil import sizes

SCRIPT = Path(__file__).with_name("ring_timing.py")
N, D = sizes((200_000, 16), (3000, 16))


def _run(args, env):
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=dict(os.environ, **env))
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ring_overhead(benchmark):
    common = ["--size", str(N), "--dim", str(D)]  # not --n: torchrun would take it for its own --nnodes
    res = {}

    def run():
        res["single"] = _run([sys.executable, str(SCRIPT)] + common, {"OMP_NUM_THREADS": "2"})
        res["ring"] = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                            str(SCRIPT)] + common, {"OMP_NUM_THREADS": "1"})

    benchmark.pedantic(run, rounds=1, iterations=1)
    if not res:  # --benchmark-disable still calls run once
        run()
    one, two = res["single"], res["ring"]
    assert abs(two["mmd2"] - one["mmd2"]) <= 1e-6 * max(1.0, abs(one["mmd2"]))
    benchmark.extra_info.update(single=one, ring=two, ratio=two["seconds"] / one["seconds"],
                                bytes_per_pooled=two["bytes_sent"] / two["pooled_bytes"])
