"""mmdkit.kernels: the fused pairwise primitive (blocked torch path, Triton kernels).

Installed as ``mmdkit.kernels`` (the folder ``kernels/`` is mapped in
pyproject.toml); importing it under any other name is refused, so it can
never shadow the PyPI package called ``kernels``.
"""
if __name__ != "mmdkit.kernels":
    raise ImportError(f"this package must be imported as mmdkit.kernels, not {__name__!r}")

from mmdkit.kernels.specs import (  # noqa: E402
    KERNELS, IMQ, Derivative, Energy, Gaussian, KernelSpec, Laplace, Mixture, Polynomial, RationalQuadratic,
    check_positive, derivative,
)
from mmdkit.kernels.blocked import (  # noqa: E402
    PermutationSums, block_sums, compute_dtype, kernel_matmul, kernel_matmuls, label_block, paired_values,
)
from mmdkit.kernels.backends import (  # noqa: E402
    BACKENDS, PRECISIONS, Backend, TorchBackend, TritonBackend, get_backend,
)
from mmdkit.kernels.ring import Layout, RingBackend  # noqa: E402

__all__ = ["KERNELS", "IMQ", "Derivative", "Energy", "Gaussian", "KernelSpec", "Laplace", "Mixture",
           "Polynomial", "RationalQuadratic", "check_positive", "derivative", "PermutationSums", "block_sums",
           "compute_dtype", "kernel_matmul", "kernel_matmuls", "label_block", "paired_values", "BACKENDS",
           "PRECISIONS", "Backend", "TorchBackend", "TritonBackend", "get_backend", "Layout", "RingBackend"]
