"""Close pairs of cusp kernels: accuracy and cost of ``kernels.blocked.NEAR`` (bench/RESULTS.md, "Close pairs").

Accuracy: the float32 gradient in x of the Energy(0.5) witness of critic features (a random ReLU
critic, 16 features, 256 + 256 points and 256 interpolates, as in a gradient penalty) against
float64 dense autograd, over critic seeds; the rule before (close pairs set to t = 0) against
direct differences below NEAR times the expansion's rounding bound. Cost: energy_distance and a
Laplace mmd2_unbiased on Gaussian data, 2 threads, interleaved rounds, minima against NEAR = 64.

    .venv/bin/python bench/close_pairs.py [--seeds 100] [--rounds 5]
"""
import argparse
import statistics
import time

import torch

from mmdkit import Energy, Laplace, energy_distance, mmd2_unbiased
from mmdkit.gan.losses_mmd import witness_function
from mmdkit.gan.models import Critic
from mmdkit.kernels import blocked
from mmdkit.kernels.reference import kernel_matrix

RULES = {"t = 0 (before)": 1.0, "NEAR = 1": 1.0, "NEAR = 64": 64.0, "NEAR = 4096": 4096.0}


def _zero_(t, near, X, Y, fold):  # the rule before: close pairs count as coincident
    t.masked_fill_(near, 0.0)


def use(rule):
    blocked.NEAR = RULES[rule]
    blocked._refine_ = _zero_ if rule.endswith("(before)") else REFINE


REFINE = blocked._refine_


def gradient_errors(seeds):
    kernel = Energy(exponent=0.5)
    errors = {rule: [] for rule in RULES} | {"dense float32 autograd": []}
    for s in range(seeds):
        gen = torch.Generator().manual_seed(s)
        real = torch.randn(256, 2, generator=gen, dtype=torch.float64)
        fake = torch.randn(256, 2, generator=gen, dtype=torch.float64) + 0.5
        with torch.random.fork_rng():
            torch.manual_seed(s)
            C = Critic(out_dim=16).double()
        a = torch.rand(256, 1, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            hx, hf, hr = C(a * real + (1 - a) * fake), C(fake), C(real)
        def dense(x, fake, real):  # the witness of (fake, real) at x, plain autograd in x's dtype
            return kernel_matrix(x, fake, kernel, upcast=False).mean(1) - kernel_matrix(x, real, kernel,
                                                                                        upcast=False).mean(1)

        x = hx.clone().requires_grad_()
        (ref,) = torch.autograd.grad(dense(x, hf, hr).sum(), x)
        x = hx.float().requires_grad_()
        (g,) = torch.autograd.grad(dense(x, hf.float(), hr.float()).sum(), x)
        errors["dense float32 autograd"].append(float((g.double() - ref).norm() / ref.norm()))
        for rule in RULES:
            use(rule)
            x = hx.float().requires_grad_()
            (g,) = torch.autograd.grad(witness_function(kernel, hf.float(), hr.float())(x).sum(), x)
            errors[rule].append(float((g.double() - ref).norm() / ref.norm()))
    return errors


def costs(rounds):
    g = torch.Generator().manual_seed(0)
    cases = [("energy_distance 2 x 10^4 x 16", 20000, 16, lambda X, Y: energy_distance(X, Y, backend="torch")),
             ("energy_distance 10^4 x 64", 10000, 64, lambda X, Y: energy_distance(X, Y, backend="torch")),
             ("Laplace mmd2_unbiased 10^4 x 16", 10000, 16,
              lambda X, Y: mmd2_unbiased(X, Y, kernel=Laplace(4.0), backend="torch"))]
    rules = ["t = 0 (before)", "NEAR = 64", "NEAR = 4096"]
    for name, n, d, f in cases:
        X, Y = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) + 0.1
        times = {rule: [] for rule in rules}
        for r in range(rounds):
            for rule in (rules if r % 2 == 0 else rules[::-1]):
                use(rule)
                t0 = time.perf_counter()
                f(X, Y)
                times[rule].append(time.perf_counter() - t0)
        ref = min(times["NEAR = 64"])
        print(f"| {name} | " + " | ".join(f"{min(times[r]) / ref:.2f}" for r in rules) + f" | {ref:.3f} s |")


def main(argv=None):
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--seeds", type=int, default=100)
    a.add_argument("--rounds", type=int, default=5)
    args = a.parse_args(argv)
    torch.set_num_threads(2)
    near = blocked.NEAR
    try:
        print("| float32 witness gradient, rel. error vs float64 | median | 90 % | max |")
        print("|---|---|---|---|")
        for rule, e in gradient_errors(args.seeds).items():
            q = statistics.quantiles(e, n=10)
            print(f"| {rule} | {statistics.median(e):.1e} | {q[-1]:.1e} | {max(e):.1e} |")
        print()
        print("| call: time / time at NEAR = 64 | t = 0 (before) | NEAR = 64 | NEAR = 4096 | s at NEAR = 64 |")
        print("|---|---|---|---|---|")
        costs(args.rounds)
    finally:
        blocked.NEAR, blocked._refine_ = near, REFINE


if __name__ == "__main__":
    main()
