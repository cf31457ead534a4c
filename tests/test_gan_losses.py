"""The GAN loss layer by family: one registry, frozen configurations, training state kept apart
and recorded next to the configuration, one-forward joint losses equal to the two methods."""
import dataclasses
import importlib
import json

import pytest
import torch

from mmdkit.gan import losses as L
from mmdkit.gan.models import Critic

FAMILY_MODULES = {"mmd": "losses_mmd", "ipm": "losses_ipm", "classic": "losses_classic",
                  "autoencoder": "losses_autoencoder"}


def test_one_registry_by_family_and_every_old_name_still_importable():
    assert len(L.LOSSES) == 15
    seen = [c for family in L.FAMILIES.values() for c in family]
    assert len(seen) == len(set(seen)) == 15 and set(seen) == set(L.LOSSES.values())
    for family, classes in L.FAMILIES.items():
        module = importlib.import_module(f"mmdkit.gan.{FAMILY_MODULES[family]}")
        for c in classes:
            assert c.__module__ == module.__name__ and getattr(module, c.__name__) is c
    old = ["GANLoss", "GMMN", "MMDGAN", "CramerGAN", "EnergyGAN", "WGAN", "WGANGP", "LSGAN", "EBGAN", "MinimaxGAN",
           "NSGAN", "cramer_surrogate", "pull_away", "witness_function", "repulsive_loss", "LOSSES", "get_loss",
           "FisherGAN", "McGAN", "BEGAN", "MAGAN", "RWGAN", "bregman_kl", "rq_mixture", "reconstruction_energy"]
    assert not [n for n in old if not hasattr(L, n)]
    import mmdkit.gan
    assert mmdkit.gan.BEGAN is L.BEGAN and mmdkit.gan.get_loss is L.get_loss


@pytest.mark.parametrize("name", sorted(L.LOSSES))
def test_configuration_is_frozen_and_state_is_apart(name):
    loss = L.get_loss(name)
    field = dataclasses.fields(loss)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(loss, field, getattr(loss, field))
    assert "state" not in {f.name for f in dataclasses.fields(loss)}
    assert loss == L.get_loss(name) and dataclasses.replace(loss) == loss
    stateful = {"fisher-gan": "lam", "began": "k", "magan": "margin"}
    if name in stateful:   # the state starts from the configured value and is a different object per copy
        key = stateful[name]
        assert loss.state_dict()[key] == getattr(loss, key)
        assert dataclasses.replace(loss).state is not loss.state
    else:
        assert loss.state is None and loss.state_dict() == {}


def test_state_moves_while_the_configuration_stays_and_round_trips():
    real, fake = torch.ones(4, 2), torch.zeros(4, 2)

    class AE(torch.nn.Module):  # energy mean|x|: real 1, fake 0
        def reconstruct(self, x):
            return x, torch.zeros_like(x)

    loss = L.BEGAN(k=0.2, lambda_k=0.1, gamma=0.5)
    loss.critic_loss(AE(), real, fake)
    loss.after_critic_step(None, real, fake, 0)
    assert loss.k == 0.2 and loss.state.k == pytest.approx(0.2 + 0.1 * (0.5 * 1.0 - 0.0))
    saved = loss.state_dict()
    again = L.BEGAN(k=0.2, lambda_k=0.1, gamma=0.5)
    again.load_state_dict(saved)
    assert again.state == loss.state and again.state is not loss.state
    f = L.FisherGAN(rho=0.5, lam=0.25)
    f.critic_loss(lambda x: x[:, 0] * 2.0, real, fake)   # omega = 1/2 * 4 + 0 = 2
    assert f.after_critic_step(None, real, fake, 0)["lambda"] == pytest.approx(0.25 - 0.5 * (1 - 2.0))
    assert f.lam == 0.25 and f.settings()["lam"] == 0.25


def test_two_began_runs_record_the_configured_and_the_final_k_separately(tmp_path):
    """The same loss object trained twice: each run starts from the configured k (the first run's
    end does not leak into the second), metrics.json holds k as configured and k at the end."""
    from mmdkit.gan.trainer import train
    loss = L.BEGAN(k=0.1, lambda_k=0.05)
    runs = [train(loss, "ring8", steps=12, seed=4, batch_size=32, progress=False, eval_samples=200,
                  out=tmp_path / f"run{i}" if i == 0 else None) for i in range(2)]
    written = json.loads((tmp_path / "run0" / "metrics.json").read_text())
    for m in (runs[0], runs[1], written):
        assert m["settings"]["k"] == 0.1 and m["settings"]["lambda_k"] == 0.05
    k_end = runs[0]["loss_state"]["k"]
    assert 0.0 <= k_end <= 1.0 and k_end != 0.1   # k moved during training
    assert runs[1]["loss_state"] == runs[0]["loss_state"] == written["loss_state"]
    assert runs[1]["mmd2_heldout"] == runs[0]["mmd2_heldout"]
    assert loss.state.k == 0.1   # the caller's object is left alone


@pytest.mark.parametrize("name", ["gan", "ns-gan", "lsgan", "wgan", "wgan-gp", "fisher-gan", "rwgan", "mcgan",
                                  "mmd-gan"])
def test_joint_losses_equal_the_two_methods_and_their_gradients(name, gen):
    """One forward over cat(real, fake) (outputs_only losses) gives the same values and parameter
    gradients as critic_loss and generator_loss called separately."""
    loss = L.get_loss(name)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        C = Critic(out_dim=1 if loss.critic_type == "scalar" else loss.critic_dim).double()
    real = torch.randn(12, 2, generator=gen, dtype=torch.float64)
    fake = torch.randn(9, 2, generator=gen, dtype=torch.float64) + 1
    lc, lg = loss.joint_losses(C, real, fake)
    fresh = L.get_loss(name)
    ref_c, ref_g = fresh.critic_loss(C, real, fake), fresh.generator_loss(C, real, fake)
    torch.testing.assert_close(lc, ref_c, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(lg, ref_g, rtol=1e-12, atol=1e-14)
    params = list(C.parameters())
    for a, b in ((lc, ref_c), (lg, ref_g)):
        ga, gb = torch.autograd.grad(a, params, retain_graph=True), torch.autograd.grad(b, params, retain_graph=True)
        for x, y in zip(ga, gb):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-14)
    assert loss.outputs_only == (name in ("gan", "ns-gan", "lsgan", "wgan", "wgan-gp", "fisher-gan"))
