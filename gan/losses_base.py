"""The base of every GAN loss: a frozen configuration, a separate training state, the trainer's hooks.

A loss holds no training loop. Its dataclass fields are its *configuration*,
frozen once constructed (``dataclasses.replace`` makes a changed copy): what
critic it needs (``critic_type``: "none", "scalar", "features" or
"autoencoder"; ``critic_dim``), how many critic steps per generator step
(``n_critic``), its optimiser settings, and the constraints it uses (``clip``:
a :class:`~mmdkit.gan.constraints.WeightClip`, ``penalty``: a
:class:`~mmdkit.gan.constraints.GradientPenalty` applied to
``critic_function``). What changes while training (Fisher GAN's multiplier,
BEGAN's k, MAGAN's margin) lives apart from it in ``loss.state``, a mutable
dataclass that :meth:`GANLoss.initial_state` builds from the configuration;
:func:`mmdkit.gan.trainer.train` starts every run from a fresh state and
writes both the configuration (``settings``) and the final state
(``loss_state``) to metrics.json.

Conventions: ``real`` and ``fake`` are batches of shape (n, d); ``critic`` is
a callable (a module) returning (n,) for a scalar critic or (n, k) features.
Both loss methods return a scalar to *minimise*.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from torch import Tensor

from mmdkit.gan.constraints import GradientPenalty, WeightClip

__all__ = ["GANLoss"]


@dataclass(frozen=True)
class GANLoss:
    """Base: settings shared by every loss (optimiser, critic steps, constraints).

    ``state`` (not a field) is the loss's training state: None for a stateless
    loss, else a mutable dataclass from :meth:`initial_state`.
    """

    name: ClassVar[str] = "base"
    critic_type: ClassVar[str] = "scalar"
    fake_batches: ClassVar[int] = 1  # fake points per real point the trainer draws
    # True: both losses are functions of critic(real) and critic(fake) alone (critic_value,
    # generator_value), so one critic forward pass on each batch gives both (joint_losses)
    outputs_only: ClassVar[bool] = False
    critic_dim: int = 1
    n_critic: int = 1
    optimizer: str = "adam"
    lr_g: float = 1e-3
    lr_c: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.9)
    clip: WeightClip | None = None
    penalty: GradientPenalty | None = None
    batch_size: int | None = None  # real points per step; None: the trainer's default
    packing: int = 1  # m: the critic sees rows of m samples (PacGAN); the fast trainer's default packing

    def __post_init__(self):
        self.reset_state()

    def _set(self, **values) -> None:
        """Set configuration fields while constructing (``__post_init__`` only: the object is frozen)."""
        for k, v in values.items():
            object.__setattr__(self, k, v)

    # ------------------------------------------------------------------ training state

    def initial_state(self) -> Any:
        """The state a run starts from (None: the loss has none)."""
        return None

    def reset_state(self) -> Any:
        """Replace ``state`` by :meth:`initial_state` and return it."""
        object.__setattr__(self, "state", self.initial_state())
        return self.state

    def state_dict(self) -> dict:
        """The current state as a JSON-ready dict ({} for a stateless loss)."""
        return {} if self.state is None else asdict(self.state)

    def load_state_dict(self, values: dict) -> None:
        """Restore a state written by :meth:`state_dict` (a resumed run)."""
        state = self.initial_state()
        if state is not None:
            for k, v in values.items():
                setattr(state, k, v)
        object.__setattr__(self, "state", state)

    # ------------------------------------------------------------------ the losses

    def critic_loss(self, critic, real: Tensor, fake: Tensor) -> Tensor:
        """The critic's loss; for ``outputs_only`` losses ``critic_value(critic(real), critic(fake))``."""
        if self.outputs_only:
            return self.critic_value(critic(real), critic(fake))
        raise NotImplementedError  # every other loss overrides it

    def generator_loss(self, critic, real: Tensor, fake: Tensor) -> Tensor:
        """The generator's loss; for ``outputs_only`` losses ``generator_value(critic(fake))``."""
        if self.outputs_only:
            return self.generator_value(critic(fake))
        raise NotImplementedError  # every other loss overrides it

    def critic_value(self, f_real: Tensor, f_fake: Tensor) -> Tensor:
        """The critic loss from the critic's outputs (``outputs_only`` losses)."""
        raise NotImplementedError

    def generator_value(self, f_fake: Tensor) -> Tensor:
        """The generator loss from the critic's outputs on fake points (``outputs_only`` losses)."""
        raise NotImplementedError

    def joint_losses(self, critic, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """(critic loss, generator loss) on one batch, for simultaneous updates.

        An ``outputs_only`` loss gets both from one critic forward pass on each
        batch (:func:`scalar_outputs`); any other loss calls its two methods.
        """
        if self.outputs_only:
            f_real, f_fake = scalar_outputs(critic, real, fake)
            return self.critic_value(f_real, f_fake), self.generator_value(f_fake)
        return self.critic_loss(critic, real, fake), self.generator_loss(critic, real, fake)

    def critic_function(self, critic, real: Tensor, fake: Tensor) -> Callable[[Tensor], Tensor]:
        """x -> (n,) values: what the gradient penalty constrains and the contour plot shows."""
        return critic

    def after_critic_step(self, critic, real: Tensor, fake: Tensor, step: int) -> dict:
        """Update ``state`` after a critic step (BEGAN's k, Fisher's lambda, ...); returns values to log."""
        return {}

    def settings(self) -> dict:
        """The loss's name and configuration as constructed, for metrics.json."""
        out = {"loss": self.name}
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            v = getattr(self, f.name)
            out[f.name] = asdict(v) if dataclasses.is_dataclass(v) else v
        return out


def scalar_outputs(critic, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """(critic(real), critic(fake)), one forward pass each.

    For a critic without batch statistics this equals one pass over the
    concatenated batch (PacGAN's code) up to rounding, and the generator's
    backward then runs through the fake rows only (measured 27 vs 30 ms an
    iteration of PacGAN's protocol, one thread, packing 1).
    """
    return critic(real), critic(fake)
