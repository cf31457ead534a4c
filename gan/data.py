"""Toy data sets of the GAN mode-collapse benchmarks: ring8, grid25, swissroll.

``ring8`` and ``grid25`` follow the definitions used by the PacGAN (Lin et al.
2018, Table 1) and VEEGAN (Srivastava et al. 2017, Table 1) benchmark tables:

* ``ring8``: 8 isotropic Gaussians with means (cos 2 pi k / 8, sin 2 pi k / 8),
  k = 0..7 (radius 1), standard deviation 0.01;
* ``grid25``: 25 isotropic Gaussians with means on {-4, -2, 0, 2, 4}^2,
  standard deviation 0.05;
* ``swissroll``: the 2-D swiss roll (sklearn's ``make_swiss_roll`` x/z plane,
  scaled by 1/5, noise 0.25 before scaling); it has no discrete modes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ToyData", "ring8", "grid25", "swissroll", "DATASETS", "get_dataset"]


@dataclass(frozen=True)
class ToyData:
    """A 2-D toy distribution: ``sample(n, generator)`` and, for mixtures, its modes and std.

    ``modes`` is a (k, 2) tensor (None for the swiss roll); ``std`` is the
    per-coordinate standard deviation of each mixture component; ``scale`` is
    a typical length of the data (used for default kernel bandwidths and plot
    limits).
    """

    name: str
    modes: Tensor | None
    std: float
    scale: float

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n float32 points, shape (n, 2); randomness only from ``generator``."""
        if self.modes is None:
            return _swissroll(n, generator)
        idx = torch.randint(0, self.modes.shape[0], (n,), generator=generator)
        return self.modes[idx] + self.std * torch.randn(n, 2, generator=generator)


def _ring_modes(k: int = 8, radius: float = 1.0) -> Tensor:
    """Means of the ring: k distinct angles 2 pi i / k on a circle of ``radius``."""
    a = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return (radius * torch.stack([a.cos(), a.sin()], 1)).float()


def _grid_modes(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> Tensor:
    """Means of the grid: the Cartesian square of ``values``."""
    v = torch.tensor(values)
    return torch.cartesian_prod(v, v).float()


def _swissroll(n: int, generator: torch.Generator | None) -> Tensor:
    """sklearn's swiss roll (t in 1.5 pi (1 + 2 u)), plane (t cos t, t sin t), noise 0.25, scaled by 1/5."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    X = torch.stack([t * t.cos(), t * t.sin()], 1) + 0.25 * torch.randn(n, 2, generator=generator)
    return (X / 5.0).float()


ring8 = ToyData("ring8", _ring_modes(), std=0.01, scale=1.0)
grid25 = ToyData("grid25", _grid_modes(), std=0.05, scale=4.0)
swissroll = ToyData("swissroll", None, std=0.0, scale=2.5)
DATASETS = {d.name: d for d in (ring8, grid25, swissroll)}


def get_dataset(name: str) -> ToyData:
    """The toy data set called ``name`` (one of ``DATASETS``)."""
    if name not in DATASETS:
        raise ValueError(f"`data` must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name]
