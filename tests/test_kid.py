"""KID (mmdkit.kid): the subset protocol against torchmetrics and clean-fid's formulas for the same
subsets, the exact value against the dense float64 oracle, the exact variance against a brute-force
unbiased estimator and against the true variance by enumeration, closed forms, streaming inputs
(memory-mapped .npy, iterators of chunks), the stateful KID, memory, seeds and bad input."""
import itertools
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import mmdkit
from mmdkit import KID, Polynomial, kid
from mmdkit.kernels import TorchBackend
from mmdkit.kernels.reference import kernel_matrix, make_pair, mmd2_reference

F64 = dict(rel=1e-10, abs=1e-12)


def kid_spec(d, degree=3):
    return Polynomial(degree=degree, coef0=1.0).resolve(d)


def dense_matrices(X, Y, spec):
    """float64 K_XX, K_XY, K_YY as numpy arrays (the oracle's kernel matrices)."""
    return tuple(kernel_matrix(A, B, spec).numpy() for A, B in ((X, X), (X, Y), (Y, Y)))


def brute_force_variance(X, Y, spec):
    """Unbiased estimate of Var[MMD^2_u] written independently of kid's algebra: U^2 minus the unbiased
    estimate of (E U)^2, each product of means a mean over distinct indices (explicit loops; tiny n)."""
    Kxx, Kxy, Kyy = dense_matrices(X, Y, spec)
    n, m = len(X), len(Y)
    U = float(mmd2_reference(X, Y, spec))
    perms = lambda k, size: list(itertools.permutations(range(size), k))  # noqa: E731
    mean = lambda terms: sum(terms) / len(terms)  # noqa: E731
    mu2 = lambda K, size: mean([K[i, j] * K[k, q] for i, j, k, q in perms(4, size)])  # noqa: E731
    mu2xy = mean([Kxy[i, j] * Kxy[k, q] for i, k in perms(2, n) for j, q in perms(2, m)])
    mu_aa_ab = lambda Kaa, Kab, na, nb: mean([Kaa[i, j] * Kab[k, q] for i, j, k in perms(3, na)  # noqa: E731
                                              for q in range(nb)])
    off_mean = lambda K, size: (K.sum() - K.trace()) / (size * (size - 1))  # noqa: E731
    square_of_mean = (mu2(Kxx, n) + mu2(Kyy, m) + 4 * mu2xy + 2 * off_mean(Kxx, n) * off_mean(Kyy, m)
                      - 4 * mu_aa_ab(Kxx, Kxy, n, m) - 4 * mu_aa_ab(Kyy, Kxy.T, m, n))
    return U * U - square_of_mean


def torchmetrics_poly_mmd(Kxx, Kxy, Kyy):
    """torchmetrics' maximum_mean_discrepancy (image/kid.py): m = K_XX.shape[0] for every term."""
    m = Kxx.shape[0]
    return ((Kxx.sum() - Kxx.trace()) + (Kyy.sum() - Kyy.trace())) / (m * (m - 1)) - 2 * Kxy.sum() / m**2


def clean_fid_kernel_distance(feats1, feats2, draws):
    """clean-fid's kernel_distance (cleanfid/fid.py) with its np.random.choice draws given: x from feats2,
    y from feats1, k = (x.y / d + 1)^3, t += (sum a - tr a)/(m - 1) - 2 sum b / m, kid = t / subsets / m."""
    n = feats1.shape[1]
    t = 0.0
    for idx2, idx1 in draws:
        x, y = feats2[idx2], feats1[idx1]
        m = len(idx2)
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return t / len(draws) / m


# ----------------------------------------------------------------------------- exact value and variance

EXACT_CASES = [  # (n, m, d): n = 4 (the minimum), n != m, d = 1, d not a power of two, sizes past a tile
    (4, 4, 1), (4, 7, 3), (9, 5, 2), (33, 50, 17), (130, 77, 5), (800, 1100, 6),
]


@pytest.mark.parametrize("n,m,d", EXACT_CASES, ids=[f"{n}x{m}xd{d}" for n, m, d in EXACT_CASES])
def test_exact_value_and_variance_match_dense_float64(n, m, d, budget):
    """Within budget(float64, n + m + d + 4, kid_conditioning(on="entries", norm=1)) (before: F64, 1e-10
    relative, 6e3-4e5x the errors). Measured here: value <= 1.7e-14 relative, 0.28 of its budget; variance
    <= 2.7e-14, 0.30 (the rms conditioning, norm=2, is exceeded 110x: float64 sums round as much as the
    entries)."""
    X, Y = make_pair(n, m, d, shift=0.4, dtype=torch.float64, seed=n + m)
    spec = kid_spec(d)
    r = kid(X, Y, subsets=None)
    cond_value, cond_variance = kid_conditioning(X, Y, spec, on="entries", norm=1)
    terms = n + m + d + 4
    assert r.value == pytest.approx(float(mmd2_reference(X, Y, spec)), rel=budget(torch.float64, terms, cond_value),
                                    abs=0)
    # the variance from the dense float64 sums (the engine's row sums and squared sums, checked)
    Kxx, Kxy, Kyy = dense_matrices(X, Y, spec)
    np.fill_diagonal(Kxx, 0.0)
    np.fill_diagonal(Kyy, 0.0)
    rx, ry, ax, by = Kxx.sum(1), Kyy.sum(1), Kxy.sum(1), Kxy.sum(0)
    sums = (rx.sum(), ry.sum(), ax.sum(), rx @ rx, ry @ ry, ax @ ax, by @ by, rx @ ax, ry @ by,
            (Kxx**2).sum(), (Kyy**2).sum(), (Kxy**2).sum())
    from mmdkit.kid import _variance
    assert r.variance == pytest.approx(_variance(*sums, n, m), rel=budget(torch.float64, terms, cond_variance), abs=0)
    assert r.std == pytest.approx(np.sqrt(max(r.variance, 0.0)), rel=1e-15)  # can be < 0 at n = 4
    assert (r.method, r.subsets, r.subset_size, r.ddof, r.n, r.m, r.d) == ("exact", None, None, None, n, m, d)
    assert r.subset_values.size == 0 and r.kernel == spec


@pytest.mark.parametrize("n,m,d", [(4, 4, 1), (5, 6, 3), (7, 5, 2)])
def test_exact_variance_equals_a_brute_force_unbiased_estimator(n, m, d):
    """Two derivations of the unbiased variance estimate agree (it is unique: symmetric unbiased)."""
    X, Y = make_pair(n, m, d, shift=0.5, dtype=torch.float64, seed=7 * n + m)
    assert kid(X, Y, subsets=None).variance == pytest.approx(brute_force_variance(X, Y, kid_spec(d)), rel=1e-10)


def test_exact_variance_is_unbiased_by_enumeration():
    """Discrete P and Q: E[variance] over every ordered sample equals Var[MMD^2_u] exactly."""
    px = torch.tensor([[0.0, 1.0], [1.0, 0.5]], dtype=torch.float64)
    py = torch.tensor([[0.2, 0.0], [-1.0, 0.3]], dtype=torch.float64)
    wx, wy, n, m = (0.3, 0.7), (0.6, 0.4), 4, 5
    moments = np.zeros(3)  # E U, E U^2, E variance
    for ix in itertools.product(range(2), repeat=n):
        for iy in itertools.product(range(2), repeat=m):
            p = np.prod([wx[i] for i in ix]) * np.prod([wy[j] for j in iy])
            r = kid(px[list(ix)], py[list(iy)], subsets=None)
            moments += p * np.array([r.value, r.value**2, r.variance])
    EU, EU2, EV = moments
    assert EV == pytest.approx(EU2 - EU**2, rel=1e-10)
    assert EU2 - EU**2 > 0.01  # a variance worth estimating


def opt_mmd_variance(Kxx, Kxy, Kyy):
    """Sutherland et al. 2017's variance estimate for n = m (opt-mmd two_sample/mmd.py, _mmd2_and_variance)."""
    m = Kxx.shape[0]
    rx, ry = Kxx.sum(1) - np.diag(Kxx), Kyy.sum(1) - np.diag(Kyy)
    b, a = Kxy.sum(0), Kxy.sum(1)
    Sx, Sy, Sxy = rx.sum(), ry.sum(), b.sum()
    Qx, Qy, Qxy = (Kxx**2).sum() - np.diag(Kxx) @ np.diag(Kxx), (Kyy**2).sum() - np.diag(Kyy) @ np.diag(Kyy), \
        (Kxy**2).sum()
    return (2 / (m**2 * (m - 1)**2) * (2 * rx @ rx - Qx + 2 * ry @ ry - Qy)
            - (4 * m - 6) / (m**3 * (m - 1)**3) * (Sx**2 + Sy**2)
            + 4 * (m - 2) / (m**3 * (m - 1)**2) * (a @ a + b @ b)
            - 4 * (m - 3) / (m**3 * (m - 1)**2) * Qxy
            - (8 * m - 12) / (m**5 * (m - 1)) * Sxy**2
            + 8 / (m**3 * (m - 1)) * ((Sx + Sy) * Sxy / m - rx @ a - ry @ b))


def test_exact_variance_is_close_to_sutherland_2017_for_n_eq_m():
    """The published (slightly biased) estimator agrees to O(1/n): here within 3 % at n = 300."""
    X, Y = make_pair(300, 300, 16, shift=0.3, dtype=torch.float64, seed=5)
    published = opt_mmd_variance(*dense_matrices(X, Y, kid_spec(16)))
    ours = kid(X, Y, subsets=None).variance
    assert ours == pytest.approx(published, rel=0.03) and ours != pytest.approx(published, rel=1e-6)


def test_closed_form_point_masses():
    """P = delta_p, Q = delta_q, d = 2: KID = k(p,p) + k(q,q) - 2 k(p,q) = 3.375 + 3.375 - 2 = 4.75, spread 0."""
    X = torch.tensor([[1.0, 0.0]] * 12, dtype=torch.float64)
    Y = torch.tensor([[0.0, 1.0]] * 9, dtype=torch.float64)
    e = kid(X, Y, subsets=None)
    assert e.value == pytest.approx(4.75, rel=1e-14) and abs(e.variance) < 1e-12
    s = kid(X, Y, subsets=5, subset_size=6, seed=0)
    assert s.value == pytest.approx(4.75, rel=1e-14) and s.std < 1e-12


def test_closed_form_linear_kernel():
    """degree 1: MMD^2_u = gamma [(n^2 |xbar|^2 - sum |x_i|^2) / (n(n-1)) + (same for y) - 2 xbar.ybar]."""
    X, Y = make_pair(50, 31, 3, shift=1.0, dtype=torch.float64)
    u = lambda A: (len(A) ** 2 * A.mean(0).square().sum() - A.square().sum()) / (len(A) * (len(A) - 1))  # noqa: E731
    ref = float(u(X) + u(Y) - 2 * X.mean(0) @ Y.mean(0)) / 3
    assert kid(X, Y, subsets=None, degree=1).value == pytest.approx(ref, **F64)


def test_exact_float32_within_its_error_budget(budget):
    """float32 features on the torch engine: float32 kernel values (a 64-term dot and 4 more roundings each)
    summed in float64 (kid's V columns are float64), so the budget is 2 u sqrt(64 + 4) times the conditioning
    on the kernel values (tests/conftest.py; 1.19 for the value, 0.22 for the variance here): 1.2e-6 and
    2.2e-7. Measured here: value 2.8e-7, variance 7.7e-10 (the variance's cancellations are finer than the
    rms model sees); plain dense float32 torch's value (float32 sums of 1.2e6 terms) errs 2.5e-6."""
    X, Y = make_pair(700, 500, 64, shift=0.2, dtype=torch.float32)
    spec = kid_spec(64)
    ref = float(mmd2_reference(X, Y, spec))
    r = kid(X, Y, subsets=None)
    ref_var = kid(X.double(), Y.double(), subsets=None).variance
    cond_value, cond_variance = kid_conditioning(X, Y, spec, on="entries")
    assert r.value == pytest.approx(ref, rel=budget(torch.float32, 64 + 4, cond_value), abs=0)
    assert r.variance == pytest.approx(ref_var, rel=budget(torch.float32, 64 + 4, cond_variance), abs=0)


def test_exact_goes_through_one_engine_sweep(monkeypatch):
    """One kernel_matmuls (k and k^2 on each dot tile, 2 indicator columns) on the pooled sample, nothing else."""
    calls = []
    kms = TorchBackend.kernel_matmuls
    monkeypatch.setattr(TorchBackend, "kernel_matmuls", lambda self, X, Y, V, kernels, exclude_diagonal=False: (
        calls.append(("kernel_matmuls", X.shape, Y, V.shape, tuple(k.degree for k in kernels), exclude_diagonal))
        or kms(self, X, Y, V, kernels, exclude_diagonal)))
    for name in ("kernel_matmul", "block_sums", "permutation_sums"):
        monkeypatch.setattr(TorchBackend, name, lambda *a, **k: calls.append("other"))
    X, Y = make_pair(30, 20, 4)
    kid(X, Y, subsets=None)
    assert calls == [("kernel_matmuls", (50, 4), None, (50, 2), (3, 6), True)]


def test_exact_memory_has_no_n_by_m_matrix(tmp_path):
    """n = m = 4000, d = 16: a dense n x m float32 matrix is 61 MiB (float64: 122); the peak RSS grows less."""
    code = """if True:
        import json, torch
        from pathlib import Path
        import mmdkit
        torch.set_num_threads(1)
        peak = lambda: next(int(l.split()[1]) / 1024 for l in Path("/proc/self/status").read_text().splitlines()
                            if l.startswith("VmHWM:"))
        g = torch.Generator().manual_seed(0)
        X, Y = torch.randn(4000, 16, generator=g), torch.randn(4000, 16, generator=g)
        mmdkit.kid(X[:50], Y[:50], subsets=None)
        before = peak()
        mmdkit.kid(X, Y, subsets=None)
        print(json.dumps({"grow_mib": peak() - before}))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["grow_mib"] < 40


# ----------------------------------------------------------------------------- the subset protocol

def test_subsets_match_torchmetrics_after_the_same_global_seed():
    """seed=s draws what torchmetrics' KernelInceptionDistance.compute() draws after torch.manual_seed(s)."""
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    real, fake = make_pair(300, 250, 12, shift=0.3, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will save all extracted features in buffer"
        metric = tm_kid.KernelInceptionDistance(feature=torch.nn.Identity(), subsets=7, subset_size=100)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng():  # the global seed is restored afterwards
        torch.manual_seed(5)
        mean, std = metric.compute()
    r = kid(real, fake, subsets=7, subset_size=100, seed=5)
    assert r.value == pytest.approx(float(mean), **F64) and r.std == pytest.approx(float(std), **F64)
    assert (r.method, r.subsets, r.subset_size, r.ddof) == ("subsets", 7, 100, 0)


def test_subset_indices_reproduce_clean_fid_and_torchmetrics_formulas():
    """clean-fid's draws (np.random.choice, feats2 first) passed as subset_indices give its value; each
    subset value equals torchmetrics' poly_mmd on the same rows (n = m), all in float64."""
    real, fake = make_pair(200, 150, 9, shift=0.25, dtype=torch.float64)
    rs = np.random.RandomState(3)  # clean-fid draws from numpy's legacy global state (np.random.choice)
    draws = []
    for _ in range(6):
        idx_fake = rs.choice(150, 80, replace=False)  # kernel_distance(feats1=real, feats2=fake)
        idx_real = rs.choice(200, 80, replace=False)
        draws.append((idx_fake, idx_real))
    ref = clean_fid_kernel_distance(real.numpy(), fake.numpy(), draws)
    r = kid(real, fake, subset_indices=[(ir, jf) for jf, ir in draws])
    assert r.value == pytest.approx(ref, **F64)
    assert (r.subsets, r.subset_size) == (6, 80)
    spec = kid_spec(9)
    for (jf, ir), v in zip(draws, r.subset_values):
        Kxx, Kxy, Kyy = dense_matrices(real[ir], fake[jf], spec)
        assert v == pytest.approx(torchmetrics_poly_mmd(Kxx, Kxy, Kyy), **F64)
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    jf, ir = draws[0]
    assert r.subset_values[0] == pytest.approx(float(tm_kid.poly_mmd(real[ir], fake[jf])), **F64)


def test_n_ne_m_follows_the_u_statistic_not_torchmetrics_poly_mmd():
    """torchmetrics' poly_mmd divides every sum by the first sample's size: wrong for n != m."""
    X, Y = make_pair(40, 25, 6, shift=0.5, dtype=torch.float64)
    spec = kid_spec(6)
    ref = float(mmd2_reference(X, Y, spec))
    assert kid(X, Y, subsets=None).value == pytest.approx(ref, **F64)
    unequal = kid(X, Y, subset_indices=[(np.arange(40), np.arange(25))])
    assert unequal.value == pytest.approx(ref, **F64) and unequal.subset_size is None
    wrong = torchmetrics_poly_mmd(*dense_matrices(X, Y, spec))
    assert abs(wrong - ref) > 0.05 * abs(ref)
    tm_kid = pytest.importorskip("torchmetrics.image.kid")
    assert float(tm_kid.poly_mmd(X, Y)) == pytest.approx(wrong, **F64)


def test_subset_values_and_summary():
    real, fake = make_pair(120, 90, 5, shift=0.3, dtype=torch.float64)
    r = kid(real, fake, subsets=4, subset_size=30, seed=1)
    g = torch.Generator().manual_seed(1)
    spec = kid_spec(5)
    for v in r.subset_values:
        ri, fi = torch.randperm(120, generator=g)[:30], torch.randperm(90, generator=g)[:30]
        assert v == pytest.approx(float(mmd2_reference(real[ri], fake[fi], spec)), **F64)
    assert r.value == pytest.approx(r.subset_values.mean(), rel=1e-15)
    assert r.std == pytest.approx(r.subset_values.std(ddof=0), rel=1e-12)


def test_seeds_reproduce():
    real, fake = make_pair(100, 80, 4, shift=0.2)
    a, b = (kid(real, fake, subsets=5, subset_size=40, seed=9) for _ in range(2))
    assert np.array_equal(a.subset_values, b.subset_values) and a.value == b.value
    assert kid(real, fake, subsets=5, subset_size=40, seed=10).value != a.value
    c = kid(real, fake, subsets=5, subset_size=40, seed=torch.Generator().manual_seed(9))
    d = kid(real, fake, subsets=5, subset_size=40, seed=np.random.default_rng(9))
    assert c.value == a.value and np.isfinite(d.value)
    assert kid(real.numpy(), fake.numpy(), subsets=5, subset_size=40, seed=9).value == a.value


def test_gan_metric_is_mmdkit_kid():
    from mmdkit.gan.metrics import kid as gan_kid
    X, Y = make_pair(60, 70, 2, shift=0.5)
    assert gan_kid(X, Y, n_subsets=3, subset_size=1000, generator=torch.Generator().manual_seed(2)) == \
        kid(X, Y, subsets=3, subset_size=60, seed=torch.Generator().manual_seed(2)).value


# ----------------------------------------------------------------------------- streamed inputs

def test_memory_mapped_npy_gives_the_in_memory_values(tmp_path):
    real, fake = make_pair(300, 200, 7, shift=0.3, dtype=torch.float32)
    np.save(tmp_path / "real.npy", real.numpy())
    np.save(tmp_path / "fake.npy", fake.numpy())
    mr, mf = (np.load(tmp_path / f"{s}.npy", mmap_mode="r") for s in ("real", "fake"))
    assert isinstance(mr, np.memmap)
    for subsets in (None, 6):
        a = kid(mr, mf, subsets=subsets, subset_size=50, seed=4)
        b = kid(real, fake, subsets=subsets, subset_size=50, seed=4)
        assert a.value == b.value and a.std == b.std
    with pytest.raises(ValueError, match="subset_size"):
        kid(mr, mf, subsets=2, subset_size=201, seed=0)


def test_memory_mapped_rows_are_checked(tmp_path):
    real, fake = make_pair(60, 50, 3, dtype=torch.float64)
    bad = real.numpy().copy()
    bad[17, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    mm = np.load(tmp_path / "bad.npy", mmap_mode="r")
    with pytest.raises(ValueError, match="`real` contains 1 NaN"):
        kid(mm, fake, subsets=None)
    with pytest.raises(ValueError, match="`real` contains 1 NaN"):
        kid(mm, fake, subset_indices=[(np.arange(10, 20), np.arange(10))])
    assert np.isfinite(kid(mm, fake, subset_indices=[(np.arange(10), np.arange(10))]).value)  # row 17 unread


def test_iterators_of_chunks_give_the_whole_sample_values():
    real, fake = make_pair(230, 170, 5, shift=0.3, dtype=torch.float64)
    chunks = lambda A, step: (A[i:i + step] for i in range(0, len(A), step))  # noqa: E731
    for subsets in (None, 5):
        a = kid(chunks(real, 64), chunks(fake.numpy(), 50), subsets=subsets, subset_size=60, seed=2)
        b = kid(real, fake, subsets=subsets, subset_size=60, seed=2)
        assert a.value == b.value and a.variance == b.variance and (a.n, a.m) == (230, 170)
    mixed = kid(chunks(real.float(), 100), fake, subsets=None)  # float32 chunks with float64: promoted
    assert mixed.value == pytest.approx(kid(real.float().double(), fake, subsets=None).value, **F64)


def test_stateful_kid():
    real, fake = make_pair(150, 130, 6, shift=0.3, dtype=torch.float64)
    metric = KID(subsets=4, subset_size=50, seed=3)
    metric.update(real=real[:100])
    metric.update(real=real[100:], fake=fake[:70])
    metric.update(fake=fake[70:].numpy())
    r = metric.compute()
    assert r.value == kid(real, fake, subsets=4, subset_size=50, seed=3).value
    assert metric.compute().value == r.value  # an int seed: the same subsets every time
    exact = KID(subsets=None)
    exact.update(real=real, fake=fake)
    assert exact.compute().value == kid(real, fake, subsets=None).value
    keep = KID(subsets=None, reset_real_features=False)
    keep.update(real=real, fake=fake)
    keep.reset()
    keep.update(fake=fake[:60])
    assert keep.compute().value == kid(real, fake[:60], subsets=None).value
    metric.reset()
    with pytest.raises(ValueError, match="no `real` features"):
        metric.compute()
    metric.update(real=real)
    with pytest.raises(ValueError, match="no `fake` features"):
        metric.compute()
    with pytest.raises(ValueError, match="`fake` has 5 columns but the stored features have 6"):
        metric.update(fake=fake[:, :5])
    with pytest.raises(ValueError, match="`fake` contains 1 NaN"):
        metric.update(real=real[:3], fake=torch.tensor([[float("nan")] + [0.0] * 5]))
    assert len(metric.real_features) == 1  # a failed update stores nothing
    with pytest.raises(ValueError, match="give `real`, `fake` or both"):
        metric.update()
    with pytest.raises(ValueError, match="`subset_size` must be at least 2"):
        KID(subset_size=1)
    with pytest.raises(TypeError, match="`reset_real_features`"):
        KID(reset_real_features="no")


# ----------------------------------------------------------------------------- bad input

X8, Y8 = make_pair(8, 6, 3)
BAD = [  # (id, call, error, message)
    ("subset_size>n", lambda: kid(X8, Y8, subsets=3, subset_size=7), ValueError,
     r"`subset_size`=7 exceeds the 6 points of `fake`"),
    ("subset_size<2", lambda: kid(X8, Y8, subset_size=1), ValueError, r"`subset_size` must be at least 2"),
    ("subset_size float", lambda: kid(X8, Y8, subset_size=5.0), TypeError, r"`subset_size` must be an integer"),
    ("subsets=0", lambda: kid(X8, Y8, subsets=0, subset_size=4), ValueError, r"`subsets` must be at least 1"),
    ("subsets bool", lambda: kid(X8, Y8, subsets=True), TypeError, r"`subsets` must be an integer"),
    ("exact n<4", lambda: kid(X8[:3], Y8, subsets=None), ValueError, r"`real` needs at least 4 points"),
    ("d mismatch", lambda: kid(X8, Y8[:, :2], subsets=None), ValueError,
     r"`real` and `fake` must have the same number of columns"),
    ("nan", lambda: kid(X8, Y8.index_fill(0, torch.tensor([2]), float("nan")), subsets=2, subset_size=4),
     ValueError, r"`fake` contains 3 NaN"),
    ("empty", lambda: kid(torch.empty(0, 3), Y8), ValueError, r"`real` is empty"),
    ("3-d", lambda: kid(torch.zeros(4, 2, 2), Y8), ValueError, r"`real` must have shape \(n, d\)"),
    ("strings", lambda: kid(np.array([["a"]]), Y8), TypeError, r"`real` must hold numbers"),
    ("seed", lambda: kid(X8, Y8, subsets=2, subset_size=4, seed=-1), ValueError, r"`seed` must be"),
    ("seed+indices", lambda: kid(X8, Y8, seed=0, subset_indices=[([0, 1], [0, 1])]), ValueError,
     r"`seed` has no effect"),
    ("indices+exact", lambda: kid(X8, Y8, subsets=None, subset_indices=[([0, 1], [0, 1])]), ValueError,
     r"`subset_indices` gives subsets"),
    ("indices range", lambda: kid(X8, Y8, subset_indices=[([0, 1], [0, 6])]), ValueError,
     r"`subset_indices`\[0\] indices of `fake` must lie in \[0, 6\), got 6"),
    ("indices negative", lambda: kid(X8, Y8, subset_indices=[([0, 1], [1, 2]), ([-1, 1], [0, 1])]),
     ValueError, r"`subset_indices`\[1\] indices of `real` must lie in \[0, 8\), got -1"),
    ("indices one point", lambda: kid(X8, Y8, subset_indices=[([0], [0, 1])]), ValueError,
     r"`subset_indices`\[0\] indices of `real` must be a 1-D list of at least 2"),
    ("indices float", lambda: kid(X8, Y8, subset_indices=[([0.0, 1.0], [0, 1])]), TypeError,
     r"indices of `real` must be integers"),
    ("indices not pairs", lambda: kid(X8, Y8, subset_indices=[[0, 1, 2]]), ValueError,
     r"`subset_indices`\[0\] must be a pair"),
    ("indices empty", lambda: kid(X8, Y8, subset_indices=[]), ValueError, r"`subset_indices` is empty"),
    ("indices int", lambda: kid(X8, Y8, subset_indices=3), TypeError, r"`subset_indices` must be a sequence"),
    ("chunks d", lambda: kid(iter([X8, X8[:, :2]]), Y8), ValueError,
     r"`real\[1\]` has 2 columns but `real\[0\]` has 3"),
    ("chunks none", lambda: kid(iter([]), Y8), ValueError, r"`real` is empty: the iterator gave no chunks"),
    ("chunk nan", lambda: kid(X8, iter([Y8, Y8 / 0])), ValueError, r"`fake\[1\]` contains"),
    ("degree", lambda: kid(X8, Y8, degree=0), ValueError, r"`degree` of Polynomial"),
    ("backend", lambda: kid(X8, Y8, subsets=2, subset_size=4, backend="cuda"), ValueError, r"`backend` must be"),
]


@pytest.mark.parametrize("call,error,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_memory_mapped_bad_dtype(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((5, 2), dtype=np.complex64))
    with pytest.raises(TypeError, match="`real` must hold real numbers, got a memory-mapped array of dtype"):
        kid(np.load(tmp_path / "c.npy", mmap_mode="r"), X8[:, :2])
    np.save(tmp_path / "i.npy", np.arange(12).reshape(6, 2))
    ints = kid(np.load(tmp_path / "i.npy", mmap_mode="r"), np.ones((5, 2)), subsets=None)
    assert ints.value == pytest.approx(kid(np.arange(12.0).reshape(6, 2), np.ones((5, 2)), subsets=None).value, **F64)


def test_exported():
    assert {"kid", "KID", "KIDResult"} <= set(mmdkit.__all__)
    assert mmdkit.kid is kid and mmdkit.KID is KID


def kid_conditioning(X, Y, spec, on="rows", norm=2):
    """(value, variance) conditioning of kid's exact path, sqrt(sum_i (df/dp_i p_i)^2) / |f| by float64
    autograd through kid's algebra, over the parts p_i that are rounded independently: ``on="rows"``, the
    row sums R = [K~xx 1, Kxy 1; Kyx 1, K~yy 1] and R2 (of k^2), each a float32 sum of n + m terms (the
    Triton engine's fp32 accumulator); ``on="entries"``, the kernel values k_ij (float32, each from a dot of
    d products and 4 more roundings), summed in float64 (the torch engine with kid's float64 V columns).
    norm=1: sum_i |df/dp_i p_i| / |f|, for float64 where the sums' own roundings (of partial sums bounded by
    that L1 size) count as much as the entries'."""
    from mmdkit.kid import _variance
    n, m = len(X), len(Y)
    Z = torch.cat([X, Y]).double()
    K = kernel_matrix(Z, Z, spec).fill_diagonal_(0.0).requires_grad_(on == "entries")
    V = torch.zeros(n + m, 2, dtype=torch.float64)
    V[:n, 0], V[n:, 1] = 1.0, 1.0
    R, R2 = K @ V, (K * K) @ V
    if on == "rows":
        R, R2 = R.detach().requires_grad_(), R2.detach().requires_grad_()
    Q = torch.stack([R2[:n].sum(0), R2[n:].sum(0)])
    r, a, b, s = R[:n, 0], R[:n, 1], R[n:, 0], R[n:, 1]
    value = r.sum() / (n * (n - 1)) + s.sum() / (m * (m - 1)) - 2 * a.sum() / (n * m)
    variance = _variance(r.sum(), s.sum(), a.sum(), r @ r, s @ s, a @ a, b @ b, r @ a, s @ b,
                         Q[0, 0], Q[1, 1], Q[0, 1], n, m)
    parts = (K,) if on == "entries" else (R, R2)
    out = []
    for f in (value, variance):
        grads = torch.autograd.grad(f, parts, retain_graph=True, allow_unused=True)
        scaled = [(p * g).detach().flatten() for p, g in zip(parts, grads) if g is not None]
        out.append(float(torch.cat(scaled).norm(p=norm) / f.detach().abs()))
    return tuple(out)


def test_exact_on_the_triton_backend_equals_the_torch_engine(budget):
    """Interpreter-mode Triton (one launch per kernel) against the blocked engine, float32 features
    (this failed before: the Triton engine refused the float64 indicator columns)."""
    pytest.importorskip("triton")
    X, Y = make_pair(24, 19, 5)
    t, b = kid(X, Y, subsets=None, backend="triton"), kid(X, Y, subsets=None, backend="torch")
    assert t.backend == "triton" and b.backend == "torch"
    # Each engine against the float64 value (tested against the dense oracle above), within its own
    # error budget (tests/conftest.py): row sums of n + m = 43 float32 terms (Triton's fp32 accumulator;
    # the torch engine's float64 one over float32 kernel values errs less: entry model 6.4e-7 / 5.5e-7),
    # 2 u sqrt(43) = 7.9e-7, times the conditioning of value / variance on the row sums (5.1 / 4.5):
    # 4.0e-6 / 3.5e-6. Measured relative errors here: value 6.0e-7 (Triton) and 5.2e-7 (torch),
    # variance 4.3e-7 (Triton) and 3.1e-7 (torch); 4.3e-7 on a Zen 4 (AVX-512) machine. Neither engine's
    # float32 sums are "the closer ones": that depends on the summation order, not on the arithmetic.
    r = kid(X.double(), Y.double(), subsets=None, backend="torch")
    cond_value, cond_variance = kid_conditioning(X, Y, kid_spec(5), on="rows")
    for res in (t, b):
        assert res.value == pytest.approx(r.value, rel=budget(torch.float32, 24 + 19, cond_value), abs=0)
        assert res.variance == pytest.approx(r.variance, rel=budget(torch.float32, 24 + 19, cond_variance), abs=0)
