"""The ring backend: the engine's operations over a torch.distributed process group.

Each rank holds a row shard of the pooled sample (its own rows of every
block: X, Y, ...). Global order is block by block, each block in rank order:
X = the ranks' X shards concatenated, then Y the same way. The operations
take local shards and return what one process returns on the gathered data:

* ``block_sums(Z_r, sizes_r, kernel)``: the global float64 (p, p) block sums
  on every rank, differentiable with respect to each rank's own rows;
* ``kernel_matmul(X_r, Y_r, V_r, kernel)``: K(X_r, Y) @ V for the global Y, V
  (rows: the rank's own X_r); differentiable in X_r;
* ``permutation_sums(Z_r, specs, budget)``: the permutation operator, whose
  call takes the label matrix of the rows it names (``rows``: global pooled
  indices, computed locally from the seed; labels never travel).

Shards travel a ring: at step k a rank works on the shard of rank r + k while
the next one is already on its way (non-blocking send/receive, double
buffering). The forward visits each unordered pair of shards once (P // 2
steps; at step P / 2 of an even P the pair's rows are split between its two
ranks), sums in float64 and finishes with one all-reduce. Communication per
rank: about P / 2 shards of rows, i.e. O(N d / 2), never an n x m matrix.
The backward of ``block_sums`` runs the full ring (each rank the first-argument
derivative of its own rows against every shard), so it is exact but not
twice differentiable.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from mmdkit.kernels.backends import Backend
from mmdkit.kernels.blocked import compute_dtype
from mmdkit.kernels.specs import KernelSpec

__all__ = ["RingBackend", "Layout"]


@dataclass(frozen=True)
class Layout:
    """Who holds what: ``sizes[r, b]`` rows of block b on rank r (int64 numpy (P, p))."""

    sizes: np.ndarray

    @property
    def world(self) -> int:
        return self.sizes.shape[0]

    @property
    def totals(self) -> np.ndarray:
        return self.sizes.sum(0)

    def rows(self, r: int) -> int:
        return int(self.sizes[r].sum())

    def global_index(self, r: int) -> np.ndarray:
        """Global pooled indices of rank r's rows, in its local order (block by block)."""
        starts = np.concatenate([[0], np.cumsum(self.totals)[:-1]])  # where each block starts globally
        before = self.sizes[:r].sum(0)  # rows of each block on lower ranks
        return np.concatenate([starts[b] + before[b] + np.arange(self.sizes[r, b]) for b in range(self.sizes.shape[1])])

    def onehot(self, r: int, dtype=torch.float64, device="cpu") -> Tensor:
        """(rows of r, p) block indicators of rank r's rows."""
        block = np.repeat(np.arange(self.sizes.shape[1]), self.sizes[r])
        return torch.nn.functional.one_hot(torch.from_numpy(block), self.sizes.shape[1]).to(device, dtype)


class RingBackend(Backend):
    """The engine's operations on row shards over a process group, each shard's tiles on ``local``."""

    name = "ring"

    def __init__(self, local: Backend, group=None):
        self.local, self.group = local, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.bytes_sent = 0  # tensor bytes this rank sent point to point (the ring; collectives not counted)

    # -- communication ---------------------------------------------------------------------------
    def layout(self, sizes: tuple[int, ...], device) -> Layout:
        """All ranks' block sizes (one all-gather)."""
        mine = torch.tensor([int(s) for s in sizes], dtype=torch.int64, device=device)
        out = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(out, mine, group=self.group)
        return Layout(torch.stack(out).cpu().numpy())

    def all_reduce(self, T: Tensor) -> Tensor:
        dist.all_reduce(T, group=self.group)
        return T

    def _peer(self, r: int) -> int:
        return dist.get_global_rank(self.group, r % self.world) if self.group is not None else r % self.world

    def shards(self, Z: Tensor, layout: Layout, steps: int):
        """An iterator of (k, rank s = r + k, shard of s) for k = 1..steps, with the ring's traffic overlapped.

        Step 1's exchange is posted now, so it travels while the caller computes on its own shard
        before iterating; each received shard is forwarded (step k + 1 posted) before it is handed
        out, so the next one travels while the caller computes on this one. Iterate it to the end.
        """
        if steps < 1:
            return iter(())
        pending = self._post(Z.detach().contiguous(), 1, layout)

        def run():
            nonlocal pending
            for k in range(1, steps + 1):
                requests, shard, src = pending
                for req in requests:
                    req.wait()
                if k < steps:
                    pending = self._post(shard, k + 1, layout)  # read-only while it is sent and computed on
                yield k, src, shard
        return run()

    def _post(self, cur: Tensor, k: int, layout: Layout):
        """Post step k's exchange (send ``cur`` to rank r - 1, receive rank r + k's shard from r + 1)."""
        src = (self.rank + k) % self.world
        buf = torch.empty(layout.rows(src), cur.shape[1], dtype=cur.dtype, device=cur.device)
        self.bytes_sent += cur.numel() * cur.element_size()
        ops = [dist.P2POp(dist.isend, cur, self._peer(self.rank - 1), self.group),
               dist.P2POp(dist.irecv, buf, self._peer(self.rank + 1), self.group)]
        return dist.batch_isend_irecv(ops), buf, src

    def _pairs(self, Z: Tensor, layout: Layout):
        """(rows of the left shard, its rank, the right shard, its rank) of the pairs this rank computes.

        Each unordered pair of distinct shards once: steps 1 .. P // 2; at step P / 2 of an even P both
        ranks of the pair hold both shards, and each takes half of the lower rank's rows. The first
        exchange is posted when this is called (see :meth:`shards`): call it before the own-shard work.
        """
        half = self.world // 2
        shards = self.shards(Z, layout, half)

        def run():
            for k, s, S in shards:
                if self.world % 2 == 0 and k == half:
                    if self.rank < half:  # the lower rank: the first half of its own rows against S
                        h = (Z.shape[0] + 1) // 2
                        yield Z[:h], self.rank, slice(0, h), S, s
                    else:  # the upper rank: the second half of the received (lower) shard against its own
                        h = (S.shape[0] + 1) // 2
                        yield S[h:], s, slice(h, S.shape[0]), Z, self.rank
                else:
                    yield Z, self.rank, slice(0, Z.shape[0]), S, s
        return run()

    # -- operations --------------------------------------------------------------------------------
    def block_sums(self, Z, sizes, kernel, exclude_diagonal=False):
        layout = self.layout(sizes, Z.device)
        return _RingBlockSums.apply(Z, self, layout, kernel.resolve(Z.shape[1]), exclude_diagonal)

    def kernel_matmul(self, X, Y, V, kernel, exclude_diagonal=False):
        """K(X_r, Y) @ V for the global Y and V (Y_r, V_r the local shards); differentiable in X_r only.

        The sample and its weights travel the whole ring together (every rank
        needs every shard of them): P - 1 steps.
        """
        if Y is None or exclude_diagonal:
            raise NotImplementedError("the ring kernel_matmul takes evaluation points X_r and a sharded sample Y")
        if (Y.requires_grad or V.requires_grad) and torch.is_grad_enabled():
            raise NotImplementedError("the ring kernel_matmul is differentiable in the evaluation points only")
        d, wide = Y.shape[1], torch.promote_types(Y.dtype, V.dtype)
        pack = torch.cat([Y.detach().to(wide), V.detach().to(wide)], 1)
        out = torch.zeros(X.shape[0], V.shape[1], dtype=V.dtype, device=X.device)
        shards = self.shards(pack, self.layout((Y.shape[0],), Y.device), self.world - 1)  # in flight from now
        for S in itertools.chain([pack], (S for _, _, S in shards)):
            if S.shape[0] and X.shape[0]:
                out = out + self.local.kernel_matmul(X, S[:, :d].to(Y.dtype), S[:, d:].to(V.dtype), kernel)
        return out

    def permutation_sums(self, Z, specs, memory_budget, sizes=None):
        """``sizes``: this rank's block sizes (its X rows, its Y rows), which place its rows globally."""
        return _RingPermutationSums(self, Z, specs, memory_budget, (Z.shape[0],) if sizes is None else sizes)


def _cross_sums(local: Backend, A: Tensor, Ab: Tensor, B: Tensor, Bb: Tensor, kernel: KernelSpec) -> Tensor:
    """(p, p) float64 block sums of K(A, B) (Ab, Bb the rows' block indicators)."""
    if A.shape[0] == 0 or B.shape[0] == 0:
        return torch.zeros(Ab.shape[1], Bb.shape[1], dtype=torch.float64, device=A.device)
    return Ab.T @ local.kernel_matmul(A, B, Bb, kernel).to(torch.float64)


class _RingBlockSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, Z, ring: RingBackend, layout: Layout, kernel, exclude_diagonal):
        p = layout.sizes.shape[1]
        r = ring.rank
        S = torch.zeros(p, p, dtype=torch.float64, device=Z.device)
        with torch.no_grad():
            pairs = ring._pairs(Z.detach(), layout)  # the first shard travels during the own block's sweep
            if Z.shape[0]:
                S += ring.local.block_sums(Z.detach(), tuple(int(s) for s in layout.sizes[r]), kernel,
                                           exclude_diagonal)
            for A, a, rows, B, b in pairs:
                C = _cross_sums(ring.local, A, layout.onehot(a, device=Z.device)[rows], B,
                                layout.onehot(b, device=Z.device), kernel)
                S += C + C.T
        ring.all_reduce(S)
        ctx.save_for_backward(Z)
        ctx.ring, ctx.layout, ctx.kernel, ctx.exclude = ring, layout, kernel, exclude_diagonal
        return S

    @staticmethod
    def backward(ctx, G):
        """d/dz_i of sum_ab G_ab S_ab = sum_j (G + G')[b_i, b_j] d1 k(z_i, z_j) over every shard j lives on."""
        if torch.is_grad_enabled():
            raise NotImplementedError("the ring block_sums is differentiable once (no create_graph=True)")
        (Z,) = ctx.saved_tensors
        ring, layout, kernel = ctx.ring, ctx.layout, ctx.kernel
        r = ring.rank
        G = G.to(torch.float64)
        H = layout.onehot(r, device=Z.device) @ (G + G.T)  # (rows of r, p)
        Zr = Z.detach().requires_grad_()
        grad = torch.zeros_like(Z)
        with torch.enable_grad():
            shards = ring.shards(Z.detach(), layout, ring.world - 1)  # in flight during the own block
            if Z.shape[0]:
                own = ring.local.block_sums(Zr, tuple(int(s) for s in layout.sizes[r]), kernel, ctx.exclude)
                grad += torch.autograd.grad((G * own).sum(), Zr)[0]
            for _, s, S in shards:
                if Z.shape[0] == 0 or S.shape[0] == 0:
                    continue
                T = ring.local.kernel_matmul(Zr, S, layout.onehot(s, S.dtype, Z.device), kernel)
                grad += torch.autograd.grad((H.to(T.dtype) * T).sum(), Zr)[0]
        return grad, None, None, None, None


class _RingPermutationSums:
    """The permutation operator on the ring: E (labels of ``rows``) -> global (q, u, S) per spec.

    ``label_rows`` are the global pooled indices of the rows whose labels a call
    takes: this rank's own rows, then those of the shards it pairs with
    (received once and kept). Own pairs go through the local operator (dense
    tiles when they fit), cross pairs through the local ``kernel_matmul``.
    """

    def __init__(self, ring: RingBackend, Z: Tensor, specs: list[KernelSpec], memory_budget: int, sizes):
        self.ring, self.specs = ring, [s.resolve(Z.shape[1]) for s in specs]
        self.layout = ring.layout(sizes, Z.device)
        self.dtype = compute_dtype(Z.dtype)
        Zd = Z.detach().to(self.dtype)
        pairs = ring._pairs(Zd, self.layout)  # the first shard travels while the own operator is built
        self.own = ring.local.permutation_sums(Z, self.specs, memory_budget) if Z.shape[0] else None
        self.method, self.tiles = (self.own.method if self.own is not None else "streamed"), 1
        index = self.layout.global_index
        self.pairs = []  # (A, rows of A in the label matrix, B, rows of B)
        segments = [index(ring.rank)]
        for A, a, rows, B, b in pairs:
            own_a, own_b = a == ring.rank, b == ring.rank
            slots = []
            for own, rank, sl in ((own_a, a, rows), (own_b, b, slice(None))):
                if own:
                    slots.append(np.arange(Z.shape[0])[sl])
                else:
                    start = sum(len(seg) for seg in segments)
                    segments.append(index(rank)[sl])
                    slots.append(start + np.arange(len(segments[-1])))
            self.pairs.append((A.clone(), torch.from_numpy(slots[0]), B.clone(), torch.from_numpy(slots[1])))
        self.label_rows = np.concatenate(segments)
        self.n_own, self.device = Z.shape[0], Z.device

    def square_sums(self) -> Tensor:
        """float64 (S,): sum_{i != j} k_s^2 over the gathered sample (own pairs, cross pairs, one all-reduce)."""
        out = torch.zeros(len(self.specs), dtype=torch.float64, device=self.device)
        if self.own is not None:
            out += self.own.square_sums()
        for A, _, B, _ in self.pairs:
            if A.shape[0] and B.shape[0]:
                ones = torch.ones(B.shape[0], 1, dtype=A.dtype, device=A.device)
                out += torch.stack([2 * self.ring.local.kernel_matmul(A, B, ones, s.square()).sum(dtype=torch.float64)
                                    for s in self.specs])
        return self.ring.all_reduce(out)

    def __call__(self, E: Tensor, tick=None):
        E = E.to(device=self.device, dtype=self.dtype)
        f64, B = torch.float64, E.shape[1]
        acc = torch.zeros(len(self.specs), 2 * B + 1, dtype=f64, device=self.device)  # [q, u, S] per spec
        if self.own is not None:
            for s, (q, u, S) in enumerate(self.own(E[:self.n_own])):
                acc[s, :B] += q
                acc[s, B:2 * B] += u
                acc[s, 2 * B] += S
        for A, ia, Bm, ib in self.pairs:
            if A.shape[0] == 0 or Bm.shape[0] == 0:
                continue
            Ea, Eb = E[ia], E[ib]
            V = torch.cat([torch.ones(Bm.shape[0], 1, dtype=E.dtype, device=E.device), Eb], 1)
            for s, spec in enumerate(self.specs):
                T = self.ring.local.kernel_matmul(A, Bm, V, spec).to(f64)  # K(A, B) [1, E_B]
                acc[s, :B] += 2 * (Ea.to(f64) * T[:, 1:]).sum(0)
                acc[s, B:2 * B] += Ea.to(f64).T @ T[:, 0] + T[:, 1:].sum(0)
                acc[s, 2 * B] += 2 * T[:, 0].sum()
        if tick is not None:
            tick(B)
        self.ring.all_reduce(acc)
        return [(acc[s, :B], acc[s, B:2 * B], acc[s, 2 * B]) for s in range(len(self.specs))]
