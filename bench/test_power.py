"""Smoke test of bench/power.py (seconds): the data generators against their definitions, and a
two-repetition run into a temporary cache that a second invocation resumes instead of redoing."""
import hashlib
import itertools
import json
import math

import numpy as np
import pytest
from scipy import integrate

import power
from mmdkit import mmd_test

# ------------------------------------------------------------------------------- generators


def _blob_effective(c, a=0.03):
    """L' L for L = cholesky([[a, c], [c, a]]), in closed form: the covariance y = z L has."""
    l10, l11 = c / math.sqrt(a), math.sqrt(a - c * c / a)
    return np.array([[a + l10 ** 2, l10 * l11], [l10 * l11, l11 ** 2]])


def _check_blob_moments(Z, blobs, covs, label):
    """Per blob: mean = the grid point, covariance = covs[b], each within 5 standard errors."""
    for b in range(9):
        loc = np.array([b // 3, b % 3], dtype=float)
        pts = Z[blobs == b]
        N, S = len(pts), covs[b]
        se_mean = np.sqrt(np.diag(S) / N)
        assert np.all(np.abs(pts.mean(0) - loc) < 5 * se_mean), (label, b, pts.mean(0))
        se_cov = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S ** 2) / N)  # Var(s_ij) ~ (s_ii s_jj + s_ij^2) / N
        assert np.all(np.abs(np.cov(pts.T) - S) < 5 * se_cov), (label, b, np.cov(pts.T), S)


def test_blob_matches_its_definition():
    n = 3000
    X, Y, bx, by = power.sample_blob(n, seed=123, return_blobs=True)
    assert X.shape == Y.shape == (9 * n, 2)
    N = 9 * n
    for blobs in (bx, by):  # every blob equally likely
        freq = np.bincount(blobs, minlength=9) / N
        assert np.all(np.abs(freq - 1 / 9) < 5 * math.sqrt(1 / 9 * 8 / 9 / N))
    offdiag = [-0.02 - 0.002 * b for b in range(4)] + [0.0] + [0.02 + 0.002 * b for b in range(4)]
    effective = np.array([_blob_effective(c) for c in offdiag])
    _check_blob_moments(X, bx, [0.03 * np.eye(2)] * 9, "X ~ P")
    _check_blob_moments(Y, by, effective, "Y ~ Q")
    np.testing.assert_allclose(power.blob_effective_covariances(), effective, rtol=1e-12, atol=1e-15)
    stated = np.array([[[0.03, c], [c, 0.03]] for c in offdiag])
    np.testing.assert_array_equal(power.blob_covariances(), stated)
    # The reference code's y = z L samples L'L, measurably not the stated Sigma_b (off the centre blob).
    counts = np.bincount(by, minlength=9)
    for b in (0, 3, 5, 8):
        assert abs(np.cov(Y[by == b].T)[0, 0] - 0.03) > 6 * math.sqrt(2 * 0.0433 ** 2 / counts[b])
    # Null rows: Y drawn like X.
    _, Y0, _, by0 = power.sample_blob(n, seed=7, null=True, return_blobs=True)
    _check_blob_moments(Y0, by0, [0.03 * np.eye(2)] * 9, "Y ~ P (null)")
    s = power.settings_of("blob", [10])[0]
    assert [power.data_seed("blob", s, r) for r in (0, 1, 99)] == [20, 31, 1109]  # Liu et al.: 11 k + 10 + n


def _G(t):
    if -1 < t < -0.5:
        return math.exp(-1 / (1 - (4 * t + 3) ** 2))
    if -0.5 < t < 0:
        return -math.exp(-1 / (1 - (4 * t + 1) ** 2))
    return 0.0


def _density(x, p, theta, c=2.7):
    return 1 + c / p * sum(th * _G(p * x - j) for th, j in zip(theta, range(1, p + 1)))


@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_perturbed_uniform_matches_its_density(p):
    seed = 4242
    N = 20000
    X, Y = power.sample_perturbed_uniform(N, p, seed)
    assert X.shape == Y.shape == (N, 1) and X.min() >= 0 and X.max() <= 1
    theta = np.random.RandomState(seed + 1).choice([-1, 1], p)
    np.testing.assert_array_equal(power.perturbation_signs(seed + 1, p), theta)
    cuts = sorted({k / (2 * p) for k in range(2 * p + 1)})  # the bumps' ends and middles
    moment = lambda k, a=0.0, b=1.0: sum(  # noqa: E731
        integrate.quad(lambda x: x ** k * _density(x, p, theta), lo, hi, epsabs=1e-13)[0]
        for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > a and lo < b)
    assert moment(0) == pytest.approx(1, abs=1e-10)
    mean, m2, m3, m4 = (moment(k) for k in (1, 2, 3, 4))
    var = m2 - mean ** 2
    mu4 = m4 - 4 * mean * m3 + 6 * mean ** 2 * m2 - 3 * mean ** 4
    x = X[:, 0]
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / N)
    assert abs(x.var() - var) < 5 * math.sqrt((mu4 - var ** 2) / N)
    # Kolmogorov distance to the density's CDF on a grid (a lower bound of the KS statistic): P(> 1.95/sqrt N) < 0.1 %
    grid = np.linspace(0, 1, 401)
    pieces = [integrate.quad(lambda t: _density(t, p, theta), a, b, points=[c for c in cuts if a < c < b])[0]
              for a, b in zip(grid[:-1], grid[1:])]
    cdf = np.concatenate([[0.0], np.cumsum(pieces)])
    ecdf = np.searchsorted(np.sort(x), grid, side="right") / N
    assert np.max(np.abs(ecdf - cdf)) < 1.95 / math.sqrt(N)
    # Y ~ U[0, 1]
    assert abs(Y.mean() - 0.5) < 5 * math.sqrt(1 / 12 / N)


def _reference_loop(m, p, seed, c=2.7):
    """The reference's scalar rejection loop (sampling.py), restated: candidate x, then level y, per draw."""
    rs = np.random.RandomState(seed)
    if p == 0:
        return rs.uniform(0, 1, (m, 1)), rs.uniform(0, 1, (m, 1))
    theta = np.random.RandomState(seed + 1).choice([-1, 1], p)
    f_max = 1 + c * p ** (-1) * np.exp(-1)
    rej, out = np.random.RandomState(seed + 2), []
    while len(out) < m:
        x = rej.uniform(0, 1, 1)
        y = rej.uniform(0, f_max)
        acc = 0
        for th, j in zip(theta, range(1, p + 1)):
            acc += th * _G(x[0] * p - j)
        if y <= acc * (p ** (-1) * c) + 1:
            out.append(x)
    return np.array(out), rs.uniform(0, 1, (m, 1))


@pytest.mark.parametrize("p", [0, 1, 2, 4])
def test_perturbed_uniform_draws_the_reference_stream(p):
    X, Y = power.sample_perturbed_uniform(60, p, 100010003)
    Xr, Yr = _reference_loop(60, p, 100010003)
    np.testing.assert_array_equal(X, Xr)
    np.testing.assert_array_equal(Y, Yr)


# ---------------------------------------------------------------------------------- harness


def _counting(monkeypatch, name="median"):
    """Wrap METHODS[name] so the test sees how many tests the harness runs."""
    calls = []
    real = power.METHODS[name]

    def call(f, X, Y, seed):
        calls.append(seed)
        return real.call(f, X, Y, seed)

    monkeypatch.setitem(power.METHODS, name, power.Method(name, real.module, real.attr, call, real.describe))
    return calls


def test_run_caches_each_repetition_and_resumes(tmp_path, monkeypatch):
    calls = _counting(monkeypatch)
    cache, out = tmp_path / "cache", tmp_path / "POWER.md"
    out.write_text("# Power\n\nbefore\n<!-- power:perturbed-uniform begin -->\nold\n"
                   "<!-- power:perturbed-uniform end -->\nafter\n")
    args = ["--table", "perturbed-uniform", "--sizes", "20", "--perturbations", "2", "--methods", "median",
            "--cache", str(cache), "--output", str(out)]
    logs = []
    assert power.main(args + ["--reps", "2"], log=logs.append) == 0
    path = cache / "perturbed-uniform" / "median" / "n20-p2.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["rep"] for r in records] == [0, 1] and len(calls) == 2
    for r, rec in enumerate(records):
        assert rec["data_seed"] == int(f"10001{r:04d}")  # generate_seed(1, 0, 0, 0, p - 1 = 1, r)
        digest = hashlib.sha256(f"perturbed-uniform|n20-p2|{r}|test".encode()).digest()
        assert rec["test_seed"] == int.from_bytes(digest[:8], "big") >> 1
        assert rec["n"] == rec["m"] == 20
        X, Y = power.sample_perturbed_uniform(20, 2, rec["data_seed"])
        expected = mmd_test(X, Y, seed=rec["test_seed"], progress=False).pvalue
        assert rec["pvalue"] == pytest.approx(expected, rel=1e-12)
        assert rec["reject"] == (expected <= 0.05)
    # The table between the markers, from the cache; the text around it kept.
    text = out.read_text()
    k = sum(rec["reject"] for rec in records)
    assert f"| 2 | {k / 2:.3f} ± {math.sqrt(k / 2 * (1 - k / 2) / 2):.3f} |" in text
    assert text.startswith("# Power\n\nbefore\n") and text.endswith("after\n") and "\nold\n" not in text
    assert text.count("<!-- power:perturbed-uniform begin -->") == 1 and "--reps 2" in text
    # A second invocation finds both repetitions done.
    before = path.read_bytes()
    assert power.main(args + ["--reps", "2"], log=logs.append) == 0
    assert len(calls) == 2 and path.read_bytes() == before
    assert any("0 test runs to do" in line for line in logs)
    # More repetitions: only the new one runs.
    assert power.main(args + ["--reps", "3", "--no-write"], log=logs.append) == 0
    assert len(calls) == 3 and path.read_bytes().startswith(before)
    # A run killed mid-write leaves a partial line: it is dropped and that repetition redone.
    with open(path, "a") as fh:
        fh.write('{"rep": 3, "data_seed": 1000')
    assert power.main(args + ["--reps", "4", "--no-write"], log=logs.append) == 0
    lines = path.read_text().splitlines()
    assert len(calls) == 4 and [json.loads(line)["rep"] for line in lines] == [0, 1, 2, 3]


def test_unimportable_method_is_skipped(tmp_path, monkeypatch):
    ghost = power.Method("ghost", "mmdkit._no_such_module", "test", lambda f, X, Y, seed: f(X, Y), "absent")
    monkeypatch.setitem(power.METHODS, "ghost", ghost)
    logs, out = [], tmp_path / "POWER.md"
    assert power.main(["--table", "blob", "--sizes", "2", "--reps", "1", "--methods", "ghost",
                       "--cache", str(tmp_path / "c"), "--output", str(out)], log=logs.append) == 0
    assert any(line.startswith("skipping ghost: mmdkit._no_such_module.test is not importable") for line in logs)
    assert not (tmp_path / "c").exists() and "Skipped ghost" in out.read_text()


def test_repetitions_are_balanced_and_seeds_method_independent(tmp_path, monkeypatch):
    order = []
    for name in ("median", "mmdagg"):
        real = power.METHODS[name]
        fake = power.Method(name, real.module, real.attr,
                            lambda f, X, Y, seed, name=name: order.append((name, seed)) or _Result(0.5), "fake")
        monkeypatch.setitem(power.METHODS, name, fake)
    power.main(["--table", "blob", "--sizes", "2", "3", "--reps", "2", "--methods", "median", "mmdagg",
                "--cache", str(tmp_path), "--no-write"], log=lambda *_: None)
    settings = power.settings_of("blob", [2, 3])
    seeds = [power.testing_seed("blob", s, r) for r, s in itertools.product(range(2), settings)]
    assert order == [(m, sd) for sd in seeds for m in ("median", "mmdagg")]  # repetition-major


class _Result:
    def __init__(self, pvalue):
        self.pvalue = pvalue


def test_a_failing_test_is_reported_not_cached(tmp_path, monkeypatch):
    real = power.METHODS["median"]
    flaky = {"fail": True}

    def call(f, X, Y, seed):
        if flaky["fail"]:
            raise FloatingPointError("boom")
        return _Result(0.01)

    monkeypatch.setitem(power.METHODS, "median", power.Method("median", real.module, real.attr, call, "fake"))
    args = ["--table", "blob", "--sizes", "2", "--reps", "2", "--methods", "median", "--cache", str(tmp_path),
            "--no-write"]
    logs = []
    power.main(args, log=logs.append)
    assert sum("FloatingPointError: boom" in line for line in logs) == 2
    assert not (tmp_path / "blob" / "median" / "n2.jsonl").exists()
    flaky["fail"] = False
    power.main(args, log=logs.append)
    recs = [json.loads(line) for line in (tmp_path / "blob" / "median" / "n2.jsonl").read_text().splitlines()]
    assert [(r["rep"], r["reject"], r["pvalue"]) for r in recs] == [(0, True, 0.01), (1, True, 0.01)]
