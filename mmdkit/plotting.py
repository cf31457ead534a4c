"""Plots people would rather look at than read (matplotlib, imported lazily)."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["plot_witness", "plot_null_distribution"]


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


_STATISTIC_LABELS = {
    "mmd": "unbiased MMD$^2$",
    "energy": "energy statistic $nm/(n+m)\\,\\mathcal{E}$",
    "mmdagg": "weighted smallest p-value $\\min_l p_l / w_l$",
    "fuse": "MMD-FUSE statistic",
    "cross_mmd": "studentised cross-MMD $T$",
}


def _plot_normal_null(result, path, ax, title):
    """The standard normal density (cross-MMD's null) with the observed T marked."""
    plt = _pyplot()
    fig = ax.figure if ax is not None else plt.figure(figsize=(6, 4))
    ax = ax or fig.add_subplot(111)
    span = max(4.0, abs(result.statistic) + 1)
    t = np.linspace(-span, span, 400)
    ax.plot(t, np.exp(-t * t / 2) / np.sqrt(2 * np.pi), color="0.4", label="null: N(0, 1)")
    ax.axvline(result.statistic, color="crimson", lw=2, label=f"observed T = {result.statistic:.4g}")
    ax.set_xlabel(_STATISTIC_LABELS["cross_mmd"])
    ax.set_ylabel("density")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or f"cross-MMD test: p-value = {result.pvalue:.4g}")
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_null_distribution(result, path=None, ax=None, bins: int | str = "auto", title: str | None = None):
    """Histogram of a test's permutation null distribution with the observed statistic marked.

    ``result`` is a :class:`mmdkit.TwoSampleTestResult`. For an aggregated
    (MMDAgg) test the histogram is of the weighted smallest p-value over the
    second permutation set, where small values are extreme. Writes a PNG to
    ``path`` when given; returns the matplotlib Figure.

    Examples
    --------
    >>> import numpy as np
    >>> from mmdkit import mmd_test
    >>> from mmdkit.plotting import plot_null_distribution
    >>> rng = np.random.default_rng(0)
    >>> res = mmd_test(rng.normal(size=(50, 2)), rng.normal(size=(50, 2)), n_permutations=200, seed=0)
    >>> fig = plot_null_distribution(res)
    """
    null = np.asarray(result.null_distribution, dtype=np.float64)
    if result.test == "cross_mmd":  # an asymptotic N(0, 1) null, no permutations
        return _plot_normal_null(result, path, ax, title)
    if null.ndim != 1 or null.size == 0:
        raise ValueError(f"`result` must hold a 1-D, non-empty null distribution, got shape {null.shape}")
    plt = _pyplot()
    fig = ax.figure if ax is not None else plt.figure(figsize=(6, 4))
    ax = ax or fig.add_subplot(111)
    ax.hist(null, bins=bins, color="0.65", edgecolor="white", label=f"null ({null.size} permutations)")
    ax.axvline(result.statistic, color="crimson", lw=2, label=f"observed = {result.statistic:.4g}")
    ax.set_xlabel(_STATISTIC_LABELS.get(result.test, "statistic"))
    ax.set_ylabel("count")
    ax.legend(loc="upper right", fontsize=8)
    kind = "exact" if result.exact else "permutation"
    decision = "" if result.reject is None else f", {'reject' if result.reject else 'keep'} H0 at {result.alpha:g}"
    ax.set_title(title or f"{result.test} test: {kind} p-value = {result.pvalue:.4g}{decision}")
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
