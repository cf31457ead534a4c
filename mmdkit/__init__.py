"""mmdkit: exact MMD, energy distance and kernel two-sample tests for PyTorch.

>>> from mmdkit import mmd2_unbiased, energy_distance, mmd_test
"""
from mmdkit.kernels.specs import (
    IMQ, Energy, Gaussian, KernelSpec, Laplace, Mixture, Polynomial, RationalQuadratic,
)
from mmdkit.estimators import (
    energy_distance, median_bandwidth, mmd2, mmd2_biased, mmd2_linear, mmd2_unbiased, witness,
)
from mmdkit.testing import BandwidthResult, TwoSampleTestResult, energy_test, mmd_test

__version__ = "0.1.0"
__all__ = [
    "mmd2", "mmd2_unbiased", "mmd2_biased", "mmd2_linear", "energy_distance", "witness",
    "median_bandwidth", "KernelSpec", "Gaussian", "Laplace", "Energy", "RationalQuadratic", "IMQ",
    "Polynomial", "Mixture", "mmd_test", "energy_test", "TwoSampleTestResult", "BandwidthResult",
]
