"""One training loop for every loss: seeded, with a progress bar, writing metrics and plots."""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from mmdkit.gan.constraints import InstanceNoise
from mmdkit.gan.data import ToyData, get_dataset
from mmdkit.gan.losses import GANLoss, get_loss
from mmdkit.gan.metrics import EVAL_SAMPLES, evaluate, mode_statistics
from mmdkit.gan.models import AutoencoderCritic, Critic, Generator

__all__ = ["train", "make_critic", "make_optimizer", "G_HIDDEN", "G_LAYERS", "BATCH_SIZE"]

# The generator every loss gets (same network for all, so the table compares losses):
# an MLP of G_LAYERS linear maps, G_HIDDEN units wide, ReLU: 4 hidden layers of 400 units,
# the size of the PacGAN/VEEGAN toy generators. How it was chosen (gmmn runs with other
# sizes): bench/GAN_RESULTS.md, section "How the MMD-family settings were chosen"
# (subsection "gmmn learning rate and generator size").
G_HIDDEN, G_LAYERS = 400, 5
BATCH_SIZE = 256  # real points per step, unless the loss or the caller says otherwise


def make_critic(loss: GANLoss, d: int = 2) -> nn.Module | None:
    """The critic a loss asks for (``loss.critic_type``), or None."""
    if loss.critic_type == "none":
        return None
    if loss.critic_type == "autoencoder":
        return AutoencoderCritic(d, code_dim=loss.critic_dim)
    return Critic(d, out_dim=1 if loss.critic_type == "scalar" else loss.critic_dim)


def make_optimizer(loss: GANLoss, params, lr: float) -> torch.optim.Optimizer:
    """Adam (with ``loss.betas``) or RMSProp, as the loss says."""
    if loss.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if loss.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=loss.betas)
    raise ValueError(f"`optimizer` must be 'adam' or 'rmsprop', got {loss.optimizer!r}")


def for_data(loss: GANLoss, data: ToyData) -> GANLoss:
    """A copy of ``loss`` for this run: ``data_scale`` (kernel bandwidths, margins) set to the data's
    where the loss has that setting, and a fresh training ``state`` (the caller's object is left alone)."""
    if "data_scale" in {f.name for f in dataclasses.fields(loss)}:
        return dataclasses.replace(loss, data_scale=data.scale)
    return dataclasses.replace(loss)


def train(loss: GANLoss | str, data: ToyData | str = "grid25", steps: int = 3000, seed: int = 0,
          out: str | Path | None = None, batch_size: int | None = None, instance_noise: InstanceNoise | None = None,
          snapshots: int = 6, progress: bool = True, threads: int | None = 1,
          eval_samples: int = EVAL_SAMPLES, lr_decay: str = "linear", scale_output: bool = False,
          g_hidden: int = G_HIDDEN, g_layers: int = G_LAYERS, packing: int | None = None,
          return_samples: bool = False, eval_every: int = 0, ema: float | None = None) -> dict:
    """Train a generator on a toy data set with ``loss``; returns (and writes) the metrics.

    Parameters
    ----------
    loss : GANLoss or its name
    data : ToyData or "ring8" | "grid25" | "swissroll"
    steps : generator steps (each preceded by ``loss.n_critic`` critic steps)
    seed : seeds the model initialisation (``torch.manual_seed`` inside a
        ``torch.random.fork_rng`` block, so the caller's global state is left
        alone) and the explicit generator every sample is drawn from
    out : folder for metrics.json, samples.png, critic.png, losses.png (None: no files)
    batch_size : real points per step (fake points: ``loss.fake_batches`` times that);
        None: the loss's own ``batch_size`` if it sets one, else ``BATCH_SIZE`` (256)
    instance_noise : optional :class:`~mmdkit.gan.constraints.InstanceNoise` on the critic's inputs
    lr_decay : "linear" (default: both learning rates decay linearly to 0 at the last
        generator step, the same schedule for every loss) or "none"
    scale_output : multiply the generator's output by the data's scale (4 for grid25, 1 for
        ring8) so the network works in units of the data's extent; off by default (its one
        trial: bench/GAN_RESULTS.md, section "Trainer defaults")
    g_hidden, g_layers : the generator MLP's width and number of linear maps (defaults:
        ``G_HIDDEN`` x ``G_LAYERS``; see there)
    packing : m, the critic's packing (PacGAN, Lin et al. 2018): the critic sees m samples
        concatenated, (n, d) batches as (n / m, m d) rows of m consecutive samples, so every
        critic-based loss runs unchanged on the packed rows (its critic has m d inputs; a
        gradient penalty interpolates packed rows). ``batch_size`` (points) must be a multiple
        of m; 1 is no packing; a loss without a critic (gmmn) takes only 1. None (default): the
        loss's own ``packing`` setting (its searched default, 1, 2 or 4); the run's packing is recorded in
        ``settings``. No critic.png for m > 1 (the critic is not a function on the plane)
    snapshots : how many sample snapshots over time go into samples.png
    progress : show a tqdm progress bar
    eval_samples : generated points the metrics use (2500, the benchmark tables' count;
        smaller only for quick checks)
    threads : torch intra-op threads for this run (default 1: small MLPs gain nothing from more,
        and oversubscribed cores on a shared machine slow them down, see bench/GAN_RESULTS.md,
        section "Trainer defaults"; None: leave as is)
    eval_every : every this many generator steps (0: never), the mode statistics of the
        ``eval_samples`` evaluation points (mixtures only: modes_covered, high_quality,
        reverse_kl) go into the returned ``trajectory`` (a list of rows with ``step``) and,
        with ``out``, curves.png; the CPU time they take is excluded from ``cpu_seconds``
    return_samples : also return the ``eval_samples`` generated points the metrics were computed
        on, as ``samples`` (an (eval_samples, 2) tensor; not written to metrics.json)
    ema : decay b of an exponential moving average of the generator's weights (Yazici et al.,
        "The unusual effectiveness of averaging in GAN training", ICLR 2019), updated after each
        generator step, w_avg <- b w_avg + (1 - b) w (``torch.optim.swa_utils``): the metrics,
        trajectory, snapshots and samples then come from the averaged generator, and
        ``without_ema`` holds the final mode statistics of the trained one (mixtures). Training
        itself is unchanged. None (default): no average

    Returns
    -------
    dict with the metrics of :func:`mmdkit.gan.metrics.evaluate` on
    ``eval_samples`` samples (``modes_covered``, ``high_quality``, ``reverse_kl`` for
    mixtures, ``mmd2_heldout``, ``kid``), ``mmd2_heldout_init`` (before
    training), ``steps``, ``seconds`` (training wall time, without the evaluation
    and plots), ``cpu_seconds`` (CPU time of this process over the same span:
    the fair number on a shared machine), ``seed``, ``data``, ``batch_size``, ``settings`` (the loss's
    configuration as run: what was asked for, with ``data_scale`` set to the data's) and ``loss_state``
    (the loss's training state at the end, e.g. BEGAN's k; {} for a stateless loss). Every run starts
    from the state the configuration gives, whatever the loss object went through before.

    Examples
    --------
    >>> from mmdkit.gan.trainer import train
    >>> m = train("gmmn", "ring8", steps=20, seed=0, progress=False)
    >>> sorted(k for k in m if k.startswith("mode"))
    ['modes_covered']
    """
    from tqdm.auto import tqdm

    loss = get_loss(loss) if isinstance(loss, str) else loss
    data = get_dataset(data) if isinstance(data, str) else data
    loss = for_data(loss, data)
    batch_size = batch_size or loss.batch_size or BATCH_SIZE
    packing = loss.packing if packing is None else packing
    if isinstance(packing, bool) or not isinstance(packing, int) or packing < 1:
        raise ValueError(f"--packing must be a positive integer, got {packing!r}")
    if packing > 1 and loss.critic_type == "none":
        raise ValueError(f"--packing applies to losses with a critic; {loss.name} has none (use --packing 1)")
    if batch_size % packing:
        raise ValueError(f"--packing {packing} must divide the batch size (points per step), got {batch_size}")
    if packing != loss.packing:
        loss = dataclasses.replace(loss, packing=packing)  # settings() records what the run used
    pack = (lambda x: x.reshape(-1, packing * x.shape[1])) if packing > 1 else (lambda x: x)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = Generator(hidden=g_hidden, layers=g_layers, out_scale=data.scale if scale_output else 1.0)
        C = make_critic(loss, d=2 * packing)
    opt_g = make_optimizer(loss, G.parameters(), loss.lr_g)
    opt_c = make_optimizer(loss, C.parameters(), loss.lr_c) if C is not None else None
    if lr_decay not in ("linear", "none"):
        raise ValueError(f"`lr_decay` must be 'linear' or 'none', got {lr_decay!r}")
    decay = (lambda s: max(0.0, 1.0 - s / steps)) if lr_decay == "linear" else (lambda s: 1.0)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, decay) for o in (opt_g, opt_c) if o is not None]
    if ema is not None and (isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 < ema < 1):
        raise ValueError(f"`ema` must be a decay in (0, 1) or None, got {ema!r}")
    G_eval = G  # the generator every evaluation uses
    if ema is not None:
        G_eval = torch.optim.swa_utils.AveragedModel(G, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema))
    eval_g = torch.Generator().manual_seed(10_000 + seed)
    z_eval = torch.randn(eval_samples, G.z_dim, generator=eval_g)
    with torch.no_grad():
        init = evaluate(G(z_eval), data, torch.Generator().manual_seed(20_000 + seed))
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"`eval_every` must be a non-negative integer (0: never), got {eval_every!r}")
    trajectory, eval_cpu = [], 0.0
    snap_at = sorted({int(round(s)) for s in torch.linspace(0, steps, snapshots).tolist()})
    snaps, history = {}, {"step": [], "critic": [], "generator": []}
    nf = batch_size * loss.fake_batches
    feed = (lambda x, s: instance_noise(x, s, g)) if instance_noise is not None else (lambda x, s: x)
    t0, c0 = time.perf_counter(), time.process_time()
    bar = tqdm(range(steps + 1), desc=f"{loss.name} {data.name} seed {seed}", disable=not progress,
               mininterval=1.0)
    lc = torch.zeros(())
    for step in bar:
        if step in snap_at:
            with torch.no_grad():
                snaps[step] = G_eval(z_eval[:1000]).clone()
        if eval_every and data.modes is not None and step % eval_every == 0:
            e0 = time.process_time()
            with torch.no_grad():
                trajectory.append({"step": step, **mode_statistics(G_eval(z_eval), data)})
            eval_cpu += time.process_time() - e0
        if step == steps:
            break
        if C is not None:
            for _ in range(loss.n_critic):
                real = data.sample(batch_size, g)
                with torch.no_grad():
                    fake = G.sample(nf, g)
                r, f = pack(feed(real, step)), pack(feed(fake, step))
                lc = loss.critic_loss(C, r, f)
                if loss.penalty is not None:
                    lc = lc + loss.penalty(loss.critic_function(C, r, f), r, f, g)
                opt_c.zero_grad(set_to_none=True)
                lc.backward()
                opt_c.step()
                if loss.clip is not None:
                    loss.clip(C)
                loss.after_critic_step(C, r, f, step)
        real = data.sample(batch_size, g)
        fake = G.sample(nf, g)
        if C is not None:
            for p in C.parameters():
                p.requires_grad_(False)
        lg = loss.generator_loss(C, pack(feed(real, step)), pack(feed(fake, step)))
        opt_g.zero_grad(set_to_none=True)
        lg.backward()
        opt_g.step()
        if ema is not None:
            G_eval.update_parameters(G)
        for sch in scheds:
            sch.step()
        if C is not None:
            for p in C.parameters():
                p.requires_grad_(True)
        if step % 10 == 0:
            history["step"].append(step)
            history["critic"].append(float(lc.detach()))
            history["generator"].append(float(lg.detach()))
            if step % 200 == 0:
                bar.set_postfix(critic=f"{float(lc.detach()):.3g}", gen=f"{float(lg.detach()):.3g}")
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0 - eval_cpu
    with torch.no_grad():
        samples = G_eval(z_eval)
        trained = G(z_eval) if ema is not None and data.modes is not None else None
    metrics = evaluate(samples, data, torch.Generator().manual_seed(20_000 + seed))
    if trained is not None:
        metrics["without_ema"] = mode_statistics(trained, data)
    metrics.update({"mmd2_heldout_init": init["mmd2_heldout"], "steps": steps, "seconds": seconds,
                    "cpu_seconds": cpu_seconds,
                    "seed": seed, "data": data.name, "batch_size": batch_size, "eval_samples": eval_samples,
                    "lr_decay": lr_decay, "scale_output": scale_output, "ema": ema,
                    "generator": {"hidden": g_hidden, "layers": g_layers, "z_dim": G.z_dim}, "packing": packing,
                    "instance_noise": None if instance_noise is None else vars(instance_noise),
                    "settings": loss.settings(), "loss_state": loss.state_dict()})
    if trajectory:
        metrics["trajectory"] = trajectory
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2))
        from mmdkit.gan.plots import plot_critic, plot_curves, plot_losses, plot_snapshots
        plot_snapshots(snaps, data, out / "samples.png", title=f"{loss.name} on {data.name}")
        real = data.sample(500, torch.Generator().manual_seed(30_000 + seed))
        if packing == 1:
            plot_critic(loss, C, real, samples[:500], data, out / "critic.png")
        plot_losses(history, out / "losses.png", title=f"{loss.name} on {data.name}")
        if trajectory:
            plot_curves(trajectory, "step", (("modes_covered",), ("high_quality",), ("reverse_kl",)),
                        out / "curves.png", title=f"{loss.name} on {data.name}, seed {seed}")
    if threads is not None:
        torch.set_num_threads(old_threads)
    if return_samples:
        metrics["samples"] = samples
    return metrics


def _jsonable(x):
    """Replace inf/nan by strings so the file is strict JSON."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
