"""The blocked torch engine: kernel sums without ever storing an n x m matrix.

Tiles of the two samples are combined with one BLAS matmul of augmented
factors, ``[-2x, |x|^2, 1] . [y, 1, |y|^2] = |x - y|^2``, on data centred at
the pooled mean (distance kernels are translation invariant and float32 loses
every digit far from the origin otherwise); the kernel is applied to the tile
in place and the tile is reduced at once. Tiles are sized so one fits in L2.
Kernels with a cusp at 0 (Energy, Laplace) take the t of close pairs, below
``NEAR`` times the expansion's rounding, from direct differences instead:
exactly 0 where x = y, accurate where the points are close.

Every loop over tiles is :func:`tiles` (the upper tiles of one sample with
itself, or all tiles of two samples). Three primitives run on it:

* :func:`kernel_matmul` ``(X, Y, V) -> K(X, Y) @ V``; ``Y=None`` means Y = X
  and uses symmetry (each off-diagonal tile is computed once, used twice).
  Its backward is the same sweep with the kernel's derivative.
  :func:`kernel_matmuls` is its forward for several kernels of one tile.
* :func:`block_sums` ``(Z, sizes) -> S`` with ``S[a, b]`` the kernel sum over
  block a x block b of the pooled sample (one symmetric sweep gives the XX, XY
  and YY sums of every MMD estimator). When Z requires grad, the gradient is
  accumulated in the same sweep, so forward + backward costs one pass.
* :class:`PermutationSums` ``(Z, specs)(E)`` -> diag(E' K0 E), E' K0 1 for a
  label matrix E and several kernels sharing one distance tile (the null
  distributions of the permutation tests).

Both autograd Functions are twice differentiable: a backward asked for with
``create_graph=True`` runs :func:`kernel_matmul` on the kernel's derivative
(:class:`~mmdkit.kernels.specs.Derivative`) with differentiable torch ops
around it; the plain backward stays the fused first-order sweep.
"""
from __future__ import annotations

import bisect
import itertools
import math
import threading

import torch
from torch import Tensor

from mmdkit.kernels.specs import KernelSpec, derivative
from mmdkit.kernels.workers import run_lanes, sweep

__all__ = ["kernel_matmul", "kernel_matmuls", "block_sums", "PermutationSums", "paired_values", "tiles",
           "label_block", "TILE_ROWS", "TILE_COLS", "TILE_SYM"]

# Tile shapes measured on a 2-core Xeon (2 MiB L2 per core): a 512 x 1024 fp32
# tile (2 MiB) keeps the matmul output in L2 for the elementwise passes.
TILE_ROWS, TILE_COLS, TILE_SYM = 512, 1024, 768
# Tile sides of the permutation product: its (BM, BN) @ (BN, B) products dominate, so tiles
# may be larger than the L2-sized ones; dense (cached) tiles stay smaller so the triangle
# saves more of the product (1024: 62% of K0 @ E at N = 4000).
PERM_TILE_DENSE, PERM_TILE_STREAM = 1024, 2048
# Below 4 x PERM_TILE_DENSE points the dense tiles are N / 4 rows (at least PERM_TILE_MIN), so the
# triangle still skips 6 of 16 blocks (one 1024-row tile at N = 1000 would compute the full square).
PERM_TILE_MIN = 128
# Rows of the label block converted to float64 at a time for e' (K0 1) on the CPU (a 64 x 4016 block: 2 MiB).
SUM_ROWS64 = 64
# Diagonal tiles of at least twice this many rows skip their zero lower-left quarter (`_tile_product`).
PERM_TILE_SPLIT_MIN = 64
# Column sums of (rows, B) float32 blocks: float32 over groups of this many rows, float64 across groups
# (a float64 reduction of every element costs ~10x; a 32-term float32 sum adds ~32 eps relative).
SUM_GROUP = 32
# Columns of the permutation product's label block are padded to a multiple of this (16 floats: 64 bytes).
LABEL_ALIGN = 16


def _colsum64(T: Tensor) -> Tensor:
    """Column sums of T (R, B) in float64: exact-ish and fast (float32 groups of SUM_GROUP rows)."""
    if T.dtype == torch.float64:
        return T.sum(0)
    full = T.shape[0] // SUM_GROUP * SUM_GROUP
    out = T[:full].view(-1, SUM_GROUP, T.shape[1]).sum(1).sum(0, dtype=torch.float64)
    return out + T[full:].sum(0, dtype=torch.float64) if full < T.shape[0] else out


def dense_tile(N: int) -> int:
    """Row tile of the dense permutation operator for N points (see PERM_TILE_MIN)."""
    return min(PERM_TILE_DENSE, max(PERM_TILE_MIN, -(-N // 4)))
# Up to this d, distance tiles come from direct differences: the norm expansion
# loses the small distances of dense low-dimensional data (sqrt(t) of a
# rounding error), and at such d the differences cost no more than the matmul.
DIRECT_MAX_D = 3

# Cusp kernels' close pairs: t below NEAR times the expansion's rounding bound (:func:`_near_scale`)
# comes from direct differences (bench/RESULTS.md, "Close pairs").
NEAR = 64.0


def grad_dtype(Z: Tensor) -> torch.dtype:
    """Accumulation dtype of the gradient products: float64 for float32 data with
    d <= 3, where z_i sum_j k'_ij - sum_j k'_ij z_j cancels badly (dense points)."""
    return torch.float64 if Z.dtype == torch.float32 and Z.shape[1] <= 3 else Z.dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other float dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pooled_mean(X: Tensor, Y: Tensor | None, kernel: KernelSpec) -> Tensor | None:
    """The float64 pooled mean the engine centres at (detached), or None where it does not centre.

    Only distance kernels are centred, and not where the tiles come from direct
    differences of L1 kernels or of float32 data (d <= DIRECT_MAX_D): there centring only adds a
    rounding of each point (eps |x - mean|), which close pairs feel, and the
    gradient products accumulate in float64 (:func:`grad_dtype`).
    """
    if kernel.kind != "distance" or kernel.norm == "l1" or (
            compute_dtype(X.dtype) == torch.float32 and X.shape[1] <= DIRECT_MAX_D):
        return None
    total = X.detach().sum(0, dtype=torch.float64) + (0 if Y is None else Y.detach().sum(0, dtype=torch.float64))
    return total / (X.shape[0] + (0 if Y is None else Y.shape[0]))


def _centre(X: Tensor, Y: Tensor | None, kernel: KernelSpec) -> tuple[Tensor, Tensor | None]:
    """Detached copies in the compute dtype, centred at :func:`_pooled_mean` (when it is not None)."""
    dt = compute_dtype(X.dtype)
    mean = _pooled_mean(X, Y, kernel)
    X = X.detach().to(dt)
    Y = None if Y is None else Y.detach().to(dt)
    if mean is not None:
        X = X - mean.to(dt)
        Y = None if Y is None else Y - mean.to(dt)
    return X, Y


def _factors(X: Tensor, Y: Tensor, kind: str, norm: str = "l2", fold: float | None = None) -> tuple[Tensor, Tensor]:
    """Left and right factors whose product is the tile of t (|x-y|^2 or <x, y>), or of fold * t.

    For L1 kernels, and distance kernels with d <= DIRECT_MAX_D, the raw
    points come back and :func:`_t_tile` takes direct differences instead
    (``fold`` must then be None: see :func:`_fold_of`). The fold scales the
    left factor in float64 before its one rounding.
    """
    if kind == "dot" or norm == "l1" or X.shape[1] <= DIRECT_MAX_D:
        assert fold is None, "a fold needs matmul tiles"
        return X, Y
    one = lambda A: torch.ones(A.shape[0], 1, dtype=A.dtype, device=A.device)
    sq = lambda A: (A * A).sum(1, keepdim=True)
    L = torch.cat([X * -2, sq(X), one(X)], 1)
    if fold is not None:
        L = (L.to(torch.float64) * fold).to(X.dtype)
    return L, torch.cat([Y, one(Y), sq(Y)], 1)


def _fold_of(kernel: KernelSpec, d: int) -> float | None:
    """The kernel's :meth:`~mmdkit.kernels.specs.KernelSpec.fold` where its tiles are matmuls, else None."""
    if kernel.kind != "distance" or kernel.norm == "l1" or d <= DIRECT_MAX_D:
        return None
    return kernel.fold()


def _dk_unit(kernel: KernelSpec) -> float:
    """The factor the dk tiles of :func:`_tile` are in units of: dk/dt = unit * dk.

    For kernels whose derivative is a multiple of the value (Gaussian), the
    tile reuses k (no second (BM, BN) tensor, one elementwise pass less).
    """
    c = kernel.derivative_scale()
    return 1.0 if c is None else c


def _cusp_bound(L: Tensor, R: Tensor, kind: str, cusp: bool, fold: float | None = None) -> float | None:
    """The threshold below which :func:`_t_tile` refines a t of L @ R.T (None where it refines none).

    The expansion |x|^2 + |y|^2 - 2 x.y leaves t an absolute rounding of up to ~ (d+2) eps (|x|^2 + |y|^2):
    at x = y a sqrt turns it into ~ sqrt(eps) |x|, and for close pairs it is a large relative error that a
    cusp kernel's derivative (Energy's t^(b/2 - 1)) multiplies. Pairs whose t is below NEAR times that
    bound are recomputed from the points (:func:`_near_scale`); a tile whose smallest t exceeds the
    threshold has none. Computed once per sweep from all rows and columns (L[:, -2] holds fold |x|^2
    and R[:, -1] |y|^2; cusp kernels fold by f > 0), in Python floats with a margin of 1e-6 for their rounding.
    """
    if not (cusp and kind == "distance" and L.shape[1] > DIRECT_MAX_D) or L.numel() == 0 or R.numel() == 0:
        return None
    return (float(L[:, -2].max()) + (fold or 1.0) * float(R[:, -1].max())) * _near_scale(L) * (1 + 1e-6)


def _near_scale(L: Tensor) -> float:
    """NEAR * 4 (d + 2) eps: times |x|^2 + |y|^2, the t below which a cusp kernel's pair is refined."""
    return NEAR * 4 * L.shape[1] * torch.finfo(L.dtype).eps


def _t_tile(L: Tensor, R: Tensor, kind: str, cusp: bool, diagonal: int | None, norm: str = "l2",
            fold: float | None = None, bound: float | None = None,
            points: tuple[Tensor, Tensor] | None = None, scratch: Scratch | None = None) -> Tensor:
    """The tile of t (|x - y|^2, |x - y|_1^2 or <x, y>) for the factors L, R of :func:`_factors`.

    ``diagonal`` is the offset of the pairs (i, i) of one sample with itself,
    which get a distance of exactly 0. ``cusp``: coincident points must sit at
    exactly t = 0 (kernels with a sqrt of t). With a ``fold`` (the factors'
    scale) the tile is fold * t; a negative fold leaves the clamp at 0 to the
    kernel's folded evaluation. ``bound``: :func:`_cusp_bound` of the whole factors (else the tile's).
    ``points``: the tile's rows of the points the factors came from (centred, in their dtype), which
    cusp kernels' close pairs are refined from where the tiles are matmuls (needed only where ``bound`` is
    not None). ``scratch``: the lane's :class:`Scratch` that a matmul tile is written into.
    """
    if kind == "distance" and norm == "l1":  # raw points: (sum_c |x_c - y_c|)^2, exact 0 at x = y
        t = torch.cdist(L, R, p=1).square_()
    elif kind == "distance" and L.shape[1] <= DIRECT_MAX_D:  # raw points: sum_c (x_c - y_c)^2
        t = _direct_t(L, R)
    else:
        t = L @ R.T if scratch is None else scratch.mm(L, R)  # (BM, d+2) @ (d+2, BN) -> (BM, BN)
        if kind == "distance" and cusp:
            # Close pairs (t below :func:`_cusp_bound`'s threshold, per row here) get t from direct
            # differences of the ``points``: exact where x = y (t = 0, the cusp's convention), accurate
            # where they are close. The check costs more than the matmul (a bool tile, then a pass): on
            # the CPU a tile whose smallest t exceeds the bound (no close pairs) is left as it is.
            # The pairs (i, i) are set to 0 below: inf keeps them out of the check.
            if t.numel() and bound is None:
                bound = _cusp_bound(L, R, kind, cusp, fold)
            if diagonal is not None:
                t.diagonal(diagonal).fill_(math.inf)
            if t.device.type != "cpu" or t.numel() == 0 or float(t.amin()) <= bound:
                tol = (L[:, -2:-1] + (fold or 1.0) * R[:, -1].max()).mul_(_near_scale(L))
                assert points is not None, "a cusp kernel's matmul tiles need the points to refine from"
                _refine_(t, t <= tol, *points, fold)  # (BM, BN) <= (BM, 1); also every negative t
        elif kind == "distance" and (fold is None or fold > 0):
            t.clamp_min_(0)
    # (direct differences and L1 distances are >= 0 as computed)
    if kind == "distance" and diagonal is not None:
        t.diagonal(diagonal).zero_()
    return t


def _direct_t(X: Tensor, Y: Tensor) -> Tensor:
    """The tile sum_c (x_c - y_c)^2 of the points X (BM, d), Y (BN, d), one coordinate at a time."""
    t = (X[:, :1] - Y[:, 0]).square_()  # (BM, 1) - (BN,) -> (BM, BN)
    for c in range(1, X.shape[1]):
        t.add_((X[:, c:c + 1] - Y[:, c]).square_())
    return t


def _refine_(t: Tensor, near: Tensor, X: Tensor, Y: Tensor, fold: float | None) -> None:
    """t[near] = fold * |x_i - y_j|^2 from the points X (BM, d), Y (BN, d), in place.

    A few pairs are gathered; where many are close (clustered data), the whole tile of
    differences costs less than the gather.
    """
    count = int(near.sum())
    if count == 0:
        return
    if count * X.shape[1] > t.numel():
        t.copy_(torch.where(near, _direct_t(X, Y).mul_(fold or 1.0), t))
        return
    i, j = near.nonzero(as_tuple=True)
    t[i, j] = (X[i] - Y[j]).square_().sum(1).mul_(fold or 1.0)


def _tile(L: Tensor, R: Tensor, kernel: KernelSpec, derivative: bool, diagonal: int | None,
          exclude: bool = True, fold: float | None = None, bound: float | None = None,
          points: tuple[Tensor, Tensor] | None = None, scratch: Scratch | None = None):
    """k and dk/dt / _dk_unit(kernel) on the tile L @ R.T (factors folded by ``fold``, see :func:`_fold_of`).

    ``diagonal`` is the offset of the pairs (i, i) of one sample with itself:
    they are zeroed (``exclude``) or get a distance of exactly 0. ``bound``, ``points``, ``scratch``:
    see :func:`_t_tile` (k may live in ``scratch``: use it before the next tile).
    """
    t = _t_tile(L, R, kernel.kind, kernel.cusp_at_zero, diagonal, kernel.norm, fold, bound, points, scratch)
    scaled = derivative and kernel.derivative_scale() is not None
    evaluate = kernel.evaluate_ if fold is None else kernel.evaluate_folded_
    k, dk = evaluate(t, derivative and not scaled)
    if scaled:  # dk/dt = c k: the callers multiply their products of dk by c (_dk_unit)
        dk = k
    if diagonal is not None and exclude:
        k.diagonal(diagonal).zero_()
        if dk is not None:
            dk.diagonal(diagonal).zero_()
    return k, dk


class Scratch:
    """One lane's tile buffer: L @ R.T of every tile written into the same memory (no allocation per tile,
    its pages stay in cache), through one cached view per tile shape (no view ops per tile either)."""

    def __init__(self, jobs, like: Tensor):
        size = max((i1 - i0) * (j1 - j0) for i0, i1, j0, j1, _ in jobs)
        self.flat = torch.empty(size, dtype=like.dtype, device=like.device)
        self.views: dict[tuple[int, int], Tensor] = {}

    def mm(self, L: Tensor, R: Tensor) -> Tensor:
        shape = (L.shape[0], R.shape[0])
        out = self.views.get(shape)
        if out is None:
            out = self.views[shape] = self.flat[:shape[0] * shape[1]].view(shape)
        return torch.mm(L, R.T, out=out)  # (BM, d+2) @ (d+2, BN) -> (BM, BN)


def _ranges(n: int, step: int, bounds=(0,)) -> list[tuple[int, int]]:
    """Consecutive [start, stop) chunks of at most ``step`` that never cross a bound."""
    cuts = sorted(set(bounds) | {0, n})
    return [(a, min(a + step, b)) for lo, b in zip(cuts, cuts[1:]) for a in range(lo, b, step)]


def tiles(rows: list[tuple[int, int]], cols: list[tuple[int, int]] | None = None):
    """The engine's one tile loop: (i0, i1, j0, j1, diagonal) over row x column chunks.

    ``cols=None`` is the symmetric case (one sample with itself): only the
    upper tiles j >= i are visited, each unordered pair of chunks once, and
    ``diagonal`` is 0 on the tiles that hold the pairs (i, i) (else None).
    With ``cols`` every tile is visited and ``diagonal`` is None.
    """
    for a, (i0, i1) in enumerate(rows):
        for j0, j1 in (rows[a:] if cols is None else cols):
            yield i0, i1, j0, j1, (0 if cols is None and i0 == j0 else None)


def _sweep(X, Y, V, kernel, exclude_diagonal, W=None, WT=None, VT=None):
    """One pass over all tiles of K(X, Y) (Y None: symmetric, upper tiles only).

    Returns (K @ V, K.T @ VT, K' @ W, K'.T @ WT) with K' = dk/dt; absent
    operands give None. In the symmetric case K.T = K, so only V and W are used.
    The products accumulate in the operands' dtypes (wider than the tiles
    where the caller asks: float64 gradient products, see :func:`grad_dtype`).
    """
    sym = Y is None
    fold = _fold_of(kernel, X.shape[1])
    L, R = _factors(X, X if sym else Y, kernel.kind, kernel.norm, fold)
    bound = _cusp_bound(L, R, kernel.kind, kernel.cusp_at_zero, fold)
    n, m = L.shape[0], R.shape[0]
    deriv = W is not None or WT is not None
    rows = _ranges(n, TILE_SYM if sym else TILE_ROWS)
    same = not sym and exclude_diagonal  # X vs Y of equal length: pairs (i, i) dropped
    jobs = list(tiles(rows, None if sym else _ranges(m, TILE_COLS)))

    def lane(idx):  # this lane's tiles into its own accumulators
        acc = lambda A, rows: None if A is None else torch.zeros(rows, A.shape[1], dtype=A.dtype, device=A.device)
        KV, KtVT, DW, DtWT = acc(V, n), acc(VT, m), acc(W, n), acc(WT, m)
        scratch = Scratch(jobs, L)
        for i0, i1, j0, j1, diag in (jobs[t] for t in idx):
            if same and i0 < j1 and j0 < i1:
                diag = i0 - j0
            points = None if bound is None else (X[i0:i1], (X if sym else Y)[j0:j1])
            k, dk = _tile(L[i0:i1], R[j0:j1], kernel, deriv, diag, exclude_diagonal, fold, bound, points, scratch)
            kv = None if V is None and VT is None else k.to((V if V is not None else VT).dtype)
            if deriv:
                dk = dk.to((W if W is not None else WT).dtype)
            if V is not None:
                KV[i0:i1].addmm_(kv, V[j0:j1])  # (BM, BN) @ (BN, p) -> (BM, p)
            if W is not None:
                DW[i0:i1].addmm_(dk, W[j0:j1])
            if sym and j0 != i0:  # the mirrored tile
                if V is not None:
                    KV[j0:j1].addmm_(kv.T, V[i0:i1])
                if W is not None:
                    DW[j0:j1].addmm_(dk.T, W[i0:i1])
            if not sym:
                if VT is not None:
                    KtVT[j0:j1].addmm_(kv.T, VT[i0:i1])  # (BN, BM) @ (BM, p) -> (BN, p)
                if WT is not None:
                    DtWT[j0:j1].addmm_(dk.T, WT[i0:i1])
        return KV, KtVT, DW, DtWT

    parts = run_lanes(lane, _tile_costs(jobs), X.device)
    KV, KtVT, DW, DtWT = _add_lanes(parts)
    unit = _dk_unit(kernel)
    if unit != 1.0:
        for A in (DW, DtWT):
            if A is not None:
                A.mul_(unit)
    return KV, KtVT, DW, DtWT


def _tile_costs(jobs) -> list[float]:
    """The work of each tile of :func:`tiles` (its pairs), for :func:`~mmdkit.kernels.workers.run_lanes`."""
    return [float((i1 - i0) * (j1 - j0)) for i0, i1, j0, j1, _ in jobs]


def _add_lanes(parts) -> tuple:
    """The lanes' partial results (tuples of tensors or None, an iterable in lane order) summed elementwise
    in that order, each added as it comes (at most a few lanes' partials are alive at once)."""
    parts = iter(parts)
    first = next(parts)
    for other in parts:
        for A, B in zip(first, other):
            if A is not None:
                A.add_(B)
    return first


def _outer(A: Tensor, Z: Tensor) -> Tensor:
    """Columns [A, A (x) Z]: (n, p) and (n, d) -> (n, p (1 + d))."""
    return torch.cat([A, (A[:, :, None] * Z[:, None, :]).flatten(1)], 1)


def _check_differentiable(kernel: KernelSpec) -> None:
    """Raise where the engine has no gradient in the points: L1 kernels (dt/dx is not 2 (x - y))."""
    if kernel.norm == "l1":
        raise NotImplementedError(f"gradients in the points are not implemented for L1-norm kernels "
                                  f"({kernel!r}); use the default norm='l2' or detach the inputs")


def _grad_from(Z: Tensor, G: Tensor, D: Tensor, kind: str) -> Tensor:
    """sum_c G[i,c] * d/dz_i of (K' stuff): D holds K' @ [V, V (x) Y] for the p columns of G."""
    n, p = G.shape
    G, Z = G.to(D.dtype), Z.to(D.dtype)  # D may be float64 (grad_dtype)
    D0, D1 = D[:, :p], D[:, p:].reshape(n, p, -1)
    cross = torch.einsum("np,npd->nd", G, D1)
    if kind == "dot":
        return cross
    return 2 * (Z * (G * D0).sum(1, keepdim=True) - cross)


def _centred(X: Tensor, Y: Tensor | None, kernel: KernelSpec) -> tuple[Tensor, Tensor | None]:
    """X, Y minus :func:`_pooled_mean` (detached), differentiable in X and Y: the same k, the same rule."""
    mean = _pooled_mean(X, Y, kernel)
    if mean is None:
        return X, Y
    return X - mean.to(X.dtype), None if Y is None else Y - mean.to(Y.dtype)


def _matmul_grads_graph(X, Y, V, G, kernel, exclude, needs):
    """Gradients of <K(X, Y) @ V, G> as differentiable torch ops over :func:`kernel_matmul` of dk/dt.

    The backward used when a graph of the backward is asked for (``create_graph=True``):
    d/dx_i = sum_j k'(t_ij) (G_i . V_j) dt_ij/dx_i is the same primitive with the kernel
    :class:`~mmdkit.kernels.specs.Derivative` and right-hand side [V, V (x) Y], so its own
    gradient is this function again, one derivative order up.
    """
    Xc, Yc = _centred(X, Y, kernel)
    dk, kind = derivative(kernel), kernel.kind
    wide = grad_dtype(Xc)
    gX = gY = gV = None
    if Y is None:
        if needs[0]:  # x_i sits in both slots of k(x_i, x_j): the G-V and V-G products
            D = kernel_matmul(Xc, None, torch.cat([_outer(V.to(wide), Xc), _outer(G.to(wide), Xc)], 1), dk, exclude)
            half = D.shape[1] // 2
            gX = _grad_from(Xc, G, D[:, :half], kind) + _grad_from(Xc, V, D[:, half:], kind)
        if needs[2]:
            gV = kernel_matmul(X, None, G, kernel, exclude)
    else:
        if needs[0]:
            gX = _grad_from(Xc, G, kernel_matmul(Xc, Yc, _outer(V.to(wide), Yc), dk, exclude), kind)
        if needs[1]:
            gY = _grad_from(Yc, V, kernel_matmul(Yc, Xc, _outer(G.to(wide), Xc), dk, exclude), kind)
        if needs[2]:
            gV = kernel_matmul(Y, X, G, kernel, exclude)
    cast = lambda g, like: None if g is None else g.to(like.dtype)
    return cast(gX, X), cast(gY, Y), cast(gV, V)


class _KernelMatmul(torch.autograd.Function):
    @staticmethod
    @sweep
    def forward(ctx, X, Y, V, kernel, exclude_diagonal):
        Xc, Yc = _centre(X, Y, kernel)
        # V (and so the products) stay float64 when V is, whatever the tiles' dtype
        Vc = V.detach().to(torch.promote_types(Xc.dtype, V.dtype))
        out = _sweep(Xc, Yc, Vc, kernel, exclude_diagonal)[0]
        ctx.save_for_backward(X, Y, V, Xc, Yc, Vc)
        ctx.kernel, ctx.exclude, ctx.sym = kernel, exclude_diagonal, Y is None
        return out.to(V.dtype)

    @staticmethod
    @sweep
    def backward(ctx, G):
        X, Y, V, Xc, Yc, Vc = ctx.saved_tensors
        kernel, kind = ctx.kernel, ctx.kernel.kind
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            _check_differentiable(kernel)
        if torch.is_grad_enabled():  # create_graph=True: a backward that is itself differentiable
            return (*_matmul_grads_graph(X, Y, V, G, kernel, ctx.exclude, ctx.needs_input_grad), None, None)
        G = G.to(Vc.dtype)
        nx, ny, nv = ctx.needs_input_grad[:3]
        gX = gY = gV = None
        if ctx.sym:
            # d/dx_i of G.(K V) = sum_j k'_ij dt_ij/dx_i (G_i.V_j + V_i.G_j): K' @ [V, V(x)X, G, G(x)X]
            gd = grad_dtype(Xc)  # the products V (x) X are formed in it too (no float32 rounding to cancel)
            W = torch.cat([_outer(Vc.to(gd), Xc.to(gd)), _outer(G.to(gd), Xc.to(gd))], 1) if nx else None
            KG, _, D, _ = _sweep(Xc, None, G if nv else None, kernel, ctx.exclude, W=W)
            if nx:
                half = D.shape[1] // 2
                gX = _grad_from(Xc, G, D[:, :half], kind) + _grad_from(Xc, Vc, D[:, half:], kind)
            gV = KG
        else:
            gd = grad_dtype(Xc)  # the products V (x) Y are formed in it too (no float32 rounding to cancel)
            W = _outer(Vc.to(gd), Yc.to(gd)) if nx else None
            WT = _outer(G.to(gd), Xc.to(gd)) if ny else None
            _, KtG, D, DT = _sweep(Xc, Yc, None, kernel, ctx.exclude, W=W, WT=WT, VT=G if nv else None)
            gX = _grad_from(Xc, G, D, kind) if nx else None
            gY = _grad_from(Yc, Vc, DT, kind) if ny else None
            gV = KtG
        cast = lambda g, like: None if g is None else g.to(like.dtype)
        return cast(gX, X), cast(gY, Y), cast(gV, V), None, None


def kernel_matmul(X: Tensor, Y: Tensor | None, V: Tensor, kernel: KernelSpec,
                  exclude_diagonal: bool = False) -> Tensor:
    """K(X, Y) @ V on the blocked torch engine, differentiable in X, Y and V (twice).

    ``Y=None`` means Y = X (symmetric sweep). ``exclude_diagonal`` drops the
    terms with i == j (U-statistics; needs Y None or len(X) == len(Y)).
    Memory is O((n + m)(d + p)) plus one tile, forward and backward. The
    products accumulate in float64 when V is float64. A backward with
    ``create_graph=True`` runs the same primitive on dk/dt, so second
    derivatives cost about one more forward sweep per differentiated input.
    """
    kernel = kernel.resolve(X.shape[1])
    return _KernelMatmul.apply(X, Y, V, kernel, exclude_diagonal)


@sweep
def kernel_matmuls(X: Tensor, Y: Tensor | None, V: Tensor, kernels: tuple[KernelSpec, ...],
                   exclude_diagonal: bool = False) -> Tensor:
    """(S, n, p): K_s(X, Y) @ V for several kernels sharing each distance tile, in one sweep.

    The forward of :func:`kernel_matmul` for S kernels of one kind and norm
    (e.g. KID's k and k^2): the tile of t is built once and each kernel is
    applied to it. Not differentiable in X and Y (raises if they require grad).
    """
    kernels = tuple(k.resolve(X.shape[1]) for k in kernels)
    if not kernels or len({(k.kind, k.norm) for k in kernels}) != 1:
        raise ValueError("`kernels` must be a non-empty tuple of kernels of one kind and one norm")
    if torch.is_grad_enabled() and (X.requires_grad or (Y is not None and Y.requires_grad)):
        raise NotImplementedError("kernel_matmuls has no gradient in the points; use kernel_matmul per kernel")
    first, sym = kernels[0], Y is None
    Xc, Yc = _centre(X, Y, first)
    L, R = _factors(Xc, Xc if sym else Yc, first.kind, first.norm)
    Vc = V.detach().to(torch.promote_types(Xc.dtype, V.dtype))
    n, m = L.shape[0], R.shape[0]
    cusp = any(k.cusp_at_zero for k in kernels)
    bound = _cusp_bound(L, R, first.kind, cusp)
    rows = _ranges(n, TILE_SYM if sym else TILE_ROWS)
    jobs = list(tiles(rows, None if sym else _ranges(m, TILE_COLS)))

    def lane(idx):
        out = torch.zeros(len(kernels), n, V.shape[1], dtype=Vc.dtype, device=V.device)
        for i0, i1, j0, j1, diag in (jobs[t] for t in idx):
            if not sym and exclude_diagonal and i0 < j1 and j0 < i1:
                diag = i0 - j0
            t = _t_tile(L[i0:i1], R[j0:j1], first.kind, cusp, diag, first.norm, bound=bound,
                        points=(Xc[i0:i1], (Xc if sym else Yc)[j0:j1]))
            for s, kernel in enumerate(kernels):
                k = kernel.evaluate_(t if s == len(kernels) - 1 else t.clone())[0].to(Vc.dtype)
                if diag is not None and exclude_diagonal:
                    k.diagonal(diag).zero_()
                out[s, i0:i1].addmm_(k, Vc[j0:j1])
                if sym and j0 != i0:  # the mirrored tile
                    out[s, j0:j1].addmm_(k.T, Vc[i0:i1])
        return (out,)

    return _add_lanes(run_lanes(lane, _tile_costs(jobs), X.device))[0].to(V.dtype)


class _BlockSums(torch.autograd.Function):
    @staticmethod
    @sweep
    def forward(ctx, Z, bounds, kernel, exclude_diagonal, need_grad):
        Zc, _ = _centre(Z, None, kernel)
        fold = _fold_of(kernel, Zc.shape[1])
        L, R = _factors(Zc, Zc, kernel.kind, kernel.norm, fold)
        N, p = Zc.shape[0], len(bounds) - 1
        cuts = torch.tensor(bounds[1:-1], device=Z.device)
        group = torch.bucketize(torch.arange(N, device=Z.device), cuts, right=True)
        gdt = grad_dtype(Zc)
        Zaug = torch.cat([torch.ones(N, 1, dtype=Zc.dtype, device=Zc.device), Zc], 1).to(gdt) if need_grad else None
        # D[b, i] = sum_{j in block b} k'_ij [1, z_j]  (block-major, so each update is one in-place addmm)
        chunks = _ranges(N, TILE_SYM, bounds)
        block = {i0: bisect.bisect_right(bounds, i0) - 1 for i0, _ in chunks}
        cusp_bound = _cusp_bound(L, R, kernel.kind, kernel.cusp_at_zero, fold)
        jobs = list(tiles(chunks))

        def lane(idx):  # (this lane's tile totals by tile index, its part of D)
            totals = {}
            D = torch.zeros(p, N, Zaug.shape[1], dtype=gdt, device=Z.device) if need_grad else None
            scratch = Scratch(jobs, L)
            for t_ in idx:
                i0, i1, j0, j1, diag = jobs[t_]
                bi, bj = block[i0], block[j0]
                points = None if cusp_bound is None else (Zc[i0:i1], Zc[j0:j1])
                # float32 row sums, float64 across them (a float64 sum of the whole tile costs 5x more)
                if need_grad or diag is not None:
                    k, dk = _tile(L[i0:i1], R[j0:j1], kernel, need_grad, diag, exclude_diagonal, fold, cusp_bound,
                                  points, scratch)
                    total = k.sum(1).sum(dtype=torch.float64)
                else:  # no k tile needed: the kernel's row sums (one pass less for Energy)
                    t = _t_tile(L[i0:i1], R[j0:j1], kernel.kind, kernel.cusp_at_zero, None, kernel.norm, fold,
                                cusp_bound, points, scratch)
                    total = kernel.row_sums_(t, fold is not None).sum(dtype=torch.float64)
                totals[t_] = float(total)
                if need_grad:
                    dk = dk.to(gdt)
                    D[bj, i0:i1].addmm_(dk, Zaug[j0:j1])  # (BM, BN) @ (BN, 1+d) -> (BM, 1+d)
                    if j0 != i0:  # the mirrored tile
                        D[bi, j0:j1].addmm_(dk.T, Zaug[i0:i1])
            return totals, D

        totals: dict[int, float] = {}

        def collect(parts):
            for part, D_ in parts:
                totals.update(part)
                yield (D_,)
        D = _add_lanes(collect(run_lanes(lane, _tile_costs(jobs), Z.device)))[0]
        # float64 block sums as Python floats, added in tile order: the same S on any number of workers
        S = [[0.0] * p for _ in range(p)]
        for t_, (i0, _, j0, _, _) in enumerate(jobs):
            bi, bj = block[i0], block[j0]
            S[bi][bj] += totals[t_]
            if j0 != i0:  # the mirrored tile
                S[bj][bi] += totals[t_]
        unit = _dk_unit(kernel)
        if need_grad and unit != 1.0:
            D.mul_(unit)
        ctx.save_for_backward(Z, Zc, D, group)
        ctx.kernel, ctx.exclude = kernel, exclude_diagonal
        # float64: the estimators combine these sums without cancellation loss
        return torch.tensor(S, dtype=torch.float64, device=Z.device)

    @staticmethod
    @sweep
    def backward(ctx, G):
        Z, Zc, D, group = ctx.saved_tensors
        kernel = ctx.kernel
        Wt = (G + G.T)[group]  # (N, p): weight of block b for row i
        # L = sum_ab G_ab S_ab  =>  dL/dz_i = sum_j (G + G.T)[b_i, b_j] dk(z_i, z_j)/dz_i
        if torch.is_grad_enabled():  # create_graph=True: the same sum through the differentiable primitive
            Zg, _ = _centred(Z, None, kernel)
            E = torch.nn.functional.one_hot(group, G.shape[0]).to(grad_dtype(Zc))
            Dg = kernel_matmul(Zg, None, _outer(E, Zg.to(E.dtype)), derivative(kernel), ctx.exclude)
            return _grad_from(Zg, Wt, Dg, kernel.kind).to(Z.dtype), None, None, None, None
        if D is None:
            raise RuntimeError("block_sums was run without need_grad; cannot differentiate")
        gZ = _grad_from(Zc, Wt.to(Zc.dtype), torch.cat([D[:, :, 0].T, D[:, :, 1:].transpose(0, 1).flatten(1)], 1),
                        kernel.kind)
        return gZ.to(Z.dtype), None, None, None, None


def block_sums(Z: Tensor, sizes: tuple[int, ...], kernel: KernelSpec,
               exclude_diagonal: bool = False) -> Tensor:
    """S[a, b] = sum_{i in block a, j in block b} k(z_i, z_j) for consecutive blocks of Z.

    ``sizes`` are the block lengths (they sum to len(Z)); ``exclude_diagonal``
    drops the i == j terms. One symmetric sweep; differentiable in Z (twice)
    with the first-order gradient built during that sweep, so memory stays
    O(N p d). Returns float64.
    """
    kernel = kernel.resolve(Z.shape[1])
    bounds = (0,) + tuple(itertools.accumulate(int(s) for s in sizes))
    need_grad = torch.is_grad_enabled() and Z.requires_grad
    if need_grad:
        _check_differentiable(kernel)
    return _BlockSums.apply(Z, bounds, kernel, exclude_diagonal, need_grad)


def label_block(N: int, B: int, dtype: torch.dtype, device=None) -> Tensor:
    """An uninitialised (N, B) label matrix whose rows start LABEL_ALIGN-aligned: a view of an (N, W) buffer,
    W = B rounded up to LABEL_ALIGN, pad columns zeroed. :class:`PermutationSums` multiplies such a block
    in place (no padded copy); any operator takes it as an ordinary (N, B) tensor."""
    W = -(-B // LABEL_ALIGN) * LABEL_ALIGN
    buf = torch.empty(N, W, dtype=dtype, device=device)
    buf[:, B:] = 0
    return buf[:, :B]


def _aligned(E: Tensor) -> Tensor:
    """E with its row pad: the (N, W) buffer of a :func:`label_block` view, else a zero-padded copy.
    Columns of a product never mix, so the pad's values reach only the columns that are sliced off."""
    N, B = E.shape
    W = E.stride(0)
    if (E.stride(1) == 1 and W % LABEL_ALIGN == 0 and B <= W < B + LABEL_ALIGN and E.data_ptr() % 64 == 0
            and (E.storage_offset() + N * W) * E.element_size() <= E.untyped_storage().nbytes()):
        return E.as_strided((N, W), (W, 1))
    V = torch.zeros(N, -(-B // LABEL_ALIGN) * LABEL_ALIGN, dtype=E.dtype, device=E.device)
    V[:, :B] = E
    return V


def _tile_product(A: Tensor, k: Tensor, V: Tensor, diagonal: bool) -> None:
    """A += k @ V for an upper tile k of a block row; ``diagonal``: k is the row's first tile (``tiles``
    visits it first), upper triangular, and A is overwritten. Its zero lower-left quarter is skipped:
    three half-size products instead of one, a quarter fewer flops on the diagonal."""
    if not diagonal:
        A.addmm_(k, V)
    elif k.shape[0] < 2 * PERM_TILE_SPLIT_MIN:
        torch.mm(k, V, out=A)
    else:
        h = k.shape[0] // 2
        torch.mm(k[:h, :h], V[:h], out=A[:h])
        torch.mm(k[h:, h:], V[h:], out=A[h:])
        A[:h].addmm_(k[:h, h:], V[h:])


class PermutationSums:
    """Kernel sums of many relabellings of one pooled sample Z, for several kernels at once.

    For a label matrix E (N, B) and each spec s, ``self(E)`` returns float64
    ``(q, u, S)``: q = diag(E' K0 E) (B,), u = E' K0 1 (B,) and S = 1' K0 1,
    with K0 the kernel matrix of Z with a zero diagonal. With U the strictly
    upper part of K0, K0 = U + U', so q = 2 sum_i e_i (U e)_i takes half the
    products of K0 @ E, and u = E' (K0 1) one float64 matrix-vector product
    (K0 1 = U 1 + U' 1: the row and column sums of the first call's tiles).
    The specs of one norm share one distance tile.

    ``method`` "dense" keeps the upper tiles (built once, when they fit
    ``memory_budget`` bytes); "streamed" recomputes them on every call (one
    tile plus O(N B) memory). ``tiles`` counts the tile products of one call.
    :meth:`square_sums` gives sum_{i != j} k^2 per spec (MMD-FUSE's normalisers).
    """

    @sweep
    def __init__(self, Z: Tensor, specs: list[KernelSpec], memory_budget: int):
        specs = [s.resolve(Z.shape[1]) for s in specs]
        if len({s.kind for s in specs}) != 1:
            raise ValueError("`specs` must all be distance kernels or all dot-product kernels")
        self.specs, self.dtype, self.device = specs, compute_dtype(Z.dtype), Z.device
        self.kind = specs[0].kind
        # one distance tile per norm, shared by the specs of that norm: norm -> [spec indices]
        self.groups: dict[str, list[int]] = {}
        for i, s in enumerate(specs):
            self.groups.setdefault(s.norm, []).append(i)
        N, item = Z.shape[0], torch.finfo(self.dtype).bits // 8
        dense_rows = _ranges(N, dense_tile(N))
        upper = sum((i1 - i0) * (N - i0) for i0, i1 in dense_rows)  # entries in the upper tiles
        self.method = "dense" if len(specs) * upper * item <= memory_budget else "streamed"
        self.rows = dense_rows if self.method == "dense" else _ranges(N, PERM_TILE_STREAM)
        self.tiles = len(self.rows) * (len(self.rows) + 1) // 2
        self.factors, self.points = {}, {}
        for norm, idx in self.groups.items():
            Zc, _ = _centre(Z, None, specs[idx[0]])
            self.factors[norm] = _factors(Zc, Zc, self.kind, norm)
            self.points[norm] = Zc
        self.bounds = {norm: _cusp_bound(*self.factors[norm], self.kind, any(specs[i].cusp_at_zero for i in idx))
                       for norm, idx in self.groups.items()}
        self.k1 = None  # (S, N) float64 K0 1 per spec, from the first call
        self.jobs = list(tiles(self.rows))  # the upper tiles, block row by block row
        self.cache = None
        if self.method == "dense":
            parts = run_lanes(lambda idx: [(t, self._tile(t)) for t in idx], _tile_costs(self.jobs), self.device)
            self.cache = [ks for _, ks in sorted((e for part in parts for e in part), key=lambda e: e[0])]

    def _tile(self, tile: int) -> list[Tensor]:
        """[tile of U_s per spec] for upper tile ``tile`` of ``self.jobs`` (diagonal tiles strictly upper)."""
        i0, i1, j0, j1, diag = self.jobs[tile]
        ks: list[Tensor] = [None] * len(self.specs)
        for norm, idx in self.groups.items():
            L, R = self.factors[norm]
            cusp = any(self.specs[i].cusp_at_zero for i in idx)
            Z = self.points[norm]
            t = _t_tile(L[i0:i1], R[j0:j1], self.kind, cusp, diag, norm, bound=self.bounds[norm],
                        points=(Z[i0:i1], Z[j0:j1]))
            for i in idx:
                ks[i] = self.specs[i].evaluate_(t if i == idx[-1] else t.clone())[0]
        if diag is not None:
            for k in ks:
                k.triu_(1)  # each unordered pair once, the diagonal dropped
        return ks

    def _tiles_of(self, t: int) -> list[Tensor]:
        """The tiles of upper tile ``t``: cached (dense) or computed now (streamed)."""
        return self.cache[t] if self.cache is not None else self._tile(t)

    @sweep
    def square_sums(self) -> Tensor:
        """float64 (S,): sum_{i != j} k_s(z_i, z_j)^2 per spec (from the cached tiles, or one streamed sweep)."""
        def lane(idx):
            return {t: torch.stack([k.square().sum(1).sum(dtype=torch.float64) for k in self._tiles_of(t)])
                    for t in idx}
        parts = run_lanes(lane, _tile_costs(self.jobs), self.device)
        per_tile = {t: v for part in parts for t, v in part.items()}
        out = torch.zeros(len(self.specs), dtype=torch.float64, device=self.device)
        for t in range(len(self.jobs)):  # tile order: the same sums on any number of workers
            out += per_tile[t]
        return 2 * out

    @sweep
    def __call__(self, E: Tensor, tick=None) -> list[tuple[Tensor, Tensor, Tensor]]:
        # E in padded columns, a multiple of LABEL_ALIGN: the GEMMs' rows then start 64-byte aligned
        # (at B = 1001 or 4001 columns they ran ~1.5x slower, bench/RESULTS.md); the pad is sliced off below.
        B = E.shape[1]
        V = _aligned(E.to(device=self.device, dtype=self.dtype))
        N, f64 = V.shape[0], torch.float64
        first = self.k1 is None
        count = len(self.specs)
        by_row: dict[int, list[int]] = {}  # block row -> its tiles, the diagonal one first (tiles() order)
        for t, (i0, *_rest) in enumerate(self.jobs):
            by_row.setdefault(i0, []).append(t)
        starts = sorted(by_row)
        lock = threading.Lock()

        def lane(rows):  # block rows -> ({row: [q of the row per spec]}, this lane's part of K0 1)
            tall = max(self.jobs[by_row[starts[r]][0]][1] - starts[r] for r in rows)
            bufs = [torch.empty(tall, V.shape[1], dtype=V.dtype, device=V.device) for _ in range(count)]  # reused
            k1 = torch.zeros(count, N, dtype=f64, device=V.device) if first else None  # K0 1 = U 1 + U' 1
            q_rows = {}
            for r in rows:
                for t in by_row[starts[r]]:
                    i0, i1, j0, j1, _ = self.jobs[t]
                    ks = self._tiles_of(t)
                    acc = [buf[:i1 - i0] for buf in bufs]
                    for A, k in zip(acc, ks):
                        _tile_product(A, k, V[j0:j1], diagonal=i0 == j0)
                    if first:  # U 1 and U' 1, the row and column sums of the upper tiles
                        for s, k in enumerate(ks):
                            k1[s, i0:i1] += k.sum(1)
                            k1[s, j0:j1] += k.sum(0)
                    if tick is not None:
                        with lock:
                            tick(B)
                # the row is done: acc = (U V)[rows], q_s = 2 sum_i e_i (U e)_i over its rows (acc is scratch)
                q_rows[r] = [_colsum64(A.mul_(V[i0:i1])) for A in acc]
            return q_rows, k1

        costs = [sum(_tile_costs([self.jobs[t] for t in by_row[i0]])) for i0 in starts]
        q_rows: dict[int, list[Tensor]] = {}

        def collect(parts):
            for part, k1 in parts:
                q_rows.update(part)
                yield (k1,)
        k1 = _add_lanes(collect(run_lanes(lane, costs, self.device)))[0]
        q = [sum(q_rows[r][s] for r in range(len(starts))) for s in range(count)]  # in row order
        if first:
            self.k1 = k1
        k1 = self.k1
        # u = E' K0 1 per spec, in float64, SUM_ROWS64 rows at a time on the CPU (no N x B float64 copy)
        step = SUM_ROWS64 if V.device.type == "cpu" else N
        spans = [(a, min(a + step, N)) for a in range(0, N, step)]

        def lane_u(idx):
            u = torch.zeros(count, V.shape[1], dtype=f64, device=V.device)
            for a, b in (spans[i] for i in idx):
                Vt = V[a:b].T.to(f64)
                for s in range(count):  # one product per spec: a spec's sums never depend on the others
                    u[s].addmv_(Vt, k1[s, a:b])
            return (u,)

        u = _add_lanes(run_lanes(lane_u, [float(b - a) for a, b in spans], self.device))[0]
        return [(2 * q[s][:B], u[s, :B], k1[s].sum()) for s in range(count)]


class _KernelOfT(torch.autograd.Function):
    """k(t) elementwise; its backward is the same Function on dk/dt (so twice differentiable)."""

    @staticmethod
    def forward(ctx, t, kernel):
        ctx.save_for_backward(t)
        ctx.kernel = kernel
        return kernel.evaluate_(t.clone())[0]

    @staticmethod
    def backward(ctx, g):
        (t,) = ctx.saved_tensors
        return g * _KernelOfT.apply(t, derivative(ctx.kernel)), None


def paired_values(A: Tensor, B: Tensor, kernel: KernelSpec) -> Tensor:
    """k(a_i, b_i) for matched rows of A and B (n,), twice differentiable; O(n d), no tiles."""
    kernel = kernel.resolve(A.shape[1])
    if kernel.kind == "dot":
        t = (A * B).sum(1)
    else:
        t = (A - B).abs().sum(1).square() if kernel.norm == "l1" else ((A - B) ** 2).sum(1)
    return _KernelOfT.apply(t, kernel)
