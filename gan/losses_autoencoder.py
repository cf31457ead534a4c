"""Autoencoder-critic losses: EBGAN, BEGAN and MAGAN (energy = reconstruction error).

The loss objects are frozen configurations (:class:`~mmdkit.gan.losses_base.GANLoss`);
BEGAN's k (:class:`BEGANState`) and MAGAN's margin (:class:`MAGANState`) are
their training state, which starts from the configured value every run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from mmdkit.gan.losses_base import GANLoss

__all__ = ["EBGAN", "BEGAN", "BEGANState", "MAGAN", "MAGANState", "reconstruction_energy", "pull_away"]


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


def reconstruction_energy(critic, x: Tensor, p: int = 2) -> tuple[Tensor, Tensor]:
    """(per-sample energy ||dec(enc(x)) - x||_p^p / d, code) of an autoencoder critic."""
    code, rec = critic.reconstruct(x)
    return (rec - x).abs().pow(p).mean(1), code


@dataclass(frozen=True)
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
    data_scale: float = 1.0
    # defaults: the equal-budget search's selected trial 9 (bench/GAN_RESULTS.md); before it: tuning.PRIOR
    margin: float = 0.711
    pt_weight: float = 0.326
    n_critic: int = 5
    lr_g: float = 8.39e-4
    lr_c: float = 1.41e-3
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int | None = 256
    packing: int = 1

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


@dataclass
class BEGANState:
    """BEGAN's training state: k_t, the last M_global, and L(x), L(G z) of the last critic batch."""

    k: float
    m_global: float | None = None
    l_real: float = 0.0
    l_fake: float = 0.0


@dataclass(frozen=True)
class BEGAN(GANLoss):
    r"""Boundary-equilibrium GAN: autoencoder critic with L1 reconstruction energy L(v) = mean |v - D(v)|.

        L_D = L(x) - k_t L(G(z_D)),   L_G = L(G(z_G)),
        k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_G))), 0, 1),
        M_global = L(x) + |gamma L(x) - L(G(z_G))|   (the convergence measure),

    Defaults here (kept by the equal-budget search, bench/GAN_RESULTS.md):
    gamma = 1 (the top of the paper's range [0.3, 1], most diversity),
    lambda_k = 1e-2 (ten times the paper's 1e-3, so that k can move within a
    run of a few thousand steps), k_0 = 0, Adam lr 3e-4 (the paper's: 1e-4),
    code size 8. Here k and
    M_global are updated after each critic step from that step's batches
    (L(G(z)) of the critic's fake batch stands for L(G(z_G))). ``k`` is k_0 as
    configured; the running k and the last M_global are ``state``
    (:class:`BEGANState`), which the trainer writes into metrics.json as
    ``loss_state`` next to the configuration (``settings``).

    References
    ----------
    Berthelot, Schumm, Metz. BEGAN: boundary equilibrium generative
    adversarial networks. arXiv:1703.10717 (2017), Eqs. 4-5 and Sec. 3.4.
    """

    name: ClassVar[str] = "began"
    critic_type: ClassVar[str] = "autoencoder"
    critic_dim: int = 8
    k: float = 0.0
    # defaults: the equal-budget search kept this prior configuration (tuning.PRIOR; bench/GAN_RESULTS.md)
    gamma: float = 1.0
    lambda_k: float = 1e-2
    lr_g: float = 3e-4
    lr_c: float = 3e-4

    def initial_state(self) -> BEGANState:
        return BEGANState(k=self.k)

    def critic_loss(self, critic, real, fake):
        lr = reconstruction_energy(critic, real, p=1)[0].mean()
        lf = reconstruction_energy(critic, fake, p=1)[0].mean()
        self.state.l_real, self.state.l_fake = float(lr.detach()), float(lf.detach())
        return lr - self.state.k * lf

    def after_critic_step(self, critic, real, fake, step):
        st = self.state
        st.k = min(1.0, max(0.0, st.k + self.lambda_k * (self.gamma * st.l_real - st.l_fake)))
        st.m_global = self.m_global(st.l_real, st.l_fake)
        return {"k": st.k, "m_global": st.m_global}

    def m_global(self, l_real: float, l_fake: float) -> float:
        """M_global = L(x) + |gamma L(x) - L(G(z))|."""
        return l_real + abs(self.gamma * l_real - l_fake)

    def generator_loss(self, critic, real, fake):
        return reconstruction_energy(critic, fake, p=1)[0].mean()

    def critic_function(self, critic, real, fake):
        return lambda x: -reconstruction_energy(critic, x, p=1)[0]


@dataclass
class MAGANState:
    """MAGAN's training state: the margin, critic steps so far, the open window's sums, the last batch's energies."""

    margin: float
    calls: int = 0
    window_real: float = 0.0
    window_fake: float = 0.0
    window_count: int = 0
    e_real: float = 0.0
    e_fake: float = 0.0


@dataclass(frozen=True)
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
    A code of size 1: on 2-D data a wider code lets the autoencoder learn the identity, so
    every point (fake ones too) gets energy ~0 and the generator no signal.
    ``warmup``, ``update_every``, the learning rates, critic steps, batch and
    packing are the equal-budget search's selection (bench/GAN_RESULTS.md;
    before it, ``mmdkit.gan.tuning.PRIOR["magan"]``: 20, 20, Adam lr 1e-3).
    ``margin`` is the margin as configured (0: set at the end of the warm-up);
    the running margin, critic-step count and window sums are ``state``
    (:class:`MAGANState`).

    References
    ----------
    Wang, Zhang, Lang. MAGAN: margin adaptation for generative adversarial
    networks. arXiv:1704.03817 (2017), Algorithm 1.
    """

    name: ClassVar[str] = "magan"
    critic_dim: int = 1
    pt_weight: float = 0.0
    margin: float = 0.0
    # defaults: the equal-budget search's selected trial 5 (bench/GAN_RESULTS.md); before it: tuning.PRIOR
    warmup: int = 100
    update_every: int = 20
    n_critic: int = 5
    lr_g: float = 6.82e-3
    lr_c: float = 1.44e-3
    betas: tuple[float, float] = (0.5, 0.9)
    batch_size: int | None = 512
    packing: int = 4

    def initial_state(self) -> MAGANState:
        return MAGANState(margin=self.margin)

    @property
    def m(self) -> float:
        """The current margin (``state.margin``)."""
        return self.state.margin

    def critic_loss(self, critic, real, fake):
        er, _ = reconstruction_energy(critic, real)
        ef, _ = reconstruction_energy(critic, fake)
        self.state.e_real, self.state.e_fake = float(er.detach().mean()), float(ef.detach().mean())
        return er.mean() + F.relu(self.m - ef).mean()

    def after_critic_step(self, critic, real, fake, step):
        st = self.state
        st.calls += 1
        if st.calls == self.warmup:
            st.margin = st.e_real
        elif st.calls > self.warmup:
            st.window_real += st.e_real
            st.window_fake += st.e_fake
            st.window_count += 1
            if st.window_count == self.update_every:
                mean_real = st.window_real / st.window_count
                if mean_real < st.margin and st.window_real < st.window_fake:
                    st.margin = mean_real
                st.window_real, st.window_fake, st.window_count = 0.0, 0.0, 0
        return {"margin": st.margin}

    def generator_loss(self, critic, real, fake):
        return reconstruction_energy(critic, fake)[0].mean()
