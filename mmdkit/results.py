"""Result types of the two-sample tests (fields in the style of scipy.stats)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmdkit.kernels import KernelSpec

__all__ = ["TwoSampleTestResult", "BandwidthResult"]


@dataclass(frozen=True, eq=False)
class BandwidthResult:
    """One bandwidth of an aggregated (MMDAgg) test.

    ``pvalue`` is the single test's permutation p-value, ``threshold`` the
    corrected level u * w it is compared with, ``reject`` = pvalue <= threshold.
    """

    bandwidth: float
    statistic: float
    pvalue: float
    threshold: float
    reject: bool
    null_distribution: np.ndarray = field(repr=False)


@dataclass(frozen=True, eq=False)
class TwoSampleTestResult:
    """Result of :func:`mmd_test` or :func:`energy_test` (fields in the style of scipy.stats).

    Attributes
    ----------
    statistic : float
        The observed statistic: ``mmd2_unbiased(X, Y, kernel)``; for
        ``energy_test`` n m / (n + m) x ``energy_distance(X, Y)``; for an
        aggregated test the Bonferroni-weighted smallest single-bandwidth
        p-value min_l p_l / w_l (small is extreme); for ``fuse_test`` the
        fused statistic; for ``cross_mmd_test`` the studentised cross-MMD T
        (N(0, 1) under H0).
    pvalue : float
    null_distribution : numpy.ndarray
        The statistic under each permutation (for an aggregated test: the
        weighted smallest p-value of each permutation of the second set).
    n_permutations : int
        Permutations used (C(n + m, n) when ``exact``). An aggregated test
        draws twice this many: one set for the quantiles, one for the level.
        0 for ``cross_mmd_test`` (a normal p-value, ``null_distribution`` empty).
    exact : bool
        True when every distinct relabelling was enumerated.
    kernel : KernelSpec or tuple of KernelSpec
        A tuple for ``fuse_test`` (its kernel collection).
    bandwidth : float, tuple of floats or None
    backend : str
        The engine that ran ("torch" or "triton").
    method : str
        "dense" (kernel matrix built once) or "streamed" (tiles, O(N batch) memory).
    alternative : str
    test : str
        "mmd", "energy", "mmdagg", "fuse", "cross_mmd", "mmd_d" or "relative_mmd".
    alpha, reject : float, bool or None
        The level and decision of an aggregated test (None otherwise).
    per_bandwidth : tuple of BandwidthResult
        The single tests of an aggregated test (empty otherwise).
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray
    n_permutations: int
    exact: bool
    kernel: KernelSpec | tuple[KernelSpec, ...]
    bandwidth: float | tuple[float, ...] | None
    backend: str
    method: str
    alternative: str
    test: str
    alpha: float | None = None
    reject: bool | None = None
    per_bandwidth: tuple[BandwidthResult, ...] = ()

    def __repr__(self):
        extra = "" if self.reject is None else f", reject={self.reject}, alpha={self.alpha}"
        kernel = ("(" + ", ".join(k.name for k in self.kernel) + ")" if isinstance(self.kernel, tuple)
                  else self.kernel.name)
        return (f"TwoSampleTestResult(test={self.test!r}, statistic={self.statistic:.6g}, "
                f"pvalue={self.pvalue:.6g}, n_permutations={self.n_permutations}, exact={self.exact}, "
                f"kernel={kernel}, bandwidth={self.bandwidth}, backend={self.backend!r}, "
                f"method={self.method!r}{extra})")
