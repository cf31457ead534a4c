"""Issue 15, item 3: MMD-family designs against PacGAN's best rows, over seeds, resumable.

    .venv/bin/python bench/gan_item3.py --designs cramer-gan-5600 --data grid25 ring8 --seeds 0 1 2 3 4 \
        [--jobs 2] [--out-md bench/GAN_ITEM3.md]
    .venv/bin/python bench/gan_item3.py --table-only --out-md bench/GAN_ITEM3.md   # the table of what is cached

Each run is one fast-protocol training (:func:`mmdkit.gan.trainer.train`, the shared generator,
one torch thread) written to ``bench/gan_runs/item3/<design>/<data>-seed<s>/`` (metrics.json with
the design it ran, samples.png, curves.png from ``eval_every``). A run whose metrics.json records
the same design is read back, not retrained, so an interrupted sweep continues where it stopped.
The table gives mean ± standard error over the seeds beside the target (PacGAN Table 1 as quoted in
issue 15: PacGAN4 on the grid 24.8 modes, 93.6 % high quality, reverse KL 0.04; on the ring PacGAN2's
7.9 modes and PacGAN4's 95.9 %, 0.07).

Budget: issue 15 allows 10 CPU-minutes per run on one core. This host's speed drifts by 2x and more
(the code of 2026-11-30 ran cramer-gan at 106 ms per step that day and at 230-245 ms on 2026-12-01),
so a design's step count is fixed from the per-step CPU time of the 3000-step bench run of 2026-11-30
(bench/GAN_RESULTS.md, grid25: gmmn 40 ms, energy-gan 61 ms, mmd-gan 81 ms, cramer-gan 106 ms), times
the same-run speed-up of today's code over that day's where there is one (Energy(exponent=0.5) by square
roots: cramer-gan 0.74x, energy-gan 0.77x, measured 2026-12-01 with the other jobs paused). So
600 s buys gmmn 15000 steps, energy-gan 12700, mmd-gan 7400 and cramer-gan 7600; the designs named
with fewer steps are under budget. The table also reports the CPU seconds each run measured on the
day it ran (on a shared, drifting host: not comparable across days).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "gan_runs" / "item3"

# The target rows (PacGAN Table 1 as quoted in issue 15): modes, high quality %, reverse KL.
TARGETS = {"grid25": (24.8, 93.6, 0.04), "ring8": (7.9, 95.9, 0.07)}

# design name -> loss, generator steps, loss settings (--set), packing, batch size (None: the loss's)
DESIGNS: dict[str, dict] = {
    "cramer-gan-5600": {"loss": "cramer-gan", "steps": 5600, "settings": {}, "packing": 1, "batch_size": None},
    "cramer-gan-pack2-5600": {"loss": "cramer-gan", "steps": 5600, "settings": {}, "packing": 2,
                              "batch_size": None},
    "cramer-gan-7600": {"loss": "cramer-gan", "steps": 7600, "settings": {}, "packing": 1, "batch_size": None},
    "cramer-gan-pack2-7600": {"loss": "cramer-gan", "steps": 7600, "settings": {}, "packing": 2,
                              "batch_size": None},
    # the same design on the engine whose close pairs of critic features keep their distance (f7cc0ef);
    # the cramer-gan-7600 runs set t = 0 below the expansion's rounding bound, losing those pairs' gradients
    "cramer-gan-7600-near": {"loss": "cramer-gan", "steps": 7600, "settings": {}, "packing": 1, "batch_size": None,
                             "engine": "close pairs refined"},
    "cramer-gan-b1-7600": {"loss": "cramer-gan", "steps": 7600, "settings": {"exponent": 1.0}, "packing": 1,
                           "batch_size": None, "engine": "close pairs refined"},
    # smoothed energy kernel (offset c = s x the features' rms spread; the old engine's accidental cutoff sat
    # near 0.004 x it)
    "cramer-gan-7600-s0.01": {"loss": "cramer-gan", "steps": 7600, "settings": {"smoothing": 0.01}, "packing": 1,
                              "batch_size": None, "engine": "close pairs refined"},
    "cramer-gan-7600-s0.05": {"loss": "cramer-gan", "steps": 7600, "settings": {"smoothing": 0.05}, "packing": 1,
                              "batch_size": None, "engine": "close pairs refined"},
    # the s0.01 design evaluated on an exponential moving average of the generator's weights (decay 0.999):
    # training is the same, so each run's without_ema repeats the s0.01 run of its seed
    "cramer-gan-7600-s0.01-ema": {"loss": "cramer-gan", "steps": 7600, "settings": {"smoothing": 0.01},
                                  "packing": 1, "batch_size": None, "engine": "close pairs refined", "ema": 0.999},
    "energy-gan-12700": {"loss": "energy-gan", "steps": 12700, "settings": {}, "packing": 1, "batch_size": None},
    "energy-gan-9800": {"loss": "energy-gan", "steps": 9800, "settings": {}, "packing": 1, "batch_size": None},
    "mmd-gan-7400": {"loss": "mmd-gan", "steps": 7400, "settings": {}, "packing": 1, "batch_size": None},
    "gmmn-lr3e-3-15000": {"loss": "gmmn", "steps": 15000, "settings": {"lr_g": 3e-3}, "packing": 1,
                          "batch_size": None},
}


def run_dir(design: str, data: str, seed: int, root: Path = ROOT) -> Path:
    return root / design / f"{data}-seed{seed}"


def cached(design: str, data: str, seed: int, root: Path = ROOT) -> dict | None:
    """The metrics of a finished run of exactly this design, else None."""
    f = run_dir(design, data, seed, root) / "metrics.json"
    if not f.exists():
        return None
    m = json.loads(f.read_text())
    return m if m.get("design") == {"name": design, **DESIGNS[design]} else None


def run_one(design: str, data: str, seed: int, root: Path = ROOT) -> dict:
    """Train one (design, toy, seed) unless cached; returns its metrics."""
    m = cached(design, data, seed, root)
    if m is not None:
        return m
    from mmdkit.gan.tuning import configured_loss
    from mmdkit.gan.trainer import train
    spec = DESIGNS[design]
    out = run_dir(design, data, seed, root)
    m = train(configured_loss(spec["loss"], spec["settings"]), data, steps=spec["steps"], seed=seed, out=out,
              batch_size=spec["batch_size"], packing=spec["packing"], progress=False,
              eval_every=max(1, spec["steps"] // 8), ema=spec.get("ema"))
    m["design"] = {"name": design, **spec}
    f = out / "metrics.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "design": m["design"]}, indent=2))
    return m


def table(root: Path = ROOT) -> str:
    """Markdown: one row per (design, toy) with cached runs, mean ± s.e. over seeds, against the target."""
    from mmdkit.gan.bench import mean_se
    lines = ["| design | data | seeds | modes | high quality % | reverse KL | CPU s per run | meets target |",
             "|---|---|---|---|---|---|---|---|"]
    for design in DESIGNS:
        for data, (t_modes, t_hq, t_rkl) in TARGETS.items():
            runs = [(s, m) for s in range(100) if (m := cached(design, data, s, root)) is not None]
            if not runs:
                continue
            ms = [m for _, m in runs]
            cells = {k: [100 * m[k] if k == "high_quality" else m[k] for m in ms]
                     for k in ("modes_covered", "high_quality", "reverse_kl", "cpu_seconds")}
            mean = {k: statistics.mean(v) for k, v in cells.items()}
            meets = (mean["modes_covered"] >= t_modes and mean["high_quality"] >= t_hq
                     and mean["reverse_kl"] <= t_rkl)
            lines.append(f"| {design} | {data} | {[s for s, _ in runs]} | "
                         + " | ".join(mean_se(v) for v in cells.values())
                         + f" | {'yes' if meets else 'no'} ({t_modes}, {t_hq} %, {t_rkl}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--designs", nargs="+", default=[], choices=sorted(DESIGNS))
    p.add_argument("--data", nargs="+", default=["grid25", "ring8"], choices=sorted(TARGETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--jobs", type=int, default=1, help="runs at once (worker processes)")
    p.add_argument("--out-md", default=None, help="write the table of every cached run here")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    if not args.table_only:
        plan = [(d, data, s) for d in args.designs for s in args.seeds for data in args.data]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_one, *job): job for job in plan}
            for fut in as_completed(futures):
                m = fut.result()
                print(futures[fut], m["modes_covered"], round(100 * m["high_quality"], 1),
                      round(m["reverse_kl"], 4), round(m["cpu_seconds"]), "CPU s", flush=True)
    text = table()
    print(text)
    if args.out_md:
        Path(args.out_md).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
