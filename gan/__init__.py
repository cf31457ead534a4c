"""mmdkit.gan: GAN losses built on mmdkit's statistics, toy data, metrics, one trainer."""
if __name__ != "mmdkit.gan":
    raise ImportError(f"this package must be imported as mmdkit.gan, not {__name__!r}")

from mmdkit.gan.constraints import GradientPenalty, InstanceNoise, WeightClip  # noqa: E402
from mmdkit.gan.data import DATASETS, get_dataset, grid25, ring8, swissroll  # noqa: E402
from mmdkit.gan.losses import (  # noqa: E402
    BEGAN, EBGAN, GMMN, LOSSES, LSGAN, MAGAN, NSGAN, WGAN, WGANGP, CramerGAN, EnergyGAN, FisherGAN,
    RWGAN, GANLoss, McGAN, MinimaxGAN, MMDGAN, bregman_kl, cramer_surrogate, get_loss, pull_away,
)
from mmdkit.gan.metrics import evaluate, kid, mmd2_heldout, mode_statistics  # noqa: E402
from mmdkit.gan.trainer import train  # noqa: E402

__all__ = [
    "GANLoss", "GMMN", "MMDGAN", "CramerGAN", "EnergyGAN", "WGAN", "WGANGP", "LSGAN", "EBGAN",
    "MinimaxGAN", "NSGAN", "FisherGAN", "McGAN", "BEGAN", "MAGAN", "RWGAN", "LOSSES", "get_loss",
    "bregman_kl", "cramer_surrogate", "pull_away", "WeightClip", "GradientPenalty", "InstanceNoise",
    "ring8", "grid25", "swissroll", "DATASETS", "get_dataset",
    "mode_statistics", "mmd2_heldout", "kid", "evaluate", "train",
]
