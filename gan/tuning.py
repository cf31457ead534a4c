"""Equal-budget tuning of every GAN loss (Lucic et al. 2018): random search, the same number of trials each.

``python -m mmdkit.gan tune --trials 10 --jobs 2 [--report]``

Protocol
--------
- One stated search space (:data:`COMMON_SPACE`, :data:`LOSS_SPACES`): common
  axes every loss gets where they apply (learning rates log-uniform, Adam betas
  from a small set, critic steps per generator step, batch size, packing for
  losses with a critic) and each loss's own weights (penalty weights, Fisher
  GAN's rho, BEGAN's gamma, margins, GMMN's bandwidth schedule, ...).
- Trial ``t`` of loss ``L`` draws each axis from a generator seeded by
  (L, t, axis) (:func:`draw`): a trial is reproducible and independent of the
  order trials run in and of the other axes.
- One more trial per loss, "prior" (:data:`PRIOR`): the configuration the loss
  shipped with before the search. The search then only replaces a default by
  one that did better on the validation seed; the loss's defaults are the
  selected trial's configuration.
- Each trial is one fast-protocol training run (:func:`mmdkit.gan.trainer.train`:
  3000 generator steps, the shared generator, linear learning-rate decay) on
  the validation seed (100) on grid25. Its metrics are written to
  ``<cache>/<loss>/trial<t>.json`` as it finishes; a rerun skips what exists.
- Selection (:func:`select`, :data:`SELECTION_RULE`): a run that did not
  fail, then the largest modes covered x high-quality fraction, then most
  modes, the highest high-quality fraction, the lowest reverse KL, the prior
  configuration and then the lowest trial index.
- Report: the selected configuration on fresh seeds (0, 1, 2) on ring8 and
  grid25, cached as ``<cache>/<loss>/report/<data>-seed<s>.json``.

The budget counts trials (every loss gets the same number, its prior one
included); the table reports
the CPU seconds each loss's search and seeds took.

References
----------
Lucic, Kurach, Michalski, Gelly, Bousquet. Are GANs created equal? A
large-scale study. NeurIPS 2018.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shlex
import time
from pathlib import Path

import numpy as np

from mmdkit.gan.losses import LOSSES, GANLoss, get_loss
from mmdkit.gan.trainer import _jsonable, train

__all__ = ["COMMON_SPACE", "LOSS_SPACES", "space_of", "draw", "configured_loss", "as_set_args", "select",
           "selection_key", "SELECTION_RULE", "run_tuning", "VALIDATION_SEED", "VALIDATION_DATA", "REPORT_SEEDS",
           "REPORT_DATA", "STEPS", "CACHE", "PRIOR",
           "PRIOR_TRIAL"]

STEPS = 3000  # generator steps of the fast protocol
VALIDATION_SEED, VALIDATION_DATA = 100, "grid25"
REPORT_SEEDS, REPORT_DATA = (0, 1, 2), ("ring8", "grid25")
CACHE = Path("bench/gan_tuning")
PLOT_POINTS = 1000  # generated points kept (3 decimals) in each grid25 report record (the samples plot)

# An axis is (kind, ...): ("log-uniform", lo, hi), ("uniform", lo, hi), ("neg-log-uniform", lo, hi)
# (minus a log-uniform draw), or ("choice", options). A key is a setting of the loss (a field of its
# frozen configuration; "a.b" is field b of the nested setting a), except "packing", a trainer option.
COMMON_SPACE: dict[str, tuple] = {
    "lr_g": ("log-uniform", 1e-5, 1e-2),
    "lr_c": ("log-uniform", 1e-5, 1e-2),  # losses with a critic
    "betas": ("choice", ((0.5, 0.9), (0.5, 0.999), (0.8, 0.999), (0.9, 0.999))),  # Adam losses
    "n_critic": ("choice", (1, 2, 5)),  # losses with a critic
    "batch_size": ("choice", (64, 128, 256, 512)),
    "packing": ("choice", (1, 2, 4)),  # losses with a critic
}

_GMMN_BANDWIDTHS = (0.0125, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)  # multiples of the data scale (gmmn's prior)
_PENALTY = ("log-uniform", 1e-3, 10.0)
_OBJECTIVE = ("choice", ("repulsive", "attractive"))

# Each loss's own weights (read from its frozen configuration dataclass); losses without any: {}.
LOSS_SPACES: dict[str, dict[str, tuple]] = {
    "gmmn": {"bandwidths": ("choice", (_GMMN_BANDWIDTHS, tuple(b / 2 for b in _GMMN_BANDWIDTHS),
                                       tuple(2 * b for b in _GMMN_BANDWIDTHS)))},
    "mmd-gan": {"penalty.weight": _PENALTY, "critic_objective": _OBJECTIVE},
    "cramer-gan": {"penalty.weight": _PENALTY, "critic_objective": _OBJECTIVE,
                   "exponent": ("choice", (0.5, 0.75, 1.0))},
    "energy-gan": {"penalty.weight": _PENALTY, "critic_objective": _OBJECTIVE,
                   "exponent": ("choice", (0.5, 0.75, 1.0))},
    "wgan": {"clip.high": ("log-uniform", 1e-3, 1e-1)},
    "wgan-gp": {"penalty.weight": ("log-uniform", 0.1, 100.0)},
    "fisher-gan": {"rho": ("log-uniform", 1e-7, 1e-2)},
    "mcgan": {"clip.high": ("log-uniform", 1e-3, 1e-1), "form": ("choice", ("mean", "cov"))},
    "rwgan": {"clip_high": ("log-uniform", 5e-3, 5e-2), "clip_low": ("neg-log-uniform", 5e-3, 5e-2),
              "weight": ("log-uniform", 0.1, 10.0)},
    "gan": {},
    "ns-gan": {},
    "lsgan": {},
    "ebgan": {"margin": ("log-uniform", 1e-2, 1.0), "pt_weight": ("log-uniform", 1e-2, 1.0)},
    "began": {"gamma": ("uniform", 0.3, 1.0), "lambda_k": ("log-uniform", 1e-3, 1e-1)},
    "magan": {"warmup": ("choice", (20, 100, 500)), "update_every": ("choice", (20, 100))},
}

_CRITIC_AXES = ("lr_c", "n_critic", "packing")

# Each loss's configuration as it shipped before the search (on the search's axes; batch size 256 where it
# set none): its paper's recommended settings for the baselines, settings tuned by hand on the fast protocol
# for the MMD/energy losses. It runs as one more trial of every loss ("prior", PRIOR_TRIAL), so a search
# never ships a configuration that is worse on the validation seed than the one it replaces.
PRIOR: dict[str, dict] = {
    "gmmn": {"lr_g": 0.001, "betas": (0.5, 0.9), "batch_size": 512,
             "bandwidths": (0.0125, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)},
    "mmd-gan": {"lr_g": 0.001, "lr_c": 0.003, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 512, "packing": 1,
                "penalty.weight": 0.03, "critic_objective": "repulsive"},
    "cramer-gan": {"lr_g": 0.001, "lr_c": 0.003, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 512,
                   "packing": 1, "penalty.weight": 0.01, "critic_objective": "repulsive", "exponent": 0.5},
    "energy-gan": {"lr_g": 0.001, "lr_c": 0.003, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 512,
                   "packing": 1, "penalty.weight": 0.01, "critic_objective": "repulsive", "exponent": 0.5},
    "wgan": {"lr_g": 5e-05, "lr_c": 5e-05, "n_critic": 5, "batch_size": 256, "packing": 1, "clip.high": 0.01},
    "wgan-gp": {"lr_g": 0.0001, "lr_c": 0.0001, "betas": (0.5, 0.9), "n_critic": 5, "batch_size": 256,
                "packing": 1, "penalty.weight": 10.0},
    "fisher-gan": {"lr_g": 0.0002, "lr_c": 0.0002, "betas": (0.5, 0.9), "n_critic": 2, "batch_size": 256,
                   "packing": 1, "rho": 1e-06},
    "mcgan": {"lr_g": 0.0005, "lr_c": 0.0005, "n_critic": 5, "batch_size": 256, "packing": 1, "clip.high": 0.01,
              "form": "mean"},
    "rwgan": {"lr_g": 5e-05, "lr_c": 5e-05, "n_critic": 5, "batch_size": 256, "packing": 1, "clip_high": 0.02,
              "clip_low": -0.01, "weight": 1.0},
    "gan": {"lr_g": 0.0001, "lr_c": 0.0001, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 256, "packing": 1},
    "ns-gan": {"lr_g": 0.0001, "lr_c": 0.0001, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 256, "packing": 1},
    "lsgan": {"lr_g": 0.0001, "lr_c": 0.0001, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 256, "packing": 1},
    "ebgan": {"lr_g": 0.0001, "lr_c": 0.0001, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 256, "packing": 1,
              "margin": 0.05, "pt_weight": 0.1},
    "began": {"lr_g": 0.0003, "lr_c": 0.0003, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 256, "packing": 1,
              "gamma": 1.0, "lambda_k": 0.01},
    "magan": {"lr_g": 0.001, "lr_c": 0.001, "betas": (0.5, 0.9), "n_critic": 1, "batch_size": 256, "packing": 1,
              "warmup": 20, "update_every": 20},
}
PRIOR_TRIAL = "prior"  # the prior configuration's trial name (its file: <cache>/<loss>/prior.json)


def space_of(name: str) -> dict[str, tuple]:
    """The axes loss ``name`` is searched over: the common ones that apply to it, then its own."""
    if name not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {name!r}")
    loss = get_loss(name)
    space = {}
    for axis, spec in COMMON_SPACE.items():
        if axis in _CRITIC_AXES and loss.critic_type == "none":
            continue
        if axis == "betas" and loss.optimizer != "adam":
            continue
        space[axis] = spec
    return {**space, **LOSS_SPACES[name]}


def _seed(*parts) -> int:
    """A 64-bit seed from the parts' text (stable across processes and Python versions)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def _round(x: float) -> float:
    """3 significant digits (the configuration prints and reruns as written)."""
    return float(f"{x:.3g}")


def _draw_axis(spec: tuple, rng: np.random.Generator):
    kind = spec[0]
    if kind == "choice":
        return spec[1][int(rng.integers(len(spec[1])))]
    lo, hi = spec[1], spec[2]
    if kind == "uniform":
        return _round(rng.uniform(lo, hi))
    value = _round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if kind == "log-uniform":
        return value
    if kind == "neg-log-uniform":
        return -value
    raise ValueError(f"unknown axis kind {kind!r}")


def draw(name: str, trial: int) -> dict:
    """Trial ``trial``'s configuration of loss ``name``: each axis of :func:`space_of` drawn from a
    generator seeded by (name, trial, axis), so it depends on nothing else.

    Examples
    --------
    >>> draw("gan", 3) == draw("gan", 3)
    True
    >>> sorted(draw("gan", 0))
    ['batch_size', 'betas', 'lr_c', 'lr_g', 'n_critic', 'packing']
    """
    if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
        raise ValueError(f"`trial` must be a non-negative integer, got {trial!r}")
    return {axis: _draw_axis(spec, np.random.default_rng(_seed(name, trial, axis)))
            for axis, spec in space_of(name).items()}


def configured_loss(name: str, settings: dict) -> GANLoss:
    """The loss ``name`` with settings overridden; a dotted key "a.b" sets field b of the nested setting a.

    Lists become tuples. Unknown settings raise a ValueError naming them.
    """
    default = get_loss(name)
    known = {f.name for f in dataclasses.fields(default) if not f.name.startswith("_")}
    kwargs: dict = {}
    for key, value in settings.items():
        field, _, sub = key.partition(".")
        if field not in known:
            raise ValueError(f"`--set {key}`: {name} has no setting {field!r}; its settings: {sorted(known)}")
        value = tuple(value) if isinstance(value, list) else value
        if sub:
            nested = kwargs.get(field, getattr(default, field))
            if not dataclasses.is_dataclass(nested):
                raise ValueError(f"`--set {key}`: {name}'s {field!r} is {nested!r}, which has no field {sub!r}")
            value = dataclasses.replace(nested, **{sub: value})
        kwargs[field] = value
    return get_loss(name, **kwargs)


def _split(config: dict) -> tuple[dict, int]:
    """(the loss settings, packing) of a configuration."""
    settings = {k: v for k, v in config.items() if k != "packing"}
    return settings, int(config.get("packing", 1))


def as_set_args(config: dict) -> str:
    """The configuration as command-line options of ``python -m mmdkit.gan train``; ``--packing`` is
    written whenever the configuration sets it (a loss's default packing need not be 1)."""
    settings, packing = _split(config)
    out = [f"--set {shlex.quote(f'{k}={_literal(v)}')}" for k, v in settings.items()]
    return " ".join(out + ([f"--packing {packing}"] if "packing" in config else []))


def _literal(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_literal(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


# ------------------------------------------------------------------ selection

def _float(x) -> float:
    """A metric read back from JSON ("inf"/"nan" strings, None) as a float; nan counts as inf."""
    x = float("inf") if x is None else float(x)
    return float("inf") if math.isnan(x) else x


SELECTION_RULE = (
    "a run that did not fail, then the largest product of modes covered and high-quality fraction (a generator "
    "that spreads its mass over the plane covers modes by chance with a few % of high-quality samples, one "
    "collapsed onto a few modes covers few: both score low), then the most modes, the highest high-quality %, "
    "the lowest reverse KL, and the prior configuration, then the lowest trial index")


def selection_key(record: dict) -> tuple:
    """Larger is better (:data:`SELECTION_RULE`): (no error, modes x high-quality fraction, modes,
    high-quality fraction, -reverse KL, -trial; the prior configuration counts as trial -1)."""
    m = record["metrics"]
    hq = _float(m.get("high_quality", 0.0))
    hq = -1.0 if math.isinf(hq) else hq
    modes = int(m.get("modes_covered") or 0)
    return (record.get("error") is None, modes * max(hq, 0.0), modes, hq, -_float(m.get("reverse_kl")),
            -_trial_rank(record.get("trial", 0)))


def _trial_rank(trial) -> int:
    """The prior configuration ranks before trial 0: it is kept on a tie."""
    return -1 if trial == PRIOR_TRIAL else int(trial)


def select(records: list[dict]) -> dict:
    """The selected trial, the largest :func:`selection_key` (:data:`SELECTION_RULE`)."""
    if not records:
        raise ValueError("`records` must hold at least one trial")
    return max(records, key=selection_key)


# ------------------------------------------------------------------ one run, cached

def _normal(x):
    """A value as it reads back from the JSON cache (tuples as lists, inf as a string)."""
    return json.loads(json.dumps(_jsonable(x)))


def _job(kind: str, name: str, config: dict, data: str, seed: int, steps: int, eval_samples: int, path: Path,
         trial: int | None = None, keep_samples: bool = False) -> dict:
    return {"kind": kind, "loss": name, "trial": trial, "config": config, "data": data, "seed": seed,
            "steps": steps, "eval_samples": eval_samples, "path": str(path), "keep_samples": keep_samples}


def _matches(record: dict, job: dict) -> bool:
    return all(record.get(k) == _normal(job[k]) for k in ("loss", "config", "data", "seed", "steps", "eval_samples"))


def _cached(job: dict) -> dict | None:
    """The cached record of ``job``, None if there is none (or, for a report run, if it was made for
    another selected configuration: it is rerun); a trial made with other settings raises."""
    path = Path(job["path"])
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if job.get("keep_samples") and "samples" not in record and record.get("error") is None:
        return None  # made without the samples the plot needs
    if not _matches(record, job):
        if job["kind"] == "report":
            return None
        raise ValueError(f"{path} holds a run with other settings (configuration, steps, seed or eval samples) "
                         f"than this one asks for: choose another `--cache` folder, or delete the file to rerun it")
    return record


_METRICS = ("modes_covered", "high_quality", "reverse_kl", "mmd2_heldout", "kid", "mmd2_heldout_init",
            "cpu_seconds", "seconds")


def run_job(job: dict) -> dict:
    """Train one cached run (a top-level function, so worker processes can import it); writes its JSON."""
    settings, packing = _split(job["config"])
    c0, t0 = time.process_time(), time.perf_counter()
    record = {k: job[k] for k in ("kind", "loss", "trial", "config", "data", "seed", "steps", "eval_samples")}
    try:
        loss = configured_loss(job["loss"], settings)
        m = train(loss, job["data"], steps=job["steps"], seed=job["seed"], progress=False,
                  eval_samples=job["eval_samples"], packing=packing, return_samples=True)
        record.update(metrics={k: m[k] for k in _METRICS if k in m}, settings=m.get("settings"),
                      loss_state=m.get("loss_state"), batch_size=m.get("batch_size"), error=None)
        samples = m.get("samples")
        if samples is not None and job.get("keep_samples"):
            record["samples"] = [[round(float(a), 3), round(float(b), 3)] for a, b in samples[:PLOT_POINTS].tolist()]
    except (ValueError, RuntimeError, ArithmeticError) as e:
        # a configuration that fails (rejected settings, non-finite samples, a diverged step) is a trial with
        # the worst metrics, recorded as such; any other exception is a bug of the harness and propagates
        record.update(metrics={"modes_covered": 0, "high_quality": 0.0, "reverse_kl": float("inf"),
                               "mmd2_heldout": float("nan"), "cpu_seconds": time.process_time() - c0,
                               "seconds": time.perf_counter() - t0},
                      settings=None, loss_state=None, batch_size=None, error=f"{type(e).__name__}: {e}")
    record = _normal(record)
    path = Path(job["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    text = json.dumps({k: v for k, v in record.items() if k != "samples"}, indent=1)
    if "samples" in record:  # one line: 1000 points would take 3000 lines indented
        text = text[:-2] + ',\n "samples": ' + json.dumps(record["samples"], separators=(",", ":")) + "\n}"
    tmp.write_text(text + "\n")
    tmp.replace(path)
    return record


def _line(r: dict) -> str:
    m = r["metrics"]
    what = f"trial {r['trial']}" if r["kind"] == "trial" else f"{r['data']} seed {r['seed']}"
    err = f"  error: {r['error']}" if r.get("error") else ""
    return (f"{r['loss']:11s} {what:15s} modes {m['modes_covered']} hq {_float(m['high_quality']):.3f} "
            f"rkl {_float(m['reverse_kl']):.3g} cpu {_float(m['cpu_seconds']):.0f}s{err}")


def _run_all(jobs: list[dict], n_jobs: int, progress: bool | None, desc: str) -> list[dict]:
    """Every job's record, cached ones read back; the rest trained (``n_jobs`` at once), each written as it ends."""
    from mmdkit._progress import Progress
    records: list[dict | None] = [_cached(j) for j in jobs]
    pending = [i for i, r in enumerate(records) if r is None]
    if not pending:
        return records  # type: ignore[return-value]
    bar = Progress(len(pending), progress, f"{desc}: {len(pending)} runs ({len(jobs) - len(pending)} cached)")
    try:
        if n_jobs > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed
            with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(run_job, jobs[i]): i for i in pending}
                for fut in as_completed(futures):
                    records[futures[fut]] = fut.result()
                    print(_line(records[futures[fut]]), flush=True)
                    bar(1)
        else:
            for i in pending:
                records[i] = run_job(jobs[i])
                print(_line(records[i]), flush=True)
                bar(1)
    finally:
        bar.close()
    return records  # type: ignore[return-value]


def run_tuning(losses=None, trials: int = 10, jobs: int = 1, steps: int = STEPS, cache: str | Path = CACHE,
               report: bool = False, report_seeds=REPORT_SEEDS, report_data=REPORT_DATA,
               validation_seed: int = VALIDATION_SEED, eval_samples: int = 2500,
               progress: bool | None = None) -> dict:
    """Run (or read back) ``trials`` trials of every loss, and with ``report`` its selected configuration's seeds.

    Every loss also runs its :data:`PRIOR` configuration (trial "prior") on the validation seed.

    Returns {"trials": {loss: [record, ...]} (the prior first), "selected": {loss: record},
    "report": {loss: [record, ...]}};
    "selected" and "report" are empty without ``report``. A record holds the run's ``config``,
    ``metrics`` (modes_covered, high_quality, reverse_kl, mmd2_heldout, cpu_seconds, ...), the loss's
    ``settings`` as run and ``error`` (None, or why the run failed: it then counts with 0 modes).
    """
    losses = list(dict.fromkeys(losses or LOSSES))  # each once: a repeated name would train its runs twice
    for name in losses:
        space_of(name)  # raises on an unknown loss
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"`--trials` must be a positive integer, got {trials!r}")
    cache = Path(cache)
    plan = [_job("trial", name, PRIOR[name], VALIDATION_DATA, validation_seed, steps, eval_samples,
                 cache / name / f"{PRIOR_TRIAL}.json", trial=PRIOR_TRIAL) for name in losses]
    plan += [_job("trial", name, draw(name, t), VALIDATION_DATA, validation_seed, steps, eval_samples,
                  cache / name / f"trial{t}.json", trial=t)
             for t in range(trials) for name in losses]  # trial-major: a stopped search covers every loss evenly
    done = _run_all(plan, jobs, progress, "tune")
    out: dict = {"trials": {name: [r for r in done if r["loss"] == name] for name in losses},
                 "selected": {}, "report": {}, "steps": steps, "validation_seed": validation_seed,
                 "report_seeds": list(report_seeds), "report_data": list(report_data), "n_trials": trials}
    if not report:
        return out
    out["selected"] = {name: select(out["trials"][name]) for name in losses}
    plan = [_job("report", name, out["selected"][name]["config"], data, seed, steps, eval_samples,
                 cache / name / "report" / f"{data}-seed{seed}.json",
                 keep_samples=data == "grid25")  # PLOT_POINTS samples: the plot takes the lowest seed that has them
            for name in losses for data in report_data for seed in report_seeds]
    done = _run_all(plan, jobs, progress, "seeds")
    out["report"] = {name: [r for r in done if r["loss"] == name] for name in losses}
    return out
