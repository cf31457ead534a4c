"""Input checks at the public boundary (the only place they happen).

Every message names the argument in backticks, says what was expected and
what came, and nothing is reshaped silently except (n,) -> (n, 1).
"""
from __future__ import annotations

import math
import warnings
from numbers import Real

import numpy as np
import torch
from torch import Tensor

from mmdkit.kernels import KERNELS, KernelSpec

__all__ = ["as_tensor", "as_samples", "as_pair", "check_finite", "spec_of", "check_bandwidth", "check_int",
           "check_device", "output", "FeatureKernel", "is_feature_kernel", "FEATURE_KERNEL_USES"]

FEATURE_KERNEL_USES = "mmd2, mmd2_unbiased, mmd2_biased, mmd2_linear, witness and mmd_test (aggregate=False)"


class FeatureKernel:
    """A kernel given as weighted terms on feature maps: k(x, y) = sum_t w_t k_t(f_t(x), f_t(y)).

    ``terms(Z)`` returns a list of (F_t, spec_t, w_t): F_t (N, d_t) the
    feature map f_t applied to each row of Z (same dtype and device as Z),
    spec_t a ready KernelSpec, w_t >= 0 a float or a 0-d tensor. Every MMD
    estimator, the witness and the permutation statistics are linear in k, so
    mmdkit evaluates them term by term through the engine and adds them with
    the weights. The feature maps must act on each row alone (no batch
    statistics). Accepted as ``kernel=`` by the functions in
    ``FEATURE_KERNEL_USES``; everything else refuses it.
    """

    name = "feature"

    def terms(self, Z: Tensor) -> list:
        raise NotImplementedError  # abstract: a feature kernel defines its terms


def is_feature_kernel(kernel, bandwidth) -> bool:
    """True for a :class:`FeatureKernel` ``kernel=`` (which carries its bandwidths: ``bandwidth`` must be None)."""
    if not isinstance(kernel, FeatureKernel):
        return False
    if bandwidth is not None:
        raise ValueError(f"`bandwidth` does not apply to a {type(kernel).__name__} (its bandwidths are part "
                         f"of the kernel), got {bandwidth!r}")
    return True


def as_tensor(X, name: str, min_n: int = 1) -> tuple[Tensor, bool]:
    """(tensor of shape (n, d) in a float dtype, was_numpy). Checks shape and dtype, not values.

    Integer and bool inputs become float64, tensors as arrays (float32 would merge integers above 2^24).
    """
    was_numpy = not isinstance(X, Tensor)
    if was_numpy:
        try:
            arr = np.asarray(X)
        except Exception as e:  # ragged nested lists and the like
            raise TypeError(f"`{name}` must be a torch tensor or an array-like of numbers: {e}") from None
        if arr.dtype == object or arr.dtype.kind in "USVMm":
            raise TypeError(f"`{name}` must hold numbers, got an array of dtype {arr.dtype}")
        if arr.dtype.kind == "c":
            raise TypeError(f"`{name}` must be real, got complex dtype {arr.dtype}")
        if arr.ndim == 0:  # np.ascontiguousarray would make it one point
            raise ValueError(f"`{name}` must be a sample of shape (n, d) or (n,), got a scalar {X!r}")
        if arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        arr = np.ascontiguousarray(arr)
        if arr.flags.writeable:
            X = torch.from_numpy(arr)
        else:  # a read-only array (pandas' copy-on-write views): shared, never written, so not copied
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                X = torch.from_numpy(arr)
    if X.is_complex():
        raise TypeError(f"`{name}` must be real, got complex dtype {X.dtype}")
    if not X.is_floating_point():
        X = X.to(torch.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n, d) or (n,), got shape {tuple(X.shape)}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"`{name}` is empty: shape {tuple(X.shape)}")
    if X.shape[0] < min_n:
        raise ValueError(f"`{name}` needs at least {min_n} points for this estimator, got {X.shape[0]}")
    return X, was_numpy


FINITE_CHUNK = 1 << 22  # elements checked at once: isfinite's temporaries stay ~16-32 MiB


def _finite_flags(T: Tensor) -> list[Tensor]:
    """0-d bool tensors, all True iff T is finite; in row blocks so large T make no full-size temporaries."""
    if T.numel() <= FINITE_CHUNK or T.ndim == 0:
        return [torch.isfinite(T).all()]
    rows = max(1, FINITE_CHUNK // max(1, T[0].numel()))
    return [torch.isfinite(T[i:i + rows]).all() for i in range(0, T.shape[0], rows)]


def check_finite(**named: Tensor) -> None:
    """Raise naming the first argument with a NaN or inf; one device-to-host sync for all of them.

    A NaN or infinite entry makes a sum NaN or infinite, so finite sums prove
    every tensor finite with one read each and no temporaries; only when a
    sum is not finite (a bad entry, or finite values that overflow it) does
    the elementwise check run.
    """
    if bool(torch.stack([torch.isfinite(T.sum()) for T in named.values()]).all()):
        return
    if bool(torch.stack([f for T in named.values() for f in _finite_flags(T)]).all()):
        return
    for name, T in named.items():
        bad = sum(int((~torch.isfinite(T[i:i + 4096])).sum()) for i in range(0, max(1, T.shape[0]), 4096)) \
            if T.ndim else int(~torch.isfinite(T))
        if bad:
            raise ValueError(f"`{name}` contains {bad} NaN or infinite value(s)")


def as_samples(X, name: str, min_n: int = 1) -> tuple[Tensor, bool]:
    """(tensor of shape (n, d) in a float dtype, was_numpy). Checks shape, dtype, values."""
    X, was_numpy = as_tensor(X, name, min_n)
    check_finite(**{name: X})
    return X, was_numpy


def as_pair(X, Y, min_n: int = 1, names=("X", "Y")) -> tuple[Tensor, Tensor, bool]:
    """Validate two samples together: same d, same device, a common dtype, finite values (one sync).

    Returns (X, Y, numpy_out): numpy_out is True when neither input was a tensor.
    """
    X, xn = as_tensor(X, names[0], min_n)
    Y, yn = as_tensor(Y, names[1], min_n)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"`{names[0]}` and `{names[1]}` must have the same number of columns (d), "
                         f"got {X.shape[1]} and {Y.shape[1]}")
    if X.device != Y.device:
        if xn or yn:  # a numpy input follows the tensor's device
            X, Y = (X.to(Y.device), Y) if xn else (X, Y.to(X.device))
        else:
            raise ValueError(f"`{names[0]}` is on {X.device} but `{names[1]}` is on {Y.device}")
    dt = torch.promote_types(X.dtype, Y.dtype)
    check_finite(**{names[0]: X, names[1]: Y})
    return X.to(dt), Y.to(dt), xn and yn


def check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}")
    return int(value)


def check_device(device, name: str = "device") -> torch.device:
    """``device`` as a torch.device that this torch build can allocate on."""
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, TypeError, ValueError) as e:  # CPU-only builds assert on "cuda"
        raise ValueError(f"`{name}` must be a device this torch can use, got {device!r}: {e}") from None
    return dev


def check_bandwidth(h, name="bandwidth") -> float:
    """A positive finite float bandwidth (the message names ``name``)."""
    if isinstance(h, bool) or not isinstance(h, Real):
        raise TypeError(f"`{name}` must be a positive float, 'median' or a list of floats, got {h!r}")
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"`{name}` must be positive and finite, got {h}")
    return float(h)


def spec_of(kernel) -> KernelSpec:
    """The spec named by ``kernel=``: a name, a KernelSpec or a KernelSpec class."""
    if isinstance(kernel, str):
        cls = KERNELS.get(kernel.lower())
        if cls is None:
            raise ValueError(f"`kernel` must be one of {sorted(KERNELS)} or a KernelSpec, got {kernel!r}")
        return cls()
    if isinstance(kernel, KernelSpec):
        return kernel
    if isinstance(kernel, type) and issubclass(kernel, KernelSpec):
        return kernel()
    if isinstance(kernel, FeatureKernel):
        raise TypeError(f"`kernel` is a {type(kernel).__name__} (a kernel on learned features), which only "
                        f"{FEATURE_KERNEL_USES} accept; this function needs a name or a KernelSpec")
    raise TypeError(f"`kernel` must be a name or a KernelSpec, got {type(kernel).__name__}")


def output(value: Tensor, numpy_out: bool, dtype: torch.dtype):
    """The result in the caller's type: a float for numpy input, else a tensor of ``dtype``."""
    return float(value.detach()) if numpy_out else value.to(dtype)
