"""Plots people would rather look at than read (matplotlib, imported lazily)."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["plot_witness"]


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg") if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") else None
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("plotting needs matplotlib: pip install 'mmdkit[plot]'") from e
    return plt


def plot_witness(X, Y, path=None, kernel="gaussian", bandwidth=None, grid: int = 120, ax=None,
                 title: str | None = None):
    """Heatmap of the MMD witness function of two 2-D samples, with the samples on top.

    Red where X (P) has more mass, blue where Y (Q) has. Writes a PNG to
    ``path`` when given; returns the matplotlib Figure.
    """
    from mmdkit.estimators import witness
    X = np.asarray(torch.as_tensor(X).detach().cpu(), dtype=np.float64)
    Y = np.asarray(torch.as_tensor(Y).detach().cpu(), dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2 or Y.ndim != 2 or Y.shape[1] != 2:
        raise ValueError(f"`X` and `Y` must have shape (n, 2) for a witness heatmap, got {X.shape} and {Y.shape}")
    plt = _pyplot()
    both = np.concatenate([X, Y])
    lo, hi = both.min(0), both.max(0)
    pad = 0.15 * (hi - lo) + 1e-9
    gx, gy = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], grid),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], grid))
    T = np.stack([gx.ravel(), gy.ravel()], 1)
    w = witness(X, Y, T, kernel=kernel, bandwidth=bandwidth).reshape(grid, grid)
    fig = ax.figure if ax is not None else plt.figure(figsize=(6, 5))
    ax = ax or fig.add_subplot(111)
    lim = np.abs(w).max() or 1.0
    im = ax.contourf(gx, gy, w, levels=21, cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=ax, label="witness f(t)")
    ax.scatter(X[:, 0], X[:, 1], s=4, c="darkred", alpha=0.5, label="X ~ P")
    ax.scatter(Y[:, 0], Y[:, 1], s=4, c="navy", alpha=0.5, label="Y ~ Q")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or "MMD witness: mean k(t, X) - mean k(t, Y)")
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
