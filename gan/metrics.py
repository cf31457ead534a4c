"""Sample-quality metrics of the mode-collapse benchmarks, and MMD/KID through mmdkit.

The mode metrics follow PacGAN (Lin et al. 2018) / VEEGAN (Srivastava et al.
2017): each generated point is assigned to its nearest mode; it is
*high quality* when it lies within 3 standard deviations of that mode; a mode
is *covered* when it has at least one high-quality sample; the *reverse KL* is
KL(p || uniform) of the histogram p of the high-quality samples over the modes.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

import mmdkit
from mmdkit import Gaussian, Mixture, mmd2_unbiased
from mmdkit.gan.data import ToyData

__all__ = ["mode_statistics", "mmd2_heldout", "kid", "evaluate", "EVAL_SAMPLES"]

EVAL_SAMPLES = 2500


def mode_statistics(samples: Tensor, data: ToyData) -> dict:
    """modes_covered, high_quality (share in [0, 1]) and reverse_kl for a mixture toy.

    Parameters
    ----------
    samples : tensor (n, 2)
    data : ToyData with ``modes`` (k, 2) and ``std``

    Returns
    -------
    dict with ``modes_covered`` (int, modes with >= 1 sample within 3 std),
    ``high_quality`` (share of samples within 3 std of their nearest mode) and
    ``reverse_kl`` = sum_k p_k log(p_k K) over the modes with p_k > 0, p the
    histogram of high-quality samples (inf when there is none).

    Examples
    --------
    >>> from mmdkit.gan.data import grid25
    >>> s = mode_statistics(grid25.modes.repeat(4, 1), grid25)
    >>> s["modes_covered"], s["high_quality"], round(s["reverse_kl"], 12)
    (25, 1.0, 0.0)
    """
    X = samples.detach().float().cpu()
    d = torch.cdist(X, data.modes)  # (n, k)
    dist, nearest = d.min(1)
    hq = dist <= 3 * data.std
    k = data.modes.shape[0]
    counts = torch.bincount(nearest[hq], minlength=k).double()
    total = counts.sum()
    if total == 0:
        rkl = math.inf
    else:
        p = counts[counts > 0] / total
        rkl = float((p * (p * k).log()).sum())
    return {"modes_covered": int((counts > 0).sum()), "high_quality": float(hq.double().mean()),
            "reverse_kl": rkl}


def heldout_kernel(data: ToyData) -> Mixture:
    """The fixed kernel of ``mmd2_heldout``: Gaussians at 0.05, 0.2 and 1 times the data scale."""
    return Mixture.of(Gaussian, [0.05 * data.scale, 0.2 * data.scale, 1.0 * data.scale])


def mmd2_heldout(samples: Tensor, data: ToyData, generator: torch.Generator | None = None,
                 n: int = EVAL_SAMPLES) -> float:
    """Unbiased MMD^2 (mmdkit) between ``samples`` and n fresh points of ``data``.

    The kernel is fixed per data set (:func:`heldout_kernel`), so values are
    comparable across losses and runs.
    """
    fresh = data.sample(n, generator)
    return float(mmd2_unbiased(samples.detach().float().cpu(), fresh, kernel=heldout_kernel(data)))


def kid(X: Tensor, Y: Tensor, n_subsets: int = 10, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> float:
    r"""KID of X against Y: :func:`mmdkit.kid`'s mean over ``n_subsets`` subsets, as a float.

    k(x, y) = (<x, y> / d + 1)^3, the unbiased MMD^2 averaged over subsets of
    ``min(subset_size, n, m)`` points from each sample (clean-fid's rule;
    :func:`mmdkit.kid` itself refuses a ``subset_size`` above n or m), drawn
    from ``generator`` (None: fresh entropy, never the global seed). Computed
    in float32 on the CPU.

    References
    ----------
    Binkowski, Sutherland, Arbel, Gretton. Demystifying MMD GANs. ICLR 2018.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> X, Y = torch.randn(600, 4, generator=g), torch.randn(600, 4, generator=g)
    >>> abs(kid(X, Y, generator=g)) < 0.05
    True
    """
    X, Y = X.detach().float().cpu(), Y.detach().float().cpu()
    size = min(subset_size, X.shape[0], Y.shape[0])
    return mmdkit.kid(X, Y, subsets=n_subsets, subset_size=size, seed=generator).value


def evaluate(samples: Tensor, data: ToyData, generator: torch.Generator | None = None) -> dict:
    """All metrics of one sample: mode statistics (mixtures only), mmd2_heldout and kid."""
    out = {}
    if data.modes is not None:
        out.update(mode_statistics(samples, data))
    fresh = data.sample(samples.shape[0], generator)
    out["mmd2_heldout"] = mmd2_heldout(samples, data, generator)
    out["kid"] = kid(samples, fresh, generator=generator)
    return out
