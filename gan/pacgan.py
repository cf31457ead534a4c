"""PacGAN's synthetic-data protocol (Lin, Khetan, Fanti, Oh 2018), reproduced in torch, with packing,
as a checkpointed, resumable training run.

What the reference repository (github fjxmlzn/PacGAN) defines, and where it is here:

* data (``synthetic_data_experiments/2DGrid_GAN&PacGAN/config.py``,
  ``synthetic_data_experiments/PacGAN/pacgan/datasets.py``, ``streams.py``): a
  fixed training set of ``num_sample`` = 100 000 points drawn once from the
  mixture (grid: means {-4, -2, 0, 2, 4}^2, covariance 0.05^2 I, uniform
  weights, our :data:`~mmdkit.gan.data.grid25`; the ring config: 8 means on the
  unit circle, 0.01^2 I, our ``ring8``); with packing m, each of the m columns
  of a packed row is an independent draw with replacement of the 100 000 points
  (``GaussianPackingMixture``), so a packed row holds m independent samples; an
  epoch is the 100 000 packed rows in a fresh random order (``ShuffledScheme``),
  in batches of ``batch_size`` = 100 rows: 1000 iterations per epoch, 400 epochs;
* noise: z ~ N(0, I_2), one batch of 100 per pack slot (``circle_gaussian_mixture``
  with one mode at radius 0, std 1);
* generator: :class:`~mmdkit.gan.models.PacGANGenerator` (2 -> 400 x 4 -> 2,
  linear without bias -> batch norm -> ReLU, applied to each slot's noise batch
  separately, so batch statistics are per slot) and discriminator
  :class:`~mmdkit.gan.models.MaxoutCritic` (input 2 m, 3 LinearMaxout layers of
  200 units with 5 pieces, a linear output), weights N(0, 0.02^2), biases 0
  (``pacgan_task.py``, ``create_model_brick``);
* loss (``pacgan/bricks.py``, ``compute_losses``): the discriminator sees the
  real and the fake packed rows in one forward pass (here one pass on each,
  equal up to rounding as it has no batch statistics, and cheaper: the
  generator's backward skips the real rows); critic loss
  softplus(-D(x)) + softplus(D(G z)), generator loss softplus(-D(G z)) (plus a
  term constant in G): the non-saturating GAN, ``ns-gan`` here;
* updates (ALI's ``ali/algorithms.py``, ``ali_algorithm``): simultaneous: the
  critic's and the generator's gradients come from the same forward passes, then
  both take an Adam step (lr 1e-4, beta1 0.8, blocks' beta2 0.999 and eps
  1e-8); the batch norm population statistics move by 0.05 towards the
  minibatch estimates every iteration;
* metrics (``pacgan/extensions.py``, ``GraphLogger`` and ``MetricLogger``),
  after every epoch: first the train-monitoring stream runs 50 batches through
  the training-mode generator with the population updates
  (``DataStreamMonitoring(..., updates=bn_updates)`` on 5000 examples in
  batches of 100), then 2500 samples from a fixed noise batch with the
  population statistics (the inference graph) go to the mode metrics: nearest
  mode in standardised distance, high quality below 3 std, a mode covered with
  at least one high-quality sample; they log the entropy H of the
  high-quality histogram, and reverse KL = log K - H is what
  :func:`mmdkit.gan.metrics.mode_statistics` computes.

Known differences: blocks' Adam multiplies beta1 by (1 - 1e-8)^(t - 1)
(beta1 = 0.797 instead of 0.8 at the last of 400 000 steps; torch's Adam keeps
0.8); the reference draws a fresh random seed per run, here ``seed`` fixes
everything; the reference's high-quality test is ``distance < 3 std``, ours
``<= 3 std`` (equal with probability 1).

Any loss runs under the protocol: a scalar or feature critic is the maxout
discriminator (``critic_dim`` outputs for feature critics), an autoencoder
critic is :class:`~mmdkit.gan.models.AutoencoderCritic` on 2 m inputs (PacGAN
has none), ``gmmn`` trains the generator alone. The protocol's optimiser
(Adam, ``lr``, ``betas``) replaces the loss's; its constraints (``clip``,
``penalty``) and state updates apply. With ``n_critic`` = 1 the updates are
simultaneous as in PacGAN's code; with ``n_critic`` > 1 every batch is one
critic step and every ``n_critic``-th is followed by a generator step on the
same batch.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mmdkit.gan.data import ToyData, get_dataset
from mmdkit.gan.losses import GANLoss, get_loss
from mmdkit.gan.metrics import evaluate
from mmdkit.gan.models import AutoencoderCritic, MaxoutCritic, PacGANGenerator
from mmdkit.gan.trainer import _jsonable

__all__ = ["PacGANProtocol", "PROTOCOLS", "packed_dataset", "make_networks", "train_protocol",
           "time_iterations", "read_log"]

CHECKPOINT, LOG, METRICS = "checkpoint.pt", "metrics.jsonl", "metrics.json"


@dataclass(frozen=True)
class PacGANProtocol:
    """PacGAN's synthetic-data setup (see the module docstring for each value's source).

    ``batch_size`` counts packed rows: each iteration shows the critic
    ``batch_size`` real and ``batch_size`` fake rows of ``packing`` samples each
    (100 m points a side), as PacGAN's code does. ``packing`` = 1 is the GAN
    row of their Table 1, 4 the PacGAN4 row. ``eval_every`` (epochs) and
    ``bn_refresh_batches`` (training-mode generator passes before each
    evaluation) follow their per-epoch logging; ``eval_samples`` is their 2500.
    """

    epochs: int = 400
    num_samples: int = 100_000
    batch_size: int = 100
    packing: int = 1
    z_dim: int = 2
    g_hidden: int = 400
    g_layers: int = 4
    d_hidden: int = 200
    d_layers: int = 3
    maxout_pieces: int = 5
    init_std: float = 0.02
    lr: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.999)
    bn_eps: float = 1e-4
    bn_momentum: float = 0.05
    bn_refresh_batches: int = 50
    eval_samples: int = 2500
    eval_every: int = 1

    def __post_init__(self):
        for name in ("epochs", "num_samples", "batch_size", "packing", "eval_samples", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                flag = "--packing" if name == "packing" else f"`{name}`"
                raise ValueError(f"{flag} must be a positive integer, got {v!r}")
        if self.batch_size > self.num_samples:
            raise ValueError(f"`batch_size` ({self.batch_size}) must be at most `num_samples` ({self.num_samples})")

    @property
    def iterations_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)


PROTOCOLS = {"pacgan": PacGANProtocol()}


def _seeded(seed: int, stream: int) -> torch.Generator:
    """The CPU generator of one random stream of a run (0 data, 1 training, 2 eval noise, 3+ eval data)."""
    return torch.Generator().manual_seed(seed + (stream << 32))


def packed_dataset(data: ToyData, num_samples: int, packing: int, generator: torch.Generator) -> Tensor:
    """(num_samples, packing, 2): ``num_samples`` points drawn once, each of the ``packing`` columns a
    with-replacement draw of row indices into them (PacGAN's ``GaussianPackingMixture``)."""
    points = data.sample(num_samples, generator)
    idx = torch.randint(0, num_samples, (num_samples, packing), generator=generator)
    return points[idx]


def make_networks(loss: GANLoss, protocol: PacGANProtocol, d: int = 2) -> tuple[nn.Module, nn.Module | None]:
    """(generator, critic) of the protocol for ``loss``; the caller seeds torch's global generator."""
    m = protocol.packing
    G = PacGANGenerator(protocol.z_dim, d, protocol.g_hidden, protocol.g_layers, protocol.init_std,
                        protocol.bn_eps, protocol.bn_momentum)
    if loss.critic_type == "none":
        if m > 1:
            raise ValueError(f"--packing applies to losses with a critic; {loss.name} has none (use --packing 1)")
        return G, None
    if loss.critic_type == "autoencoder":
        return G, AutoencoderCritic(d * m, code_dim=loss.critic_dim)
    out = 1 if loss.critic_type == "scalar" else loss.critic_dim
    return G, MaxoutCritic(d * m, out, protocol.d_hidden, protocol.d_layers, protocol.maxout_pieces,
                           protocol.init_std)


def _adam(params, protocol: PacGANProtocol) -> torch.optim.Adam:
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
    return torch.optim.Adam(params, lr=protocol.lr, betas=protocol.betas, eps=1e-8, fused=fused or None)


# loss settings the protocol sets (its packing, optimiser and batch): a checkpoint's identity leaves them
# out, the protocol's own fields hold them. So a change of a loss's defaults for the fast protocol, or a
# checkpoint made before the protocol recorded them, does not block resuming a run.
_PROTOCOL_OWNED = ("packing", "optimizer", "lr_g", "lr_c", "betas", "batch_size")


def _identity(identity: dict) -> dict:
    """A checkpoint's identity without the loss settings the protocol owns (:data:`_PROTOCOL_OWNED`)."""
    settings = {k: v for k, v in identity["settings"].items() if k not in _PROTOCOL_OWNED}
    return {**identity, "settings": settings}


class _Run:
    """The state of one protocol run: networks, optimisers, random streams, counters; one epoch at a time."""

    def __init__(self, loss: GANLoss, data: ToyData, protocol: PacGANProtocol, seed: int):
        from mmdkit.gan.trainer import for_data
        # the protocol's packing and optimiser replace the loss's, and its settings record them
        loss = dataclasses.replace(for_data(loss, data), packing=protocol.packing, optimizer="adam",
                                   lr_g=protocol.lr, lr_c=protocol.lr, betas=protocol.betas,
                                   batch_size=protocol.batch_size * protocol.packing)  # points a side
        self.loss, self.data, self.protocol, self.seed = loss, data, protocol, seed
        self.real = packed_dataset(data, protocol.num_samples, protocol.packing, _seeded(seed, 0))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.G, self.C = make_networks(self.loss, protocol)
        self.g_params = list(self.G.parameters())
        self.c_params = [] if self.C is None else list(self.C.parameters())
        self.opt_g = _adam(self.g_params, protocol)
        self.opt_c = _adam(self.c_params, protocol) if self.C is not None else None
        self.rng = _seeded(seed, 1)
        self.z_eval = torch.randn(protocol.eval_samples, protocol.z_dim, generator=_seeded(seed, 2))
        self.epoch, self.seconds, self.cpu_seconds = 0, 0.0, 0.0
        self.last_samples: Tensor | None = None  # the last evaluation's samples (kept in the checkpoint)

    # ------------------------------------------------------------------ checkpoints

    def identity(self) -> dict:
        """What a checkpoint must agree on to be resumed (everything but the number of epochs)."""
        protocol = {k: v for k, v in asdict(self.protocol).items() if k != "epochs"}
        return _identity(json.loads(json.dumps({"protocol": protocol, "settings": self.loss.settings(),
                                                "seed": self.seed, "data": self.data.name})))

    def state_dict(self) -> dict:
        out = {"format": 1, "epoch": self.epoch, "G": self.G.state_dict(), "opt_g": self.opt_g.state_dict(),
               "rng": self.rng.get_state(), "loss_state": json.dumps(self.loss.state_dict()),
               "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "identity": json.dumps(self.identity()),
               "samples": self.last_samples}
        if self.C is not None:
            out.update(C=self.C.state_dict(), opt_c=self.opt_c.state_dict())
        return out

    def load_state_dict(self, ck: dict, path: Path) -> None:
        if _identity(json.loads(ck["identity"])) != self.identity():
            raise ValueError(f"`out`: {path} holds a run with other settings ({json.loads(ck['identity'])}); "
                             f"this run: {self.identity()}. Use another --out, or the same settings to resume")
        self.G.load_state_dict(ck["G"])
        self.opt_g.load_state_dict(ck["opt_g"])
        if self.C is not None:
            self.C.load_state_dict(ck["C"])
            self.opt_c.load_state_dict(ck["opt_c"])
        self.rng.set_state(ck["rng"])
        self.loss.load_state_dict(json.loads(ck["loss_state"]))
        self.epoch, self.seconds, self.cpu_seconds = ck["epoch"], ck["seconds"], ck["cpu_seconds"]
        self.last_samples = ck["samples"]

    # ------------------------------------------------------------------ training

    def train_epoch(self) -> dict:
        """One pass over the packed training set; returns the epoch's mean critic and generator losses."""
        p, loss, G, C = self.protocol, self.loss, self.G, self.C
        B, m, fb = p.batch_size, p.packing, loss.fake_batches
        n = p.num_samples
        real = self.real[torch.randperm(n, generator=self.rng)]                  # (N, m, 2), this epoch's order
        z = torch.randn(n * fb, m, p.z_dim, generator=self.rng)                  # every batch's noise at once
        simultaneous = loss.n_critic == 1
        sum_c, sum_g = torch.zeros(()), torch.zeros(())
        n_c = n_g = 0
        it0 = self.epoch * p.iterations_per_epoch
        for i in range(p.iterations_per_epoch):
            r = real[i * B:(i + 1) * B]
            r = r.reshape(r.shape[0], -1)                                        # (b, 2 m) packed rows
            fake = G(z[i * B * fb:(i + 1) * B * fb])                              # (b fb, m, 2), BN per slot
            f = fake.reshape(fake.shape[0], -1)
            if C is None:
                lg = loss.generator_loss(None, r, f)
                self.opt_g.zero_grad(set_to_none=True)
                lg.backward()
                self.opt_g.step()
                sum_g += lg.detach()
                n_g += 1
                continue
            if simultaneous:
                lc, lg = loss.joint_losses(C, r, f)
            else:
                lc = loss.critic_loss(C, r, f.detach())
            if loss.penalty is not None:
                lc = lc + loss.penalty(loss.critic_function(C, r, f), r, f, self.rng)
            self.opt_c.zero_grad(set_to_none=True)
            lc.backward(inputs=self.c_params, retain_graph=simultaneous)
            if simultaneous:   # the generator's gradient at the critic before its step (ALI's algorithm)
                self.opt_g.zero_grad(set_to_none=True)
                lg.backward(inputs=self.g_params)
            self.opt_c.step()
            if loss.clip is not None:
                loss.clip(C)
            loss.after_critic_step(C, r, f, it0 + i)
            sum_c += lc.detach()
            n_c += 1
            if not simultaneous and (i + 1) % loss.n_critic == 0:
                lg = loss.generator_loss(C, r, f)
                self.opt_g.zero_grad(set_to_none=True)
                lg.backward(inputs=self.g_params)
            if simultaneous or (i + 1) % loss.n_critic == 0:
                self.opt_g.step()
                sum_g += lg.detach()
                n_g += 1
        self.epoch += 1
        return {"critic_loss": float(sum_c) / max(1, n_c), "generator_loss": float(sum_g) / max(1, n_g)}

    @torch.no_grad()
    def samples(self) -> Tensor:
        """The evaluation samples: ``bn_refresh_batches`` training-mode passes (population updates),
        then the fixed noise through the generator with its population statistics."""
        p = self.protocol
        for _ in range(p.bn_refresh_batches):
            self.G(torch.randn(p.batch_size, p.packing, p.z_dim, generator=self.rng))
        self.G.eval()
        try:
            return self.G(self.z_eval)
        finally:
            self.G.train()

    def evaluate(self) -> dict:
        """Metrics of this epoch's evaluation samples (kept as ``last_samples``)."""
        self.last_samples = self.samples()
        return evaluate(self.last_samples, self.data, _seeded(self.seed, 3 + self.epoch))


def _save(obj: dict, path: Path) -> None:
    """torch.save through a temporary file and an atomic rename (a kill never leaves half a checkpoint)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_log(path: Path, upto: int | None = None) -> list[dict]:
    """The JSONL records of a run's log, of epochs <= ``upto`` if given (later ones were written after
    the last checkpoint); a line still being written (not yet valid JSON) is skipped."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in rows if upto is None or r["epoch"] <= upto]


def train_protocol(loss: GANLoss | str, data: ToyData | str = "grid25", protocol: PacGANProtocol | None = None,
                   seed: int = 0, out: str | Path | None = None, checkpoint_minutes: float = 10.0,
                   max_minutes: float | None = None, progress: bool = True, threads: int | None = 1,
                   plots: bool = True) -> dict:
    """Train ``loss`` under PacGAN's protocol; checkpointed and resumable when ``out`` is given.

    Parameters
    ----------
    loss : GANLoss or its name (PacGAN's GAN is ``"ns-gan"``)
    data : ToyData or "grid25" | "ring8"
    protocol : :class:`PacGANProtocol` (None: PacGAN's, 400 epochs; ``dataclasses.replace``
        it for ``epochs`` or ``packing``)
    seed : fixes the data set, the initialisation, the order of the data and every noise draw
    out : run folder. It holds ``checkpoint.pt`` (networks, optimisers, the random
        stream's state, the loss's state, the epoch), written every
        ``checkpoint_minutes`` at an epoch's end, when ``max_minutes`` stops the
        run, and at the end; ``metrics.jsonl`` with one line of metrics per
        evaluated epoch; at the end ``metrics.json``, ``samples.png`` and
        ``curves.png``. Calling again with the same arguments continues from the
        checkpoint (a larger ``protocol.epochs`` extends a finished run; any other
        difference is an error) and gives the result of an uninterrupted run.
    checkpoint_minutes : wall minutes between checkpoints (0: every epoch)
    max_minutes : stop (with a checkpoint) at the first epoch end after this many wall
        minutes of this call; None: run to the end
    progress : tqdm bar over epochs
    threads : torch intra-op threads for the run (default 1); None leaves it
    plots : write the PNGs at the end

    Returns
    -------
    dict with the last evaluation (``modes_covered``, ``high_quality``,
    ``reverse_kl``, ``mmd2_heldout``, ``kid``), ``epoch``, ``iterations``,
    ``finished``, ``seconds`` / ``cpu_seconds`` (training, summed over resumed
    calls, without the evaluations), ``ms_per_iteration`` (CPU), ``protocol``,
    ``settings`` (the loss as configured), ``loss_state`` (at the end), ``seed``,
    ``data`` and ``history`` (the per-epoch records).

    References
    ----------
    Lin, Khetan, Fanti, Oh. PacGAN: the power of two samples in generative
    adversarial networks. NeurIPS 2018, Sec. 4 and Table 1; code: github
    fjxmlzn/PacGAN (files in the module docstring).

    Examples
    --------
    >>> import dataclasses
    >>> tiny = dataclasses.replace(PROTOCOLS["pacgan"], epochs=1, num_samples=200, eval_samples=100,
    ...                            bn_refresh_batches=1, packing=2)
    >>> m = train_protocol("ns-gan", "grid25", tiny, seed=0, progress=False)
    >>> m["iterations"], m["finished"], m["protocol"]["packing"]
    (2, True, 2)
    """
    from tqdm.auto import tqdm

    loss = get_loss(loss) if isinstance(loss, str) else loss
    data = get_dataset(data) if isinstance(data, str) else data
    protocol = protocol or PROTOCOLS["pacgan"]
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        run = _Run(loss, data, protocol, seed)
        out = None if out is None else Path(out)
        history: list[dict] = []
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            if (out / CHECKPOINT).exists():
                run.load_state_dict(torch.load(out / CHECKPOINT, weights_only=True), out / CHECKPOINT)
                history = read_log(out / LOG, run.epoch)
                (out / LOG).write_text("".join(json.dumps(r) + "\n" for r in history))
        t_call = t_ck = time.perf_counter()
        stopped = False
        bar = tqdm(total=protocol.epochs, initial=min(run.epoch, protocol.epochs), disable=not progress,
                   desc=f"{run.loss.name} pack {protocol.packing} {data.name} seed {seed}", unit="epoch")
        while run.epoch < protocol.epochs:
            t0, c0 = time.perf_counter(), time.process_time()
            losses = run.train_epoch()
            run.seconds += time.perf_counter() - t0
            run.cpu_seconds += time.process_time() - c0
            last = run.epoch == protocol.epochs
            if run.epoch % protocol.eval_every == 0 or last:
                metrics = run.evaluate()
                row = {"epoch": run.epoch, "iteration": run.epoch * protocol.iterations_per_epoch, **metrics,
                       **losses, "cpu_seconds": run.cpu_seconds, "seconds": run.seconds}
                history.append(row)
                if out is not None:
                    with open(out / LOG, "a") as fh:
                        fh.write(json.dumps(_jsonable(row)) + "\n")
                bar.set_postfix(modes=metrics.get("modes_covered"), hq=f"{metrics.get('high_quality', 0):.3f}")
            bar.update(1)
            now = time.perf_counter()
            stopped = not last and max_minutes is not None and now - t_call >= 60 * max_minutes
            if out is not None and (last or stopped or now - t_ck >= 60 * checkpoint_minutes):
                _save(run.state_dict(), out / CHECKPOINT)
                t_ck = now
            if stopped:
                break
        bar.close()
        final = dict(history[-1]) if history else run.evaluate()
        result = {**{k: v for k, v in final.items() if k not in ("epoch", "iteration")},
                  "epoch": run.epoch, "iterations": run.epoch * protocol.iterations_per_epoch,
                  "finished": run.epoch >= protocol.epochs, "seconds": run.seconds, "cpu_seconds": run.cpu_seconds,
                  "ms_per_iteration": 1e3 * run.cpu_seconds / max(1, run.epoch * protocol.iterations_per_epoch),
                  "protocol": asdict(protocol), "settings": run.loss.settings(),
                  "loss_state": run.loss.state_dict(), "seed": seed, "data": data.name, "history": history,
                  "torch_threads": torch.get_num_threads()}
        if out is not None and result["finished"]:
            (out / METRICS).write_text(json.dumps(_jsonable(result), indent=1))
            if plots:
                _plots(run, run.last_samples, history, out)
        return result
    finally:
        if threads is not None:
            torch.set_num_threads(old_threads)


def _plots(run: _Run, samples: Tensor, history: list[dict], out: Path) -> None:
    """samples.png (the final evaluation samples) and curves.png (modes, high quality, losses by epoch)."""
    from mmdkit.gan.plots import plot_curves, plot_snapshots
    title = f"{run.loss.name}, packing {run.protocol.packing}, {run.data.name}, seed {run.seed}"
    plot_snapshots({run.epoch: samples}, run.data, out / "samples.png", title=title)
    plot_curves(history, "epoch", (("modes_covered",), ("high_quality",), ("critic_loss", "generator_loss")),
                out / "curves.png", title=title)




def time_iterations(loss: GANLoss | str = "ns-gan", packing: int = 1, iterations: int = 200, warmup: int = 20,
                    data: str = "grid25", seed: int = 0, threads: int = 1) -> dict:
    """CPU and wall milliseconds per training iteration of PacGAN's protocol on ``threads`` torch threads.

    A warm-up epoch of ``warmup`` iterations, then one timed epoch of ``iterations``
    iterations (its data shuffling and noise draws included; no evaluation).

    Examples
    --------
    >>> t = time_iterations("ns-gan", packing=2, iterations=2, warmup=1)
    >>> t["iterations"], t["ms_cpu"] > 0
    (2, True)
    """
    loss = get_loss(loss) if isinstance(loss, str) else loss
    base = dataclasses.replace(PROTOCOLS["pacgan"], packing=packing, epochs=1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _Run(loss, get_dataset(data), dataclasses.replace(base, num_samples=warmup * base.batch_size),
             seed).train_epoch()
        run = _Run(loss, get_dataset(data), dataclasses.replace(base, num_samples=iterations * base.batch_size), seed)
        w0, c0 = time.perf_counter(), time.process_time()
        run.train_epoch()
        w1, c1 = time.perf_counter(), time.process_time()
        return {"loss": loss.name, "packing": packing, "iterations": iterations, "threads": threads,
                "ms_wall": 1e3 * (w1 - w0) / iterations, "ms_cpu": 1e3 * (c1 - c0) / iterations}
    finally:
        torch.set_num_threads(old)
