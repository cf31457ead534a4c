"""mmdkit: exact MMD, energy distance and kernel two-sample tests for PyTorch.

>>> from mmdkit import mmd2_unbiased, energy_distance, mmd_test
"""
from mmdkit.kernels import (
    IMQ, Energy, Gaussian, KernelSpec, Laplace, Mixture, Polynomial, RationalQuadratic,
)
from mmdkit.bandwidth import bandwidth_grid, median_bandwidth
from mmdkit.estimators import (
    energy_distance, mmd2, mmd2_biased, mmd2_linear, mmd2_unbiased, witness,
)
from mmdkit.results import BandwidthResult, TwoSampleTestResult
from mmdkit.two_sample import energy_test, mmd_test
from mmdkit.kid import KID, KIDResult, kid
from mmdkit.cmmd import CMMD, CMMDResult, cmmd
from mmdkit.fuse import fuse_test
from mmdkit.cross_mmd import cross_mmd_test
from mmdkit.relative import relative_mmd_test
from mmdkit.deep_kernel import LearnedKernel, LearnedKernelTestResult, learned_kernel_test, power_criterion

__version__ = "0.1.0"
__all__ = [
    "mmd2", "mmd2_unbiased", "mmd2_biased", "mmd2_linear", "energy_distance", "witness",
    "median_bandwidth", "bandwidth_grid", "KernelSpec", "Gaussian", "Laplace", "Energy", "RationalQuadratic",
    "IMQ", "Polynomial", "Mixture", "mmd_test", "energy_test", "TwoSampleTestResult", "BandwidthResult",
    "kid", "KID", "KIDResult", "cmmd", "CMMD", "CMMDResult", "fuse_test", "cross_mmd_test", "relative_mmd_test",
    "learned_kernel_test", "LearnedKernel", "LearnedKernelTestResult", "power_criterion",
]
