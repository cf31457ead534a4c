"""Small MLP generators, critics and autoencoder critics for the 2-D toys, and PacGAN's networks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["mlp", "Generator", "Critic", "AutoencoderCritic", "PackBatchNorm", "PacGANGenerator", "LinearMaxout",
           "MaxoutCritic", "init_normal"]


def mlp(d_in: int, d_out: int, hidden: int = 128, layers: int = 3, act=nn.ReLU) -> nn.Sequential:
    """``layers`` linear maps d_in -> hidden -> ... -> d_out with ``act`` between them."""
    dims = [d_in] + [hidden] * (layers - 1) + [d_out]
    mods: list[nn.Module] = []
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(act())
    return nn.Sequential(*mods)


class Generator(nn.Module):
    """z ~ N(0, I_z_dim) -> R^2 through an MLP; ``sample(n, generator)`` draws z itself.

    The MLP's output is multiplied by the fixed ``out_scale`` (the trainer passes
    the data's scale), so the network works in units of the data's extent.
    """

    def __init__(self, z_dim: int = 8, d_out: int = 2, hidden: int = 128, layers: int = 4,
                 out_scale: float = 1.0):
        super().__init__()
        self.z_dim, self.out_scale = z_dim, out_scale
        self.net = mlp(z_dim, d_out, hidden, layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z) * self.out_scale

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self(torch.randn(n, self.z_dim, generator=generator))


class Critic(nn.Module):
    """x in R^2 -> R^out_dim (out_dim = 1: a scalar critic; > 1: a feature map).

    A scalar critic returns shape (n,), a feature critic (n, out_dim). LeakyReLU
    keeps gradients alive where a ReLU critic would be flat (gradient penalties).
    """

    def __init__(self, d_in: int = 2, out_dim: int = 1, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.out_dim = out_dim
        self.net = mlp(d_in, out_dim, hidden, layers, act=lambda: nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(x)
        return y[:, 0] if self.out_dim == 1 else y


class AutoencoderCritic(nn.Module):
    """Encoder R^2 -> R^code_dim and decoder back; ``forward`` returns the code.

    Used by EBGAN/MAGAN/BEGAN (energy = reconstruction error) and by the
    Li et al. (2017) MMD-GAN (MMD on codes, reconstruction as a regulariser).
    """

    def __init__(self, d_in: int = 2, code_dim: int = 16, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.out_dim = code_dim
        self.encoder = mlp(d_in, code_dim, hidden, layers, act=lambda: nn.LeakyReLU(0.2))
        self.decoder = mlp(code_dim, d_in, hidden, layers, act=lambda: nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(code, reconstruction) of x."""
        c = self.encoder(x)
        return c, self.decoder(c)


# --------------------------------------------------------------------------- PacGAN's networks

def init_normal(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Every linear weight ~ N(0, std^2), every linear bias 0 (blocks' IsotropicGaussian / Constant(0))."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class PackBatchNorm(nn.Module):
    r"""Batch normalisation with blocks' conventions, over each pack slot separately.

    Training: y = (x - mean) / sqrt(var + eps) * scale + shift with the batch mean
    and biased variance over the batch axis; an input (B, m, C) (m pack slots)
    is normalised per slot, as PacGAN's code applies its generator to each of
    the m noise batches separately. The population statistics that inference
    uses are moving averages of the mean and of the standard deviation
    sqrt(var + eps) (not of the variance), p <- (1 - momentum) p + momentum s,
    with s averaged over the slots, starting from mean 0 and stdev 1. Inference:
    y = (x - population_mean) / population_stdev * scale + shift.

    References
    ----------
    mila-iqia/blocks, ``blocks/bricks/bn.py`` (``BatchNormalization``:
    epsilon 1e-4, scale 1, shift 0, population_stdev); fjxmlzn/PacGAN,
    ``synthetic_data_experiments/2DGrid_GAN&PacGAN/pacgan_task.py``
    (``bn_updates = m * 0.05 + p * 0.95``, the minibatch estimates averaged over
    the m applications).
    """

    def __init__(self, channels: int, eps: float = 1e-4, momentum: float = 0.05):
        super().__init__()
        self.channels, self.eps, self.momentum = channels, eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("population_mean", torch.zeros(channels))
        self.register_buffer("population_stdev", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        b, g, c = x.shape
        if not self.training:
            return (x - self.population_mean) / self.population_stdev * self.weight + self.bias
        w, s = (self.weight, self.bias) if g == 1 else (self.weight.repeat(g), self.bias.repeat(g))
        # (B, m * C): one channel per (slot, unit), so the statistics are per slot; native_batch_norm
        # also returns the batch mean and 1 / sqrt(var + eps) the population update needs
        y, mean, invstd = torch.native_batch_norm(x.reshape(b, g * c), w, s, None, None, True, 0.0, self.eps)
        with torch.no_grad():
            a = self.momentum
            self.population_mean.mul_(1 - a).add_(mean.view(g, c).mean(0), alpha=a)
            self.population_stdev.mul_(1 - a).add_(invstd.reciprocal().view(g, c).mean(0), alpha=a)
        return y.view(b, g, c)


class PacGANGenerator(nn.Module):
    """PacGAN's toy generator: z -> [Linear (no bias) -> batch norm -> ReLU] x ``layers`` -> Linear.

    Widths z_dim -> hidden x layers -> d_out (2 -> 400 x 4 -> 2 in PacGAN's
    synthetic experiments); the hidden linear maps have no bias (the batch
    norm's shift replaces it), the output map has one. Weights N(0, 0.02^2),
    biases 0 (:func:`init_normal`). ``forward`` takes z of shape (n, z_dim)
    or (B, m, z_dim) for m pack slots (batch statistics per slot).

    References
    ----------
    fjxmlzn/PacGAN, ``synthetic_data_experiments/2DGrid_GAN&PacGAN/pacgan_task.py``
    (``create_model_brick``: the decoder MLP) and ``config.py``.
    """

    def __init__(self, z_dim: int = 2, d_out: int = 2, hidden: int = 400, layers: int = 4, init_std: float = 0.02,
                 bn_eps: float = 1e-4, bn_momentum: float = 0.05):
        super().__init__()
        self.z_dim = z_dim
        dims = [z_dim] + [hidden] * layers
        self.linears = nn.ModuleList(nn.Linear(dims[i], dims[i + 1], bias=False) for i in range(layers))
        self.norms = nn.ModuleList(PackBatchNorm(hidden, bn_eps, bn_momentum) for _ in range(layers))
        self.out = nn.Linear(hidden, d_out)
        init_normal(self, init_std)

    def forward(self, z: Tensor) -> Tensor:
        h = z if z.dim() == 3 else z[:, None]
        for lin, norm in zip(self.linears, self.norms):
            h = F.relu(norm(lin(h)))
        x = self.out(h)
        return x if z.dim() == 3 else x[:, 0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self(torch.randn(n, self.z_dim, generator=generator))


class _Maxout(torch.autograd.Function):
    """y = max over pieces of z viewed as (..., pieces, units); the gradient goes to every maximal piece
    (Theano's max gradient, ``g * (z == max)``), in plain torch ops, so it can be differentiated again."""

    @staticmethod
    def forward(ctx, z: Tensor, pieces: int) -> Tensor:
        v = z.view(*z.shape[:-1], pieces, z.shape[-1] // pieces)
        out = v.amax(-2)   # a reduction over a middle axis: ~20x faster than .max(-1) over 5 contiguous values
        ctx.save_for_backward(v, out)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        v, out = ctx.saved_tensors
        return ((v == out.unsqueeze(-2)) * g.unsqueeze(-2)).flatten(-2), None


class LinearMaxout(nn.Module):
    """Linear map to ``pieces * out_dim`` units, then unit j = max_k z[k out_dim + j] over the ``pieces`` pieces.

    blocks' ``LinearMaxout`` groups consecutive units (unit j = max_k z[pieces j + k]);
    this layout groups every ``out_dim``-th unit instead, which is the same
    family of functions under a fixed relabelling of the linear map's outputs
    (and the same i.i.d. initialisation), and is cheaper to reduce. The
    backward (:class:`_Maxout`) costs about half of ``amax``'s or ``max``'s.
    """

    def __init__(self, in_dim: int, out_dim: int, pieces: int = 5):
        super().__init__()
        self.out_dim, self.pieces = out_dim, pieces
        self.linear = nn.Linear(in_dim, out_dim * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return _Maxout.apply(self.linear(x), self.pieces)


class MaxoutCritic(nn.Module):
    """PacGAN's toy discriminator: ``layers`` LinearMaxout layers (``hidden`` units, ``pieces`` pieces), a Linear out.

    Input dimension d_in = 2 m for m packed 2-D samples; out_dim = 1 returns
    shape (n,) (a scalar critic), more returns (n, out_dim) features. Weights
    N(0, 0.02^2), biases 0.

    References
    ----------
    fjxmlzn/PacGAN, ``synthetic_data_experiments/2DGrid_GAN&PacGAN/pacgan_task.py``
    (``create_model_brick``: the discriminator Sequence) and ``config.py``
    (disc_hidden_size 200, disc_maxout_pieces 5, weights_init_std 0.02).
    """

    def __init__(self, d_in: int = 2, out_dim: int = 1, hidden: int = 200, layers: int = 3, pieces: int = 5,
                 init_std: float = 0.02):
        super().__init__()
        self.out_dim = out_dim
        dims = [d_in] + [hidden] * layers
        self.layers = nn.Sequential(*(LinearMaxout(dims[i], dims[i + 1], pieces) for i in range(layers)))
        self.out = nn.Linear(hidden, out_dim)
        init_normal(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        y = self.out(self.layers(x))
        return y[:, 0] if self.out_dim == 1 else y
