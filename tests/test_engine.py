"""The blocked torch engine against the dense float64 oracle (kernels/reference.py).

Tables: kernel specs x shapes x modes (X vs Y, symmetric Y=None, with and
without the diagonal). Tiles are shrunk to 5 x 7 (symmetric 6) so that every
size below is ragged and crosses several tiles; one case runs the default
tiles on sizes that are not multiples of them (the precision budgets use
24 x 20, symmetric 28). float64 must match to 1e-10 (relative, normwise);
float32/float16/bfloat16 are judged by an error budget: at most twice as far
from float64 as plain dense torch at the same precision, forward and backward.
"""

import pytest
import torch

from mmdkit.kernels import blocked
from mmdkit.kernels.blocked import block_sums, kernel_matmul
from mmdkit.kernels.reference import kernel_matrix
from mmdkit.kernels.specs import (
    IMQ, Energy, Gaussian, Laplace, Mixture, Polynomial, RationalQuadratic,
)

SPECS = [
    pytest.param(Gaussian(1.3), id="gaussian"),
    pytest.param(Laplace(0.9), id="laplace"),
    pytest.param(Energy(), id="energy"),
    pytest.param(Energy(exponent=0.5), id="energy-b0.5"),
    pytest.param(Energy(exponent=1.5), id="energy-b1.5"),
    pytest.param(Energy(exponent=0.5, offset=0.2), id="energy-b0.5-offset"),
    pytest.param(RationalQuadratic(1.1, alpha=0.7), id="rq"),
    pytest.param(IMQ(0.8, beta=-0.3), id="imq"),
    pytest.param(Polynomial(), id="poly3-gamma=1/d"),
    pytest.param(Polynomial(degree=2, gamma=0.5, coef0=0.3), id="poly2"),
    pytest.param(Mixture.of(Gaussian, [0.5, 1.0, 2.0]), id="mixture-gaussian"),
    pytest.param(Mixture(components=(Gaussian(0.7), Laplace(1.5), Energy()), weights=(0.5, 2.0, 0.1)),
                 id="mixture-weighted-mixed"),
]

# (n, m, d, p): n = 2, n != m, d = 1, d not a power of two, nothing a multiple of 5, 6 or 7
SHAPES = [
    pytest.param((2, 2, 1, 1), id="n2-m2-d1"),
    pytest.param((2, 5, 3, 1), id="n2-m5-d3"),
    pytest.param((13, 8, 1, 2), id="n13-m8-d1-p2"),
    pytest.param((17, 23, 2, 1), id="n17-m23-d2"),
    pytest.param((19, 11, 3, 3), id="n19-m11-d3-p3"),
    pytest.param((23, 16, 33, 2), id="n23-m16-d33-p2"),
]

MODES = ["xy", "xy-exclude", "sym", "sym-exclude"]

BUDGET = 2.0  # STYLE.md rule 7: at most ~2x the error of dense torch at the same precision


def assert_float64_close(err, size, terms, ref, within_budget):
    """float64 against the dense float64 oracle: the error model (tests/conftest.py) with u64, the parts and
    conditioning of kernel_matmul_parts, for two computations (engine and oracle: terms x 4, twice the walk).
    Measured here: kernel_matmul 3.6e-15 at most (the 777 x 1030 ragged case 9.6e-16), block_sums 2.5e-14."""
    conditioning = float(size.norm() / ref.detach().norm())
    assert within_budget(err, torch.float64, 4 * terms, conditioning), (err, terms, conditioning)


def set_tiles(monkeypatch, rows, cols, sym):
    """Shrink the engine's tiles (read at call time) for the current test."""
    monkeypatch.setattr(blocked, "TILE_ROWS", rows)
    monkeypatch.setattr(blocked, "TILE_COLS", cols)
    monkeypatch.setattr(blocked, "TILE_SYM", sym)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 5 x 7 (symmetric 6) so small inputs have ragged edges and many tiles."""
    set_tiles(monkeypatch, 5, 7, 6)


@pytest.fixture
def medium_tiles(monkeypatch):
    """Tiles of 24 x 20 (symmetric 28): the 61 x 47 and 70-point precision cases span 3 x 3 ragged tiles."""
    set_tiles(monkeypatch, 24, 20, 28)


def rel_err(a, ref):
    """Normwise relative error ||a - ref|| / ||ref||, in float64."""
    a, ref = a.double(), ref.double()
    return float((a - ref).norm() / ref.norm())


def samples(n, m, d, p, mode, gen, dtype=torch.float64):
    """X (n, d), Y (m, d; n rows for "xy-exclude") or None, V (rows, p); distances O(1)."""
    X = torch.randn(n, d, generator=gen, dtype=torch.float64) / d ** 0.5
    Y = None
    if mode.startswith("xy"):
        Y = torch.randn(n if mode == "xy-exclude" else m, d, generator=gen, dtype=torch.float64) / d ** 0.5 + 0.3
    V = torch.randn(n if Y is None else Y.shape[0], p, generator=gen, dtype=torch.float64)
    return X.to(dtype), None if Y is None else Y.to(dtype), V.to(dtype)


def dense_matmul(X, Y, V, kernel, exclude, upcast=True):
    """The oracle: dense K(X, Y) @ V (K(X, X) when Y is None), diagonal zeroed if ``exclude``."""
    K = kernel_matrix(X, X if Y is None else Y, kernel, upcast)
    if exclude:
        K = K * (1 - torch.eye(*K.shape, dtype=K.dtype))
    return K @ (V.double() if upcast else V)


def grads(fn, tensors, G):
    """Gradients of <fn(*tensors), G> wrt each tensor (None stays None)."""
    leaves = [None if t is None else t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    out.backward(G.to(out.dtype))
    return out.detach(), [None if t is None else t.grad for t in leaves]


@pytest.mark.usefixtures("small_tiles")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", SPECS)
def test_kernel_matmul_float64_matches_dense(kernel, shape, mode, gen, within_budget, kernel_matmul_parts):
    n, m, d, p = shape
    X, Y, V = samples(n, m, d, p, mode, gen)
    exclude = mode.endswith("exclude")
    G = torch.randn(n, p, generator=gen, dtype=torch.float64)  # random upstream gradient

    out, (gX, gY, gV) = grads(lambda X, Y, V: kernel_matmul(X, Y, V, kernel, exclude), (X, Y, V), G)
    ref, (rX, rY, rV) = grads(lambda X, Y, V: dense_matmul(X, Y, V, kernel, exclude), (X, Y, V), G)

    assert out.shape == (n, p) and out.dtype == torch.float64
    parts = kernel_matmul_parts(X, Y, V, G, kernel, exclude)
    for got, want, (size, terms) in zip((out, gX, gY, gV), (ref, rX, rY, rV), parts):
        if want is not None:
            assert_float64_close(rel_err(got, want), size, terms, want, within_budget)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kernel", [SPECS[0], SPECS[2], SPECS[7]])
def test_kernel_matmul_default_tiles_ragged(kernel, mode, gen, within_budget, kernel_matmul_parts):
    """Default tiles (512 x 1024, symmetric 768) on sizes that are not multiples of them."""
    n, m = (777, 777) if mode == "xy-exclude" else (777, 1030)
    X, Y, V = samples(n, m, 3, 1, mode, gen)
    exclude = mode.endswith("exclude")
    ref = dense_matmul(X, Y, V, kernel, exclude)
    size, terms = kernel_matmul_parts(X, Y, V, torch.zeros_like(ref), kernel, exclude)[0]
    assert_float64_close(rel_err(kernel_matmul(X, Y, V, kernel, exclude), ref), size, terms, ref, within_budget)


def assert_within_budget(err, plain_err, dtype, size, terms, ref, within_budget):
    """err within the error model's budget (tests/conftest.py: kernel_matmul_parts gives the rms size of each
    element's rounded parts and their count, conditioning = ||size|| / ||ref||), or within BUDGET x plain
    dense torch's error at the same precision where that is larger (a plain result that is not finite,
    overflow, sets no budget). Measured (2-core AVX-512 Xeon, 8 engine lanes): the model is 9-37x the
    error of the forward (float32; float16 / bfloat16, where the output rounding dominates: 4-6x) and 4.5-39x
    that of the gradients (median ~13x); plain float32 torch errs 0.7-2x the engine."""
    conditioning = float(size.norm() / ref.detach().double().norm())
    assert within_budget(err, dtype, terms, conditioning, plain=plain_err, factor=BUDGET), \
        (f"error {err:.3g} > model {terms} terms x conditioning {conditioning:.3g}, "
         f"and > {BUDGET} x plain {plain_err:.3g}")


# (dtype, d, mode) for the error budgets: every dtype meets d = 1 or 3 and d = 17, X vs Y and symmetric
PRECISION_CASES = [
    (torch.float32, 1, "xy"), (torch.float32, 3, "sym-exclude"), (torch.float32, 17, "xy"),
    (torch.float16, 3, "xy"), (torch.float16, 17, "sym-exclude"),
    (torch.bfloat16, 1, "sym-exclude"), (torch.bfloat16, 17, "xy"),
]


def budget_cases(cases=PRECISION_CASES):
    """(kernel, dtype, d, mode) params, readable ids."""
    return [pytest.param(k.values[0], dt, d, mode, id=f"{k.id}-{str(dt)[6:]}-d{d}-{mode}")
            for k in SPECS for dt, d, mode in cases]


@pytest.mark.usefixtures("medium_tiles")
@pytest.mark.parametrize("kernel, dtype, d, mode", budget_cases())
def test_kernel_matmul_low_precision_forward_budget(kernel, dtype, d, mode, gen, within_budget, kernel_matmul_parts):
    """Forward in float32/float16/bfloat16 vs float64 on the same (rounded) points."""
    X, Y, V = samples(61, 47, d, 2, mode, gen, dtype)
    exclude = mode.endswith("exclude")
    out = kernel_matmul(X, Y, V, kernel, exclude)
    ref = dense_matmul(X.double(), None if Y is None else Y.double(), V.double(), kernel, exclude)
    plain = dense_matmul(X, Y, V, kernel, exclude, upcast=False)
    assert out.dtype == dtype and torch.isfinite(out).all()
    size, terms = kernel_matmul_parts(X, Y, V, torch.zeros_like(out), kernel, exclude)[0]
    assert_within_budget(rel_err(out, ref), rel_err(plain, ref), dtype, size, terms, ref, within_budget)


@pytest.mark.usefixtures("medium_tiles")
@pytest.mark.parametrize("kernel, dtype, d, mode", budget_cases())
def test_kernel_matmul_low_precision_backward_budget(kernel, dtype, d, mode, gen, within_budget, kernel_matmul_parts):
    """Backward with a random upstream gradient, judged like the forward."""
    X, Y, V = samples(61, 47, d, 2, mode, gen, dtype)
    exclude = mode.endswith("exclude")
    G = torch.randn(61, 2, generator=gen).to(dtype)
    wide = lambda T: None if T is None else T.double()

    _, (gX, gY, gV) = grads(lambda X, Y, V: kernel_matmul(X, Y, V, kernel, exclude), (X, Y, V), G)
    _, (rX, rY, rV) = grads(lambda X, Y, V: dense_matmul(X, Y, V, kernel, exclude), (wide(X), wide(Y), wide(V)), G)
    _, (pX, pY, pV) = grads(lambda X, Y, V: dense_matmul(X, Y, V, kernel, exclude, upcast=False), (X, Y, V), G)

    assert gX.dtype == dtype and gV.dtype == dtype
    assert torch.isfinite(gX).all() and torch.isfinite(gV).all()
    _, partsX, partsY, partsV = kernel_matmul_parts(X, Y, V, G, kernel, exclude)
    assert_within_budget(rel_err(gV, rV), rel_err(pV, rV), dtype, *partsV, rV, within_budget)
    assert_within_budget(rel_err(gX, rX), rel_err(pX, rX), dtype, *partsX, rX, within_budget)
    if Y is not None:
        assert_within_budget(rel_err(gY, rY), rel_err(pY, rY), dtype, *partsY, rY, within_budget)


# block_sums: consecutive blocks of the pooled sample
BLOCKS = [
    pytest.param((2,), id="one-block-n2"),
    pytest.param((2, 3), id="n2-m3"),
    pytest.param((13, 8), id="n13-m8"),
    pytest.param((7, 1, 11), id="three-blocks-with-a-singleton"),
    pytest.param((17, 23), id="n17-m23"),
]


def block_sums_parts(Z, sizes, G, kernel, exclude, kernel_matmul_parts):
    """Sizes of the rounded parts of S = E^T K E (E the block indicators) and of the gradient of <G, S>: the
    parts of K E (upstream E G) summed over each block's rows; terms: the N points summed twice, plus d + 5."""
    E = torch.nn.functional.one_hot(torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)),
                                    len(sizes)).to(torch.float64)
    (out, terms), (gZ, _), _, _ = kernel_matmul_parts(Z, None, E, E @ G.to(torch.float64), kernel, exclude)
    return (E.T @ out ** 2).sqrt(), gZ, terms + Z.shape[0]


def dense_block_sums(Z, sizes, kernel, exclude):
    """S[a, b] = sum over block a x block b of the dense float64 kernel matrix."""
    K = kernel_matrix(Z, Z, kernel)
    if exclude:
        K = K * (1 - torch.eye(*K.shape, dtype=K.dtype))
    parts = [P.split(sizes, dim=1) for P in K.split(sizes, dim=0)]
    return torch.stack([torch.stack([B.sum() for B in row]) for row in parts])


@pytest.mark.usefixtures("small_tiles")
@pytest.mark.parametrize("exclude", [False, True], ids=["with-diagonal", "exclude-diagonal"])
@pytest.mark.parametrize("d", [1, 5])
@pytest.mark.parametrize("sizes", BLOCKS)
@pytest.mark.parametrize("kernel", SPECS)
def test_block_sums_float64_matches_dense(kernel, sizes, d, exclude, gen, within_budget, kernel_matmul_parts):
    Z = torch.randn(sum(sizes), d, generator=gen, dtype=torch.float64) / d ** 0.5
    Z[sum(sizes[:1]):] += 0.4  # the second block is shifted
    G = torch.randn(len(sizes), len(sizes), generator=gen, dtype=torch.float64)

    S, (gZ,) = grads(lambda Z: block_sums(Z, sizes, kernel, exclude), (Z,), G)
    ref, (rZ,) = grads(lambda Z: dense_block_sums(Z, sizes, kernel, exclude), (Z,), G)

    assert S.shape == (len(sizes), len(sizes)) and S.dtype == torch.float64
    size_S, size_gZ, terms = block_sums_parts(Z, sizes, G, kernel, exclude, kernel_matmul_parts)
    # S_ab and S_ba are two sums of the same parts: each within the float64 model of the other
    asym = float((S - S.T).norm() / S.norm())
    assert within_budget(asym, torch.float64, 4 * terms, float(size_S.norm() / S.norm())), asym
    assert_float64_close(rel_err(S, ref), size_S, terms, ref, within_budget)
    assert_float64_close(rel_err(gZ, rZ), size_gZ, terms, rZ, within_budget)


POOLED_CASES = [(torch.float32, 3, "pooled"), (torch.float16, 17, "pooled"), (torch.bfloat16, 3, "pooled")]


@pytest.mark.usefixtures("medium_tiles")
@pytest.mark.parametrize("kernel, dtype, d, mode", budget_cases(POOLED_CASES))
def test_block_sums_low_precision_budget(kernel, dtype, d, mode, gen, within_budget, kernel_matmul_parts):
    """Sums (float64 out) and gradient from low-precision input vs float64 on the same points."""
    sizes = (41, 29)
    Z = (torch.randn(70, d, generator=gen, dtype=torch.float64) / d ** 0.5).to(dtype)
    G = torch.randn(2, 2, generator=gen, dtype=torch.float64)

    S, (gZ,) = grads(lambda Z: block_sums(Z, sizes, kernel, True), (Z,), G)
    ref, (rZ,) = grads(lambda Z: dense_block_sums(Z, sizes, kernel, True), (Z.double(),), G)

    def plain_sums(Z):  # plain torch at the input precision
        K = kernel_matrix(Z, Z, kernel, upcast=False) * (1 - torch.eye(70, dtype=dtype))
        return torch.stack([torch.stack([B.sum() for B in row.split(sizes, 1)]) for row in K.split(sizes, 0)])
    plain, (pZ,) = grads(plain_sums, (Z,), G)

    assert S.dtype == torch.float64 and gZ.dtype == dtype and torch.isfinite(gZ).all()
    size_S, size_gZ, terms = block_sums_parts(Z, sizes, G, kernel, True, kernel_matmul_parts)
    assert_within_budget(rel_err(S, ref), rel_err(plain, ref), torch.float32, size_S, terms, ref, within_budget)
    assert_within_budget(rel_err(gZ, rZ), rel_err(pZ, rZ), dtype, size_gZ, terms, rZ, within_budget)


@pytest.mark.parametrize("kernel", [SPECS[1], SPECS[2], SPECS[3]])
@pytest.mark.parametrize("d", [1, 4])
def test_duplicate_points_have_zero_finite_gradient(kernel, d, gen):
    """|x - y| has no gradient at x = y; the engine (like the oracle) uses 0 there, never NaN."""
    a = torch.randn(3, d, generator=gen, dtype=torch.float64)
    X = torch.cat([a, a[:1], a[:2]])  # rows 0/3 and 0,1/4,5 coincide
    Y = torch.cat([a[1:], a[:1]])     # every row of Y is also a row of X
    V = torch.randn(Y.shape[0], 1, generator=gen, dtype=torch.float64)
    G = torch.randn(X.shape[0], 1, generator=gen, dtype=torch.float64)
    _, (gX, gY, _) = grads(lambda X, Y, V: kernel_matmul(X, Y, V, kernel), (X, Y, V), G)
    _, (rX, rY, _) = grads(lambda X, Y, V: dense_matmul(X, Y, V, kernel, False), (X, Y, V), G)
    assert torch.isfinite(gX).all() and torch.isfinite(gY).all()
    assert rel_err(gX, rX) <= 1e-7 and rel_err(gY, rY) <= 1e-7
    # all points identical: every pair is coincident, so the gradient is exactly zero
    Z = torch.ones(5, d, dtype=torch.float64, requires_grad=True)
    block_sums(Z, (2, 3), kernel, False).sum().backward()
    assert torch.equal(Z.grad, torch.zeros_like(Z))


@pytest.mark.usefixtures("small_tiles")
def test_kernel_matmul_centred_far_from_origin_float32(gen):
    """Centring the pooled sample keeps float32 accurate for points around 1e4."""
    X, Y, V = samples(31, 17, 5, 2, "xy", gen)
    X, Y = X + 1e4, Y + 1e4
    X32, Y32, V32 = X.float(), Y.float(), V.float()
    out = kernel_matmul(X32, Y32, V32, Gaussian(1.0))
    ref = dense_matmul(X32.double(), Y32.double(), V32.double(), Gaussian(1.0), False)
    assert rel_err(out, ref) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel", [Gaussian(0.05), Laplace(0.01), Mixture.of(Gaussian, [0.01, 0.1])], ids=str)
def test_underflowing_kernel_values_are_floored_not_wrong(kernel, dtype, gen):
    """Small bandwidths on spread points: exp arguments far below log(tiny) (the slow path
    of torch's exp) are clamped; values and gradients still match the dense float64 formula."""
    X = torch.randn(40, 2, generator=gen, dtype=torch.float64) * 3   # d = 2: direct differences
    Y = torch.randn(30, 2, generator=gen, dtype=torch.float64) * 3
    Y[:5] = X[:5] + 0.01  # a few close pairs carry the sums
    V = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    G = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    out, (gx,) = grads(lambda X: kernel_matmul(X, Y.to(dtype), V.to(dtype), kernel), (X.to(dtype),), G.to(dtype))
    ref, (rx,) = grads(lambda X: kernel_matrix(X, Y, kernel) @ V, (X,), G)
    tiny = torch.finfo(dtype).tiny
    assert float((kernel_matrix(X, Y, kernel) < tiny).double().mean()) > 0.25   # many underflow
    assert torch.isfinite(out).all() and torch.isfinite(gx).all()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert rel_err(out.double(), ref) <= tol and rel_err(gx.double(), rx) <= tol


@pytest.mark.usefixtures("small_tiles")
@pytest.mark.parametrize("mode", MODES)
def test_kernel_matmuls_equal_one_kernel_matmul_per_kernel(mode, gen, within_budget, kernel_matmul_parts):
    """Several kernels of one tile in one sweep (KID's k and k^2): each slice equals kernel_matmul."""
    X, Y, V = samples(13, 17, 4, 2, mode, gen)
    exclude = mode.endswith("exclude")
    for kernels in [(Gaussian(0.7), Laplace(1.2), RationalQuadratic(0.9)), (Polynomial(), Polynomial().square())]:
        got = blocked.kernel_matmuls(X, Y, V, kernels, exclude)
        assert got.shape == (len(kernels), 13, 2) and got.dtype == torch.float64
        for s, kernel in enumerate(kernels):
            ref = dense_matmul(X, Y, V, kernel, exclude)
            size, terms = kernel_matmul_parts(X, Y, V, torch.zeros_like(ref), kernel, exclude)[0]
            assert_float64_close(rel_err(got[s], ref), size, terms, ref, within_budget)


def test_kernel_matmuls_refuses_mixed_tiles_and_gradients(gen):
    X, Y, V = samples(5, 6, 2, 1, "xy", gen)
    with pytest.raises(ValueError, match="one kind and one norm"):
        blocked.kernel_matmuls(X, Y, V, (Gaussian(1.0), Polynomial()))
    with pytest.raises(NotImplementedError, match="no gradient"):
        blocked.kernel_matmuls(X.requires_grad_(), Y, V, (Gaussian(1.0),))


# measured 5.1e-13 / 4.4e-13 (Gaussian) and 9.7e-11 / 3.5e-11 (Laplace: the norm expansion's rounding of the
# close pairs' t, 1.0e-10 without the fold); the tolerances are ~3x those
@pytest.mark.parametrize("kernel, tol", [(Gaussian(0.05), 1.5e-12), (Laplace(0.002), 3e-10)], ids=str)
def test_underflowing_values_on_folded_tiles_float64(kernel, tol, gen):
    """d = 17: the Gaussian and L2 Laplace evaluate exp2 of the tile with their scale folded into the
    matmul's factors (KernelSpec.fold); the floor at the smallest normal float holds there too."""
    X = torch.randn(40, 17, generator=gen, dtype=torch.float64)
    Y = torch.randn(30, 17, generator=gen, dtype=torch.float64)
    Y[:5] = X[:5] + 0.003  # a few close pairs carry the sums
    V = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    G = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    assert blocked._fold_of(kernel, 17) is not None
    out, (gx,) = grads(lambda X: kernel_matmul(X, Y, V, kernel), (X,), G)
    ref, (rx,) = grads(lambda X: kernel_matrix(X, Y, kernel) @ V, (X,), G)
    assert float((kernel_matrix(X, Y, kernel) < torch.finfo(torch.float64).tiny).double().mean()) > 0.25
    assert torch.isfinite(out).all() and torch.isfinite(gx).all()
    assert rel_err(out, ref) <= tol and rel_err(gx, rx) <= tol


def test_cusp_rule_is_the_same_with_and_without_the_cpu_shortcut(gen):
    """_t_tile skips the close-pair check on CPU tiles with no pair below the threshold; with or
    without close and coincident pairs, the tile equals the rule applied to every pair: the
    expansion, except t from direct differences where it is below NEAR times its rounding bound."""
    X = torch.randn(50, 9, generator=gen)
    for Y in (torch.randn(60, 9, generator=gen) + 2.0,        # no close pairs: the shortcut
              torch.cat([X[:7], X[7:20] + 1e-4, torch.randn(40, 9, generator=gen)])):  # coincident and close
        for fold in (None, 0.37):  # the factors of an unfolded kernel, and of one folding its scale
            L, R = blocked._factors(X, Y, "distance", "l2", fold)
            t = L @ R.T
            tol = (L[:, -2:-1] + (fold or 1.0) * R[:, -1].max()) * blocked._near_scale(L)
            direct = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(2) * (fold or 1.0)
            expected = torch.where(t <= tol, direct, t)
            pairs = torch.zeros(50, 60, dtype=torch.bool)
            pairs.diagonal(7).fill_(True)
            on_diagonal = torch.where((t <= tol) & ~pairs, direct, t)
            on_diagonal.diagonal(7).zero_()  # a tile holding pairs (i, i) at offset 7: zeroed, kept out of the check
            # the tile's own bound, and a sweep's bound over more (larger) rows than the tile's
            for bound in (None, blocked._cusp_bound(torch.cat([L, 3 * L]), R, "distance", True, fold)):
                got = blocked._t_tile(L, R, "distance", True, None, "l2", fold, bound, (X, Y))
                assert torch.equal(got, expected)
                got = blocked._t_tile(L, R, "distance", True, 7, "l2", fold, bound, (X, Y))
                assert torch.equal(got, on_diagonal)
            if Y.shape[0] != 60:
                assert (expected[:7, :7].diagonal() == 0).all()  # coincident: exactly 0
                assert (t <= tol)[7:20, 7:20].diagonal().all()   # close: refined


def _errors_against_float64(X, Y, V, kernel):
    """rel_err of kernel_matmul(X, Y, V) and of its gradient in X (G = 1) against dense float64 autograd."""
    G = torch.ones(X.shape[0], V.shape[1], dtype=torch.float64)
    out, (gx,) = grads(lambda X: kernel_matmul(X, Y, V, kernel), (X,), G)
    ref, (rx,) = grads(lambda X: kernel_matrix(X, Y.double(), kernel) @ V.double(), (X.double(),), G)
    return rel_err(out, ref), rel_err(gx, rx)


@pytest.mark.parametrize("kernel", [Energy(exponent=0.5), Laplace(bandwidth=0.5)], ids=["energy", "laplace"])
def test_close_pairs_of_a_cusp_kernel_keep_their_distance_and_gradient(kernel, gen):
    """Points 1e-4 apart at d = 16 in float32: the expansion's t is all rounding there (its bound
    ~1e-5 |x|^2 against t ~ 1e-7); close pairs come from direct differences, so Energy(0.5)'s
    value and its gradient, whose derivative t^(-3/4) weights these pairs most, follow float64.
    Measured (Energy(0.5)): value 8e-7 (dense float32: 7e-7), gradient 1e-3, which is the float32
    rounding of the centring and of x_i sum_j k'_ij - sum_j k'_ij y_j at |x - y| ~ 1e-4 |x|; before
    the refinement close pairs got t = 0: value 1e-2, gradient 1.0 (all of it lost). Laplace(0.5),
    whose scale is folded into the factors: value 9e-8, gradient 7e-4."""
    X = torch.randn(40, 16, generator=gen) * 0.3 + 0.2
    Y = torch.cat([X[:20] + 1e-4 * torch.randn(20, 16, generator=gen), torch.randn(30, 16, generator=gen) * 0.3])
    V = torch.randn(50, 1, generator=gen, dtype=torch.float64).float()
    value_err, grad_err = _errors_against_float64(X, Y, V, kernel)
    assert value_err <= 2.5e-6 and grad_err <= 3e-3


@pytest.mark.parametrize("kernel, value_tol, grad_tol",
                         [(Energy(exponent=0.5), 4e-7, 4e-3), (Laplace(bandwidth=1e-3), 4e-5, 3e-3)],
                         ids=["energy", "laplace"])
def test_clustered_close_pairs_take_the_tile_of_differences(kernel, value_tol, grad_tol, monkeypatch):
    """Two tight clusters (spread 1e-4) at d = 16: most pairs of a tile are close, so _refine_ takes
    the whole tile of differences (checked) instead of gathering pairs; Laplace folds its scale into
    the factors, so the refined t must carry the fold too. Measured: Energy(0.5) value 1.2e-7,
    gradient 1.2e-3; Laplace(1e-3) 1.3e-5, 9.1e-4 (with the fold dropped: 0.71 and 2.5e3)."""
    paths = []
    refine = blocked._refine_

    def spy(t, near, X, Y, fold):
        paths.append(int(near.sum()) * X.shape[1] > t.numel())
        refine(t, near, X, Y, fold)

    monkeypatch.setattr(blocked, "_refine_", spy)
    g = torch.Generator().manual_seed(0)
    c = torch.randn(1, 16, generator=g)
    X = torch.cat([c, -c]).repeat(20, 1) + 1e-4 * torch.randn(40, 16, generator=g)
    Y = torch.cat([c, -c]).repeat(15, 1) + 1e-4 * torch.randn(30, 16, generator=g)
    V = torch.randn(30, 1, generator=g)
    value_err, grad_err = _errors_against_float64(X, Y, V, kernel)
    assert paths and all(paths)  # every refined tile took the tile of differences
    assert value_err <= value_tol and grad_err <= grad_tol


@pytest.mark.parametrize("kernel", [Energy(), Energy(exponent=0.5), Energy(exponent=1.5), Gaussian(1.3), Laplace(0.7)],
                         ids=repr)
def test_row_sums_equal_the_sums_of_the_evaluated_tile(kernel, gen):
    """KernelSpec.row_sums_ (the forward of block_sums) is bit for bit the row sums of evaluate_."""
    t = torch.rand(70, 90, generator=gen) * 5
    t[:3, :3] = 0.0  # coincident pairs
    folded = kernel.fold() is not None
    evaluate = kernel.evaluate_folded_ if folded else kernel.evaluate_
    assert torch.equal(kernel.row_sums_(t.clone(), folded), evaluate(t.clone())[0].sum(1))
