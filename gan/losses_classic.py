"""Classic GAN losses: the minimax GAN, the non-saturating GAN and the least-squares GAN.

Each is a function of the critic's outputs on real and fake points only
(``critic_value``, ``generator_value``), so
:meth:`~mmdkit.gan.losses_base.GANLoss.joint_losses` computes both losses from
one critic forward pass on each batch (the simultaneous updates of PacGAN's protocol). None
has a training state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F

from mmdkit.gan.losses_base import GANLoss

__all__ = ["MinimaxGAN", "NSGAN", "LSGAN"]


@dataclass(frozen=True)
class MinimaxGAN(GANLoss):
    r"""The original minimax GAN, D = sigmoid(critic logit):

        L_C = -E log D(x) - E log(1 - D(G z)),   L_G = E log(1 - D(G z)),

    computed stably with softplus on the logits.

    References
    ----------
    Goodfellow et al. Generative adversarial nets. NeurIPS 2014, Eq. 1.
    """

    name: ClassVar[str] = "gan"
    outputs_only: ClassVar[bool] = True
    # defaults: the equal-budget search's selected trial 7 (bench/GAN_RESULTS.md); before it: tuning.PRIOR
    n_critic: int = 5
    lr_g: float = 1.4e-4
    lr_c: float = 1.75e-4
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int | None = 256
    packing: int = 4

    def critic_value(self, f_real, f_fake):
        return F.softplus(-f_real).mean() + F.softplus(f_fake).mean()

    def generator_value(self, f_fake):
        return -F.softplus(f_fake).mean()


@dataclass(frozen=True)
class NSGAN(MinimaxGAN):
    r"""Non-saturating GAN: the minimax critic, generator loss L_G = -E log D(G z).

    This is the loss of the "GAN" and "PacGAN" rows of PacGAN's Table 1: their
    code (fjxmlzn/PacGAN, ``synthetic_data_experiments/PacGAN/pacgan/bricks.py``,
    ``compute_losses``) trains the generator on
    softplus(D(x)) + softplus(-D(G z)), whose first term does not depend on G.

    References
    ----------
    Goodfellow et al. (2014), Sec. 3 (the "-log D trick").
    """

    name: ClassVar[str] = "ns-gan"
    # defaults: the equal-budget search's selected trial 9 (bench/GAN_RESULTS.md); before it: tuning.PRIOR
    n_critic: int = 1
    lr_g: float = 3.29e-4
    lr_c: float = 3.39e-3
    betas: tuple[float, float] = (0.5, 0.9)
    batch_size: int | None = 256
    packing: int = 1

    def generator_value(self, f_fake):
        return F.softplus(-f_fake).mean()


@dataclass(frozen=True)
class LSGAN(GANLoss):
    r"""Least-squares GAN with the 0-1 coding (a, b, c) = (0, 1, 1):

        L_C = 1/2 E (D(x) - 1)^2 + 1/2 E D(G z)^2,   L_G = 1/2 E (D(G z) - 1)^2.

    References
    ----------
    Mao, Li, Xie, Lau, Wang, Smolley. Least squares generative adversarial
    networks. ICCV 2017, Eq. 2.
    """

    name: ClassVar[str] = "lsgan"
    outputs_only: ClassVar[bool] = True
    # defaults: the equal-budget search's selected trial 2 (bench/GAN_RESULTS.md); before it: tuning.PRIOR
    n_critic: int = 2
    lr_g: float = 1.98e-4
    lr_c: float = 6.83e-3
    betas: tuple[float, float] = (0.5, 0.9)
    batch_size: int | None = 512
    packing: int = 2

    def critic_value(self, f_real, f_fake):
        return 0.5 * ((f_real - 1) ** 2).mean() + 0.5 * (f_fake ** 2).mean()

    def generator_value(self, f_fake):
        return 0.5 * ((f_fake - 1) ** 2).mean()
