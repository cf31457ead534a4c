"""cmmd against a dense float64 restatement of google-research's cmmd/distance.py, the dense U-statistic,
closed forms of the bias, the standard error's unbiasedness by simulation, half precision, bad input."""
import math

import numpy as np
import pytest
import torch

from mmdkit import cmmd


def embeddings(n, m, d=768, shift=0.05, dtype=torch.float64, seed=0):
    """Unit-norm rows (as CLIP embeddings are), the second sample's mean direction moved by ``shift``
    (CMMD about 1.2 at the defaults)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) + 1.0
    Y = torch.randn(m, d, generator=g, dtype=torch.float64) + 1.0
    Y[:, : d // 2] += shift * math.sqrt(d)
    X, Y = X / X.norm(dim=1, keepdim=True), Y / Y.norm(dim=1, keepdim=True)
    return X.to(dtype), Y.to(dtype)


def reference_cmmd(x, y, sigma=10.0, scale=1000.0):
    """google-research cmmd/distance.py `mmd`, restated densely in float64 torch (no clamp, diagonals in)."""
    x, y = x.double(), y.double()
    xs, ys = torch.diag(x @ x.T), torch.diag(y @ y.T)
    gamma = 1 / (2 * sigma**2)
    k_xx = torch.exp(-gamma * (-2 * x @ x.T + xs[:, None] + xs[None, :])).mean()
    k_xy = torch.exp(-gamma * (-2 * x @ y.T + xs[:, None] + ys[None, :])).mean()
    k_yy = torch.exp(-gamma * (-2 * y @ y.T + ys[:, None] + ys[None, :])).mean()
    return float(scale * (k_xx + k_yy - 2 * k_xy))


def dense_u(x, y, sigma=10.0, scale=1000.0):
    """The unbiased MMD^2 (diagonals dropped) with the same kernel, dense float64, and the off-diagonal means."""
    k = lambda A, B: torch.exp(-torch.cdist(A.double(), B.double()) ** 2 / (2 * sigma**2))  # noqa: E731
    n, m = len(x), len(y)
    Kxx, Kyy, Kxy = k(x, x), k(y, y), k(x, y)
    mxx = float((Kxx.sum() - Kxx.trace()) / (n * (n - 1)))
    myy = float((Kyy.sum() - Kyy.trace()) / (m * (m - 1)))
    return scale * (mxx + myy - 2 * float(Kxy.mean())), mxx, myy


@pytest.mark.parametrize("n, m", [(400, 300), (2, 3), (1000, 1000)], ids=["400x300", "2x3", "1000x1000"])
def test_default_equals_the_reference_code(n, m):
    """float64: both sum ~(n + m)^2 kernel values near 1 whose difference is CMMD / scale (1.2e-3 here).
    Model: each sum's rounding is at most a random walk of u64 per term relative to the sum, so the
    relative error of CMMD is <= 2 u64 (n + m) / (CMMD / scale) = 2 x 1.1e-16 x 2000 / 1.2e-3 = 3.7e-10
    at 1000 x 1000; the three sums share their points, and their errors largely cancel: measured
    3.6e-13 (400 x 300), 5e-14 (2 x 3), 0 (1000 x 1000). The tolerance 5e-12 is ~14x the largest."""
    X, Y = embeddings(n, m)
    got, ref = cmmd(X, Y), reference_cmmd(X, Y)
    assert got.value == pytest.approx(ref, rel=5e-12, abs=0)
    assert got.std_error is None and not got.unbiased and (got.n, got.m, got.d) == (n, m, 768)
    assert cmmd(X.numpy(), Y.numpy()).value == got.value  # numpy in: the same computation
    assert float(got) == got.value


def test_unbiased_value_and_the_bias_of_the_default():
    """U-statistic against the dense one (float64, same error model as above), and the closed form of the
    V - U difference: scale x ((1 - mean_U k_xx) / n + (1 - mean_U k_yy) / m), exactly in real arithmetic.
    Measured: U 6.7e-13 relative (tolerance 5e-12, the model above); the difference of V and U (each
    within ~5e-13 x 1.2) against the bias (0.13): 1.0e-11 relative (tolerance 1e-10)."""
    X, Y = embeddings(300, 200, shift=0.02)
    u, mxx, myy = dense_u(X, Y)
    got = cmmd(X, Y, unbiased=True)
    assert got.value == pytest.approx(u, rel=5e-12, abs=0) and got.unbiased
    bias = 1000 * ((1 - mxx) / 300 + (1 - myy) / 200)
    assert cmmd(X, Y).value - got.value == pytest.approx(bias, rel=1e-10)
    assert bias > 0.01 * got.value  # the bias matters at this n (the reason for unbiased=True)


def test_standard_error_is_the_spread_of_the_unbiased_value():
    """E[std_error^2] = Var[U] (the estimator is unbiased): over R = 300 independent pairs of samples the
    mean of std_error^2 is within 3 standard errors of the empirical variance of U. The empirical variance
    of R draws has relative s.e. sqrt(2 / (R - 1)) ~ 0.082 (near-normal U), so the band is +-25%; the
    mean of the estimates' own spread is smaller. Measured here: ratio 0.946."""
    R, values, variances = 300, [], []
    for seed in range(R):
        X, Y = embeddings(40, 30, d=8, shift=0.1, seed=seed)
        r = cmmd(X, Y, sigma=0.5, unbiased=True)
        values.append(r.value)
        variances.append(r.std_error ** 2)
    ratio = np.mean(variances) / np.var(values, ddof=1)
    assert abs(ratio - 1) <= 3 * math.sqrt(2 / (R - 1)), ratio


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=["f16", "bf16", "f32"])
def test_low_precision_inputs_within_1e4_of_float64(dtype):
    """Half inputs are computed in float32 with float64 sums. Model: a tile row sums 768 values near 1 in
    float32 (error ~ sqrt(768) u32 x 768), N^2 / 768 row sums add as a random walk, so S carries
    ~ N x 768 u32 absolute error against S ~ N^2; CMMD / scale ~ 2e-3 divides it:
    768 u32 / N / 1.2e-3 = 1.9e-5 at N = 2000 (and the normalisation's rounding). Measured here:
    f16 5.2e-7, bf16 4.0e-6, f32 1.0e-6; the goal is 1e-4 relative."""
    X, Y = embeddings(1000, 1000, dtype=dtype)
    ref = cmmd(X.double(), Y.double())  # the float64 value of the same (rounded) inputs
    got = cmmd(X, Y)
    assert got.value == pytest.approx(ref.value, rel=1e-4, abs=0)
    assert got.value == pytest.approx(ref.value, rel=4e-5, abs=0)  # the model's 1.9e-5, x 2 for the walk's tail


def test_normalize_makes_the_value_independent_of_row_norms():
    X, Y = embeddings(200, 150)
    g = torch.Generator().manual_seed(1)
    Xs, Ys = X * (torch.rand(200, 1, generator=g, dtype=torch.float64) * 5 + 0.1), Y * 3.0
    assert cmmd(Xs, Ys).value == pytest.approx(cmmd(X, Y, normalize=False).value, rel=1e-12)
    assert cmmd(Xs, Ys, normalize=False).value != pytest.approx(cmmd(X, Y).value, rel=1e-3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(sigma=0.0), ValueError, "sigma"), (dict(sigma=-1.0), ValueError, "sigma"),
    (dict(scale=0), ValueError, "scale"), (dict(scale=float("nan")), ValueError, "scale"),
    (dict(unbiased=1), TypeError, "unbiased"), (dict(normalize="yes"), TypeError, "normalize")])
def test_bad_settings_are_named(kwargs, error, match):
    X, Y = embeddings(10, 10, d=4)
    with pytest.raises(error, match=f"`{match}`"):
        cmmd(X, Y, **kwargs)


def test_bad_inputs_are_named():
    X, Y = embeddings(10, 10, d=4)
    with pytest.raises(ValueError, match="`reference` and `evaluated`"):
        cmmd(X, Y[:, :3])
    Z = X.clone()
    Z[3] = 0
    with pytest.raises(ValueError, match="`reference` row 3 is all zeros"):
        cmmd(Z, Y)
    assert math.isfinite(cmmd(Z, Y, normalize=False).value)
    with pytest.raises(ValueError, match="`evaluated`"):
        cmmd(X, Y[:1], unbiased=True)  # the U-statistic needs 2 points per sample
    Y2 = Y.clone()
    Y2[0, 0] = float("nan")
    with pytest.raises(ValueError, match="`evaluated`"):
        cmmd(X, Y2)


def test_accumulator_equals_the_function_on_everything_stored_and_resets():
    from mmdkit import CMMD
    X, Y = embeddings(120, 90, d=16)
    metric = CMMD(unbiased=True, reset_reference=False)
    for a, b in zip(X.split(40), Y.split(30)):
        metric.update(reference=a, evaluated=b)
    once = cmmd(X, Y, unbiased=True)
    assert metric.compute() == once
    metric.reset()
    with pytest.raises(ValueError, match="no `evaluated` embeddings"):
        metric.compute()
    metric.update(evaluated=Y.numpy())
    assert metric.compute() == once  # the reference set was kept
    with pytest.raises(ValueError, match="`evaluated` has 3 columns but the stored embeddings have 16"):
        metric.update(evaluated=Y[:, :3])


def test_cli_json_matches_the_library(tmp_path, capsys):
    import json

    from mmdkit.cli import main
    X, Y = embeddings(150, 100, d=32)
    np.save(tmp_path / "ref.npy", X.numpy())
    np.savetxt(tmp_path / "gen.csv", Y.numpy(), delimiter=",")
    assert main(["cmmd", str(tmp_path / "ref.npy"), str(tmp_path / "gen.csv"), "--unbiased", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lib = cmmd(X, torch.from_numpy(np.loadtxt(tmp_path / "gen.csv", delimiter=",")), unbiased=True)
    assert out["value"] == lib.value and out["std_error"] == lib.std_error and (out["n"], out["m"]) == (150, 100)
    assert main(["cmmd", str(tmp_path / "ref.npy"), str(tmp_path / "gen.csv")]) == 0
    assert "CMMD = " in capsys.readouterr().out
    np.save(tmp_path / "bad.npy", X[:, :5].numpy())
    assert main(["cmmd", str(tmp_path / "ref.npy"), str(tmp_path / "bad.npy")]) == 2
    assert "ref.npy has 32 column(s) but" in capsys.readouterr().err
