"""Test configuration. TRITON_INTERPRET=1 must be set before anything imports
the Triton kernels (the flag is read when @triton.jit decorates), so it is
set here, at collection, before the test modules import mmdkit."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("default", max_examples=25, deadline=None)
settings.load_profile("default")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def gen():
    """An explicit, seeded generator (tests never touch the global seed)."""
    return torch.Generator().manual_seed(1234)


# ----------------------------------------------------------------------------- error model (STYLE item 7)
# One model for every float comparison in tests/: a result computed in `dtype` from `terms` rounded terms
# is within  2 u sqrt(terms) x conditioning  of the exact (float64) answer, relatively, where
# - u is the unit roundoff of the dtype the engine computes in (float32 2^-24 ~ 6.0e-8, float64 2^-53);
# - sqrt(terms): the rounding errors of a sum (and of each term's own few roundings) are independent,
#   a random walk: steps of at most u (standard deviation u / sqrt(3)), so 2 u sqrt(terms) is 3.5 standard
#   deviations. Summation order (blocked tiles, worker threads, BLAS kernel selection, vector width) moves
#   the error inside this walk; it never makes it grow faster. walk=False gives the worst case u x terms;
# - conditioning = sqrt(sum (partial result_i)^2) / |result| over the independently rounded parts (1 for
#   sums of positive terms; large for an MMD^2 near 0, whose parts cancel).
UNIT_ROUNDOFF = {torch.float64: 2.0 ** -53, torch.float32: 2.0 ** -24,
                 torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def budget(dtype, terms=1, conditioning=1.0, walk=True):
    """Relative error budget of a `dtype` computation over `terms` rounded terms (model above)."""
    u = UNIT_ROUNDOFF[dtype]
    return (2.0 * u * terms ** 0.5 if walk else u * terms) * conditioning


def within_budget(err, dtype, terms=1, conditioning=1.0, plain=None, factor=2.0):
    """err is within the model's budget, or within `factor` x plain torch's error at the same precision
    (STYLE item 7) where that is larger: a plain result that happens to round luckily sets no budget.
    float16 / bfloat16 results are computed in float32 (the engines' compute dtype) and rounded once to
    `dtype`: budget(float32, terms, conditioning) + budget(dtype)."""
    if dtype in (torch.float16, torch.bfloat16):
        allowed = budget(torch.float32, terms, conditioning) + budget(dtype)
    else:
        allowed = budget(dtype, terms, conditioning)
    if plain is not None and plain == plain and plain != float("inf"):
        allowed = max(allowed, factor * plain)
    return err <= allowed


@pytest.fixture(name="budget")
def _budget_fixture():
    """The error model's `budget(dtype, terms, conditioning, walk)` (tests/ is not importable)."""
    return budget


@pytest.fixture(name="within_budget")
def _within_budget_fixture():
    """The error model's `within_budget(err, dtype, terms, conditioning, plain, factor)`."""
    return within_budget



def kernel_matmul_parts(X, Y, V, G, kernel, exclude=False):
    """(size, terms) of out = K(X, Y) V and of its gradients (gX, gY or None, gV) with upstream G, for the
    model above: size is the rms sqrt(sum_j part_ij^2) over the independently rounded parts of each element
    (float64, shaped like the result), so conditioning = ||size|| / ||result|| normwise; terms is the number
    of roundings on the way (the parts summed, plus the d + 5 of one part). Y None: K(X, X).

    A part of out_i = sum_j k(t_ij) v_j has size |v_j| (|k_ij| + |k'(t_ij)| T_ij): k's roundings and t's (a
    few u of T_ij, the size of what t is summed from) through k'. T_ij = t_ij for direct differences (L1,
    or float32 data with d <= blocked.DIRECT_MAX_D); |x~|^2 + |y~|^2 + 2 |x~|.|y~| for the norm expansion on
    points centred at the pooled mean; |x|.|y| for dot kernels. The gradient in x_i is
    sum_c G_ic sum_j k'_ij V_jc (x_i - y_j) (dot kernels: y_j), formed as x_i sum_j - sum_j y_j: parts of
    size |G_ic V_jc| (|k'_ij| + |k''_ij| T_ij) (|x~_i|, |y~_j|) in float32, or, where the engine accumulates
    these products in float64 (blocked.grad_dtype: float32 data, d <= 3), (x_i - y_j) with only the d + 5
    roundings of k' left. Coincident pairs of a cusp kernel are exact (t = 0, no gradient)."""
    from mmdkit.kernels import blocked
    from mmdkit.kernels.reference import formula, pairwise_t
    sym, d = Y is None, X.shape[1]
    X64 = X.detach().double()
    Y64 = X64 if sym else Y.detach().double()
    V64, G64 = V.detach().double(), G.detach().double()
    kernel = kernel.resolve(d)
    t = pairwise_t(X64, Y64, kernel.kind, kernel.norm)
    cusp, zero = bool(kernel.cusp_at_zero), t == 0
    tt = (torch.where(zero, 1.0, t) if cusp else t.clone()).requires_grad_()
    k = formula(kernel, tt)
    (k1,) = torch.autograd.grad(k.sum(), tt, create_graph=True)
    (k2,) = torch.autograd.grad(k1.sum(), tt, allow_unused=True)
    k, k1, k2 = k.detach(), k1.detach(), torch.zeros_like(t) if k2 is None else k2
    if cusp:
        k = torch.where(zero, formula(kernel, torch.zeros_like(t)), k)
        k1, k2 = (torch.where(zero, 0.0, a) for a in (k1, k2))
    if exclude:
        keep = 1 - torch.eye(*t.shape, dtype=t.dtype)
        k, k1, k2 = k * keep, k1 * keep, k2 * keep
    low = X.dtype != torch.float64
    direct = kernel.norm == "l1" or (low and d <= blocked.DIRECT_MAX_D)
    wide = low and d <= 3  # blocked.grad_dtype: the gradient products accumulate in float64
    if kernel.kind == "dot":
        Xa, Ya = X64.abs(), Y64.abs()
        T = Xa @ Ya.T
    else:
        mean = torch.cat([X64] if sym else [X64, Y64]).mean(0)
        Xa, Ya = (X64 - mean).abs(), (Y64 - mean).abs()
        T = t if direct else (Xa ** 2).sum(1)[:, None] + (Ya ** 2).sum(1)[None, :] + 2 * Xa @ Ya.T
    ksq, k1sq = (k.abs() + k1.abs() * T) ** 2, (k1.abs() + k2.abs() * T) ** 2
    entry = d + 5
    out = (ksq @ V64 ** 2).sqrt()
    gV = (ksq.T @ G64 ** 2).sqrt()
    W = (G64 ** 2) @ (V64 ** 2).T  # sum_c (G_ic V_jc)^2

    def grad(M, A, B):  # rms over j of sqrt(M_ij) |dt/da_i|: the rows of A against those of B
        if kernel.kind == "dot":
            return (M @ B ** 2).sqrt()
        if wide:
            return 2 * torch.einsum("ij,ijl->il", M, (A[:, None, :] - B[None, :, :]) ** 2).sqrt()
        return 2 * (M.sum(1, keepdim=True) * A ** 2 + M @ B ** 2).sqrt()
    if kernel.kind != "dot" and wide:  # the differences themselves, not centred magnitudes
        Xa, Ya = X64, Y64
    if sym:
        gX, gY = grad((W + W.T) * k1sq, Xa, Xa), None
    else:
        gX, gY = grad(W * k1sq, Xa, Ya), grad(W.T * k1sq.T, Ya, Xa)
    summed_x, summed_y = Y64.shape[0], X64.shape[0]
    gterms = (entry + 1, entry + 1) if wide else (summed_x + entry, summed_y + entry)
    return ((out, summed_x + entry), (gX, gterms[0]), (None if gY is None else gY, gterms[1]),
            (gV, summed_y + entry))


@pytest.fixture(name="kernel_matmul_parts")
def _kernel_matmul_parts_fixture():
    """The error model's `kernel_matmul_parts(X, Y, V, G, kernel, exclude)`."""
    return kernel_matmul_parts
