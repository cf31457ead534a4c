"""The Triton engine under TRITON_INTERPRET=1 (set by conftest.py) on CPU tensors.

Every kernel x dtype, forward and backward with random upstream gradients,
against the dense float64 oracle (kernels/reference.py) and the blocked torch
engine, on ragged shapes (n, m, d, p not multiples of the interpreter's
32 x 16 tiles; d = 1; n = 2; d above the 32-wide d tile). The launchers fill
their outputs with NaN before the kernels run, so an element a kernel never
writes shows as NaN; every result is checked finite.
"""
import numpy as np
import pytest
import torch

import mmdkit
from mmdkit.kernels import blocked, triton_engine as te
from mmdkit.kernels.reference import kernel_matrix, mmd2_reference
from mmdkit.kernels.specs import (
    IMQ, Energy, Gaussian, KernelSpec, Laplace, Mixture, Polynomial, RationalQuadratic,
)

KERNELS = {
    "gaussian": Gaussian(bandwidth=1.3),
    "laplace": Laplace(bandwidth=2.0),
    "energy": Energy(),
    "energy-b0.7": Energy(exponent=0.7),
    "rq": RationalQuadratic(bandwidth=1.1, alpha=2.0),
    "imq": IMQ(bandwidth=1.5, beta=-0.5),
    "polynomial": Polynomial(degree=3, coef0=1.0),
    "mixture5": Mixture(  # five terms: two launches of the four-slot kernel
        components=(Gaussian(bandwidth=0.7), Laplace(bandwidth=1.5), RationalQuadratic(bandwidth=1.0),
                    IMQ(bandwidth=2.0), Energy(exponent=1.5)), weights=(1.0, 0.5, 2.0, 1.0, 0.1)),
}

# (id, n, m, d, p, Y mode, exclude_diagonal); Y mode: "other" (Y given), "same" (Y=None), "paired" (m == n)
CASES = [
    ("n37-m45-d5-p3", 37, 45, 5, 3, "other", False),
    ("same-n37-d20-p2-excl", 37, 37, 20, 2, "same", True),
    ("same-n33-d3-p1-keep", 33, 33, 3, 1, "same", False),
    ("paired-n20-d7-p2-excl", 20, 20, 7, 2, "paired", True),
    ("n2-m3-d1-p1", 2, 3, 1, 1, "other", False),
    ("n19-m11-d70-p33", 19, 11, 70, 33, "other", False),
]
CASE_IDS = [c[0] for c in CASES]

# float32 is judged against float64 directly: max |error| / max |reference|.
TOL32 = {"out": 2e-6, "grad": 2e-5}


def _inputs(case, gen, dtype=torch.float32):
    """X, Y (None for "same"), V, upstream G, the dense Y, exclude flag; X shifted off the origin."""
    _, n, m, d, p, mode, exclude = case
    X = (torch.randn(n, d, generator=gen) + 3.0).to(dtype)
    Y = {"same": None, "other": torch.randn(m, d, generator=gen) + 3.5,
         "paired": torch.randn(n, d, generator=gen) + 3.5}[mode]
    Y = None if Y is None else Y.to(dtype)
    V = torch.randn(m, p, generator=gen).to(dtype)
    G = torch.randn(n, p, generator=gen)
    return X, Y, V, G, exclude


def _fit(kernel, X):
    """The kernel at the data's scale: bandwidths times sqrt(d) (distances grow like sqrt(d)),
    Polynomial gamma = 1 / mean |x|^2 (so gamma <x, y> is O(1))."""
    if isinstance(kernel, Polynomial):
        return Polynomial(degree=kernel.degree, coef0=kernel.coef0, gamma=1.0 / float((X.double() ** 2).sum(1).mean()))
    if isinstance(kernel, Mixture):
        return kernel.with_bandwidth(X.shape[1] ** 0.5)  # scales every component
    return kernel.with_bandwidth(kernel.bandwidth * X.shape[1] ** 0.5) if kernel.has_bandwidth else kernel


def _run(engine, X, Y, V, G, kernel, exclude, dtype, **kw):
    """(out, gX, gY, gV) from ``engine.kernel_matmul`` on leaf copies in ``dtype``, backward with G."""
    leaf = lambda A: None if A is None else A.detach().clone().to(dtype).requires_grad_()  # noqa: E731
    Xl, Yl, Vl = leaf(X), leaf(Y), leaf(V)
    out = engine.kernel_matmul(Xl, Yl, Vl, kernel, exclude_diagonal=exclude, **kw)
    out.backward(G.to(out.dtype))
    return out.detach(), Xl.grad, None if Yl is None else Yl.grad, Vl.grad


def _dense(X, Y, V, G, kernel, exclude):
    """The float64 oracle: dense K, autograd through kernel_matrix."""
    leaf = lambda A: None if A is None else A.detach().double().requires_grad_()  # noqa: E731
    Xl, Yl, Vl = leaf(X), leaf(Y), leaf(V)
    K = kernel_matrix(Xl, Xl if Yl is None else Yl, kernel)
    if exclude:
        K = K * (1 - torch.eye(*K.shape, dtype=K.dtype))
    out = K @ Vl
    out.backward(G.double())
    return out.detach(), Xl.grad, None if Yl is None else Yl.grad, Vl.grad


def _rel(a, ref):
    return float((a.double() - ref).abs().max() / ref.abs().max().clamp_min(1e-300))


# Every kernel on the two main cases; the edge cases on one kernel of each family.
F32_TABLE = [(k, c) for k in KERNELS for c in CASES[:2]] + \
            [(k, c) for c in CASES[2:] for k in ("gaussian", "energy-b0.7", "polynomial")]


@pytest.mark.parametrize("name, case", F32_TABLE, ids=[f"{k}-{c[0]}" for k, c in F32_TABLE])
def test_kernel_matmul_float32_matches_float64(name, case, gen):
    X, Y, V, G, exclude = _inputs(case, gen)
    kernel = _fit(KERNELS[name], X)
    got = _run(te, X, Y, V, G, kernel, exclude, torch.float32)
    ref = _dense(X, Y, V, G, kernel, exclude)
    torch_f32 = _run(blocked, X, Y, V, G, kernel, exclude, torch.float32)
    for what, g, r, t in zip(("out", "gX", "gY", "gV"), got, ref, torch_f32):
        if r is None:
            assert g is None
            continue
        assert g.dtype == torch.float32 and g.shape == r.shape and torch.isfinite(g).all(), what
        tol = TOL32["out" if what == "out" else "grad"]
        assert _rel(g, r) <= tol, (what, _rel(g, r))
        assert _rel(g, t.double()) <= 2 * tol, (what, "vs torch engine", _rel(g, t.double()))


# Half precision: the error budget is twice plain torch's at that dtype (dense kernel_matrix computed
# in the dtype, upcast=False), both measured on the same (rounded) inputs against float64, with a
# floor of a few units in the last place of the dtype.
EPS = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def _plain_torch(X, Y, V, G, kernel, exclude, dtype):
    leaf = lambda A: None if A is None else A.detach().to(dtype).requires_grad_()  # noqa: E731
    Xl, Yl, Vl = leaf(X), leaf(Y), leaf(V)
    K = kernel_matrix(Xl, Xl if Yl is None else Yl, kernel, upcast=False)
    if exclude:
        K = K * (1 - torch.eye(*K.shape, dtype=dtype))
    out = K @ Vl
    out.backward(G.to(dtype))
    return out.detach(), Xl.grad, None if Yl is None else Yl.grad, Vl.grad


HALF_KERNELS = [k for k in KERNELS if k != "energy-b0.7"]  # plain half torch has no finite t^-0.65 to compare


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", HALF_KERNELS)
def test_kernel_matmul_half_within_error_budget(name, dtype, gen):
    case = CASES[0] if name in ("gaussian", "energy", "polynomial") else CASES[1]
    X, Y, V, G, exclude = _inputs(case, gen, dtype)
    kernel = _fit(KERNELS[name], X)
    got = _run(te, X, Y, V, G, kernel, exclude, dtype)
    ref = _dense(X, Y, V, G, kernel, exclude)
    plain = _plain_torch(X, Y, V, G, kernel, exclude, dtype)
    for what, g, r, p in zip(("out", "gX", "gY", "gV"), got, ref, plain):
        if r is None:
            continue
        assert g.dtype == dtype and torch.isfinite(g).all(), what
        budget = max(2 * _rel(p, r), 8 * EPS[dtype])
        assert _rel(g, r) <= budget, (what, _rel(g, r), budget)


BLOCK_CASES = [  # (kernel, block sizes, exclude_diagonal)
    ("gaussian", (20, 17), True), ("energy", (2, 3, 9), False), ("polynomial", (2,), True),
    ("mixture5", (20, 17), False), ("laplace", (2, 3, 9), True), ("imq", (1, 1), False),
]


@pytest.mark.parametrize("name, sizes, exclude", BLOCK_CASES,
                         ids=[f"{k}-{'-'.join(map(str, s))}-{'excl' if e else 'keep'}" for k, s, e in BLOCK_CASES])
def test_block_sums_matches_float64(name, sizes, exclude, gen):
    N, d = sum(sizes), 4
    Z = torch.randn(N, d, generator=gen) + 2.0
    kernel = _fit(KERNELS[name], Z)
    Gs = torch.randn(len(sizes), len(sizes), generator=gen, dtype=torch.float64)
    Zt = Z.clone().requires_grad_()
    S = te.block_sums(Zt, sizes, kernel, exclude_diagonal=exclude)
    (S * Gs).sum().backward()
    Zr = Z.double().requires_grad_()
    K = kernel_matrix(Zr, Zr, kernel)
    if exclude:
        K = K * (1 - torch.eye(N, dtype=K.dtype))
    bounds = np.cumsum((0,) + sizes)
    Sr = torch.stack([torch.stack([K[bounds[a]:bounds[a + 1], bounds[b]:bounds[b + 1]].sum()
                                   for b in range(len(sizes))]) for a in range(len(sizes))])
    (Sr * Gs).sum().backward()
    assert S.dtype == torch.float64 and S.shape == (len(sizes),) * 2
    assert _rel(S.detach(), Sr.detach()) <= 2e-6
    assert torch.isfinite(Zt.grad).all() and _rel(Zt.grad, Zr.grad) <= 2e-5
    St = blocked.block_sums(Z, sizes, kernel, exclude_diagonal=exclude)
    assert _rel(S.detach(), St) <= 4e-6


MMD_KERNELS = ["gaussian", "laplace", "energy", "rq", "imq", "polynomial"]


@pytest.mark.parametrize("name", MMD_KERNELS)
def test_mmd2_unbiased_triton_equals_torch_and_float64(name, gen):
    X = torch.randn(40, 4, generator=gen) + 5.0
    Y = torch.randn(33, 4, generator=gen) * 1.3 + 5.4
    kernel = _fit(KERNELS[name], torch.cat([X, Y]))
    out = {}
    for backend in ("triton", "torch"):
        Xl, Yl = X.clone().requires_grad_(), Y.clone().requires_grad_()
        val = mmdkit.mmd2_unbiased(Xl, Yl, kernel=kernel, backend=backend)
        val.backward()
        out[backend] = (val.detach().double(), Xl.grad.double(), Yl.grad.double())
    Xr, Yr = X.double().requires_grad_(), Y.double().requires_grad_()
    ref = mmd2_reference(Xr, Yr, kernel)
    ref.backward()
    tri, tor = out["triton"], out["torch"]
    assert abs(float(tri[0] - ref)) <= 2e-4 * abs(float(ref))
    assert abs(float(tri[0] - tor[0])) <= 2e-4 * abs(float(ref))
    for g, gr, gt in zip(tri[1:], (Xr.grad, Yr.grad), tor[1:]):
        assert _rel(g, gr) <= 1e-3 and _rel(g, gt) <= 1e-3


def test_energy_distance_and_witness_triton_equal_torch(gen):
    X = torch.randn(30, 3, generator=gen)
    Y = torch.randn(26, 3, generator=gen) + 0.5
    T = torch.randn(7, 3, generator=gen)
    for unbiased in (False, True):
        a = mmdkit.energy_distance(X, Y, unbiased=unbiased, backend="triton")
        b = mmdkit.energy_distance(X, Y, unbiased=unbiased, backend="torch")
        assert abs(float(a - b)) <= 2e-4 * abs(float(b))
    wa = mmdkit.witness(X, Y, T, bandwidth=1.0, backend="triton")
    wb = mmdkit.witness(X, Y, T, bandwidth=1.0, backend="torch")
    assert _rel(wa, wb.double()) <= 1e-5


def test_zero_distance_gives_zero_not_nan_gradient(gen):
    """Energy and Laplace at coincident points: the diagonal of one sample and exact duplicates."""
    X = torch.randn(21, 3, generator=gen)
    X[5] = X[2]  # an exact duplicate pair
    for kernel in (Energy(), Energy(exponent=0.5), Laplace(bandwidth=1.0)):
        Xl = X.clone().requires_grad_()
        V = torch.randn(21, 2, generator=gen)
        te.kernel_matmul(Xl, None, V, kernel).sum().backward()
        Xr = X.double().requires_grad_()
        (kernel_matrix(Xr, Xr, kernel) @ V.double()).sum().backward()
        assert torch.isfinite(Xl.grad).all()
        assert _rel(Xl.grad, Xr.grad) <= 1e-3


def _emulate_tf32(monkeypatch):
    """Make the interpreter's tl.dot truncate float32 operands to tf32 (10-bit mantissa) when asked to."""
    from triton.runtime import interpreter as interp
    original = interp.InterpreterBuilder.create_dot

    def chop(h):
        if h.data.dtype != np.float32:
            return h
        return interp.TensorHandle((h.data.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32), h.dtype)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if "TF32" in str(input_precision).upper() and "X3" not in str(input_precision).upper():
            a, b = chop(a), chop(b)
        return original(self, a, b, d, input_precision, max_num_imprecise_acc)

    monkeypatch.setattr(interp.InterpreterBuilder, "create_dot", create_dot)


@pytest.mark.parametrize("name", ["gaussian", "energy"])
def test_precision_tf32_measured_error(name, gen, monkeypatch):
    """tf32 (emulated: operands truncated to 10 mantissa bits) stays within 1e-2 relative on MMD^2
    with shifted samples; "ieee" within 2e-5. Documented in kernel_matmul's docstring."""
    X = torch.randn(48, 8, generator=gen) + 2.0
    Y = torch.randn(40, 8, generator=gen) + 2.3
    kernel = KERNELS[name]
    ref = float(mmd2_reference(X, Y, kernel))
    _emulate_tf32(monkeypatch)
    err = {}
    for precision in ("ieee", "tf32"):
        S = te.block_sums(torch.cat([X, Y]), (48, 40), kernel, exclude_diagonal=True, precision=precision)
        val = float(S[0, 0] / (48 * 47) + S[1, 1] / (40 * 39) - 2 * S[0, 1] / (48 * 40))
        err[precision] = abs(val - ref) / abs(ref)
    assert err["ieee"] <= 2e-5
    assert err["tf32"] <= 1e-2
    assert err["tf32"] > err["ieee"]  # the emulation is active


def test_kernel_terms_and_bad_input():
    mix = Mixture.of(Gaussian, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    terms = te.kernel_terms(mix)
    assert [t.kinds for t in terms] == [(1, 1, 1, 1), (1, 1, 0, 0)]
    assert te.kernel_terms(Energy(exponent=0.5))[0].params[:3] == (0.25, 0.0, 1.0)

    class Odd(KernelSpec):
        pass
    with pytest.raises(TypeError, match="no kernel for Odd"):
        te.kernel_terms(Odd(bandwidth=1.0))
    X = torch.randn(5, 2)
    with pytest.raises(ValueError, match="`precision`"):
        te.kernel_matmul(X, None, torch.ones(5, 1), Gaussian(bandwidth=1.0), precision="fp8")
    with pytest.raises(TypeError, match="`X` has dtype torch.float64"):
        te.kernel_matmul(X.double(), None, torch.ones(5, 1), Gaussian(bandwidth=1.0))
    with pytest.raises(ValueError, match="`sizes`"):
        te.block_sums(X, (2, 2), Gaussian(bandwidth=1.0))


@pytest.mark.parametrize("test", ["mmd", "energy"])
def test_permutation_test_triton_equals_torch_for_one_seed(test, gen):
    """The permutation statistics (K0 @ labels through kernel_matmul) and the p-value match the torch path."""
    X = torch.randn(14, 2, generator=gen)
    Y = torch.randn(11, 2, generator=gen) + 0.6
    run = {"mmd": lambda b: mmdkit.mmd_test(X, Y, bandwidth=1.0, n_permutations=29, seed=7, backend=b),
           "energy": lambda b: mmdkit.energy_test(X, Y, n_permutations=29, seed=7, backend=b)}[test]
    tri, tor = run("triton"), run("torch")
    scale = np.abs(tor.null_distribution).max()
    assert np.abs(tri.null_distribution - tor.null_distribution).max() <= 2e-5 * scale
    assert abs(tri.statistic - tor.statistic) <= 2e-5 * scale
    assert tri.pvalue == tor.pvalue and tri.n_permutations == tor.n_permutations == 29


def test_autotune_space_and_prune_filter():
    """The interpreter runs one config; on a GPU the space is pruned by the live-tile register budget."""
    import triton
    assert len(te.configs("fwd")) == len(te.configs("bwd")) == 1  # TRITON_INTERPRET=1 here
    space = [te._config(dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=1))
             for bm in (32, 64, 128) for bn in (32, 64) for w in (4, 8)]
    fwd = te._prune(space, {}, BLOCK_D=te.MAX_BLOCK_D, BLOCK_P=te.MAX_BLOCK_P)
    bwd = te._prune(space, {}, BLOCK_D=te.MAX_BLOCK_D, BLOCK_Q=te.MAX_BLOCK_Q)
    key = lambda c: dict(BLOCK_M=c.kwargs["BLOCK_M"], BLOCK_N=c.kwargs["BLOCK_N"], num_warps=c.num_warps)  # noqa: E731
    for direction, kept in (("fwd", fwd), ("bwd", bwd)):
        default = {k: v for k, v in te.DEFAULT_CONFIG[direction].items() if k != "num_stages"}
        assert default in [key(c) for c in kept]  # the compile report's config survives at the largest tiles
        assert dict(BLOCK_M=128, BLOCK_N=64, num_warps=4) not in [key(c) for c in kept]
        assert all(isinstance(c, triton.Config) for c in kept)
