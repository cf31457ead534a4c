"""The registry of GAN losses: ``LOSSES`` (name -> class) and :func:`get_loss`, by family.

Each family lives in its own module (flat, next to this one: ``gan/`` is installed
as ``mmdkit.gan`` by a package-dir mapping that lists packages one by one, so
sibling modules need no packaging change where a ``losses/`` subpackage would);
every name stays importable from here:

=====================================  ==============================================================
module                                 losses
=====================================  ==============================================================
:mod:`mmdkit.gan.losses_base`          :class:`GANLoss` (frozen configuration + separate ``state``)
:mod:`mmdkit.gan.losses_mmd`           ``gmmn``, ``mmd-gan``, ``cramer-gan``, ``energy-gan``
:mod:`mmdkit.gan.losses_ipm`           ``wgan``, ``wgan-gp``, ``fisher-gan``, ``mcgan``, ``rwgan``
:mod:`mmdkit.gan.losses_classic`       ``gan``, ``ns-gan``, ``lsgan``
:mod:`mmdkit.gan.losses_autoencoder`   ``ebgan``, ``began``, ``magan``
=====================================  ==============================================================

A loss is ``critic_loss(critic, real, fake)`` and ``generator_loss(...)``
(scalars to minimise) with a frozen configuration (its dataclass fields, as
constructed) and, for Fisher GAN, BEGAN and MAGAN, a training state
``loss.state`` kept apart from it (see :mod:`mmdkit.gan.losses_base`).

Examples
--------
>>> loss = get_loss("began", k=0.1)
>>> loss.k, loss.state.k            # configured k_0, running k (equal before training)
(0.1, 0.1)
>>> sorted(LOSSES)[:4]
['began', 'cramer-gan', 'ebgan', 'energy-gan']
"""
from __future__ import annotations

from mmdkit.gan.losses_autoencoder import (
    BEGAN, EBGAN, MAGAN, BEGANState, MAGANState, pull_away, reconstruction_energy,
)
from mmdkit.gan.losses_base import GANLoss
from mmdkit.gan.losses_classic import LSGAN, NSGAN, MinimaxGAN
from mmdkit.gan.losses_ipm import RWGAN, WGAN, WGANGP, FisherGAN, FisherState, McGAN, bregman_kl
from mmdkit.gan.losses_mmd import (
    GMMN, MMDGAN, CramerGAN, EnergyGAN, cramer_surrogate, repulsive_loss, rq_mixture, witness_function,
)

__all__ = [
    "GANLoss", "GMMN", "MMDGAN", "CramerGAN", "EnergyGAN", "WGAN", "WGANGP", "FisherGAN", "McGAN", "RWGAN",
    "MinimaxGAN", "NSGAN", "LSGAN", "EBGAN", "BEGAN", "MAGAN", "FisherState", "BEGANState", "MAGANState",
    "cramer_surrogate", "pull_away", "witness_function", "repulsive_loss", "rq_mixture", "bregman_kl",
    "reconstruction_energy", "LOSSES", "FAMILIES", "get_loss",
]

FAMILIES: dict[str, tuple[type[GANLoss], ...]] = {
    "mmd": (GMMN, MMDGAN, CramerGAN, EnergyGAN),
    "ipm": (WGAN, WGANGP, FisherGAN, McGAN, RWGAN),
    "classic": (MinimaxGAN, NSGAN, LSGAN),
    "autoencoder": (EBGAN, BEGAN, MAGAN),
}

LOSSES: dict[str, type[GANLoss]] = {c.name: c for family in FAMILIES.values() for c in family}


def get_loss(name: str, **kwargs) -> GANLoss:
    """A loss object by name (``LOSSES``), with its defaults overridden by ``kwargs``."""
    if name not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name](**kwargs)
