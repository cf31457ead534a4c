"""Second derivatives: the MMD-GAN gradient penalty (the witness of critic features, differentiated
twice) through mmdkit's engine against the same penalty through dense torch kernel matrices.

Per call: the witness at k interpolates, its gradient with ``create_graph=True``, the penalty
||grad||^2, and the penalty's gradient w.r.t. the two samples (what a critic step back-propagates).
Also the plain first-order witness gradient, so the cost of the second order reads as a ratio.
float32, Gaussian kernel, n = m samples of dimension d, k = 64 points (the losses' ``n_points``).
"""
import pytest
import torch

import mmdkit
from benchutil import peak_rss_mib, sizes

NS = sizes([512, 4096], [256])
DS = sizes([16], [16])
K_POINTS = 64
BANDWIDTH = 2.0


def dense_witness(X, Y, T, h=BANDWIDTH):
    k = lambda A, B: torch.exp(-torch.cdist(A, B) ** 2 / (2 * h * h))  # noqa: E731
    return k(T, X).mean(1) - k(T, Y).mean(1)


IMPLS = {
    "engine": lambda X, Y, T: mmdkit.witness(X, Y, T, bandwidth=BANDWIDTH, backend="torch"),
    "dense": dense_witness,
}


def penalty_step(f, X, Y, T):
    """Penalty ||d f / d T||^2 and its gradient w.r.t. X and Y (second order)."""
    (g,) = torch.autograd.grad(f(X, Y, T).sum(), T, create_graph=True)
    return torch.autograd.grad((g ** 2).sum(), [X, Y])


def first_order_step(f, X, Y, T):
    """The witness's gradient w.r.t. X and Y only (first order)."""
    return torch.autograd.grad(f(X, Y, T).sum(), [X, Y])


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("order", ["first", "second"])
@pytest.mark.parametrize("d", DS)
@pytest.mark.parametrize("n", NS)
def test_gradient_penalty(benchmark, impl, order, n, d):
    from mmdkit.kernels.reference import make_pair
    X, Y = make_pair(n, n, d, shift=0.5)
    X, Y = X.requires_grad_(), Y.requires_grad_()
    T = torch.randn(K_POINTS, d, generator=torch.Generator().manual_seed(0)).requires_grad_()
    step = penalty_step if order == "second" else first_order_step
    benchmark.pedantic(lambda: step(IMPLS[impl], X, Y, T), rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(dict(n=n, m=n, d=d, k=K_POINTS, dtype="float32", backend=impl, order=order,
                                     peak_rss_mib=peak_rss_mib()))
