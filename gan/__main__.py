"""Command line: ``python -m mmdkit.gan train ...``, ``python -m mmdkit.gan bench ...``, ``... tune ...``.

Examples
--------
python -m mmdkit.gan train --loss mmd-gan --data grid25 --steps 3000 --seed 0 --out runs/mmd
python -m mmdkit.gan train --loss mmd-gan --set critic_objective=attractive --set penalty.weight=1 --out runs/mmd-a
python -m mmdkit.gan train --protocol pacgan --loss ns-gan --packing 4 --epochs 40 --seed 0 --out runs/pacgan4
python -m mmdkit.gan bench --steps 3000 --seeds 0 1 2
python -m mmdkit.gan tune --trials 10 --jobs 2 --report
torchrun --nproc-per-node 2 -m mmdkit.gan train-dp --data ring8 --steps 500 --out runs/gmmn-dp
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path

from mmdkit.gan.constraints import InstanceNoise
from mmdkit.gan.data import DATASETS
from mmdkit.gan.losses import LOSSES, GANLoss
from mmdkit.gan.trainer import G_HIDDEN, G_LAYERS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmdkit.gan", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one loss on one toy; writes metrics.json and PNGs to --out")
    t.add_argument("--loss", required=True, choices=sorted(LOSSES))
    t.add_argument("--data", default="grid25", choices=sorted(DATASETS))
    t.add_argument("--protocol", default="fast", choices=["fast", "pacgan"],
                   help="fast: this package's (--steps generator steps, the shared MLP generator); pacgan: "
                        "PacGAN's synthetic-data setup (their networks, Adam 1e-4 / 0.8, batch 100, 400 epochs of "
                        "100 000 samples, simultaneous updates), checkpointed and resumable in --out")
    t.add_argument("--packing", type=int, default=None,
                   help="the critic sees this many samples concatenated (PacGAN); any loss with a critic "
                        "(default: the loss's own packing setting in the fast protocol, 1 in --protocol pacgan)")
    t.add_argument("--steps", type=int, default=None, help="generator steps (fast protocol; default 3000)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (pacgan protocol; default 400)")
    t.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="pacgan protocol: wall minutes between checkpoints (0: every epoch)")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="pacgan protocol: stop with a checkpoint after this many minutes (rerun to continue)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="output folder (pacgan: the run folder it resumes from)")
    t.add_argument("--batch-size", type=int, default=None,
                   help="fast: real points per step (default: the loss's own, else 256); "
                        "pacgan: packed rows per iteration (default 100)")
    t.add_argument("--g-hidden", type=int, default=None, help=f"generator width (fast protocol; default {G_HIDDEN})")
    t.add_argument("--g-layers", type=int, default=None,
                   help=f"generator linear maps (fast protocol; default {G_LAYERS})")
    t.add_argument("--instance-noise", type=float, default=0.0,
                   help="initial std of instance noise on the critic's inputs (annealed to 0 over --steps / 2)")
    t.add_argument("--eval-samples", type=int, default=2500, help="generated points for the metrics")
    t.add_argument("--eval-every", type=int, default=0,
                   help="fast protocol: mode statistics every this many steps (0: never), "
                        "in metrics.json's trajectory and curves.png")
    t.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="fast protocol: evaluate an exponential moving average of the generator's weights "
                        "with this decay (e.g. 0.999); metrics.json's without_ema holds the trained weights'")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one of the loss's settings (repeatable), e.g. lr_c=3e-3, "
                        "critic_objective=attractive, penalty.weight=1 (values as Python literals)")
    t.add_argument("--no-progress", action="store_true")
    dp = sub.add_parser("train-dp", help="GMMN with one global MMD over every rank's batch (run under torchrun)")
    dp.add_argument("--data", default="ring8", choices=sorted(DATASETS))
    dp.add_argument("--steps", type=int, default=500)
    dp.add_argument("--batch-size", type=int, default=512, help="global batch (split over the ranks)")
    dp.add_argument("--seed", type=int, default=0)
    dp.add_argument("--lr", type=float, default=1e-3)
    dp.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    dp.add_argument("--out", default=None, help="folder for metrics.json (rank 0)")
    dp.add_argument("--timeout", type=float, default=300.0, help="process-group timeout in seconds")
    dp.add_argument("--no-progress", action="store_true")
    b = sub.add_parser("bench", help="every loss's defaults on ring8 and grid25 for several seeds -> its section "
                                     "of bench/GAN_RESULTS.md")
    b.add_argument("--losses", nargs="+", default=None, choices=sorted(LOSSES), help="default: all")
    b.add_argument("--data", nargs="+", default=["ring8", "grid25"], choices=sorted(DATASETS))
    b.add_argument("--steps", type=int, default=3000)
    b.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    b.add_argument("--out-md", default="bench/GAN_RESULTS.md")
    b.add_argument("--workdir", default=None,
                   help="keep each run's metrics and PNGs here; a rerun reads back the runs that finished")
    b.add_argument("--note", default="", help="a line added under the header (e.g. why steps were cut)")
    b.add_argument("--eval-samples", type=int, default=2500, help="generated points for the metrics")
    b.add_argument("--jobs", type=int, default=1, help="trainings run at once (worker processes)")
    b.add_argument("--batch-size", type=int, default=None, help="default: each loss's own, else 256")
    b.add_argument("--g-hidden", type=int, default=G_HIDDEN, help="generator width")
    b.add_argument("--g-layers", type=int, default=G_LAYERS, help="generator linear maps")
    b.add_argument("--no-progress", action="store_true")
    u = sub.add_parser("tune", help="equal-budget random search for every loss (issue 15) -> the table leading "
                                    "bench/GAN_RESULTS.md; resumable (bench/gan_tuning)")
    u.add_argument("--trials", type=int, default=10, help="random configurations per loss (the same for all)")
    u.add_argument("--losses", nargs="+", default=None, choices=sorted(LOSSES), help="default: all")
    u.add_argument("--jobs", type=int, default=1, help="trainings run at once (worker processes)")
    u.add_argument("--report", action="store_true",
                   help="also train each loss's selected configuration on seeds 0 1 2 of ring8 and grid25 and "
                        "write the table to --out-md")
    u.add_argument("--out-md", default="bench/GAN_RESULTS.md")
    u.add_argument("--cache", default="bench/gan_tuning", help="folder of the cached runs (one JSON per run)")
    u.add_argument("--pacgan-runs", default="bench/gan_runs/pacgan", help="PacGAN-protocol runs for the table")
    u.add_argument("--steps", type=int, default=3000, help=argparse.SUPPRESS)  # quick checks only
    u.add_argument("--eval-samples", type=int, default=2500, help=argparse.SUPPRESS)
    u.add_argument("--no-progress", action="store_true")
    return p


def loss_from_settings(name: str, pairs: list[str]) -> GANLoss:
    """The loss ``name`` with ``KEY=VALUE`` overrides; a dotted KEY sets a field of a nested setting.

    Examples
    --------
    >>> loss_from_settings("mmd-gan", ["lr_c=0.01", "penalty.weight=1", "critic_objective=attractive"]).penalty.weight
    1
    """
    from mmdkit.gan.tuning import configured_loss
    settings: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"`--set` takes KEY=VALUE, got {pair!r}")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare word: a string setting such as critic_objective=attractive
        settings[key] = value
    return configured_loss(name, settings)


def _train(args, loss: GANLoss) -> dict:
    """``train --protocol fast``."""
    from mmdkit.gan.trainer import train
    for flag, value in (("--epochs", args.epochs), ("--max-minutes", args.max_minutes)):
        if value is not None:
            raise ValueError(f"`{flag}` applies to --protocol pacgan; the fast protocol counts --steps")
    steps = 3000 if args.steps is None else args.steps
    noise = InstanceNoise(args.instance_noise, max(1, steps // 2)) if args.instance_noise > 0 else None
    return train(loss, args.data, steps=steps, seed=args.seed, out=args.out, batch_size=args.batch_size,
                 instance_noise=noise, progress=not args.no_progress, eval_samples=args.eval_samples,
                 g_hidden=args.g_hidden or G_HIDDEN, g_layers=args.g_layers or G_LAYERS, packing=args.packing,
                 eval_every=args.eval_every, ema=args.ema)


def _train_pacgan(args, loss: GANLoss) -> dict:
    """``train --protocol pacgan``: every PacGAN default, --epochs / --packing / --batch-size override."""
    from mmdkit.gan.pacgan import PROTOCOLS, train_protocol
    for flag, value in (("--steps", args.steps), ("--g-hidden", args.g_hidden), ("--g-layers", args.g_layers),
                        ("--instance-noise", args.instance_noise or None),
                        ("--eval-every", args.eval_every or None), ("--ema", args.ema)):
        if value is not None:
            raise ValueError(f"`{flag}` is not part of --protocol pacgan (its networks and schedule are PacGAN's; "
                             "--epochs sets the length)")
    changes = {"packing": 1 if args.packing is None else args.packing, "eval_samples": args.eval_samples}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    protocol = dataclasses.replace(PROTOCOLS["pacgan"], **changes)
    return train_protocol(loss, args.data, protocol, seed=args.seed, out=args.out,
                          checkpoint_minutes=args.checkpoint_minutes, max_minutes=args.max_minutes,
                          progress=not args.no_progress)


def _tune(args, parser, command: str) -> int:
    """``tune``: the trials (cached), with --report the seeds and the table."""
    from mmdkit.gan.bench import write_tuning_md
    from mmdkit.gan.tuning import run_tuning
    for flag, value in (("--trials", args.trials), ("--jobs", args.jobs), ("--steps", args.steps),
                        ("--eval-samples", args.eval_samples)):
        if value < 1:
            parser.error(f"`{flag}` must be a positive integer, got {value}")
    try:
        result = run_tuning(args.losses, trials=args.trials, jobs=args.jobs, steps=args.steps, cache=args.cache,
                            report=args.report, eval_samples=args.eval_samples,
                            progress=False if args.no_progress else None)
    except ValueError as e:
        parser.error(str(e))
    if args.report:
        write_tuning_md(result, args.out_md, command=command, pacgan_root=args.pacgan_runs, jobs=args.jobs)
        print(f"wrote {args.out_md}")
    return 0



def _shown(arg: str) -> str:
    """``arg`` as the recorded command shows it: an absolute path inside the repository (the nearest folder
    above the working directory with a pyproject.toml) relative to it, so no committed table names a
    machine's folders; anything else as given."""
    here = Path.cwd().resolve()
    root = next((d for d in (here, *here.parents) if (d / "pyproject.toml").is_file()), None)
    if root is None or not os.path.isabs(arg):
        return arg
    try:
        return str(Path(arg).resolve().relative_to(root))
    except ValueError:
        return arg

def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        try:
            loss = loss_from_settings(args.loss, args.set)
            m = _train(args, loss) if args.protocol == "fast" else _train_pacgan(args, loss)
        except (ValueError, TypeError) as e:
            parser.error(str(e))
        shown = {k: v for k, v in m.items() if k not in ("settings", "history", "trajectory")}
        print(json.dumps(shown, indent=1, default=str))
        return 0
    if args.command == "train-dp":
        from mmdkit.gan.data_parallel import main as train_dp
        return train_dp(args)
    command = "python -m mmdkit.gan " + " ".join(shlex.quote(_shown(a)) for a in (argv if argv is not None
                                                                                 else sys.argv[1:]))
    if args.command == "tune":
        return _tune(args, parser, command)
    from mmdkit.gan.bench import run_bench
    run_bench(args.losses, tuple(args.data), tuple(args.seeds), args.steps, args.out_md, args.workdir,
              command=command, progress=not args.no_progress, note=args.note,
              eval_samples=args.eval_samples, jobs=args.jobs, batch_size=args.batch_size,
              g_hidden=args.g_hidden, g_layers=args.g_layers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
