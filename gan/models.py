"""Small MLP generators, critics and autoencoder critics for the 2-D toys."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["mlp", "Generator", "Critic", "AutoencoderCritic"]


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
