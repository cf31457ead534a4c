"""Time and peak RSS of one statistic in a fresh process.

    python bench/peak_memory.py --n 100000 --d 16 [--grad] [--stat mmd2_unbiased|energy_distance|kid_exact]

Prints one JSON line: n, d, seconds, peak_rss_mib (VmHWM of this process,
which includes the ~300 MiB that importing torch costs), rss_import_mib (the
RSS before any data exists) and the value. ``kid_exact`` draws float32
features directly (no float64 copy) and also reports ``features_mib`` (the
two feature sets) and ``peak_over_features`` = (peak - rss_import) / features.
"""
import argparse
import json
import time

import torch

import mmdkit
from mmdkit.kernels.reference import make_pair
from benchutil import peak_rss_mib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--stat", default="mmd2_unbiased", choices=["mmd2_unbiased", "energy_distance", "kid_exact"])
    ap.add_argument("--grad", action="store_true")
    a = ap.parse_args()
    rss_import = peak_rss_mib()
    if a.stat == "kid_exact":
        g = torch.Generator().manual_seed(0)
        X = torch.randn(a.n, a.d, generator=g)
        Y = torch.randn(a.n, a.d, generator=g).add_(0.1)
        t0 = time.perf_counter()
        r = mmdkit.kid(X, Y, subsets=None)
        dt = time.perf_counter() - t0
        features = 2 * a.n * a.d * 4 / 2**20
        peak = peak_rss_mib()
        print(json.dumps(dict(stat=a.stat, n=a.n, d=a.d, seconds=round(dt, 3), peak_rss_mib=round(peak, 1),
                              rss_import_mib=round(rss_import, 1), features_mib=round(features, 1),
                              peak_over_features=round((peak - rss_import) / features, 3), value=r.value,
                              threads=torch.get_num_threads())))
        return
    X, Y = make_pair(a.n, a.n, a.d, shift=0.1)
    before = peak_rss_mib()
    if a.grad:
        X.requires_grad_(), Y.requires_grad_()
    f = getattr(mmdkit, a.stat)
    kw = {"bandwidth": 4.0} if a.stat == "mmd2_unbiased" else {}
    t0 = time.perf_counter()
    v = f(X, Y, **kw)
    if a.grad:
        v.backward()
    dt = time.perf_counter() - t0
    peak = peak_rss_mib()
    print(json.dumps(dict(stat=a.stat, n=a.n, d=a.d, grad=a.grad, seconds=round(dt, 3),
                          peak_rss_mib=round(peak, 1), rss_before_mib=round(before, 1),
                          value=float(v.detach()), threads=torch.get_num_threads())))


if __name__ == "__main__":
    main()
