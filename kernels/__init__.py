"""mmdkit.kernels: the fused pairwise primitive (blocked torch path, Triton kernels).

Installed as ``mmdkit.kernels`` (the folder ``kernels/`` is mapped in
pyproject.toml); importing it under any other name is refused, so it can
never shadow the PyPI package called ``kernels``.
"""
if __name__ != "mmdkit.kernels":
    raise ImportError(f"this package must be imported as mmdkit.kernels, not {__name__!r}")

from mmdkit.kernels.specs import (  # noqa: E402
    KERNELS, IMQ, Energy, Gaussian, KernelSpec, Laplace, Mixture, Polynomial, RationalQuadratic,
)
from mmdkit.kernels.blocked import block_sums, kernel_matmul  # noqa: E402

__all__ = ["KERNELS", "IMQ", "Energy", "Gaussian", "KernelSpec", "Laplace", "Mixture",
           "Polynomial", "RationalQuadratic", "block_sums", "kernel_matmul"]
