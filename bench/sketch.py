"""The blocked sketch: issue 16's plain-torch baseline (a baseline to measure against, not an engine).

What a careful engineer writes by hand in about 30 lines: centre the pooled
sample, sweep the upper tiles of XX and YY and all tiles of XY with one addmm
per tile, apply the kernel in place, sum each tile in float32 and the tiles in
float64. No cusp handling, no gradients, no validation: only the speed the
engine has to match (bench/RESULTS.md, "Engine against the blocked sketch").
"""
import torch

TILE = 1024


def block_sum(A, B, kernel_, symmetric):
    """sum_ij k(a_i, b_j); ``symmetric`` (A is B): upper tiles only, off-diagonal tiles counted twice."""
    a2, b2 = (A * A).sum(1), (B * B).sum(1)
    total = 0.0
    for i in range(0, len(A), TILE):
        for j in range(i if symmetric else 0, len(B), TILE):
            t = torch.addmm(b2[j:j + TILE], A[i:i + TILE], B[j:j + TILE].T, alpha=-2.0)
            t.add_(a2[i:i + TILE, None]).clamp_min_(0.0)  # |a|^2 + |b|^2 - 2 a.b
            total += float(kernel_(t).sum()) * (2 if symmetric and j != i else 1)
    return total


def _three_sums(X, Y, kernel_):
    mean = torch.cat([X, Y]).mean(0)
    X, Y = X - mean, Y - mean
    return block_sum(X, X, kernel_, True), block_sum(Y, Y, kernel_, True), block_sum(X, Y, kernel_, False)


def mmd2_unbiased(X, Y, bandwidth):
    """Gaussian exp(-|x - y|^2 / (2 h^2)) U-statistic (the diagonal, k = 1, subtracted)."""
    n, m = len(X), len(Y)
    sxx, syy, sxy = _three_sums(X, Y, lambda t: t.mul_(-0.5 / bandwidth ** 2).exp_())
    return (sxx - n) / (n * (n - 1)) + (syy - m) / (m * (m - 1)) - 2 * sxy / (n * m)


def energy_distance(X, Y):
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistic)."""
    n, m = len(X), len(Y)
    sxx, syy, sxy = _three_sums(X, Y, lambda t: t.sqrt_())
    return 2 * sxy / (n * m) - sxx / n ** 2 - syy / m ** 2
