"""GAN losses as small objects: ``critic_loss(critic, real, fake)`` and ``generator_loss(...)``.

A loss holds no training loop. It says what critic it needs
(``critic_type``: "none", "scalar", "features" or "autoencoder"; ``critic_dim``),
how many critic steps per generator step (``n_critic``), its optimiser
settings, and the constraints it uses (``clip``: a
:class:`~mmdkit.gan.constraints.WeightClip`, ``penalty``: a
:class:`~mmdkit.gan.constraints.GradientPenalty` applied to
``critic_function``); :func:`mmdkit.gan.trainer.train` applies them.

Conventions: ``real`` and ``fake`` are batches of shape (n, d); ``critic`` is
a callable (a module) returning (n,) for a scalar critic or (n, k) features.
Both methods return a scalar to *minimise*. Every kernel statistic goes
through mmdkit (:func:`mmdkit.mmd2_unbiased`, :func:`mmdkit.energy_distance`,
:func:`mmdkit.witness`, mmdkit kernel specs); gradient penalties, which need a
second derivative, differentiate :func:`mmdkit.witness` twice (the engine's
backward is itself differentiable).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mmdkit import Energy, Gaussian, Mixture, RationalQuadratic, energy_distance, mmd2_unbiased, witness
from mmdkit.gan.constraints import GradientPenalty, WeightClip
from mmdkit.estimators import _witness
from mmdkit.kernels import KernelSpec, get_backend

__all__ = [
    "GANLoss", "GMMN", "MMDGAN", "CramerGAN", "EnergyGAN", "WGAN", "WGANGP", "LSGAN", "EBGAN",
    "MinimaxGAN", "NSGAN", "cramer_surrogate", "pull_away", "witness_function", "repulsive_loss", "LOSSES", "get_loss",
]


def witness_function(kernel: KernelSpec, fake: Tensor, real: Tensor) -> Callable[[Tensor], Tensor]:
    """x -> the MMD witness of (fake, real) at x (:func:`mmdkit.witness`), twice differentiable.

    Runs on the mmdkit engine (no n x m matrix is stored) and skips the
    public function's validation, since the batches are the trainer's own.
    """
    kernel = kernel.resolve(fake.shape[1])
    engine = get_backend("auto", fake.device, fake.dtype)
    return lambda x: _witness(fake, real, x, kernel, engine)


def pull_away(S: Tensor) -> Tensor:
    r"""EBGAN pull-away term  PT(S) = 1/(N(N-1)) sum_{i != j} (s_i . s_j / (|s_i| |s_j|))^2.

    The squared cosine similarity of every ordered pair of distinct rows (the
    diagonal, where it is 1, is left out). Zhao, Mathieu & LeCun (2017), Eq. 7.

    Examples
    --------
    >>> import torch
    >>> float(pull_away(torch.tensor([[1.0, 0.0], [0.0, 2.0]])))   # orthogonal rows
    0.0
    """
    Sn = F.normalize(S, dim=1)
    C = (Sn @ Sn.T) ** 2
    n = S.shape[0]
    return (C.sum() - C.diagonal().sum()) / (n * (n - 1))


def cramer_surrogate(fake: Tensor, real: Tensor) -> Tensor:
    r"""Expected critic loss of Bellemare et al.'s Algorithm 1 on samples (identity features).

        E||X - X'|| + E||Y|| - E||X|| - E||X' - Y||,   X, X' ~ fake (independent), Y ~ real.

    Algorithm 1 trains the critic f(x) = ||x - x'_g|| - ||x|| on
    -(f(x_r) - f(x_g)), whose expectation is the quantity above. It is *not* the
    energy distance 2E||X - Y|| - E||X - X'|| - E||Y - Y'||: for P = delta_0
    (fake) and Q = delta_t (real) it is 0 while the energy distance is 2|t|, so
    that critic can be blind to a difference (Gretton's notes on the Cramer GAN).
    ``fake`` is split in two halves for X and X' (pairs of distinct points);
    the expectations are all-pairs means.

    References
    ----------
    Bellemare et al. The Cramer distance as a solution to biased Wasserstein
    gradients. arXiv:1705.10743 (2017), Algorithm 1.

    Examples
    --------
    >>> import torch
    >>> float(cramer_surrogate(torch.zeros(4, 1), torch.full((4, 1), 3.0)))
    0.0
    """
    h = fake.shape[0] // 2
    X, X2 = fake[:h], fake[h:2 * h]
    return (torch.cdist(X, X2).mean() + real.norm(dim=1).mean() - X.norm(dim=1).mean()
            - torch.cdist(X2, real).mean())


@dataclass
class GANLoss:
    """Base: settings shared by every loss (optimiser, critic steps, constraints)."""

    name: ClassVar[str] = "base"
    critic_type: ClassVar[str] = "scalar"
    fake_batches: ClassVar[int] = 1  # fake points per real point the trainer draws
    critic_dim: int = 1
    n_critic: int = 1
    optimizer: str = "adam"
    lr_g: float = 1e-3
    lr_c: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.9)
    clip: WeightClip | None = None
    penalty: GradientPenalty | None = None
    batch_size: int | None = None  # real points per step; None: the trainer's default

    def critic_loss(self, critic, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError  # every concrete loss overrides it

    def generator_loss(self, critic, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError  # every concrete loss overrides it

    def critic_function(self, critic, real: Tensor, fake: Tensor) -> Callable[[Tensor], Tensor]:
        """x -> (n,) values: what the gradient penalty constrains and the contour plot shows."""
        return critic

    def after_critic_step(self, critic, real: Tensor, fake: Tensor, step: int) -> dict:
        """Update the loss's own state (BEGAN's k, Fisher's lambda, ...); returns values to log."""
        return {}

    def settings(self) -> dict:
        """The loss's name and settings, for metrics.json."""
        out = {"loss": self.name}
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            v = getattr(self, f.name)
            out[f.name] = asdict(v) if hasattr(v, "__dataclass_fields__") else v
        return out


# --------------------------------------------------------------------------- MMD family

def _data_bandwidths(scales, data_scale: float) -> list[float]:
    """Absolute bandwidths from multiples of the data scale."""
    return [s * data_scale for s in scales]


@dataclass
class GMMN(GANLoss):
    r"""Generative moment matching network: minimise MMD^2_u(G(z), data) in data space.

        L_G = MMD^2_u(fake, real),  k = sum_s exp(-||x - y||^2 / (2 s^2))

    with a mixture of Gaussian bandwidths s (``bandwidths``, multiples of the
    data scale that the trainer sets through ``data_scale``). No critic. Computed
    by :func:`mmdkit.mmd2_unbiased` on the blocked engine (first-order
    autograd is all a generator step needs).

    Defaults: ``lr_g`` 1e-3 and ``batch_size`` 512, twice the trainer's 256
    (with no critic, the batch alone sets the noise of the MMD gradient). How
    they were chosen: bench/GAN_RESULTS.md, section "How the MMD-family
    settings were chosen" (subsection "gmmn learning rate and generator size").

    References
    ----------
    Li, Swersky, Zemel. Generative moment matching networks. ICML 2015.
    Dziugaite, Roy, Ghahramani. Training generative neural networks via
    maximum mean discrepancy optimization. UAI 2015.
    """

    name: ClassVar[str] = "gmmn"
    critic_type: ClassVar[str] = "none"
    bandwidths: tuple[float, ...] = (0.0125, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
    data_scale: float = 1.0
    lr_g: float = 1e-3
    batch_size: int | None = 512

    def kernel(self) -> Mixture:
        return Mixture.of(Gaussian, _data_bandwidths(self.bandwidths, self.data_scale))

    def critic_loss(self, critic, real, fake):
        return torch.zeros(())

    def generator_loss(self, critic, real, fake):
        return mmd2_unbiased(fake, real, kernel=self.kernel())

    def critic_function(self, critic, real, fake):
        k = self.kernel()
        return lambda x: witness(fake.detach(), real.detach(), x, kernel=k)


def repulsive_loss(real: Tensor, fake: Tensor, kernel: KernelSpec) -> Tensor:
    r"""Wang et al.'s repulsive MMD critic loss  E k(r, r') - E k(f, f')  (distinct pairs).

    The critic minimises it: real features are pushed apart (so the kernel
    separates nearby real points), fake features pulled together. Where the
    attractive loss -MMD^2 = 2 E k(r, f) - E k(r, r') - E k(f, f') only asks
    the critic to tell real from fake, this one asks it to resolve the real
    data's own fine structure as well. Each within-sample mean (diagonal
    excluded) is one symmetric ``block_sums`` sweep of the mmdkit engine over
    that sample alone, so the real-fake pairs, unused here, are never computed.

    References
    ----------
    Wang, Sun, Halgamuge. Improving MMD-GAN training with repulsive loss
    function. ICLR 2019, Eq. 4.

    Examples
    --------
    >>> import torch
    >>> from mmdkit import Gaussian
    >>> r = torch.tensor([[0.0], [1.0]]); f = torch.tensor([[0.0], [0.0]])
    >>> round(float(repulsive_loss(r, f, Gaussian(1.0))), 4)   # exp(-1/2) - 1
    -0.3935
    """
    engine = get_backend("auto", real.device, real.dtype)

    def mean_pairs(Z):  # mean of k(z_i, z_j) over i != j
        n = Z.shape[0]
        return engine.block_sums(Z, (n,), kernel, exclude_diagonal=True)[0, 0] / (n * (n - 1))

    return (mean_pairs(real) - mean_pairs(fake)).to(real.dtype)


def _check_critic_objective(value: str) -> None:
    if value not in ("repulsive", "attractive"):
        raise ValueError(f"`critic_objective` must be 'repulsive' or 'attractive', got {value!r}")


def rq_mixture(alphas=(0.2, 0.5, 1.0, 2.0, 5.0), bandwidth: float = 1.0) -> Mixture:
    """Bińkowski et al.'s rational-quadratic mixture sum_a (1 + ||x - y||^2 / (2 a))^(-a)."""
    return Mixture(components=tuple(RationalQuadratic(bandwidth=bandwidth, alpha=a) for a in alphas))


@dataclass
class MMDGAN(GANLoss):
    r"""MMD-GAN: MMD^2 between learned critic features h(real) and h(fake).

    ``variant="binkowski"`` (default; Bińkowski et al. 2018's kernel and penalty):

        L_G = MMD^2_u(h(fake), h(real)),   k = sum_a (1 + ||u - v||^2 / (2 a))^(-a),  a in ``alphas``,

    and the critic loss chosen by ``critic_objective``:

    - ``"repulsive"`` (default; Wang et al. 2019): L_C = E k(h(r), h(r')) - E k(h(f), h(f')) + GP,
      :func:`repulsive_loss`;
    - ``"attractive"`` (Bińkowski et al.): L_C = -MMD^2_u(h(real), h(fake)) + GP.

    GP is the gradient penalty (weight ``penalty.weight``, on 64 interpolates per
    step) on the witness x -> mean_j k(h(x), h(fake_j)) - mean_j k(h(x), h(real_j))
    at per-sample interpolates. The MMD goes through :func:`mmdkit.mmd2_unbiased`;
    the witness of the penalty through the dense twice-differentiable kernel matrix.

    Defaults: the repulsive critic, 16 critic features, GP weight 0.03, one
    critic step per generator step, ``lr_c`` 3e-3 (three times ``lr_g`` 1e-3) and
    ``batch_size`` 512. The attractive critic can settle on features that see
    one input direction only (the witness then varies along one axis and the
    samples lie on lines through the modes); the repulsive critic must also
    spread the real points' features apart, so it resolves the modes in every
    direction. How these defaults were chosen, with the runs and seeds:
    bench/GAN_RESULTS.md, section "How the MMD-family settings were chosen".

    ``variant="li"`` (Li et al. 2017): an autoencoder critic h = encoder, a
    Gaussian mixture kernel on codes (``gaussian_bandwidths``), weight clipping
    c = 0.01 and the reconstruction regulariser:
    L_C = -MMD^2_u + ``ae_weight`` (||dec(h(x)) - x||^2 + ||dec(h(G z)) - G z||^2) means.
    (The paper's one-sided hinge on E f(x) - E f(G z) is left out; ``critic_objective``
    does not apply.) Its grid25 run: bench/GAN_RESULTS.md, section "How the
    MMD-family settings were chosen".

    References
    ----------
    Bińkowski, Sutherland, Arbel, Gretton. Demystifying MMD GANs. ICLR 2018.
    Wang, Sun, Halgamuge. Improving MMD-GAN training with repulsive loss
    function. ICLR 2019.
    Li, Chang, Cheng, Yang, Póczos. MMD GAN: towards deeper understanding of
    moment matching network. NeurIPS 2017.
    """

    name: ClassVar[str] = "mmd-gan"
    variant: str = "binkowski"
    critic_objective: str = "repulsive"
    critic_dim: int = 16
    alphas: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0)
    gaussian_bandwidths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    ae_weight: float = 8.0
    n_critic: int = 1
    lr_g: float = 1e-3
    lr_c: float = 3e-3
    penalty: GradientPenalty | None = field(default_factory=lambda: GradientPenalty(weight=0.03, n_points=64))
    batch_size: int | None = 512

    def __post_init__(self):
        if self.variant not in ("binkowski", "li"):
            raise ValueError(f"`variant` must be 'binkowski' or 'li', got {self.variant!r}")
        _check_critic_objective(self.critic_objective)
        if self.variant == "li":
            self.penalty, self.clip = None, self.clip or WeightClip(0.01)

    @property
    def critic_type(self) -> str:  # type: ignore[override]
        return "autoencoder" if self.variant == "li" else "features"

    def kernel(self) -> Mixture:
        if self.variant == "li":
            return Mixture.of(Gaussian, self.gaussian_bandwidths)
        return rq_mixture(self.alphas)

    def critic_loss(self, critic, real, fake):
        k = self.kernel()
        if self.variant == "li":
            (hr, rr), (hf, rf) = critic.reconstruct(real), critic.reconstruct(fake)
            recon = ((rr - real) ** 2).sum(1).mean() + ((rf - fake) ** 2).sum(1).mean()
            return -mmd2_unbiased(hr, hf, kernel=k) + self.ae_weight * recon
        if self.critic_objective == "repulsive":
            return repulsive_loss(critic(real), critic(fake), k)
        return -mmd2_unbiased(critic(real), critic(fake), kernel=k)

    def generator_loss(self, critic, real, fake):
        return mmd2_unbiased(critic(fake), critic(real), kernel=self.kernel())

    def critic_function(self, critic, real, fake):
        w = witness_function(self.kernel(), critic(fake), critic(real))
        return lambda x: w(critic(x))


def _energy_witness(critic, real: Tensor, fake: Tensor, exponent: float = 1.0) -> Callable[[Tensor], Tensor]:
    """x -> E||h(x) - h(Y)||^b - E||h(x) - h(X)||^b + const (X fake, Y real): the energy witness."""
    w = witness_function(Energy(exponent=exponent), critic(fake), critic(real))
    return lambda x: w(critic(x))


@dataclass
class _EnergyCritic(GANLoss):
    """Settings and critic loss shared by the two energy-distance GANs (see there)."""

    critic_type: ClassVar[str] = "features"
    unbiased: ClassVar[bool] = False  # the estimator of D_b (see ``distance``)
    critic_objective: str = "repulsive"
    exponent: float = 0.5
    critic_dim: int = 16
    lr_g: float = 1e-3
    lr_c: float = 3e-3
    penalty: GradientPenalty | None = field(default_factory=lambda: GradientPenalty(weight=0.01, n_points=64))
    batch_size: int | None = 512

    def __post_init__(self):
        _check_critic_objective(self.critic_objective)
        Energy(exponent=self.exponent)  # checks the exponent (0 < b < 2)

    def kernel(self) -> Energy:
        """The energy kernel; mmdkit evaluates its pairwise part k(u, v) = -||u - v||^b.

        The norm terms of the full kernel cancel in the energy distance; the
        repulsive loss uses the pairwise part as is, so it reads
        E||h(f) - h(f')||^b - E||h(r) - h(r')||^b.
        """
        return Energy(exponent=self.exponent)

    def distance(self, hf: Tensor, hr: Tensor) -> Tensor:
        """D_b between feature samples: the U-statistic if ``unbiased`` (energy-gan), else the V-statistic."""
        return energy_distance(hf, hr, unbiased=self.unbiased, exponent=self.exponent)

    def critic_loss(self, critic, real, fake):
        """Repulsive: E k(h(r), h(r')) - E k(h(f), h(f')); attractive: -D_b(h(fake), h(real))."""
        if self.critic_objective == "repulsive":
            return repulsive_loss(critic(real), critic(fake), self.kernel())
        return -self.distance(critic(fake), critic(real))

    def generator_loss(self, critic, real, fake):
        return self.distance(critic(fake), critic(real))

    def critic_function(self, critic, real, fake):
        return _energy_witness(critic, real, fake, self.exponent)


@dataclass
class CramerGAN(_EnergyCritic):
    r"""Cramér GAN: energy distance on critic features h, with a gradient penalty.

    ``form="energy"`` (default, the corrected critic): the generator minimises
    the full (generalised) energy distance of the features,

        D_b(h) = 2 E||h(X) - h(Y)||^b - E||h(X) - h(X')||^b - E||h(Y) - h(Y')||^b,   L_G = D_b(h),

    X, X' two independent fake batches (the trainer draws ``fake_batches = 2``
    per real batch), the V-statistic of :func:`mmdkit.energy_distance`
    (``exponent`` b; b = 1 is the energy distance). The critic loss is chosen by
    ``critic_objective``, as in :class:`MMDGAN` with k(u, v) = -||u - v||^b:

    - ``"repulsive"`` (default): L_C = E k(h(r), h(r')) - E k(h(f), h(f')) + GP
      = E||h(f) - h(f')||^b - E||h(r) - h(r')||^b + GP (:func:`repulsive_loss`);
    - ``"attractive"``: L_C = -D_b(h) + GP.

    GP (weight ``penalty.weight``, 64 interpolates per step) is on the energy
    witness x -> E||h(x) - h(Y)||^b - E||h(x) - h(X)||^b. The defaults are
    energy-gan's (see :class:`EnergyGAN`; how they were chosen:
    bench/GAN_RESULTS.md, section "How the MMD-family settings were chosen").

    ``form="surrogate"`` is the paper's Algorithm 1: the critic
    f(x) = ||h(x) - h(x'_g)|| - ||h(x)|| is trained on -(f(x_r) - f(x_g)) + GP(f)
    (expectation: :func:`cramer_surrogate` of the features), the generator on
    ||h(x_r) - h(x_g)|| + ||h(x_r) - h(x'_g)|| - ||h(x_g) - h(x'_g)||. That
    surrogate can vanish while the distributions differ (see
    :func:`cramer_surrogate`), which is why it is not the default; it uses
    exponent 1 and its own critic, so ``exponent`` and ``critic_objective`` do
    not apply to it (they are still listed in ``settings()``). It runs with the
    shared defaults above (GP weight 0.01, ``lr_c`` 3e-3, batch 512), which
    were tuned for the energy form; the paper's penalty weight is 10
    (``--set form=surrogate --set penalty.weight=10``).

    References
    ----------
    Bellemare, Danihelka, Dabney, Mohamed, Lakshminarayanan, Hoyer, Munos.
    The Cramér distance as a solution to biased Wasserstein gradients. 2017.
    Gretton. Notes on the Cramér GAN (2017).
    Wang, Sun, Halgamuge. Improving MMD-GAN training with repulsive loss
    function. ICLR 2019 (the repulsive critic).
    """

    name: ClassVar[str] = "cramer-gan"
    fake_batches: ClassVar[int] = 2
    form: str = "energy"

    def __post_init__(self):
        super().__post_init__()
        if self.form not in ("energy", "surrogate"):
            raise ValueError(f"`form` must be 'energy' or 'surrogate', got {self.form!r}")

    def _halves(self, critic, real, fake):
        """h(x_r), h(x_g), h(x'_g): fake split in halves, rows paired (truncated to a common length)."""
        h = fake.shape[0] // 2
        m = min(h, real.shape[0])
        return critic(real[:m]), critic(fake[:m]), critic(fake[h:h + m])

    def critic_loss(self, critic, real, fake):
        if self.form == "energy":
            return super().critic_loss(critic, real, fake)
        hr, hg, hg2 = self._halves(critic, real, fake)
        f = lambda hx: (hx - hg2).norm(dim=1) - hx.norm(dim=1)
        return -(f(hr).mean() - f(hg).mean())

    def generator_loss(self, critic, real, fake):
        if self.form == "energy":
            return super().generator_loss(critic, real, fake)
        hr, hg, hg2 = self._halves(critic, real, fake)
        return ((hr - hg).norm(dim=1) + (hr - hg2).norm(dim=1) - (hg - hg2).norm(dim=1)).mean()

    def critic_function(self, critic, real, fake):
        if self.form == "energy":
            return super().critic_function(critic, real, fake)
        hg2 = critic(fake[fake.shape[0] // 2:])
        return lambda x: (critic(x)[:, None, :] - hg2[None]).norm(dim=2).mean(1) - critic(x).norm(dim=1)


@dataclass
class EnergyGAN(_EnergyCritic):
    r"""Energy-distance GAN: the unbiased (generalised) energy distance of critic features, with GP.

        L_G = ED_u(h(fake), h(real)) = 2 E||h(X) - h(Y)||^b - E||h(X) - h(X')||^b - E||h(Y) - h(Y')||^b

    ED_u = :func:`mmdkit.energy_distance` with ``unbiased=True`` (equal to
    :func:`mmdkit.mmd2_unbiased` with the :class:`mmdkit.Energy` kernel)
    of ``exponent`` b (the U-statistic: no self-pairs; b = 1 is the energy
    distance; for any b in (0, 2) its population value is 0 only when the
    distributions agree), one fake batch. The
    critic loss is chosen by ``critic_objective``, as in :class:`MMDGAN` with
    k(u, v) = -||u - v||^b:

    - ``"repulsive"`` (default): L_C = E||h(f) - h(f')||^b - E||h(r) - h(r')||^b + GP
      (:func:`repulsive_loss`): the critic spreads the real features apart;
    - ``"attractive"``: L_C = -ED_u + GP.

    GP (weight ``penalty.weight``, 64 interpolates per step) is on the energy
    witness of the features. It differs from ``cramer-gan`` (energy form) only
    in the estimator (U- instead of V-statistic, one fake batch).

    Defaults (shared with ``cramer-gan``): the repulsive critic, b = 0.5, 16
    critic features, GP weight 0.01, ``lr_c`` 3e-3, ``lr_g`` 1e-3 and
    ``batch_size`` 512. The exponent matters on multi-modal data: under
    ||u - v|| (b = 1) every point pulls on a sample with a unit vector whatever
    its distance, so far modes weigh on its gradient as much as its own; for
    b < 1 the pull decays as ||u - v||^(b - 1). How these defaults were chosen
    (from the earlier ones: attractive critic, b = 1, GP weight 10, ``lr_c``
    1e-3, batch 256): bench/GAN_RESULTS.md, section "How the MMD-family
    settings were chosen".

    At b <= 0.5 the penalty's integrand, the squared witness gradient, grows
    like ||h(x) - h(f_i)||^(2b - 2) near each fake point, so its expectation
    over interpolates is heavy-tailed (infinite at b <= 0.5 in the limit of a
    continuous density of fakes); the default weight is small, and a larger
    weight at small b may let the penalty dominate the critic loss.

    References
    ----------
    Székely & Rizzo (2013); Bellemare et al. (2017); Sejdinovic, Sriperumbudur,
    Gretton, Fukumizu. Equivalence of distance-based and RKHS-based statistics
    in hypothesis testing. Ann. Stat. 2013. Wang, Sun, Halgamuge (2019), the
    repulsive critic.
    """

    name: ClassVar[str] = "energy-gan"
    unbiased: ClassVar[bool] = True


# --------------------------------------------------------------------------- baselines

@dataclass
class WGAN(GANLoss):
    r"""Wasserstein GAN: L_C = E f(G z) - E f(x), L_G = -E f(G z), weights clipped to [-0.01, 0.01].

    RMSProp, lr 5e-5, 5 critic steps per generator step (the paper's defaults).

    References
    ----------
    Arjovsky, Chintala, Bottou. Wasserstein GAN. ICML 2017, Algorithm 1.
    """

    name: ClassVar[str] = "wgan"
    n_critic: int = 5
    optimizer: str = "rmsprop"
    lr_g: float = 5e-5
    lr_c: float = 5e-5
    clip: WeightClip | None = field(default_factory=lambda: WeightClip(0.01))

    def critic_loss(self, critic, real, fake):
        return critic(fake).mean() - critic(real).mean()

    def generator_loss(self, critic, real, fake):
        return -critic(fake).mean()


@dataclass
class WGANGP(WGAN):
    r"""WGAN-GP: the WGAN losses with the gradient penalty 10 E(||grad f(x_hat)|| - 1)^2.

    Adam (lr 1e-4, betas (0.5, 0.9)), 5 critic steps, no clipping (the paper's
    settings). Higher learning rates on grid25: bench/GAN_RESULTS.md, section
    "wgan-gp at higher learning rates".

    References
    ----------
    Gulrajani et al. Improved training of Wasserstein GANs. NeurIPS 2017.
    """

    name: ClassVar[str] = "wgan-gp"
    optimizer: str = "adam"
    lr_g: float = 1e-4
    lr_c: float = 1e-4
    clip: WeightClip | None = None
    penalty: GradientPenalty | None = field(default_factory=lambda: GradientPenalty(weight=10.0))


@dataclass
class LSGAN(GANLoss):
    r"""Least-squares GAN with the 0-1 coding (a, b, c) = (0, 1, 1):

        L_C = 1/2 E (D(x) - 1)^2 + 1/2 E D(G z)^2,   L_G = 1/2 E (D(G z) - 1)^2.

    References
    ----------
    Mao, Li, Xie, Lau, Wang, Smolley. Least squares generative adversarial
    networks. ICCV 2017, Eq. 2.
    """

    name: ClassVar[str] = "lsgan"
    lr_g: float = 1e-4
    lr_c: float = 1e-4

    def critic_loss(self, critic, real, fake):
        return 0.5 * ((critic(real) - 1) ** 2).mean() + 0.5 * (critic(fake) ** 2).mean()

    def generator_loss(self, critic, real, fake):
        return 0.5 * ((critic(fake) - 1) ** 2).mean()


@dataclass
class MinimaxGAN(GANLoss):
    r"""The original minimax GAN, D = sigmoid(critic logit):

        L_C = -E log D(x) - E log(1 - D(G z)),   L_G = E log(1 - D(G z)),

    computed stably with softplus on the logits.

    References
    ----------
    Goodfellow et al. Generative adversarial nets. NeurIPS 2014, Eq. 1.
    """

    name: ClassVar[str] = "gan"
    lr_g: float = 1e-4
    lr_c: float = 1e-4

    def critic_loss(self, critic, real, fake):
        return F.softplus(-critic(real)).mean() + F.softplus(critic(fake)).mean()

    def generator_loss(self, critic, real, fake):
        return -F.softplus(critic(fake)).mean()


@dataclass
class NSGAN(MinimaxGAN):
    r"""Non-saturating GAN: the minimax critic, generator loss L_G = -E log D(G z).

    References
    ----------
    Goodfellow et al. (2014), Sec. 3 (the "-log D trick").
    """

    name: ClassVar[str] = "ns-gan"

    def generator_loss(self, critic, real, fake):
        return F.softplus(-critic(fake)).mean()


def reconstruction_energy(critic, x: Tensor, p: int = 2) -> tuple[Tensor, Tensor]:
    """(per-sample energy ||dec(enc(x)) - x||_p^p / d, code) of an autoencoder critic."""
    code, rec = critic.reconstruct(x)
    return (rec - x).abs().pow(p).mean(1), code


@dataclass
class EBGAN(GANLoss):
    r"""Energy-based GAN with an autoencoder discriminator D(x) = ||Dec(Enc(x)) - x||^2 / d:

        L_C = E D(x) + E max(0, m - D(G z)),
        L_G = E D(G z) + pt_weight * PT(Enc(G z)),

    m the margin (``margin``, in units of data_scale^2, set by the trainer),
    PT the pull-away term :func:`pull_away` (squared cosines, diagonal left out).

    References
    ----------
    Zhao, Mathieu, LeCun. Energy-based generative adversarial network. ICLR 2017,
    Eqs. 1-2 and 7.
    """

    name: ClassVar[str] = "ebgan"
    critic_type: ClassVar[str] = "autoencoder"
    critic_dim: int = 16
    margin: float = 0.05
    data_scale: float = 1.0
    pt_weight: float = 0.1
    lr_g: float = 1e-4
    lr_c: float = 1e-4

    @property
    def m(self) -> float:
        return self.margin * self.data_scale ** 2

    def critic_loss(self, critic, real, fake):
        er, _ = reconstruction_energy(critic, real)
        ef, _ = reconstruction_energy(critic, fake)
        return er.mean() + F.relu(self.m - ef).mean()

    def generator_loss(self, critic, real, fake):
        ef, code = reconstruction_energy(critic, fake)
        return ef.mean() + self.pt_weight * pull_away(code)

    def critic_function(self, critic, real, fake):
        return lambda x: -reconstruction_energy(critic, x)[0]


LOSSES: dict[str, type[GANLoss]] = {
    c.name: c for c in (GMMN, MMDGAN, CramerGAN, EnergyGAN, WGAN, WGANGP, LSGAN, EBGAN, MinimaxGAN, NSGAN)
}


def get_loss(name: str, **kwargs) -> GANLoss:
    """A loss object by name (``LOSSES``), with its defaults overridden by ``kwargs``."""
    if name not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name](**kwargs)


# --------------------------------------------------------------------------- issue 6: more IPMs and energies

@dataclass
class FisherGAN(GANLoss):
    r"""Fisher GAN: an IPM whose critic is normalised by its second moment, by augmented Lagrangian.

        E_hat = E_P f - E_Q f,   Omega_hat = 1/2 E_P f^2 + 1/2 E_Q f^2   (P real, Q fake),
        L_F = E_hat + lambda (1 - Omega_hat) - rho / 2 (Omega_hat - 1)^2,

    the critic maximises L_F (``critic_loss`` = -L_F), after each critic step the
    multiplier takes a gradient-descent step on the constraint,
    lambda <- lambda - rho dL_F/dlambda = lambda - rho (1 - Omega_hat), and the
    generator minimises -E_Q f. Defaults: rho = 1e-6, lambda_0 = 0, Adam,
    2 critic steps per generator step. ``lam`` is the running multiplier.

    References
    ----------
    Mroueh & Sercu. Fisher GAN. NeurIPS 2017, Eq. 7 and Algorithm 1.
    """

    name: ClassVar[str] = "fisher-gan"
    rho: float = 1e-6
    lam: float = 0.0
    n_critic: int = 2
    lr_g: float = 2e-4
    lr_c: float = 2e-4
    _omega: float = field(default=1.0, repr=False)

    def lagrangian(self, fr: Tensor, ff: Tensor) -> tuple[Tensor, Tensor]:
        """(L_F, Omega_hat) from the critic values on real and fake points."""
        e = fr.mean() - ff.mean()
        omega = 0.5 * (fr ** 2).mean() + 0.5 * (ff ** 2).mean()
        return e + self.lam * (1 - omega) - self.rho / 2 * (omega - 1) ** 2, omega

    def critic_loss(self, critic, real, fake):
        lf, omega = self.lagrangian(critic(real), critic(fake))
        self._omega = float(omega.detach())
        return -lf

    def after_critic_step(self, critic, real, fake, step):
        self.lam -= self.rho * (1 - self._omega)
        return {"lambda": self.lam, "omega": self._omega}

    def generator_loss(self, critic, real, fake):
        return -critic(fake).mean()


@dataclass
class McGAN(GANLoss):
    r"""McGAN: mean or covariance matching IPMs on a clipped feature map Phi (critic features).

    ``form="mean"`` (default): IPM_mu,q = || E_P Phi - E_Q Phi ||_q (``q`` = 2);
    ``form="cov"``: IPM_Sigma,k = sum of the top-k singular values of
    Sigma_P - Sigma_Q, Sigma = E Phi Phi^T (uncentred, as in the paper), which is
    max over orthonormal U, V (m x k) of Tr(U^T (Sigma_P - Sigma_Q) V), attained
    at the top-k singular vectors (computed exactly with an SVD here instead of
    the paper's projected updates of U and V).
    The critic maximises the IPM (``critic_loss`` = -IPM), the generator minimises
    it; critic weights are clipped to [-0.01, 0.01]; RMSProp, 5 critic steps.

    References
    ----------
    Mroueh, Sercu, Goel. McGan: mean and covariance feature matching GAN.
    ICML 2017, Eqs. 4 and 10.
    """

    name: ClassVar[str] = "mcgan"
    critic_type: ClassVar[str] = "features"
    form: str = "mean"
    q: float = 2.0
    k: int = 4
    critic_dim: int = 16
    n_critic: int = 5
    optimizer: str = "rmsprop"
    lr_g: float = 5e-4
    lr_c: float = 5e-4
    clip: WeightClip | None = field(default_factory=lambda: WeightClip(0.01))

    def __post_init__(self):
        if self.form not in ("mean", "cov"):
            raise ValueError(f"`form` must be 'mean' or 'cov', got {self.form!r}")

    def ipm(self, hr: Tensor, hf: Tensor) -> Tensor:
        """The chosen IPM between the feature samples hr (real) and hf (fake)."""
        if self.form == "mean":
            return torch.linalg.vector_norm(hr.mean(0) - hf.mean(0), ord=self.q)
        diff = hr.T @ hr / hr.shape[0] - hf.T @ hf / hf.shape[0]  # (m, n) @ (n, m) -> (m, m)
        return torch.linalg.svdvals(diff)[: self.k].sum()

    def critic_loss(self, critic, real, fake):
        return -self.ipm(critic(real), critic(fake))

    def generator_loss(self, critic, real, fake):
        return self.ipm(critic(real), critic(fake))

    def critic_function(self, critic, real, fake):
        """x -> <Phi(x), (mu_P - mu_Q)>: the mean-matching witness direction (also shown for cov)."""
        v = (critic(real).mean(0) - critic(fake).mean(0)).detach()
        return lambda x: critic(x) @ v


@dataclass
class BEGAN(GANLoss):
    r"""Boundary-equilibrium GAN: autoencoder critic with L1 reconstruction energy L(v) = mean |v - D(v)|.

        L_D = L(x) - k_t L(G(z_D)),   L_G = L(G(z_G)),
        k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_G))), 0, 1),
        M_global = L(x) + |gamma L(x) - L(G(z_G))|   (the convergence measure),

    Defaults here: gamma = 1 (the top of the paper's range [0.3, 1], most
    diversity), lambda_k = 1e-2 (ten times the paper's 1e-3, so that k can move
    within a run of a few thousand steps), k_0 = 0, Adam lr 3e-4 (the paper's:
    1e-4), code size 8. How the learning rate was chosen: bench/GAN_RESULTS.md,
    section "BEGAN learning rate". Here k and
    M_global are updated after each critic step from that step's batches
    (L(G(z)) of the critic's fake batch stands for L(G(z_G))); the trainer
    writes the last ``k`` and ``m_global`` into metrics.json.

    References
    ----------
    Berthelot, Schumm, Metz. BEGAN: boundary equilibrium generative
    adversarial networks. arXiv:1703.10717 (2017), Eqs. 4-5 and Sec. 3.4.
    """

    name: ClassVar[str] = "began"
    critic_type: ClassVar[str] = "autoencoder"
    critic_dim: int = 8
    gamma: float = 1.0
    lambda_k: float = 1e-2
    k: float = 0.0
    lr_g: float = 3e-4
    lr_c: float = 3e-4
    _last: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def critic_loss(self, critic, real, fake):
        lr = reconstruction_energy(critic, real, p=1)[0].mean()
        lf = reconstruction_energy(critic, fake, p=1)[0].mean()
        self._last = (float(lr.detach()), float(lf.detach()))
        return lr - self.k * lf

    def after_critic_step(self, critic, real, fake, step):
        lr, lf = self._last
        self.k = min(1.0, max(0.0, self.k + self.lambda_k * (self.gamma * lr - lf)))
        return {"k": self.k, "m_global": self.m_global(lr, lf)}

    def m_global(self, l_real: float, l_fake: float) -> float:
        """M_global = L(x) + |gamma L(x) - L(G(z))|."""
        return l_real + abs(self.gamma * l_real - l_fake)

    def generator_loss(self, critic, real, fake):
        return reconstruction_energy(critic, fake, p=1)[0].mean()

    def critic_function(self, critic, real, fake):
        return lambda x: -reconstruction_energy(critic, x, p=1)[0]


@dataclass
class MAGAN(EBGAN):
    r"""Margin-adaptation GAN: EBGAN's hinge with a margin set from the data and shrinking.

        L_C = E D(x) + E max(0, m - D(G z)),   L_G = E D(G z),

    D the squared reconstruction energy of :class:`EBGAN` (no pull-away term).
    The margin starts at the mean real energy of the first critic batch
    (the paper first pre-trains the autoencoder on real data; here the first
    ``warmup`` critic steps train it with m = 0, i.e. on real data only, and
    then m is set) and after every ``update_every`` critic steps is lowered to
    the window's mean real energy E_real when E_real < m and the window's total
    real energy is below its total fake energy (S_real < S_fake): m never grows.
    Defaults: warmup = update_every = 20 critic steps, Adam lr 1e-3, and a code of
    size 1: on 2-D data a wider code lets the autoencoder learn the identity, so
    every point (fake ones too) gets energy ~0 and the generator no signal.

    References
    ----------
    Wang, Zhang, Lang. MAGAN: margin adaptation for generative adversarial
    networks. arXiv:1704.03817 (2017), Algorithm 1.
    """

    name: ClassVar[str] = "magan"
    critic_dim: int = 1
    pt_weight: float = 0.0
    warmup: int = 20
    update_every: int = 20
    margin: float = 0.0
    lr_g: float = 1e-3
    lr_c: float = 1e-3
    _calls: int = field(default=0, repr=False)
    _window: list = field(default_factory=lambda: [0.0, 0.0, 0], repr=False)
    _batch: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    @property
    def m(self) -> float:
        return self.margin

    def critic_loss(self, critic, real, fake):
        er, _ = reconstruction_energy(critic, real)
        ef, _ = reconstruction_energy(critic, fake)
        self._batch = (float(er.detach().mean()), float(ef.detach().mean()))
        return er.mean() + F.relu(self.m - ef).mean()

    def after_critic_step(self, critic, real, fake, step):
        self._calls += 1
        e_real, e_fake = self._batch
        if self._calls == self.warmup:
            self.margin = e_real
        elif self._calls > self.warmup:
            w = self._window
            w[0] += e_real
            w[1] += e_fake
            w[2] += 1
            if w[2] == self.update_every:
                mean_real = w[0] / w[2]
                if mean_real < self.margin and w[0] < w[1]:
                    self.margin = mean_real
                self._window = [0.0, 0.0, 0]
        return {"margin": self.margin}

    def generator_loss(self, critic, real, fake):
        return reconstruction_energy(critic, fake)[0].mean()


def bregman_kl(x: Tensor, y: Tensor, scale: float = 1.0) -> Tensor:
    r"""Row-wise KL Bregman cost  B(x, y) = sum_i u_i log(u_i / v_i) - u_i + v_i,  u = e^{x/s}, v = e^{y/s}.

    The Bregman divergence of phi(u) = sum_i u_i log u_i (the generalised KL
    divergence, defined for positive vectors) between the points mapped to the
    positive orthant by u = exp(x / ``scale``); in x itself it is
    sum_i e^{x_i/s} (x_i - y_i)/s - e^{x_i/s} + e^{y_i/s}. It is >= 0, zero
    only at x = y, and asymmetric. Shapes (n, d), (n, d) -> (n,).

    Examples
    --------
    >>> import torch
    >>> float(bregman_kl(torch.zeros(1, 2), torch.zeros(1, 2)))
    0.0
    >>> round(float(bregman_kl(torch.tensor([[1.0]]), torch.tensor([[0.0]]))), 6)   # e - e + 1
    1.0
    """
    u, v = x / scale, y / scale
    eu = u.exp()
    return (eu * (u - v) - eu + v.exp()).sum(1)


@dataclass
class RWGAN(WGAN):
    r"""Relaxed Wasserstein GAN: the WGAN critic under a Bregman (KL) cost, asymmetric clamping.

    The relaxed Wasserstein divergence replaces the W1 ground cost ||x - y||
    by a Bregman cost B_phi(x, y) (:func:`bregman_kl`, the KL form the paper
    recommends). Its dual, restricted to g = -f, is

        RW(P, Q) >= sup_f  E_P f - E_Q f   subject to   f(x) - f(y) <= B(x, y) for all x, y,

    a constraint that is asymmetric because B is, where W1's is the symmetric
    1-Lipschitz bound. The critic step is WGAN's (L_C = E f(G z) - E f(x),
    RMSProp, 5 critic steps) followed by the paper's heuristic for that
    constraint: an asymmetric clamp of every critic weight to
    [``clip_low``, ``clip_high``] = [-0.01, 0.02]. With ``cost="kl"``
    (default) the critic loss also carries a hinge penalty on violations of
    the constraint on the step's matched (real, fake) pairs, both orders,
    ``weight`` * mean(max(0, f(a) - f(b) - B(a, b))^2); with ``cost="clamp"``
    only the clamp enforces it (WGAN with an asymmetric clamp). The cost acts
    on x / ``data_scale`` (the trainer sets the toy's scale). The generator
    minimises -E f(G z).

    The paper's own clamp values and learning rates were not at hand when this
    was written: the defaults above (clamp [-0.01, 0.02], RMSProp lr 5e-5 as
    WGAN, penalty weight 1) are this package's choices.

    References
    ----------
    Guo, Hong, Lin, Yang. Relaxed Wasserstein with applications to GANs.
    arXiv:1705.07164 (2017).
    """

    name: ClassVar[str] = "rwgan"
    cost: str = "kl"
    clip_low: float = -0.01
    clip_high: float = 0.02
    weight: float = 1.0
    data_scale: float = 1.0
    clip: WeightClip | None = None

    def __post_init__(self):
        if self.cost not in ("kl", "clamp"):
            raise ValueError(f"`cost` must be 'kl' or 'clamp', got {self.cost!r}")
        if not self.clip_low < 0 < self.clip_high:
            raise ValueError(f"`clip_low` < 0 < `clip_high` is required, got {self.clip_low}, {self.clip_high}")
        self.clip = WeightClip(high=self.clip_high, low=self.clip_low)

    def constraint_penalty(self, f_real: Tensor, f_fake: Tensor, real: Tensor, fake: Tensor) -> Tensor:
        """mean over matched pairs and both orders of max(0, f(a) - f(b) - B(a, b))^2."""
        n = min(real.shape[0], fake.shape[0])
        fr, ff, r, g = f_real[:n], f_fake[:n], real[:n], fake[:n]
        v1 = F.relu(fr - ff - bregman_kl(r, g, self.data_scale))
        v2 = F.relu(ff - fr - bregman_kl(g, r, self.data_scale))
        return 0.5 * ((v1 ** 2).mean() + (v2 ** 2).mean())

    def critic_loss(self, critic, real, fake):
        fr, ff = critic(real), critic(fake)
        loss = ff.mean() - fr.mean()
        if self.cost == "kl":
            loss = loss + self.weight * self.constraint_penalty(fr, ff, real, fake)
        return loss


LOSSES.update({c.name: c for c in (FisherGAN, McGAN, BEGAN, MAGAN, RWGAN)})
__all__ += ["FisherGAN", "McGAN", "BEGAN", "MAGAN", "RWGAN", "bregman_kl"]
