"""``python -m mmdkit.gan bench``: every loss on the toys, several seeds, one Markdown table."""
from __future__ import annotations

import json
import math
import platform
import re
import statistics
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from mmdkit.gan.losses import LOSSES, get_loss
from mmdkit.gan.pacgan import PacGANProtocol, read_log
from mmdkit.gan.trainer import BATCH_SIZE, G_HIDDEN, G_LAYERS, _jsonable, train

__all__ = ["run_bench", "PUBLISHED", "format_table", "format_targets", "MMD_FAMILY", "mean_se", "pacgan_rows",
           "format_tuning_table", "format_search_details", "write_tuning_md", "plot_tuned_samples"]

MMD_FAMILY = ("gmmn", "mmd-gan", "cramer-gan", "energy-gan")

# Published rows, 2-D toys (same data definitions, their own architectures and
# step counts). (modes, high-quality %, reverse KL); VEEGAN reports no reverse KL.
# PacGAN Table 1 (Lin et al. 2018) and VEEGAN Table 1 (Srivastava et al. 2017).
# The PacGAN4 grid row is quoted in the project's issue; the other values were
# transcribed from the papers without a copy at hand: check before citing.
PUBLISHED = {
    "ring8": [
        ("PacGAN T1: GAN", 6.3, 98.2, 0.45), ("PacGAN T1: ALI", 6.6, 97.6, 0.36),
        ("PacGAN T1: Minibatch disc.", 4.3, 36.6, 1.93), ("PacGAN T1: VEEGAN", 8.0, 71.7, 0.0025),
        ("PacGAN T1: PacGAN2", 7.9, 95.6, 0.07), ("PacGAN T1: PacGAN3", 7.8, 97.7, 0.07),
        ("PacGAN T1: PacGAN4", 7.8, 95.9, 0.07),
        ("VEEGAN T1: GAN", 1.0, 99.3, None), ("VEEGAN T1: ALI", 2.8, 0.13, None),
        ("VEEGAN T1: Unrolled GAN", 7.6, 35.6, None), ("VEEGAN T1: VEEGAN", 8.0, 52.9, None),
    ],
    "grid25": [
        ("PacGAN T1: GAN", 17.3, 94.8, 0.70), ("PacGAN T1: ALI", 24.1, 95.7, 0.14),
        ("PacGAN T1: Minibatch disc.", 23.8, 79.9, 0.17), ("PacGAN T1: VEEGAN", 24.6, 40.0, 0.11),
        ("PacGAN T1: PacGAN2", 23.8, 91.3, 0.13), ("PacGAN T1: PacGAN3", 24.6, 94.2, 0.06),
        ("PacGAN T1: PacGAN4", 24.8, 93.6, 0.04),
        ("VEEGAN T1: GAN", 3.3, 0.5, None), ("VEEGAN T1: ALI", 15.8, 1.6, None),
        ("VEEGAN T1: Unrolled GAN", 23.6, 16.0, None), ("VEEGAN T1: VEEGAN", 24.6, 40.0, None),
    ],
}


def _mean_sd(xs: list[float]) -> str:
    """'mean ± sd' (sd over seeds; only the mean for one seed)."""
    finite = [x for x in xs if math.isfinite(x)]
    if len(finite) < len(xs):
        return "inf" if not finite else f"{statistics.mean(finite):.3g} ({len(xs) - len(finite)} inf)"
    m = statistics.mean(xs)
    return f"{m:.3g}" if len(xs) == 1 else f"{m:.3g} ± {statistics.stdev(xs):.2g}"


def format_table(results: dict, data: str) -> str:
    """Markdown table of one toy: ours (mean ± sd over seeds) then the published rows."""
    k = 8 if data == "ring8" else 25
    lines = [f"| loss | modes (of {k}) | high quality % | reverse KL | mmd2_heldout | CPU s | wall s | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for loss, runs in results.items():
        runs = [r for r in runs if r["data"] == data]
        if not runs:
            continue
        lines.append(f"| {loss} | {_mean_sd([r['modes_covered'] for r in runs])} "
                     f"| {_mean_sd([100 * r['high_quality'] for r in runs])} "
                     f"| {_mean_sd([r['reverse_kl'] for r in runs])} "
                     f"| {_mean_sd([r['mmd2_heldout'] for r in runs])} "
                     f"| {_mean_sd([r['cpu_seconds'] for r in runs])} "
                     f"| {_mean_sd([r['seconds'] for r in runs])} | {len(runs)} |")
    for name, modes, hq, rkl in PUBLISHED.get(data, []):
        lines.append(f"| *{name}* (published) | {modes} | {hq} | {'—' if rkl is None else rkl} | — | — | — | — |")
    return "\n".join(lines)


def format_targets(results: dict, data: str = "grid25", losses=MMD_FAMILY, min_modes: int = 24,
                   min_hq: float = 0.70) -> str:
    """Per-seed table of the MMD family on ``data`` against the target (>= min_modes, >= min_hq)."""
    target = f">= {min_modes} modes and >= {100 * min_hq:.0f} %"
    lines = [f"| loss | seed | modes | high quality % | reverse KL | CPU s | {target} |",
             "|---|---|---|---|---|---|---|"]
    for loss in losses:
        for r in (r for r in results.get(loss, []) if r["data"] == data):
            ok = r["modes_covered"] >= min_modes and r["high_quality"] >= min_hq
            lines.append(f"| {loss} | {r['seed']} | {r['modes_covered']} | {100 * r['high_quality']:.1f} "
                         f"| {r['reverse_kl']:.3g} | {r['cpu_seconds']:.0f} | {'yes' if ok else 'no'} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _batches(losses, batch_size: int | None) -> str:
    """The batch sizes the runs use, e.g. '256 (gmmn: 512)'."""
    if batch_size is not None:
        return str(batch_size)
    own = {name: get_loss(name).batch_size for name in losses}
    extra = ", ".join(f"{n}: {b}" for n, b in own.items() if b not in (None, BATCH_SIZE))
    return f"{BATCH_SIZE}" + (f" ({extra})" if extra else "")


# the sections of GAN_RESULTS.md the two commands write (the rest of the file is written by hand)
TUNE_BEGIN = "<!-- tune: begin (python -m mmdkit.gan tune --report writes everything up to 'tune: end') -->"
TUNE_END = "<!-- tune: end -->"
BENCH_BEGIN = "<!-- bench: begin (python -m mmdkit.gan bench writes everything up to 'bench: end') -->"
BENCH_END = "<!-- bench: end -->"


def _run_one(job: tuple) -> dict:
    """One (loss, data, seed) training run; a top-level function so worker processes can import it.

    With a run folder ``out``, a run whose folder holds the metrics of this very job (``job.json``: loss,
    its settings, data, seed, steps, evaluation samples, trainer options) is read back, not retrained."""
    name, data, seed, steps, out, progress, eval_samples, kw = job
    key = json.loads(json.dumps(_jsonable({"loss": name, "settings": get_loss(name).settings(), "data": data,
                                           "seed": seed, "steps": steps, "eval_samples": eval_samples, **kw})))
    m = _cached_run(out, key)
    if m is None:
        if out is not None:
            Path(out, "job.json").unlink(missing_ok=True)  # an interrupted run leaves no stale key behind
        m = train(name, data, steps=steps, seed=seed, out=out, progress=progress, eval_samples=eval_samples, **kw)
        if out is not None:
            (Path(out) / "job.json").write_text(json.dumps(key, indent=1) + "\n")
    print(f"{name:12s} {data:7s} seed {seed}: modes {m.get('modes_covered')} "
          f"hq {m.get('high_quality', float('nan')):.3f} rkl {m.get('reverse_kl', float('nan')):.3g} "
          f"mmd2 {m['mmd2_heldout']:.3g} cpu {m['cpu_seconds']:.0f}s wall {m['seconds']:.0f}s", flush=True)
    return m


def _cached_run(out, key: dict) -> dict | None:
    """The metrics.json of run folder ``out`` if its job.json is ``key`` (inf/nan read back as floats)."""
    if out is None or not (Path(out) / "job.json").exists() or not (Path(out) / "metrics.json").exists():
        return None
    if json.loads((Path(out) / "job.json").read_text()) != key:
        return None
    m = json.loads((Path(out) / "metrics.json").read_text())
    return {k: float(v) if v in ("inf", "-inf", "nan") else v for k, v in m.items()}


def run_bench(losses=None, datasets=("ring8", "grid25"), seeds=(0, 1, 2), steps: int = 3000,
              out_md: str | Path = "bench/GAN_RESULTS.md", workdir: str | Path | None = None,
              command: str = "", progress: bool = True, note: str = "", eval_samples: int = 2500,
              jobs: int = 1, batch_size: int | None = None, g_hidden: int = G_HIDDEN, g_layers: int = G_LAYERS) -> dict:
    """Train every (loss, data, seed), write the Markdown table to ``out_md``; returns the raw results.

    Each run writes its metrics.json and PNGs under ``workdir/<loss>/<data>/seed<s>``
    when ``workdir`` is given, and all raw results to ``workdir/bench_results.json``; a rerun with the
    same ``workdir`` reads back the runs that finished (resumable). The table replaces only its own
    section of ``out_md`` (between :data:`BENCH_BEGIN` and :data:`BENCH_END`; appended when absent).
    ``jobs`` > 1 runs that many trainings at once in worker processes (spawned,
    one torch thread each; no progress bars). ``batch_size``, ``g_hidden`` and
    ``g_layers`` go to :func:`~mmdkit.gan.trainer.train` for every run.
    """
    kw = {"batch_size": batch_size, "g_hidden": g_hidden, "g_layers": g_layers}
    losses = list(losses or LOSSES)
    results: dict[str, list[dict]] = {name: [] for name in losses}
    t0 = time.perf_counter()
    plan = [(name, data, seed, steps, None if workdir is None else Path(workdir) / name / data / f"seed{seed}",
             progress and jobs == 1, eval_samples, kw)
            for name in losses for data in datasets for seed in seeds]
    if jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(_run_one, plan))
    else:
        done = [_run_one(job) for job in plan]
    for job, m in zip(plan, done):
        results[job[0]].append(m)
    total = time.perf_counter() - t0
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    head = [
        BENCH_BEGIN,
        "# GAN benchmark: mode coverage on the 2-D toys",
        "",
        f"Generated by `{command or 'python -m mmdkit.gan bench'}` on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__}, 1 torch thread per run); "
        f"{steps} generator steps, seeds {list(seeds)}, batch {_batches(losses, batch_size)}, "
        f"generator MLP {g_layers} linear maps x {g_hidden} units (ReLU) for every loss, {jobs} run(s) at a time, "
        f"total {total / 60:.1f} min wall.",
        "",
        f"Metrics on {eval_samples} generated samples: a sample is *high quality* within 3 std of its nearest mode; "
        "a mode is covered with >= 1 high-quality sample; reverse KL is KL(histogram of high-quality "
        "samples over modes || uniform). Values are mean ± sd over seeds; `CPU s` is the training process's CPU time "
        "(one torch thread), `wall s` its wall time (2 CPU cores shared with other engineers' jobs, so wall "
        "times are inflated and noisy; the CPU time is the comparable number).",
        "Published rows use the same data definitions but their own networks and step counts. "
        "The PacGAN4 grid row (24.8, 93.6 %, 0.04) is quoted in the project's issue; the other published "
        "values were transcribed without a copy of the papers at hand: check them against PacGAN Table 1 "
        "and VEEGAN Table 1 before citing.",
    ]
    if note:
        head += ["", note]
    body = []
    for data in datasets:
        body += ["", f"## {data}", "", format_table(results, data)]
    targets = format_targets(results) if "grid25" in datasets else ""
    if targets:
        body += ["", "## Issue 5 target: grid25, every seed of this run", "",
                 f"The MMD-family losses must cover >= 24/25 modes with >= 70 % high-quality samples at "
                 f"{steps} generator steps (the best of them: 25/25, >= 95 %, reverse KL <= 0.03, within "
                 "10 CPU-minutes).", "", targets]
    write_section(out_md, "\n".join(head + body + ["", BENCH_END]) + "\n", BENCH_BEGIN, BENCH_END)
    if workdir is not None:
        Path(workdir, "bench_results.json").write_text(json.dumps(_jsonable(results), indent=1))
    return results


# ------------------------------------------------------------------ the equal-budget table (issue 15, item 4)

PACGAN_EPOCHS = PacGANProtocol.epochs  # the full PacGAN protocol (400)
_MODES = {"grid25": 25, "ring8": 8}
TOYS = ("grid25", "ring8")


def mean_se(xs) -> str:
    """'mean ± standard error' over seeds (sd / sqrt(n)); only the mean for one value; infinite values
    (reverse KL with a mode-less run) are counted apart: 'mean of the finite (k of n inf)'.

    Examples
    --------
    >>> mean_se([25, 24, 22])
    '23.7 ± 0.88'
    """
    xs = [float("inf") if x is None else float(x) for x in xs]
    if not xs:
        return "—"
    finite = [x for x in xs if math.isfinite(x)]
    if len(finite) < len(xs):
        return "inf" if not finite else f"{statistics.mean(finite):.3g} ({len(xs) - len(finite)} of {len(xs)} inf)"
    m = statistics.mean(xs)
    if len(xs) == 1:
        return f"{m:.3g}"
    return f"{m:.3g} ± {statistics.stdev(xs) / math.sqrt(len(xs)):.2g}"


_RUN_NAME = re.compile(r"^(?:(?P<data>[a-z0-9]+)-)?(?:e(?P<epochs>\d+)|full)-pack(?P<packing>\d+)-seed(?P<seed>\d+)$")


def pacgan_rows(root: str | Path = "bench/gan_runs/pacgan") -> list[dict]:
    """PacGAN-protocol runs under ``root`` (folders ``[<data>-](e<epochs>|full)-pack<m>-seed<s>`` with a
    metrics.jsonl; ``full``: all PACGAN_EPOCHS), grouped by (data, loss, packing, epochs the run is meant
    to reach): the last logged epoch of each seed. A finished run's metrics.json gives its data, loss,
    seed, epochs and packing; otherwise the folder name's (data default grid25) and ns-gan (the loss of
    PacGAN's GAN and PacGANm rows). A line being written (not yet valid JSON) is skipped."""
    groups: dict[tuple, dict] = {}
    for folder in sorted(Path(root).glob("*")) if Path(root).is_dir() else []:
        match, log = _RUN_NAME.match(folder.name), folder / "metrics.jsonl"
        if match is None or not log.exists():
            continue
        lines = read_log(log)
        if not lines:
            continue
        data, loss, seed = match["data"] or "grid25", "ns-gan", int(match["seed"])
        epochs, packing = int(match["epochs"] or PACGAN_EPOCHS), int(match["packing"])
        if (folder / "metrics.json").exists():
            final = json.loads((folder / "metrics.json").read_text())
            protocol = final.get("protocol", {})
            data, seed = final.get("data", data), final.get("seed", seed)
            loss = final.get("settings", {}).get("loss", loss)
            epochs, packing = protocol.get("epochs", epochs), protocol.get("packing", packing)
        key = (data, loss, packing, epochs)
        g = groups.setdefault(key, {"data": data, "loss": loss, "packing": packing, "target_epochs": epochs,
                                    "seeds": [], "last": []})
        g["seeds"].append(seed)
        g["last"].append(lines[-1])
    return list(groups.values())


def _pacgan_label(row: dict) -> tuple[str, str]:
    """(row name, budget) of a PacGAN-protocol group."""
    m = row["packing"]
    reached = sorted({int(r["epoch"]) for r in row["last"]})
    at = str(reached[0]) if len(reached) == 1 else f"{reached[0]}-{reached[-1]}"
    name = f"*PacGAN protocol: {'GAN' if m == 1 else f'PacGAN{m}'}* ({row['loss']}, packing {m})"
    runs_to = "" if row["target_epochs"] == reached[0] == reached[-1] else f", runs to {row['target_epochs']}"
    return name, f"{at} of {PACGAN_EPOCHS} epochs{runs_to}; seeds {sorted(row['seeds'])}"


def _cells(records: list[dict], data: str) -> list[str]:
    """modes, high quality %, reverse KL of one toy (mean ± s.e. over the records)."""
    rs = [r for r in records if r["data"] == data]
    if not rs:
        return ["—"] * 3
    return [mean_se([r["modes_covered"] for r in rs]), mean_se([100 * float(r["high_quality"]) for r in rs]),
            mean_se([r.get("reverse_kl") for r in rs])]


def format_tuning_table(result: dict, pacgan: list[dict] | None = None) -> str:
    """The leading table: each loss's selected configuration over its report seeds (mean ± s.e.) on
    both toys with the CPU seconds of its whole search and seeds, then PacGAN-protocol rows, then the
    published rows (:data:`PUBLISHED`)."""
    from mmdkit.gan.tuning import PRIOR_TRIAL
    cols = " | ".join(f"{d} modes (of {_MODES[d]}) | {d} high quality % | {d} reverse KL" for d in TOYS)
    lines = [f"| loss | {cols} | CPU s (search + seeds) | budget |", "|---" * (2 + 3 * len(TOYS) + 1) + "|"]
    n_trials = result.get("n_trials")
    for loss, runs in result.get("report", {}).items():
        trials = result["trials"][loss]
        flat = [{"data": r["data"], **r["metrics"]} for r in runs]
        cpu = sum(float(r["metrics"]["cpu_seconds"]) for r in trials + runs)
        seeds = sorted({r["seed"] for r in runs})
        random = n_trials or sum(r.get("trial") != PRIOR_TRIAL for r in trials)
        prior = " + prior" if any(r.get("trial") == PRIOR_TRIAL for r in trials) else ""
        lines.append(f"| {loss} | {' | '.join(c for d in TOYS for c in _cells(flat, d))} | {cpu:.0f} "
                     f"| {random} trials{prior}, seeds {seeds} |")
    for row in pacgan or []:
        name, budget = _pacgan_label(row)
        flat = [{"data": row["data"], **r} for r in row["last"]]
        cpu = sum(float(r.get("cpu_seconds", 0.0)) for r in row["last"])
        lines.append(f"| {name} | {' | '.join(c for d in TOYS for c in _cells(flat, d))} | {cpu:.0f} | {budget} |")
    published = {}
    for data in TOYS:
        for name, modes, hq, rkl in PUBLISHED.get(data, []):
            published.setdefault(name, {})[data] = [str(modes), str(hq), "—" if rkl is None else str(rkl)]
    for name, by_toy in published.items():
        cells = " | ".join(c for d in TOYS for c in by_toy.get(d, ["—"] * 3))
        lines.append(f"| *{name}* (published) | {cells} | — | their protocol |")
    return "\n".join(lines)


def _describe(spec: tuple) -> str:
    kind = spec[0]
    if kind == "choice":
        return "one of " + ", ".join(str(o) for o in spec[1])
    if kind == "neg-log-uniform":
        return f"minus log-uniform [{spec[1]:g}, {spec[2]:g}]"
    return f"{kind} [{spec[1]:g}, {spec[2]:g}]"


def format_search_details(result: dict) -> str:
    """The search space, the selection rule, every trial, and each loss's selected configuration."""
    from mmdkit.gan.tuning import COMMON_SPACE, LOSS_SPACES, SELECTION_RULE, as_set_args, select, space_of
    losses = list(result["trials"])
    out = ["### Search space", "",
           "Common axes (a loss gets those that apply to it: `lr_c`, `n_critic` and `packing` need a critic, "
           "`betas` an Adam optimiser; the RMSProp losses keep RMSProp):", "",
           "| axis | distribution | losses |", "|---|---|---|"]
    for axis, spec in COMMON_SPACE.items():
        users = [n for n in losses if axis in space_of(n)]
        out.append(f"| `{axis}` | {_describe(spec)} | {len(users)} of {len(losses)} |")
    out += ["", "Each loss's own settings:", "", "| loss | axis | distribution |", "|---|---|---|"]
    for name in losses:
        own = LOSS_SPACES.get(name, {})
        if not own:
            out.append(f"| {name} | — (none) | |")
        for axis, spec in own.items():
            out.append(f"| {name} | `{axis}` | {_describe(spec)} |")
    out += ["", "Trial t of loss L draws every axis from a generator seeded by (L, t, axis) "
            "(`mmdkit.gan.tuning.draw`): reproducible, independent of run order. Continuous draws are "
            "rounded to 3 significant digits.", "",
            "### Trials (validation: grid25, seed " + str(result.get("validation_seed")) + ")", "",
            f"Selection rule: {SELECTION_RULE}. **Bold**: the selected trial.", "",
            "| loss | trial | modes | high quality % | reverse KL | CPU s | configuration (`train` options) |",
            "|---|---|---|---|---|---|---|"]
    for name in losses:
        best = select(result["trials"][name])
        for r in result["trials"][name]:
            m = r["metrics"]
            bold = "**" if r is best else ""
            err = f" (failed: {r['error']})" if r.get("error") else ""
            out.append(f"| {name} | {bold}{r['trial']}{bold} | {m['modes_covered']} "
                       f"| {100 * float(m['high_quality']):.1f} | {float(m['reverse_kl']):.3g} "
                       f"| {float(m['cpu_seconds']):.0f} | `{as_set_args(r['config'])}`{err} |")
    if result.get("selected"):
        out += ["", "### Selected configurations (each loss's defaults: `train --loss <loss>` alone runs them)", "",
                "| loss | trial | `python -m mmdkit.gan train --loss <loss>` options |", "|---|---|---|"]
        for name, r in result["selected"].items():
            out.append(f"| {name} | {r['trial']} | `{as_set_args(r['config'])}` |")
    return "\n".join(out)


def _collapsed(result: dict, data: str = "grid25", min_hq: float = 0.10, min_modes: float = 0.5) -> list[str]:
    """Losses whose report runs on ``data`` average under ``min_hq`` high-quality samples or cover under
    ``min_modes`` of the modes on average (mode collapse, however sharp the modes it keeps)."""
    out = []
    for loss, runs in result.get("report", {}).items():
        rs = [r["metrics"] for r in runs if r["data"] == data]
        if rs and (statistics.mean(float(m["high_quality"]) for m in rs) < min_hq
                   or statistics.mean(m["modes_covered"] for m in rs) < min_modes * _MODES[data]):
            out.append(loss)
    return out


def plot_tuned_samples(result: dict, path: str | Path, data: str = "grid25") -> Path | None:
    """One panel per loss: the selected configuration's samples on ``data`` (its lowest report seed that
    kept them); a loss none of whose runs did (they failed) gets a panel that says so."""
    import numpy as np

    from mmdkit.gan.data import get_dataset
    from mmdkit.gan.plots import _limits
    from mmdkit.plotting import _pyplot
    panels = []  # (loss, the run whose samples it shows, or the lowest seed's run on data if none kept them)
    for loss, runs in result.get("report", {}).items():
        rs = sorted((r for r in runs if r["data"] == data), key=lambda r: (not r.get("samples"), r["seed"]))
        if rs:
            panels.append((loss, rs[0]))
    if not any(r.get("samples") for _, r in panels):
        return None
    plt = _pyplot()
    toy = get_dataset(data)
    lo, hi = _limits(toy)
    cols = min(5, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (loss, r) in zip(axes.ravel(), panels):
        ax.set_axis_on()
        if not r.get("samples"):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{loss}: no samples", fontsize=8)
            ax.text(0.5, 0.5, "\n".join(textwrap.wrap(f"every {data} run failed: {r.get('error')}", 28)[:6]),
                    ha="center", va="center", fontsize=6, transform=ax.transAxes)
            continue
        X = np.clip(np.asarray(r["samples"]), lo, hi)  # points outside the window drawn on its edge
        ax.scatter(X[:, 0], X[:, 1], s=1.5, c="crimson", alpha=0.5)
        if toy.modes is not None:
            ax.scatter(toy.modes[:, 0], toy.modes[:, 1], marker="x", s=10, c="k", linewidths=0.7)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        m = r["metrics"]
        ax.set_title(f"{loss}: {m['modes_covered']}/{_MODES.get(data, '?')}, "
                     f"{100 * float(m['high_quality']):.0f} %", fontsize=8)
    shown = sorted({r["seed"] for _, r in panels if r.get("samples")})
    fig.suptitle(f"{data}, each loss's searched configuration, seed {', '.join(map(str, shown))} "
                 "(points outside the window on its edge)", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_tuning_md(result: dict, out_md: str | Path, command: str = "", pacgan_root: str | Path | None =
                    "bench/gan_runs/pacgan", plot: bool = True, jobs: int = 1) -> str:
    """Write the equal-budget section at the top of ``out_md`` (replacing an earlier one, keeping the rest
    of the file below it) and the samples plot next to it; returns the section."""
    from mmdkit.gan.tuning import SELECTION_RULE
    out_md = Path(out_md)
    plot_path = out_md.with_name("GAN_SAMPLES_grid25.png")
    drawn = plot_tuned_samples(result, plot_path) if plot else None
    seeds = ", ".join(map(str, result.get("report_seeds") or []))
    toys = " and ".join(result.get("report_data") or [])
    collapsed = _collapsed(result)
    head = [
        TUNE_BEGIN,
        "# GAN losses under one tuning budget, PacGAN's protocol, and the published rows",
        "",
        f"Generated by `{command or 'python -m mmdkit.gan tune --report'}` on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__}, 1 torch thread per run, "
        f"{jobs} run(s) at a time). Protocol (Lucic et al., NeurIPS 2018: random search, the same budget per "
        f"loss): every loss gets {result.get('n_trials')} random configurations (trials) from the one space "
        f"below, and one more trial, \"prior\", with the configuration it shipped with before the search "
        f"(`mmdkit.gan.tuning.PRIOR`: its paper's settings for most baselines, settings tuned by hand on this "
        f"protocol for the MMD/energy losses); a trial is one fast-protocol run "
        f"({result.get('steps')} generator steps, the shared generator "
        f"MLP {G_LAYERS} linear maps x {G_HIDDEN} units, both learning rates decaying linearly to 0) on grid25, "
        f"seed {result.get('validation_seed')} (validation). The selected trial ({SELECTION_RULE}) has its "
        f"configuration trained on the fresh "
        f"seeds {seeds} of {toys}: the loss rows below are those seeds, mean ± standard error. `CPU s` is the "
        "CPU time of the loss's whole search plus its seeds (one torch thread per run).",
        "",
        "PacGAN-protocol rows: `python -m mmdkit.gan train --protocol pacgan` runs in bench/gan_runs/pacgan "
        "(their networks, Adam 1e-4 / 0.8, batch 100), the last logged epoch of each seed, mean ± s.e.; "
        "`CPU s` is the sum over seeds. Published rows: their networks and protocol, values as in "
        "`mmdkit.gan.bench.PUBLISHED` (check them against PacGAN's Table 1 before citing).",
        "",
        format_tuning_table(result, pacgan_rows(pacgan_root) if pacgan_root is not None else []),
    ]
    if collapsed:
        head += ["", f"Still collapsed after the search (on grid25, a mean high quality under 10 % or under half "
                     f"the modes covered): "
                     f"{', '.join(collapsed)}. Each one's {result.get('n_trials')} trials are listed below: "
                     "a finding under this budget, not an untuned default."]
    if drawn is not None:
        head += ["", f"Samples of every loss on grid25 (its searched configuration, one panel each): "
                     f"[{plot_path.name}]({plot_path.name})."]
    head += ["", "## Search details", "", format_search_details(result), "", TUNE_END]
    section = "\n".join(head) + "\n"
    write_section(out_md, section, TUNE_BEGIN, TUNE_END, at_top=True)
    return section


def write_section(out_md: str | Path, section: str, begin: str, end: str, at_top: bool = False) -> None:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) into ``out_md``: in place of an
    earlier section between the same markers, else at the top or the end; the rest of the file is kept."""
    out_md = Path(out_md)
    old = out_md.read_text() if out_md.exists() else ""
    n = old.count(begin)
    if n != old.count(end) or n > 1 or (n and old.index(end) < old.index(begin)):
        raise ValueError(f"{out_md}: the markers {begin!r} and {end!r} do not pair up (each must appear once, "
                         f"begin before end, or neither): fix the file by hand; nothing was written")
    if begin in old:
        i = old.index(begin)
        j = old.index(end, i) + len(end)
        if at_top:  # the section leads the file
            rest = (old[:i] + old[j:].lstrip("\n")).strip("\n")
            new = section + ("\n" + rest + "\n" if rest else "")
        else:
            new = old[:i] + section.rstrip("\n") + old[j:]
    elif at_top:
        new = section + ("\n" + old if old else "")
    else:
        new = old + ("\n" if old and not old.endswith("\n\n") else "") + section
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(new)
