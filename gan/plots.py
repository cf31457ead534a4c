"""PNG plots of a training run: samples over time, the critic/witness contour, loss curves."""
from __future__ import annotations

import numpy as np
import torch

from mmdkit.gan.data import ToyData
from mmdkit.plotting import _pyplot

__all__ = ["plot_snapshots", "plot_critic", "plot_losses"]


def _limits(data: ToyData) -> tuple[float, float]:
    """Plot window [-L, L] that shows the whole toy with a margin."""
    L = 1.5 * data.scale if data.name != "swissroll" else 3.0
    return -L, L


def plot_snapshots(snaps: dict, data: ToyData, path, title: str = "") -> None:
    """One panel per snapshot step: generated points (red) over the modes (black crosses)."""
    plt = _pyplot()
    k = len(snaps)
    fig, axes = plt.subplots(1, k, figsize=(2.6 * k, 2.8), squeeze=False)
    lo, hi = _limits(data)
    ref = data.sample(1000, torch.Generator().manual_seed(0)).numpy()
    for ax, (step, X) in zip(axes[0], sorted(snaps.items())):
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="lightgray")
        X = X.numpy()
        ax.scatter(X[:, 0], X[:, 1], s=2, c="crimson", alpha=0.5)
        if data.modes is not None:
            ax.scatter(data.modes[:, 0], data.modes[:, 1], marker="x", s=12, c="k", linewidths=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_title(f"step {step}", fontsize=9)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_critic(loss, critic, real, fake, data: ToyData, path, grid: int = 80) -> None:
    """Contour of ``loss.critic_function`` (the critic, or the MMD/energy witness) with the samples."""
    plt = _pyplot()
    lo, hi = _limits(data)
    gx, gy = np.meshgrid(np.linspace(lo, hi, grid), np.linspace(lo, hi, grid))
    T = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    with torch.no_grad():
        f = loss.critic_function(critic, real, fake)
        vals = torch.cat([f(t) for t in T.split(1600)]).reshape(grid, grid).numpy()
    fig, ax = plt.subplots(figsize=(5, 4.4))
    im = ax.contourf(gx, gy, vals, levels=21, cmap="RdBu_r")
    fig.colorbar(im, ax=ax)
    r, q = real.numpy(), fake.detach().numpy()
    ax.scatter(r[:, 0], r[:, 1], s=3, c="navy", alpha=0.6, label="real")
    ax.scatter(q[:, 0], q[:, 1], s=3, c="darkred", alpha=0.6, label="generated")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_title(f"{loss.name}: critic / witness", fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_losses(history: dict, path, title: str = "") -> None:
    """Critic and generator loss against the generator step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(history["step"], history["critic"], lw=0.8, label="critic loss")
    ax.plot(history["step"], history["generator"], lw=0.8, label="generator loss")
    ax.set_xlabel("generator step")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_curves(rows: list[dict], x: str, panels, path, title: str = "") -> None:
    """One panel per group of keys in ``panels``, each key of ``rows`` plotted against ``rows[i][x]``.

    ``rows`` is a training run's evaluation history (one dict per evaluation); keys a row
    lacks are skipped (e.g. mode statistics on the swiss roll).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.7 * len(panels), 3))
    xs = [r[x] for r in rows]
    for ax, keys in zip(axes, panels):
        for k in keys:
            if rows and k in rows[0]:
                ax.plot(xs, [r[k] for r in rows], lw=0.9, label=k)
        ax.set_xlabel(x)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
