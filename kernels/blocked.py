"""The blocked torch engine: kernel sums without ever storing an n x m matrix.

Tiles of the two samples are combined with one BLAS matmul of augmented
factors, ``[-2x, |x|^2, 1] . [y, 1, |y|^2] = |x - y|^2``, on data centred at
the pooled mean (distance kernels are translation invariant and float32 loses
every digit far from the origin otherwise); the kernel is applied to the tile
in place and the tile is reduced at once. Tiles are sized so one fits in L2.

Two primitives, each a ``torch.autograd.Function``:

* :func:`kernel_matmul` ``(X, Y, V) -> K(X, Y) @ V``; ``Y=None`` means Y = X
  and uses symmetry (each off-diagonal tile is computed once, used twice).
  Its backward is the same sweep with the kernel's derivative.
* :func:`block_sums` ``(Z, sizes) -> S`` with ``S[a, b]`` the kernel sum over
  block a x block b of the pooled sample (one symmetric sweep gives the XX, XY
  and YY sums of every MMD estimator). When Z requires grad, the gradient is
  accumulated in the same sweep, so forward + backward costs one pass.
"""
from __future__ import annotations

import bisect
import itertools

import torch
from torch import Tensor

from mmdkit.kernels.specs import KernelSpec

__all__ = ["kernel_matmul", "block_sums", "TILE_ROWS", "TILE_COLS", "TILE_SYM"]

# Tile shapes measured on a 2-core Xeon (2 MiB L2 per core): a 512 x 1024 fp32
# tile (2 MiB) keeps the matmul output in L2 for the elementwise passes.
TILE_ROWS, TILE_COLS, TILE_SYM = 512, 1024, 768
# Up to this d, distance tiles come from direct differences: the norm expansion
# loses the small distances of dense low-dimensional data (sqrt(t) of a
# rounding error), and at such d the differences cost no more than the matmul.
DIRECT_MAX_D = 2


def grad_dtype(Z: Tensor) -> torch.dtype:
    """Accumulation dtype of the gradient products: float64 for float32 data with
    d <= 3, where z_i sum_j k'_ij - sum_j k'_ij z_j cancels badly (dense points)."""
    return torch.float64 if Z.dtype == torch.float32 and Z.shape[1] <= 3 else Z.dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other float dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _centre(X: Tensor, Y: Tensor | None, kernel: KernelSpec) -> tuple[Tensor, Tensor | None]:
    """Detached copies in the compute dtype, centred at the pooled mean for distance kernels."""
    dt = compute_dtype(X.dtype)
    X = X.detach().to(dt)
    Y = None if Y is None else Y.detach().to(dt)
    if kernel.kind == "distance":
        total = X.sum(0, dtype=torch.float64) + (0 if Y is None else Y.sum(0, dtype=torch.float64))
        mean = (total / (X.shape[0] + (0 if Y is None else Y.shape[0]))).to(dt)
        X = X - mean
        Y = None if Y is None else Y - mean
    return X, Y


def _factors(X: Tensor, Y: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Left and right factors whose product is the tile of t (|x-y|^2 or <x, y>).

    For distance kernels with d <= DIRECT_MAX_D the raw points come back and
    :func:`_tile` takes direct differences instead.
    """
    if kind == "dot" or X.shape[1] <= DIRECT_MAX_D:
        return X, Y
    one = lambda A: torch.ones(A.shape[0], 1, dtype=A.dtype, device=A.device)
    sq = lambda A: (A * A).sum(1, keepdim=True)
    return torch.cat([X * -2, sq(X), one(X)], 1), torch.cat([Y, one(Y), sq(Y)], 1)


def _dk_unit(kernel: KernelSpec) -> float:
    """The factor the dk tiles of :func:`_tile` are in units of: dk/dt = unit * dk.

    For kernels whose derivative is a multiple of the value (Gaussian), the
    tile reuses k (no second (BM, BN) tensor, one elementwise pass less).
    """
    c = kernel.derivative_scale()
    return 1.0 if c is None else c


def _tile(L: Tensor, R: Tensor, kernel: KernelSpec, derivative: bool, diagonal: int | None,
          exclude: bool = True):
    """k and dk/dt / _dk_unit(kernel) on the tile L @ R.T.

    ``diagonal`` is the offset of the pairs (i, i) of one sample with itself:
    they are zeroed (``exclude``) or get a distance of exactly 0.
    """
    if kernel.kind == "distance" and L.shape[1] <= DIRECT_MAX_D:  # raw points: sum_c (x_c - y_c)^2
        t = (L[:, :1] - R[:, 0]).square_()  # (BM, 1) - (BN,) -> (BM, BN)
        for c in range(1, L.shape[1]):
            t.add_((L[:, c:c + 1] - R[:, c]).square_())
    else:
        t = L @ R.T  # (BM, d+2) @ (d+2, BN) -> (BM, BN)
        if kernel.cusp_at_zero:
            # The expansion leaves ~ (d+2) eps (|x|^2 + |y|^2) of rounding where x = y, which a
            # sqrt would turn into ~sqrt(eps) |x|: pairs below that bound are coincident, t = 0.
            tol = (L[:, -2:-1] + R[:, -1].max()).mul_(4 * L.shape[1] * torch.finfo(t.dtype).eps)
            t.masked_fill_(t <= tol, 0.0)  # (BM, BN) <= (BM, 1); also clamps negatives
    if kernel.kind == "distance":
        t.clamp_min_(0)
        if diagonal is not None and not exclude:
            t.diagonal(diagonal).zero_()
    scaled = derivative and kernel.derivative_scale() is not None
    k, dk = kernel.evaluate_(t, derivative and not scaled)
    if scaled:  # dk/dt = c k: the callers multiply their products of dk by c (_dk_unit)
        dk = k
    if diagonal is not None and exclude:
        k.diagonal(diagonal).zero_()
        if dk is not None:
            dk.diagonal(diagonal).zero_()
    return k, dk


def _ranges(n: int, step: int, bounds=(0,)) -> list[tuple[int, int]]:
    """Consecutive [start, stop) chunks of at most ``step`` that never cross a bound."""
    cuts = sorted(set(bounds) | {0, n})
    return [(a, min(a + step, b)) for lo, b in zip(cuts, cuts[1:]) for a in range(lo, b, step)]


def _diag_offset(i0, i1, j0, j1, same_points):
    """Offset of the global diagonal inside tile [i0:i1] x [j0:j1], or None."""
    if not same_points or i1 <= j0 or j1 <= i0:
        return None
    return i0 - j0


def _sweep(X, Y, V, kernel, exclude_diagonal, W=None, WT=None, VT=None):
    """One pass over all tiles of K(X, Y) (Y None: symmetric, upper tiles only).

    Returns (K @ V, K.T @ VT, K' @ W, K'.T @ WT) with K' = dk/dt; absent
    operands give None. In the symmetric case K.T = K, so only V and W are used.
    """
    sym = Y is None
    L, R = _factors(X, X if sym else Y, kernel.kind)
    n, m = L.shape[0], R.shape[0]
    acc = lambda A, rows: None if A is None else torch.zeros(rows, A.shape[1], dtype=A.dtype, device=A.device)
    KV, KtVT, DW, DtWT = acc(V, n), acc(VT, m), acc(W, n), acc(WT, m)
    deriv = W is not None or WT is not None
    rows = _ranges(n, TILE_SYM if sym else TILE_ROWS)
    for a, (i0, i1) in enumerate(rows):
        cols = rows[a:] if sym else _ranges(m, TILE_COLS)
        for j0, j1 in cols:
            diag = _diag_offset(i0, i1, j0, j1, sym or exclude_diagonal)
            k, dk = _tile(L[i0:i1], R[j0:j1], kernel, deriv, diag, exclude_diagonal)
            if V is not None:
                KV[i0:i1].addmm_(k, V[j0:j1])  # (BM, BN) @ (BN, p) -> (BM, p)
            if deriv:  # the gradient products accumulate in grad_dtype (see there)
                dk = dk.to((W if W is not None else WT).dtype)
            if W is not None:
                DW[i0:i1].addmm_(dk, W[j0:j1])
            if sym and j0 != i0:  # the mirrored tile
                if V is not None:
                    KV[j0:j1].addmm_(k.T, V[i0:i1])
                if W is not None:
                    DW[j0:j1].addmm_(dk.T, W[i0:i1])
            if not sym:
                if VT is not None:
                    KtVT[j0:j1].addmm_(k.T, VT[i0:i1])  # (BN, BM) @ (BM, p) -> (BN, p)
                if WT is not None:
                    DtWT[j0:j1].addmm_(dk.T, WT[i0:i1])
    unit = _dk_unit(kernel)
    if unit != 1.0:
        for A in (DW, DtWT):
            if A is not None:
                A.mul_(unit)
    return KV, KtVT, DW, DtWT


def _outer(A: Tensor, Z: Tensor) -> Tensor:
    """Columns [A, A (x) Z]: (n, p) and (n, d) -> (n, p (1 + d))."""
    return torch.cat([A, (A[:, :, None] * Z[:, None, :]).flatten(1)], 1)


def _grad_from(Z: Tensor, G: Tensor, D: Tensor, kind: str) -> Tensor:
    """sum_c G[i,c] * d/dz_i of (K' stuff): D holds K' @ [V, V (x) Y] for the p columns of G."""
    n, p = G.shape
    G, Z = G.to(D.dtype), Z.to(D.dtype)  # D may be float64 (grad_dtype)
    D0, D1 = D[:, :p], D[:, p:].reshape(n, p, -1)
    cross = torch.einsum("np,npd->nd", G, D1)
    if kind == "dot":
        return cross
    return 2 * (Z * (G * D0).sum(1, keepdim=True) - cross)


class _KernelMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, Y, V, kernel, exclude_diagonal):
        Xc, Yc = _centre(X, Y, kernel)
        Vc = V.detach().to(Xc.dtype)
        out = _sweep(Xc, Yc, Vc, kernel, exclude_diagonal)[0]
        ctx.save_for_backward(Xc, Yc, Vc)
        ctx.kernel, ctx.exclude, ctx.sym = kernel, exclude_diagonal, Y is None
        return out.to(V.dtype)

    @staticmethod
    def backward(ctx, G):
        Xc, Yc, Vc = ctx.saved_tensors
        kernel, kind = ctx.kernel, ctx.kernel.kind
        G = G.to(Xc.dtype)
        nx, ny, nv = ctx.needs_input_grad[:3]
        gX = gY = gV = None
        if ctx.sym:
            # d/dx_i of G.(K V) = sum_j k'_ij dt_ij/dx_i (G_i.V_j + V_i.G_j): K' @ [V, V(x)X, G, G(x)X]
            W = torch.cat([_outer(Vc, Xc), _outer(G, Xc)], 1).to(grad_dtype(Xc)) if nx else None
            KG, _, D, _ = _sweep(Xc, None, G if nv else None, kernel, ctx.exclude, W=W)
            if nx:
                half = D.shape[1] // 2
                gX = _grad_from(Xc, G, D[:, :half], kind) + _grad_from(Xc, Vc, D[:, half:], kind)
            gV = KG
        else:
            W = _outer(Vc, Yc).to(grad_dtype(Xc)) if nx else None
            WT = _outer(G, Xc).to(grad_dtype(Xc)) if ny else None
            _, KtG, D, DT = _sweep(Xc, Yc, None, kernel, ctx.exclude, W=W, WT=WT, VT=G if nv else None)
            gX = _grad_from(Xc, G, D, kind) if nx else None
            gY = _grad_from(Yc, Vc, DT, kind) if ny else None
            gV = KtG
        cast = lambda g, like: None if g is None else g.to(like.dtype)
        return cast(gX, Xc), cast(gY, Yc), cast(gV, Vc), None, None


def kernel_matmul(X: Tensor, Y: Tensor | None, V: Tensor, kernel: KernelSpec,
                  exclude_diagonal: bool = False) -> Tensor:
    """K(X, Y) @ V on the blocked torch engine, differentiable in X, Y and V.

    ``Y=None`` means Y = X (symmetric sweep). ``exclude_diagonal`` drops the
    terms with i == j (U-statistics; needs Y None or len(X) == len(Y)).
    Memory is O((n + m)(d + p)) plus one tile, forward and backward.
    """
    kernel = kernel.resolve(X.shape[1])
    return _KernelMatmul.apply(X, Y, V, kernel, exclude_diagonal)


class _BlockSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, Z, bounds, kernel, exclude_diagonal, need_grad):
        Zc, _ = _centre(Z, None, kernel)
        L, R = _factors(Zc, Zc, kernel.kind)
        N, p = Zc.shape[0], len(bounds) - 1
        group = torch.bucketize(torch.arange(N, device=Z.device), torch.tensor(bounds[1:-1], device=Z.device), right=True)
        gdt = grad_dtype(Zc)
        Zaug = torch.cat([torch.ones(N, 1, dtype=Zc.dtype, device=Zc.device), Zc], 1).to(gdt) if need_grad else None
        S = torch.zeros(p, p, dtype=torch.float64, device=Z.device)
        # D[b, i] = sum_{j in block b} k'_ij [1, z_j]  (block-major, so each update is one in-place addmm)
        D = torch.zeros(p, N, Zaug.shape[1], dtype=gdt, device=Z.device) if need_grad else None
        tiles = [(i0, i1, bisect.bisect_right(bounds, i0) - 1) for i0, i1 in _ranges(N, TILE_SYM, bounds)]
        for a, (i0, i1, bi) in enumerate(tiles):
            for j0, j1, bj in tiles[a:]:
                k, dk = _tile(L[i0:i1], R[j0:j1], kernel, need_grad, 0 if i0 == j0 else None,
                              exclude_diagonal)
                total = k.sum()  # one pass: only block totals are needed, not row sums
                S[bi, bj] += total
                if need_grad:
                    dk = dk.to(gdt)
                    D[bj, i0:i1].addmm_(dk, Zaug[j0:j1])  # (BM, BN) @ (BN, 1+d) -> (BM, 1+d)
                if j0 != i0:  # the mirrored tile
                    S[bj, bi] += total
                    if need_grad:
                        D[bi, j0:j1].addmm_(dk.T, Zaug[i0:i1])
        unit = _dk_unit(kernel)
        if need_grad and unit != 1.0:
            D.mul_(unit)
        ctx.save_for_backward(Zc, D, group)
        ctx.kind, ctx.in_dtype = kernel.kind, Z.dtype
        return S  # float64: the estimators combine these sums without cancellation loss

    @staticmethod
    def backward(ctx, G):
        Zc, D, group = ctx.saved_tensors
        if D is None:
            raise RuntimeError("block_sums was run without need_grad; cannot differentiate")
        # L = sum_ab G_ab S_ab  =>  dL/dz_i = sum_j (G + G.T)[b_i, b_j] dk(z_i, z_j)/dz_i
        Wt = (G + G.T).to(Zc.dtype)[group]  # (N, p): weight of block b for row i
        gZ = _grad_from(Zc, Wt, torch.cat([D[:, :, 0].T, D[:, :, 1:].transpose(0, 1).flatten(1)], 1), ctx.kind)
        return gZ.to(ctx.in_dtype), None, None, None, None


def block_sums(Z: Tensor, sizes: tuple[int, ...], kernel: KernelSpec,
               exclude_diagonal: bool = False) -> Tensor:
    """S[a, b] = sum_{i in block a, j in block b} k(z_i, z_j) for consecutive blocks of Z.

    ``sizes`` are the block lengths (they sum to len(Z)); ``exclude_diagonal``
    drops the i == j terms. One symmetric sweep; differentiable in Z with the
    gradient built during that sweep, so memory stays O(N p d).
    """
    kernel = kernel.resolve(Z.shape[1])
    bounds = (0,) + tuple(itertools.accumulate(int(s) for s in sizes))
    need_grad = torch.is_grad_enabled() and Z.requires_grad
    return _BlockSums.apply(Z, bounds, kernel, exclude_diagonal, need_grad)
