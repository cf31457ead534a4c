"""mmdkit.gan: GAN losses built on mmdkit's statistics, toy data, metrics, the trainers (the fast
protocol and PacGAN's, with packing)."""
if __name__ != "mmdkit.gan":
    raise ImportError(f"this package must be imported as mmdkit.gan, not {__name__!r}")

from mmdkit.gan.constraints import GradientPenalty, InstanceNoise, WeightClip  # noqa: E402
from mmdkit.gan.data import DATASETS, get_dataset, grid25, ring8, swissroll  # noqa: E402
from mmdkit.gan.losses import (  # noqa: E402
    BEGAN, EBGAN, FAMILIES, GMMN, LOSSES, LSGAN, MAGAN, NSGAN, WGAN, WGANGP, BEGANState, CramerGAN, EnergyGAN,
    FisherGAN, FisherState, MAGANState, RWGAN, GANLoss, McGAN, MinimaxGAN, MMDGAN, bregman_kl, cramer_surrogate,
    get_loss, pull_away,
)
from mmdkit.gan.metrics import evaluate, kid, mmd2_heldout, mode_statistics  # noqa: E402
from mmdkit.gan.pacgan import PROTOCOLS, PacGANProtocol, time_iterations, train_protocol  # noqa: E402
from mmdkit.gan.trainer import train  # noqa: E402

__all__ = [
    "GANLoss", "GMMN", "MMDGAN", "CramerGAN", "EnergyGAN", "WGAN", "WGANGP", "LSGAN", "EBGAN",
    "MinimaxGAN", "NSGAN", "FisherGAN", "McGAN", "BEGAN", "MAGAN", "RWGAN", "LOSSES", "FAMILIES", "get_loss",
    "FisherState", "BEGANState", "MAGANState",
    "bregman_kl", "cramer_surrogate", "pull_away", "WeightClip", "GradientPenalty", "InstanceNoise",
    "ring8", "grid25", "swissroll", "DATASETS", "get_dataset",
    "mode_statistics", "mmd2_heldout", "kid", "evaluate", "train",
    "PacGANProtocol", "PROTOCOLS", "train_protocol", "time_iterations",
]
