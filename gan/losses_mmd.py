"""MMD and energy-distance GAN losses: GMMN, MMD-GAN, Cramer GAN, energy-distance GAN.

Every kernel statistic goes through mmdkit (:func:`mmdkit.mmd2_unbiased`,
:func:`mmdkit.energy_distance`, :func:`mmdkit.witness`, the engine's
``block_sums``, mmdkit kernel specs); gradient penalties, which need a second
derivative, differentiate the witness twice (the engine's backward is itself
differentiable). The loss objects are frozen configurations
(:class:`~mmdkit.gan.losses_base.GANLoss`); none of these losses has a
training state.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from mmdkit import Energy, Gaussian, Mixture, RationalQuadratic, energy_distance, mmd2_biased, mmd2_unbiased, witness
from mmdkit.estimators import _witness
from mmdkit.gan.constraints import GradientPenalty, WeightClip
from mmdkit.gan.losses_base import GANLoss
from mmdkit.kernels import KernelSpec, get_backend

__all__ = ["GMMN", "MMDGAN", "CramerGAN", "EnergyGAN", "witness_function", "repulsive_loss", "rq_mixture",
           "cramer_surrogate"]

def witness_function(kernel: KernelSpec, fake: Tensor, real: Tensor) -> Callable[[Tensor], Tensor]:
    """x -> the MMD witness of (fake, real) at x (:func:`mmdkit.witness`), twice differentiable.

    Runs on the mmdkit engine (no n x m matrix is stored) and skips the
    public function's validation, since the batches are the trainer's own.
    """
    kernel = kernel.resolve(fake.shape[1])
    engine = get_backend("auto", fake.device, fake.dtype)
    return lambda x: _witness(fake, real, x, kernel, engine)



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



def _data_bandwidths(scales, data_scale: float) -> list[float]:
    """Absolute bandwidths from multiples of the data scale."""
    return [s * data_scale for s in scales]


@dataclass(frozen=True)
class GMMN(GANLoss):
    r"""Generative moment matching network: minimise MMD^2_u(G(z), data) in data space.

        L_G = MMD^2_u(fake, real),  k = sum_s exp(-||x - y||^2 / (2 s^2))

    with a mixture of Gaussian bandwidths s (``bandwidths``, multiples of the
    data scale that the trainer sets through ``data_scale``). No critic. Computed
    by :func:`mmdkit.mmd2_unbiased` on the blocked engine (first-order
    autograd is all a generator step needs).

    Defaults: the equal-budget search's selection (bench/GAN_RESULTS.md):
    ``lr_g`` 1.45e-3 and ``batch_size`` 512, twice the trainer's 256 (with no
    critic, the batch alone sets the noise of the MMD gradient). Before it
    (``mmdkit.gan.tuning.PRIOR["gmmn"]``) ``lr_g`` was 1e-3, chosen as in
    bench/GAN_RESULTS.md, section "How the MMD-family settings were chosen".

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
    # defaults: the equal-budget search's selected trial 2 (bench/GAN_RESULTS.md); before it: tuning.PRIOR
    lr_g: float = 1.45e-3
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


@dataclass(frozen=True)
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
    the witness of the penalty through :func:`witness_function` (the engine, twice differentiable).

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
    # defaults: the equal-budget search kept this prior configuration (tuning.PRIOR; bench/GAN_RESULTS.md)
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
            self._set(penalty=None, clip=self.clip or WeightClip(0.01))
        super().__post_init__()

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


def _energy_witness(critic, real: Tensor, fake: Tensor, kernel: Callable[..., Energy]) -> Callable[[Tensor], Tensor]:
    """x -> E||h(x) - h(Y)||^b - E||h(x) - h(X)||^b + const (X fake, Y real): the energy witness
    (``kernel(hf, hr)``: the Energy spec for those features)."""
    hf, hr = critic(fake), critic(real)
    w = witness_function(kernel(hf, hr), hf, hr)
    return lambda x: w(critic(x))


@dataclass(frozen=True)
class _EnergyCritic(GANLoss):
    """Settings and critic loss shared by the two energy-distance GANs (see there)."""

    critic_type: ClassVar[str] = "features"
    unbiased: ClassVar[bool] = False  # the estimator of D_b (see ``distance``)
    critic_objective: str = "repulsive"
    # defaults: the equal-budget search kept this prior configuration (tuning.PRIOR; bench/GAN_RESULTS.md)
    exponent: float = 0.5
    smoothing: float = 0.0
    critic_dim: int = 16
    lr_g: float = 1e-3
    lr_c: float = 3e-3
    penalty: GradientPenalty | None = field(default_factory=lambda: GradientPenalty(weight=0.01, n_points=64))
    batch_size: int | None = 512

    def __post_init__(self):
        _check_critic_objective(self.critic_objective)
        Energy(exponent=self.exponent)  # checks the exponent (0 < b < 2)
        if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, (int, float)) or \
                not 0 <= self.smoothing < float("inf"):
            raise ValueError(f"`smoothing` must be a finite float >= 0, got {self.smoothing!r}")
        super().__post_init__()

    def kernel(self, *features: Tensor) -> Energy:
        """The energy kernel of these features; mmdkit evaluates its pairwise part k(u, v) = -||u - v||^b.

        The norm terms of the full kernel cancel in the energy distance; the
        repulsive loss uses the pairwise part as is, so it reads
        E||h(f) - h(f')||^b - E||h(r) - h(r')||^b. With ``smoothing`` s > 0 it
        is -(||u - v||^2 + c^2)^(b/2) (:class:`mmdkit.Energy`'s ``offset``) with
        c = s times the root mean square distance of the pooled ``features``
        from their mean (a constant of the step: no gradient flows through c),
        so pairs of features much closer than c no longer repel each other.
        """
        if not self.smoothing:
            return Energy(exponent=self.exponent)
        if not features:
            raise ValueError("`smoothing` sets the offset from the features: pass them to kernel(...)")
        with torch.no_grad():
            H = torch.cat([f.reshape(f.shape[0], -1) for f in features]).double()
            rms = float((H - H.mean(0)).square().sum(1).mean().sqrt())
        return Energy(exponent=self.exponent, offset=self.smoothing * rms)

    def distance(self, hf: Tensor, hr: Tensor) -> Tensor:
        """D_b between feature samples: the U-statistic if ``unbiased`` (energy-gan), else the V-statistic."""
        if self.smoothing:
            return (mmd2_unbiased if self.unbiased else mmd2_biased)(hf, hr, kernel=self.kernel(hf, hr))
        return energy_distance(hf, hr, unbiased=self.unbiased, exponent=self.exponent)

    def critic_loss(self, critic, real, fake):
        """Repulsive: E k(h(r), h(r')) - E k(h(f), h(f')); attractive: -D_b(h(fake), h(real))."""
        if self.critic_objective == "repulsive":
            hr, hf = critic(real), critic(fake)
            return repulsive_loss(hr, hf, self.kernel(hf, hr))
        return -self.distance(critic(fake), critic(real))

    def generator_loss(self, critic, real, fake):
        return self.distance(critic(fake), critic(real))

    def critic_function(self, critic, real, fake):
        return _energy_witness(critic, real, fake, self.kernel)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
    ``smoothing`` s > 0 (both energy losses; default 0, the exact energy
    kernel) replaces ||u - v||^b by (||u - v||^2 + c^2)^(b/2), c = s times the
    features' rms spread (:meth:`kernel`): features closer than about c stop
    repelling each other, and the penalty's integrand stays bounded.

    References
    ----------
    Székely & Rizzo (2013); Bellemare et al. (2017); Sejdinovic, Sriperumbudur,
    Gretton, Fukumizu. Equivalence of distance-based and RKHS-based statistics
    in hypothesis testing. Ann. Stat. 2013. Wang, Sun, Halgamuge (2019), the
    repulsive critic.
    """

    name: ClassVar[str] = "energy-gan"
    unbiased: ClassVar[bool] = True
