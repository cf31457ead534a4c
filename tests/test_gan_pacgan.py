"""PacGAN's protocol and packing: the reference networks' sizes, blocks-style batch norm per pack
slot, packing shapes and errors, one simultaneous update against an independent torch step,
checkpoint/resume equal to a straight run, and the mode metrics on a perfect sampler against
closed forms and PacGAN's own metric code re-written in float64."""
import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mmdkit.gan import pacgan
from mmdkit.gan.data import grid25, ring8
from mmdkit.gan.losses import get_loss
from mmdkit.gan.metrics import mode_statistics
from mmdkit.gan.models import MaxoutCritic, PackBatchNorm, PacGANGenerator
from mmdkit.gan.pacgan import PROTOCOLS, packed_dataset, train_protocol

# fjxmlzn/PacGAN, synthetic_data_experiments/2DGrid_GAN&PacGAN/config.py
REFERENCE = dict(num_epoch=400, num_xdim=2, gen_hidden_size=400, disc_hidden_size=200, disc_maxout_pieces=5,
                 weights_init_std=0.02, learning_rate=1e-4, beta1=0.8, batch_size=100, num_sample=100000,
                 num_log_figure_sample=2500, num_zdim=2)


@pytest.fixture
def one_thread():
    """One torch thread, as the protocol runs (two OpenMP threads on a busy 2-core machine wait on each other)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny(**kw):
    """PacGAN's protocol at test scale (5 iterations an epoch)."""
    base = dict(epochs=2, num_samples=500, eval_samples=200, bn_refresh_batches=2)
    return dataclasses.replace(PROTOCOLS["pacgan"], **{**base, **kw})


def test_protocol_defaults_are_the_reference_config():
    p, r = PROTOCOLS["pacgan"], REFERENCE
    assert (p.epochs, p.num_samples, p.batch_size, p.lr, p.betas[0], p.eval_samples, p.z_dim) == (
        r["num_epoch"], r["num_sample"], r["batch_size"], r["learning_rate"], r["beta1"], r["num_log_figure_sample"],
        r["num_zdim"])
    assert (p.g_hidden, p.g_layers, p.d_hidden, p.d_layers, p.maxout_pieces, p.init_std) == (
        r["gen_hidden_size"], 4, r["disc_hidden_size"], 3, r["disc_maxout_pieces"], r["weights_init_std"])
    assert p.iterations_per_epoch * p.epochs == 400_000


@pytest.mark.parametrize("m", [1, 2, 4])
def test_network_shapes_and_parameter_counts_match_the_reference_sizes(m, one_thread):
    h, H, k, x = REFERENCE["gen_hidden_size"], REFERENCE["disc_hidden_size"], REFERENCE["disc_maxout_pieces"], 2
    loss = get_loss("ns-gan")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        G, D = pacgan.make_networks(loss, dataclasses.replace(PROTOCOLS["pacgan"], packing=m))
    # decoder: 2 -> 400 (no bias), 3 x 400 -> 400 (no bias), 400 -> 2 (bias), 4 batch norms (scale, shift)
    g_count = x * h + 3 * h * h + (h * x + x) + 4 * 2 * h
    # discriminator: LinearMaxout(2m -> 200 x 5), 2 x LinearMaxout(200 -> 200 x 5), Linear(200 -> 1)
    d_count = (2 * m * H * k + H * k) + 2 * (H * H * k + H * k) + (H + 1)
    assert sum(p.numel() for p in G.parameters()) == g_count == 484_802
    assert sum(p.numel() for p in D.parameters()) == d_count
    assert G(torch.zeros(7, m, 2)).shape == (7, m, 2) and G(torch.zeros(5, 2)).shape == (5, 2)
    assert D(torch.zeros(9, 2 * m)).shape == (9,)
    weights = torch.cat([mod.weight.flatten() for mod in [*G.modules(), *D.modules()]
                         if isinstance(mod, torch.nn.Linear)])
    weights = weights.detach()
    assert float(weights.std()) == pytest.approx(0.02, rel=0.01) and abs(float(weights.mean())) < 1e-3
    linears = [mod for mod in [*G.modules(), *D.modules()] if isinstance(mod, torch.nn.Linear)]
    biases = [mod.bias for mod in linears if mod.bias is not None]
    assert all(float(b.abs().max()) == 0.0 for b in biases)
    assert [mod.bias is None for mod in G.linears] == [True] * 4 and G.out.bias is not None


def test_linear_maxout_values_and_gradients_against_a_dense_float64_formula(gen):
    with torch.random.fork_rng():  # the initialisation, without touching the global seed
        torch.manual_seed(0)
        D = MaxoutCritic(d_in=3, out_dim=4, hidden=6, layers=1, pieces=5).double()
    x = torch.randn(8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    lin = D.layers[0].linear

    def dense(x):   # unit j = max over pieces k of z[:, 6 k + j]
        z = x @ lin.weight.T + lin.bias                                 # (8, 30)
        hidden = torch.stack([torch.stack([z[:, 6 * k + j] for k in range(5)], 1).max(1).values for j in range(6)], 1)
        return hidden @ D.out.weight.T + D.out.bias

    torch.testing.assert_close(D(x), dense(x), rtol=1e-12, atol=1e-12)
    up = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    params = [x, *D.parameters()]
    for a, b in zip(torch.autograd.grad((D(x) * up).sum(), params), torch.autograd.grad((dense(x) * up).sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # second order (a gradient penalty through the critic): the gradient of ||dD/dx||^2 w.r.t. the weights
    gp = [torch.autograd.grad(f(x).sum(1).pow(2).sum(), x, create_graph=True)[0].pow(2).sum() for f in (D, dense)]
    for a, b in zip(torch.autograd.grad(gp[0], list(D.parameters())), torch.autograd.grad(gp[1], list(D.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_pack_batch_norm_per_slot_with_blocks_population_statistics(gen):
    bn = PackBatchNorm(3, eps=1e-4, momentum=0.05).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    x = torch.randn(10, 2, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.2]) + 4
    y = bn(x)
    mean = x.mean(0)                                                    # (2 slots, 3 units)
    stdev = ((x - mean) ** 2).mean(0).add(1e-4).sqrt()                  # biased variance, eps inside
    torch.testing.assert_close(y, (x - mean) / stdev * bn.weight + bn.bias, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bn.population_mean, 0.05 * mean.mean(0), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bn.population_stdev, 0.95 + 0.05 * stdev.mean(0), rtol=1e-10, atol=1e-12)
    bn.eval()
    t = torch.randn(4, 1, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(bn(t), (t - bn.population_mean) / bn.population_stdev * bn.weight + bn.bias)
    one = PacGANGenerator(hidden=8, layers=2).double()   # slots are independent batches: slot 1 alone = slot 1 packed
    z = torch.randn(6, 2, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(one(z)[:, 1], one(z[:, 1:2])[:, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("m", [1, 3])
def test_packed_dataset_columns_are_draws_from_one_fixed_sample(m):
    a = packed_dataset(grid25, 500, m, torch.Generator().manual_seed(2))
    b = packed_dataset(grid25, 500, m, torch.Generator().manual_seed(2))
    base = grid25.sample(500, torch.Generator().manual_seed(2))
    assert a.shape == (500, m, 2) and torch.equal(a, b)
    rows = {tuple(r) for r in base.tolist()}
    assert all(tuple(r) in rows for r in a.reshape(-1, 2).tolist())
    if m > 1:   # columns are independent draws: they differ
        assert not torch.equal(a[:, 0], a[:, 1])


def test_packing_in_the_fast_trainer_shapes_and_errors():
    from mmdkit.gan.trainer import make_critic, train
    assert make_critic(get_loss("wgan-gp"), d=2 * 4).net[0].in_features == 8
    m = train("ns-gan", "ring8", steps=3, seed=0, batch_size=12, packing=4, progress=False, eval_samples=100)
    assert m["packing"] == 4
    m = train("wgan-gp", "ring8", steps=2, seed=0, batch_size=12, packing=3, progress=False, eval_samples=100)
    assert math.isfinite(m["mmd2_heldout"])   # the penalty interpolates packed rows (6 d inputs)
    with pytest.raises(ValueError, match="--packing 4 must divide the batch size"):
        train("gan", "ring8", steps=1, batch_size=30, packing=4, progress=False)
    with pytest.raises(ValueError, match="--packing applies to losses with a critic"):
        train("gmmn", "ring8", steps=1, batch_size=32, packing=2, progress=False)


def test_packing_reshapes_consecutive_samples_into_one_critic_row():
    """The critic sees rows [x_1, ..., x_m] of m consecutive samples: a critic that reads one
    coordinate of the packed row sees the corresponding sample."""
    from mmdkit.gan import trainer
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            seen.append(x.detach().clone())
            return x[:, 0] * self.w

    old = trainer.make_critic
    trainer.make_critic = lambda loss, d=2: Spy()
    try:
        trainer.train("gan", "grid25", steps=1, seed=0, batch_size=6, packing=3, progress=False, eval_samples=50)
    finally:
        trainer.make_critic = old
    real = grid25.sample(6, torch.Generator().manual_seed(0))   # the trainer's first real batch
    torch.testing.assert_close(seen[0], real.reshape(2, 6))


def reference_steps(G, D, iteration_inputs):
    """Independent PacGAN step: separate forward passes on real and fake, both gradients at the
    current parameters, plain (non-fused) Adam(1e-4, (0.8, 0.999)) on each network."""
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.8, 0.999), eps=1e-8, foreach=False)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.8, 0.999), eps=1e-8, foreach=False)
    for real, z in iteration_inputs:
        fake = G(z).reshape(z.shape[0], -1)
        d_real, d_fake = D(real.reshape(real.shape[0], -1)), D(fake)
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        loss_g = F.softplus(d_real).mean() + F.softplus(-d_fake).mean()   # bricks.py's, first term constant in G
        grads_d = torch.autograd.grad(loss_d, list(D.parameters()), retain_graph=True)
        grads_g = torch.autograd.grad(loss_g, list(G.parameters()))
        for p, g_ in zip(D.parameters(), grads_d):
            p.grad = g_
        for p, g_ in zip(G.parameters(), grads_g):
            p.grad = g_
        opt_d.step()
        opt_g.step()


@pytest.mark.parametrize("m", [1, 2])
def test_simultaneous_updates_equal_an_independent_reference_step(m, one_thread):
    p = tiny(packing=m, epochs=1, num_samples=200)   # 2 iterations
    run = pacgan._Run(get_loss("ns-gan"), grid25, p, seed=5)
    G0, D0 = PacGANGenerator(), MaxoutCritic(2 * m)
    G0.load_state_dict(run.G.state_dict())
    D0.load_state_dict(run.C.state_dict())
    rng = pacgan._seeded(5, 1)   # the run's training stream: this epoch's order, then every noise batch
    real = run.real[torch.randperm(200, generator=rng)]
    z = torch.randn(200, m, 2, generator=rng)
    start = {k: v.clone() for k, v in run.G.state_dict().items()}
    run.train_epoch()
    reference_steps(G0, D0, [(real[:100], z[:100]), (real[100:], z[100:])])
    for a, b in ((run.G, G0), (run.C, D0)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6, msg=name)
    moved = [float((run.G.state_dict()[k] - v).abs().max()) for k, v in start.items()]
    assert min(moved) > 0   # every weight, batch-norm parameter and population statistic moved


def strip_times(rows):
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in rows]


def test_interrupted_and_resumed_run_equals_a_straight_run(tmp_path):
    p = tiny(packing=2)
    straight = train_protocol("ns-gan", "grid25", p, seed=3, out=tmp_path / "a", progress=False, plots=False)
    first = train_protocol("ns-gan", "grid25", p, seed=3, out=tmp_path / "b", progress=False, max_minutes=0)
    assert not first["finished"] and first["epoch"] == 1 and not (tmp_path / "b" / "metrics.json").exists()
    with open(tmp_path / "b" / "metrics.jsonl", "a") as fh:   # a line logged after the checkpoint, then killed
        fh.write(json.dumps({"epoch": 2, "modes_covered": -1}) + "\n")
    resumed = train_protocol("ns-gan", "grid25", p, seed=3, out=tmp_path / "b", progress=False, plots=False)
    assert resumed["finished"] and resumed["iterations"] == straight["iterations"] == 10
    ca, cb = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True) for d in "ab")
    for net in ("G", "C", "opt_g", "opt_c"):
        a, b = (json.dumps(c[net], default=lambda t: t.tolist()) for c in (ca, cb))
        assert a == b, net
    logs = [strip_times(json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines())
            for d in "ab"]
    assert logs[0] == logs[1] and [r["epoch"] for r in logs[1]] == [1, 2]
    for key in ("modes_covered", "high_quality", "reverse_kl", "mmd2_heldout", "kid"):
        assert resumed[key] == straight[key]
    with pytest.raises(ValueError, match="`out`"):   # same folder, other settings
        train_protocol("ns-gan", "grid25", tiny(packing=1), seed=3, out=tmp_path / "b", progress=False)
    longer = train_protocol("ns-gan", "grid25", tiny(packing=2, epochs=3), seed=3, out=tmp_path / "b",
                            progress=False, plots=False)
    assert longer["epoch"] == 3 and [r["epoch"] for r in longer["history"]] == [1, 2, 3]
    # the loss's optimiser settings are the protocol's here, so other values of them resume the run
    # (a loss's fast-protocol defaults may change); the settings record what the run used
    other = get_loss("ns-gan", lr_g=0.05, lr_c=0.05, betas=(0.9, 0.99), batch_size=64, optimizer="rmsprop")
    more = train_protocol(other, "grid25", tiny(packing=2, epochs=4), seed=3, out=tmp_path / "b", progress=False,
                          plots=False)
    assert more["epoch"] == 4 and [r["epoch"] for r in more["history"]] == [1, 2, 3, 4]
    assert (more["settings"]["lr_g"], more["settings"]["lr_c"], more["settings"]["betas"]) == (p.lr, p.lr,
                                                                                               tuple(p.betas))
    assert more["settings"]["batch_size"] == 2 * p.batch_size  # points a side: rows x packing
    with pytest.raises(ValueError, match="`out`"):  # a setting the protocol uses still tells runs apart
        train_protocol(get_loss("ns-gan", n_critic=2), "grid25", tiny(packing=2, epochs=5), seed=3,
                       out=tmp_path / "b", progress=False)


def test_cli_pacgan_protocol_resumes_and_rejects_fast_only_flags(tmp_path, monkeypatch, capsys):
    from mmdkit.gan.__main__ import main
    monkeypatch.setitem(PROTOCOLS, "pacgan", tiny(epochs=3))
    args = ["train", "--protocol", "pacgan", "--loss", "ns-gan", "--packing", "2", "--epochs", "1", "--seed", "1",
            "--out", str(tmp_path / "r"), "--no-progress", "--eval-samples", "150"]
    assert main(args) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert (m["protocol"]["packing"], m["protocol"]["epochs"], m["iterations"], m["settings"]["loss"]) == (
        2, 1, 5, "ns-gan")
    assert main(args[:8] + ["2"] + args[9:]) == 0   # --epochs 2 continues the same run
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["iterations"] == 10
    for extra, msg in ((["--steps", "5"], "`--steps` is not part of --protocol pacgan"),
                       (["--packing", "0"], "--packing must be a positive integer")):
        with pytest.raises(SystemExit):
            main(args + extra)
        assert msg in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--loss", "gan", "--packing", "3", "--batch-size", "64", "--out", str(tmp_path / "f")])
    assert "--packing 3 must divide the batch size" in capsys.readouterr().err


def pacgan_metric_logger(x, modes, std, threshold=3.0):
    """PacGAN's MetricLogger (pacgan/extensions.py) in float64: nearest mode in standardised distance,
    counted when below the threshold; (modes covered, good-point share, log K - entropy)."""
    d = ((x.double()[:, None, :] - modes.double()[None]) ** 2 / std ** 2).sum(-1).sqrt()
    dist, j = d.min(1)
    counts = torch.bincount(j[dist < threshold], minlength=len(modes)).double()
    p = counts[counts > 0] / counts.sum()
    entropy = float(-(p * p.log()).sum())
    return int((counts > 0).sum()), float(counts.sum()) / len(x), math.log(len(modes)) - entropy


@pytest.mark.parametrize("data", [grid25, ring8], ids=["grid25", "ring8"])
def test_metrics_of_a_perfect_sampler_against_closed_forms_and_pacgans_metric_code(data):
    n = 2500
    x = data.sample(n, torch.Generator().manual_seed(11))
    s = mode_statistics(x, data)
    hq_closed = 1 - math.exp(-4.5)   # P(|N(0, s^2 I_2)| <= 3 s): Rayleigh, 0.98889
    se = math.sqrt(hq_closed * (1 - hq_closed) / n)
    assert s["modes_covered"] == len(data.modes)
    assert abs(s["high_quality"] - hq_closed) <= 3 * se
    # multinomial counts over K equally likely modes: 2 N_hq KL ~ chi^2_{K-1}, mean (K-1) / (2 N_hq)
    k, n_hq = len(data.modes), s["high_quality"] * n
    assert abs(s["reverse_kl"] - (k - 1) / (2 * n_hq)) <= 4 * math.sqrt(2 * (k - 1)) / (2 * n_hq)
    # PacGAN's own metric on a mix of perfect, off-mode and collapsed samples
    off = torch.cat([x[:300], data.modes[:2].repeat(200, 1) + 0.5 * data.std, torch.full((50, 2), 0.5)])
    mine = mode_statistics(off, data)
    theirs = pacgan_metric_logger(off, data.modes, data.std)
    assert (mine["modes_covered"], mine["high_quality"]) == theirs[:2]
    assert mine["reverse_kl"] == pytest.approx(theirs[2], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name,m", [("mmd-gan", 2), ("began", 2), ("gmmn", 1), ("wgan-gp", 3), ("cramer-gan", 2)])
def test_every_kind_of_loss_runs_under_the_protocol(name, m, one_thread):
    """Feature critics (with a penalty), autoencoder critics (with state), no critic, n_critic > 1
    (alternating updates), two fake batches: finite losses and metrics, the configured state apart."""
    p = tiny(packing=m, epochs=1, num_samples=300)
    r = train_protocol(name, "grid25", p, seed=0, progress=False)
    row = r["history"][-1]
    assert r["finished"] and r["iterations"] == 3 and r["protocol"]["packing"] == m
    assert all(math.isfinite(row[k]) for k in ("generator_loss", "mmd2_heldout", "kid"))
    if name == "began":
        assert r["settings"]["k"] == 0.0 and 0.0 < r["loss_state"]["k"] <= 1.0
    if name == "gmmn":
        with pytest.raises(ValueError, match="--packing applies to losses with a critic"):
            train_protocol(name, "grid25", tiny(packing=2), progress=False)
