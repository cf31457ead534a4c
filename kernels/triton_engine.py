"""The Triton engine: fused ``K(X, Y) @ V`` kernels, forward and backward.

Same two functions, signatures and semantics as :mod:`mmdkit.kernels.blocked`
(plus ``precision=``): :func:`kernel_matmul` and :func:`block_sums`. Each
program loads a tile of X and of Y, forms the squared distances with one
``tl.dot`` on centred data (``|x|^2 + |y|^2 - 2 x.y`` clamped at 0; the inner
product itself for the dot-product Polynomial kernel), applies the kernel in
registers and multiplies the tile into V with fp32 accumulation. The n x m
kernel matrix is never written, forward or backward.

The numerics are the torch engine's, so the same error budgets hold on both
backends: direct differences ``sum_c (x_c - y_c)^2`` for d <= DIRECT_MAX_D
(one threshold, imported from :mod:`mmdkit.kernels.blocked`), t from direct
differences for close and coincident points of kernels with a cusp at 0 (exactly
0 where x = y; ``blocked.NEAR``), and gradient sums from
direct differences where ``blocked.grad_dtype`` widens (d <= 3). Second
derivatives (a backward with ``create_graph=True``) run on the torch engine.

Fewer wasted lanes (bench/ROOFLINE.md counts them in the compiled SASS,
``python -m mmdkit.kernels.report --sass``): the direct differences are
unrolled over the d <= DIRECT_MAX_D coordinates (2 d lane-ops per pair, no
padding of d to a dot's K = 8); V with p <= MAX_ROWS columns (kernel sums,
:func:`block_sums` of two samples) is summed by row reductions, one FMA per
pair and column, instead of a ``tl.dot`` with V padded to 8 columns; on a GPU
2^x and log2 are single ``.ftz`` SFU instructions, the Gaussian and Laplace
parameters carry log2(e), and a one-term kernel's weight multiplies the sums
once. DIRECT_MAX_D is the torch engine's accuracy threshold (the norm
expansion loses the small distances of dense low-d data), one on both
backends so both keep the same numerics. It is not the GPU's speed optimum:
counted in the SASS (bench/ROOFLINE.md), the direct path's 6.4 + 2.1 (d - 1)
instructions per pair stay below the norm expansion's 18.9 ("tf32") to 23.8
("ieee") up to d = 6; moving the threshold is left to a measured GPU run.
Nothing here has been timed on a GPU.

Layers, each findable by name:

* ``@triton.jit`` bodies: :func:`_kernel_matmul_fwd` (``K @ V``) and
  :func:`_kernel_matmul_bwd` (``dX = sum_j k'(t_ij) (A_i . B_j) dt_ij/dx_i``),
  with the tile helpers :func:`_pair_t` and :func:`_kernel_tile`;
* launchers :func:`_launch_fwd` and :func:`_launch_bwd` (shapes, allocation,
  grid; no host synchronisation);
* the autograd Function :class:`_KernelMatmul`;
* the public functions :func:`kernel_matmul` and :func:`block_sums`.

Kernel specs become a constexpr kernel id per term plus float parameters
(:func:`kernel_terms`); a Mixture is up to :data:`MAX_TERMS` terms of one
distance, larger mixtures are summed over several launches (the sum is linear
in k).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from mmdkit.kernels import blocked
from mmdkit.kernels.blocked import DIRECT_MAX_D, _centre, grad_dtype
from mmdkit.kernels.specs import (
    IMQ, Energy, Gaussian, KernelSpec, Laplace, Mixture, Polynomial, RationalQuadratic,
)

__all__ = ["kernel_matmul", "block_sums", "kernel_terms", "PRECISIONS", "DTYPES", "MAX_TERMS",
           "DEFAULT_CONFIG", "configs"]

PRECISIONS = ("ieee", "tf32", "tf32x3")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_TERMS = 4

# Kernel ids: KERNEL_IDS for the host, the same values as constexprs inside the jit bodies.
KERNEL_IDS = {"none": 0, "gaussian": 1, "laplace": 2, "energy": 3, "power": 4, "polynomial": 5}
_NONE = tl.constexpr(KERNEL_IDS["none"])
_GAUSSIAN = tl.constexpr(KERNEL_IDS["gaussian"])      # 2^(a t)             a = -log2(e)/(2 h^2)
_LAPLACE = tl.constexpr(KERNEL_IDS["laplace"])        # 2^(a sqrt(t))       a = -log2(e)/h
_ENERGY = tl.constexpr(KERNEL_IDS["energy"])          # -t^a                a = exponent/2
_POWER = tl.constexpr(KERNEL_IDS["power"])            # (1 + a t)^b         RQ: a = 1/(2 alpha h^2), b = -alpha;
#                                                                           IMQ: a = 1/h^2, b = beta
_POLYNOMIAL = tl.constexpr(KERNEL_IDS["polynomial"])  # (a t + b)^DEGREE, t = <x, y>; a = gamma, b = coef0

_BOUNDED = (KERNEL_IDS["none"], KERNEL_IDS["gaussian"], KERNEL_IDS["laplace"], KERNEL_IDS["power"])  # k in [0, 1]
_LOG2E = math.log2(math.e)
_LN2 = tl.constexpr(math.log(2.0))

_EPS32 = tl.constexpr(2.0 ** -23)  # float32 machine epsilon (the cusp tolerance of _pair_t)
_NEAR = tl.constexpr(blocked.NEAR)  # close pairs below NEAR times that tolerance are refined
_FLT_MIN = tl.constexpr(2.0 ** -126)  # smallest normal float32 (_pow splits normal numbers)

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# On a GPU, 2^x and log2 are the single SFU instructions ex2/lg2.approx.ftz.f32: the non-ftz forms that
# tl.exp2/tl.log2 emit add three fix-up instructions each for subnormal arguments or results (0.0 instead
# of a value below 2^-126; the kernels' arguments of lg2 are >= 1). The interpreter keeps tl.exp2/tl.log2.
_FTZ = tl.constexpr(not _INTERPRET)


def _interpreter_bf16_dot() -> None:
    """Under TRITON_INTERPRET=1, let tl.dot take bfloat16 operands (as a GPU does: exact products, fp32 sums).

    triton's interpreter stores bfloat16 as raw uint16 bits and multiplies those bits; this widens them
    to float32 first (bits << 16), which is exact. Installed once; other dtypes are untouched.
    """
    from triton.runtime import interpreter as interp
    builder = getattr(interp, "InterpreterBuilder", None)
    if builder is None or getattr(builder.create_dot, "_mmdkit_bf16", False):
        return
    original = builder.create_dot

    def widen(h):
        if h.dtype.scalar != tl.bfloat16:
            return h
        bits = h.data.astype("uint32") << 16
        return interp.TensorHandle(bits.view("float32"), tl.float32)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        return original(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    create_dot._mmdkit_bf16 = True
    builder.create_dot = create_dot


if _INTERPRET:
    _interpreter_bf16_dot()


# ---------------------------------------------------------------------------
# Specs -> (kernel id, a, b, weight) terms
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Terms:
    """Up to MAX_TERMS kernel terms of one pairwise quantity, as jit arguments."""

    kinds: tuple[int, ...]        # MAX_TERMS kernel ids, 0 = unused slot
    params: tuple[float, ...]     # (a, b, w) per slot
    degree: int = 1               # Polynomial degree (constexpr)
    dot: bool = False             # t = <x, y> instead of |x - y|^2
    cusp: bool = False            # a term has a sqrt of t (KernelSpec.cusp_at_zero): coincident points at t = 0

    def kwargs(self, backward: bool = False) -> dict:
        """Keyword arguments of the forward jit body (of the backward's with ``backward``: no BOUNDED)."""
        out = {f"KIND{i}": k for i, k in enumerate(self.kinds)}
        for i in range(MAX_TERMS):
            out[f"a{i}"], out[f"b{i}"], out[f"w{i}"] = self.params[3 * i: 3 * i + 3]
        out["DEGREE"], out["DOT"], out["CUSP"] = self.degree, self.dot, self.cusp
        if not backward:
            out["BOUNDED"] = not self.dot and all(k in _BOUNDED for k in self.kinds)
        return out


def _term(spec: KernelSpec) -> tuple[int, float, float]:
    """(kernel id, a, b) of one non-mixture spec."""
    if isinstance(spec, Gaussian):  # exp(-t / (2 h^2)) = 2^(a t)
        return KERNEL_IDS["gaussian"], -0.5 * _LOG2E / spec._h() ** 2, 0.0
    if isinstance(spec, Laplace):  # exp(-r / h) = 2^(a r)
        return KERNEL_IDS["laplace"], -_LOG2E / spec._h(), 0.0
    if isinstance(spec, Energy) and spec.offset == 0:
        return KERNEL_IDS["energy"], spec.exponent / 2, 0.0
    if isinstance(spec, Energy):  # -(t + c^2)^(b/2) = -c^b (1 + t / c^2)^(b/2): a power term of weight -c^b
        return KERNEL_IDS["power"], 1.0 / spec.offset ** 2, spec.exponent / 2
    if isinstance(spec, RationalQuadratic):
        return KERNEL_IDS["power"], 1.0 / (2 * spec.alpha * spec._h() ** 2), -spec.alpha
    if isinstance(spec, IMQ):
        return KERNEL_IDS["power"], 1.0 / spec._h() ** 2, spec.beta
    raise TypeError(f"the Triton engine has no kernel for {type(spec).__name__}; use backend='torch'")


def _flatten(spec: KernelSpec, weight: float = 1.0) -> list[tuple[KernelSpec, int, float, float, float]]:
    """(spec, id, a, b, w) for every distance term of ``spec`` (nested mixtures multiply weights)."""
    if isinstance(spec, Mixture):
        ws = spec.weights or (1.0,) * len(spec.components)
        return [t for c, w in zip(spec.components, ws) for t in _flatten(c, weight * w)]
    if isinstance(spec, Energy) and spec.offset:
        weight = -weight * spec.offset ** spec.exponent
    return [(spec, *_term(spec), weight)]


def kernel_terms(kernel: KernelSpec) -> list[Terms]:
    """The jit arguments of a resolved spec: one :class:`Terms` per launch (sum their results)."""
    if kernel.norm != "l2":
        raise ValueError(f"the Triton kernels build L2 distance tiles only, got norm={kernel.norm!r} "
                         "(TritonBackend sends L1 kernels to the blocked engine)")
    if isinstance(kernel, Polynomial):
        if kernel.gamma is None:
            raise ValueError("`gamma` of Polynomial is not set; call .resolve(d)")
        if int(kernel.degree) != kernel.degree or kernel.degree < 1:
            raise ValueError(f"`degree` of Polynomial must be an integer >= 1, got {kernel.degree}")
        pad = (0.0,) * (3 * (MAX_TERMS - 1))
        return [Terms((KERNEL_IDS["polynomial"],) + (0,) * (MAX_TERMS - 1),
                      (float(kernel.gamma), float(kernel.coef0), 1.0) + pad, int(kernel.degree), True)]
    flat = _flatten(kernel)
    out = []
    for s in range(0, len(flat), MAX_TERMS):
        specs = [c[0] for c in flat[s:s + MAX_TERMS]]
        chunk = [c[1:] for c in flat[s:s + MAX_TERMS]] + [(0, 0.0, 0.0, 0.0)] * (MAX_TERMS - len(specs))
        out.append(Terms(tuple(c[0] for c in chunk), tuple(float(v) for c in chunk for v in c[1:]),
                         cusp=any(c.cusp_at_zero for c in specs)))
    return out


# ---------------------------------------------------------------------------
# Tuning as data: one generator, one prune filter, key = (d, dtype, kernel)
# ---------------------------------------------------------------------------
# Defaults measured with `python -m mmdkit.kernels.report` (d = 32 tile): no spills on sm_80/sm_90 for
# any kernel, dtype or precision. The backward holds three (BM, BN) tiles and two (BM, BD) tiles.
DEFAULT_CONFIG = {
    "fwd": {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 8, "num_stages": 1},
    "bwd": {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1},
}
INTERPRET_CONFIG = {"BLOCK_M": 32, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1}
MAX_BLOCK_D = 32
# Before sm_90 (mma.sync holds both dot operands in registers), the forward's tiles under float32
# "tf32x3", whose operands are held twice (hi and lo parts): the d chunk (32 wide, the row-reduction
# forward spills 24-288 bytes on sm_80 in the report; 8 wide, 233-243 registers) and V's column tile
# of the K @ V dot (32 spills 52-60 bytes; 16 fits in 207). sm_90 (wgmma) fits the full tiles, and
# 8-wide d chunks would cost it 114 instead of 69 instructions per pair at d = 64 (SASS count). The
# backward's d tile is also its output tile and stays 32 (no spills).
MAX_BLOCK_D_TF32X3_SM80 = 8
MAX_BLOCK_P_TF32X3_SM80 = 16
MAX_BLOCK_P, MAX_BLOCK_Q = 32, 16
# V with at most this many columns takes row reductions (one FMA per pair and column) instead of a tl.dot
# with V padded to 8 columns (8 FMAs per pair on the FMA pipe under "ieee"); see bench/ROOFLINE.md.
MAX_ROWS = 2
# Live fp32 values per thread that a config may need (see _prune), calibrated on the report.
_LIVE_BUDGET = {"fwd": 96, "bwd": 64}
_TUNE_KEY = ["d", "KIND0", "KIND1", "KIND2", "KIND3", "DOT", "PRECISION"]  # + tensor dtypes (added by triton)
# Register ceiling per thread (PTX .maxnreg). Without one, ptxas caps kernels that need a little over
# 128 registers at 128 (two 256-thread CTAs per SM) and spills (measured on the report: the direct-difference
# forward of Energy and of a Gaussian mixture on sm_80, 20-56 bytes); with it they take the ~150 they need.
MAX_REGISTERS = 255


def _config(c: dict) -> triton.Config:
    """A triton.Config from a dict of BLOCK_M, BLOCK_N, num_warps, num_stages."""
    return triton.Config({"BLOCK_M": c["BLOCK_M"], "BLOCK_N": c["BLOCK_N"]},
                         num_warps=c["num_warps"], num_stages=c["num_stages"], maxnreg=MAX_REGISTERS)


def configs(direction: str) -> list[triton.Config]:
    """The autotuning space of one direction ("fwd" or "bwd"); the default first, one config under the interpreter."""
    if _INTERPRET:
        return [_config(INTERPRET_CONFIG)]
    if os.environ.get("MMDKIT_TRITON_AUTOTUNE") == "0":  # pinned (make gpu-check): the default config only
        return [_config(DEFAULT_CONFIG[direction])]
    space = [dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=s)
             for bm in (32, 64, 128) for bn in (32, 64) for w in (4, 8) for s in (1, 2)]
    space.sort(key=lambda c: c != DEFAULT_CONFIG[direction])
    return [_config(c) for c in space]


def _live(direction: str, bm: int, bn: int, bd: int, bw: int, rows: int = 0) -> int:
    """fp32 values live in one program: the (BM, BN) tiles, the x/y chunks, V or A/B tiles, acc
    (with ``rows`` > 0 the forward's accumulators are ``rows`` (BM, BN) tiles and V ``rows`` columns)."""
    if direction == "fwd" and rows:  # s/t, k, acc_c; x, y^T; v_c
        return (2 + rows) * bm * bn + bm * bd + bd * bn + rows * bn
    if direction == "fwd":  # s/t, k; x, y^T; v, acc
        return 2 * bm * bn + bm * bd + bd * bn + bn * bw + bm * bw
    return 3 * bm * bn + 2 * bm * bd + 2 * bd * bn + bm * bw + bw * bn  # t, ab, c; x, acc; y^T, y; a, b^T


def _prune(configs, named_args, **kwargs):
    """Keep configs whose live tiles fit the register budget (~64-96 fp32 per thread, see _LIVE_BUDGET)."""
    direction = "fwd" if "BLOCK_P" in kwargs else "bwd"
    bd, bw, rows = kwargs["BLOCK_D"], kwargs.get("BLOCK_P", kwargs.get("BLOCK_Q")), kwargs.get("ROWS", 0)
    keep = [c for c in configs
            if _live(direction, c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], bd, bw, rows) / (32 * c.num_warps)
            <= _LIVE_BUDGET[direction]]
    return keep or configs[:1]


def _block(x: int, lo: int, hi: int) -> int:
    """next_power_of_2(x) clamped to [lo, hi]."""
    return max(lo, min(hi, triton.next_power_of_2(max(int(x), 1))))


def _arch(device: torch.device) -> int:
    """Compute capability as 10 major + minor (80, 90, ...); 0 off CUDA (the interpreter)."""
    if device.type != "cuda":
        return 0
    major, minor = torch.cuda.get_device_capability(device)
    return 10 * major + minor


def _block_p(p: int, precision: str, arch: int) -> int:
    """Column tile of V in the forward's K @ V dot (tl.dot needs N >= 8)."""
    narrow = precision == "tf32x3" and arch < 90
    return _block(p, 8, MAX_BLOCK_P_TF32X3_SM80 if narrow else MAX_BLOCK_P)


def _block_d(d: int, dtype: torch.dtype, precision: str = "ieee", arch: int = 90) -> int:
    """Reduction tile over d (tl.dot needs K >= 16 for 16-bit, >= 8 for fp32 operands); the forward
    passes its ``precision`` and ``arch`` (float32 "tf32x3" before sm_90: MAX_BLOCK_D_TF32X3_SM80)."""
    if dtype == torch.float32 and precision == "tf32x3" and arch < 90:
        return _block(d, 8, MAX_BLOCK_D_TF32X3_SM80)
    return _block(d, 8 if dtype == torch.float32 else 16, MAX_BLOCK_D)


# ---------------------------------------------------------------------------
# Layer 1: jit bodies
# ---------------------------------------------------------------------------
@triton.jit
def _exp2(x):
    """2^x (ex2.approx.ftz.f32 on a GPU: one SFU instruction; results below 2^-126 are 0)."""
    if _FTZ:
        return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.exp2(x)


@triton.jit
def _log2(x):
    """log2(x) for normal x (lg2.approx.ftz.f32 on a GPU: one SFU instruction)."""
    if _FTZ:
        return tl.inline_asm_elementwise("lg2.approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.log2(x)


@triton.jit
def _pow(t, a):
    """t^a for normal t > 0 to about 1 ulp (exp2(a log2 t) loses |a log2 t| ulps, which the singular
    dk/dt of Energy at close pairs shows): with t = m 2^e split exactly, m in [1, 2),
    t^a = 2^q 2^(a e - q + a log2 m), q = floor(a e), where a e is carried exactly by an fma."""
    bits = t.to(tl.int32, bitcast=True)
    e = (((bits >> 23) & 0xFF) - 127).to(tl.float32)
    m = ((bits & 0x7FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)
    p = a * e
    q = tl.floor(p)
    frac = (p - q) + tl.fma(a, _log2(m), tl.fma(a, e, -p))  # in [-1, 2]: a e - q + a log2 m
    two_q = ((q.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)  # 2^q exactly (|q| <= 126 for a <= 1)
    return _exp2(frac) * two_q


@triton.jit
def _term_tile(t, KIND: tl.constexpr, a, b, DERIV: tl.constexpr, DEGREE: tl.constexpr):
    """k(t) (or dk/dt when DERIV) of one kernel term on a tile; Laplace/Energy give dk/dt = 0 at t = 0."""
    if KIND == _GAUSSIAN:  # k = 2^(a t), dk/dt = a ln2 k
        k = _exp2(a * t)
        if DERIV:
            k = (a * _LN2) * k
    elif KIND == _LAPLACE:  # k = 2^(a r), r = sqrt(t), dk/dt = a ln2 k / (2 r)
        r = tl.sqrt(t)
        k = _exp2(a * r)
        if DERIV:
            k = tl.where(r > 0, (a * _LN2) * k / (2.0 * tl.where(r > 0, r, 1.0)), 0.0)
    elif KIND == _ENERGY:  # k = -t^a, dk/dt = -a t^(a - 1)
        pos = t > 0
        ts = tl.where(pos, tl.maximum(t, _FLT_MIN), 1.0)
        pw = tl.where(pos, _pow(ts, a), 0.0)
        if DERIV:
            k = tl.where(pos, -a * pw / ts, 0.0)
        else:
            k = -pw
    elif KIND == _POWER:  # k = (1 + a t)^b, dk/dt = a b k / (1 + a t)
        base = 1.0 + a * t
        k = _exp2(b * _log2(base))
        if DERIV:
            k = a * b * k / base
    else:  # _POLYNOMIAL: k = (a t + b)^DEGREE, dk/dt = DEGREE a (a t + b)^(DEGREE - 1)
        base = a * t + b
        pw = tl.full(t.shape, 1.0, tl.float32)
        for _ in tl.static_range(DEGREE - 1):
            pw = pw * base
        if DERIV:
            k = (DEGREE * a) * pw
        else:
            k = pw * base
    return k


@triton.jit
def _kernel_tile(t, KIND0: tl.constexpr, a0, b0, w0, KIND1: tl.constexpr, a1, b1, w1,
                 KIND2: tl.constexpr, a2, b2, w2, KIND3: tl.constexpr, a3, b3, w3,
                 DERIV: tl.constexpr, DEGREE: tl.constexpr):
    """sum_c w_c k_c(t) (or its t-derivative) over the used slots; one term comes unweighted (the
    callers multiply their sums by w0 once: one multiply per row instead of one per pair)."""
    k = _term_tile(t, KIND0, a0, b0, DERIV, DEGREE)
    if KIND1 != _NONE:
        k = w0 * k
        k += w1 * _term_tile(t, KIND1, a1, b1, DERIV, DEGREE)
    if KIND2 != _NONE:
        k += w2 * _term_tile(t, KIND2, a2, b2, DERIV, DEGREE)
    if KIND3 != _NONE:
        k += w3 * _term_tile(t, KIND3, a3, b3, DERIV, DEGREE)
    return k


@triton.jit
def _pair_t(X, Y, xn, yn, offs_m, offs_n, m_mask, n_mask, d, stride_xm, stride_xd, stride_ym, stride_yd,
            DOT: tl.constexpr, DIRECT: tl.constexpr, CUSP: tl.constexpr, DIAG: tl.constexpr,
            PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """The (BLOCK_M, BLOCK_N) tile of t: |x - y|^2, or x.y when DOT.

    DIRECT > 0 (d = DIRECT <= DIRECT_MAX_D): t = sum_c (x_c - y_c)^2 from the raw coordinates, the
    DIRECT coordinates unrolled (2 d lane-ops per pair, no padding of d). DIRECT == 0:
    t = |x|^2 + |y|^2 - 2 x.y, clamped at 0; with CUSP (a kernel with a sqrt of t) pairs with
    t <= NEAR 4 (d + 2) eps32 (|x|^2 + |y|^2), NEAR times the expansion's rounding where x = y, get t
    from direct differences (blocked._t_tile's rule): 0 where x = y, accurate where x, y are close.
    DIAG == 1 (one sample with itself, diagonal kept): t_ii = 0 exactly.
    """
    if DIRECT > 0:
        t = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for c in tl.static_range(DIRECT):
            x_c = tl.load(X + offs_m * stride_xm + c * stride_xd, mask=m_mask, other=0.0).to(tl.float32)
            y_c = tl.load(Y + offs_n * stride_ym + c * stride_yd, mask=n_mask, other=0.0).to(tl.float32)
            diff = x_c[:, None] - y_c[None, :]  # (BM, 1) - (1, BN) -> (BM, BN)
            t += diff * diff
    else:
        s = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start_d in range(0, d, BLOCK_D):
            offs_d = start_d + tl.arange(0, BLOCK_D)
            d_mask = offs_d < d
            x_ptrs = X + offs_m[:, None] * stride_xm + offs_d[None, :] * stride_xd
            yt_ptrs = Y + offs_n[None, :] * stride_ym + offs_d[:, None] * stride_yd
            x = tl.load(x_ptrs, mask=m_mask[:, None] & d_mask[None, :], other=0.0)
            yt = tl.load(yt_ptrs, mask=d_mask[:, None] & n_mask[None, :], other=0.0)
            s = tl.dot(x, yt, s, input_precision=PRECISION)  # (BM, BD) @ (BD, BN) -> (BM, BN)
        if DOT:
            t = s
        else:
            norms = xn[:, None] + yn[None, :]
            t = norms - 2.0 * s
            if CUSP:  # the rule of blocked._t_tile, per pair (|y_j|^2 <= max_j |y_j|^2: tighter, still sound)
                near = (t <= (_NEAR * 4.0 * (d + 2) * _EPS32) * norms) & m_mask[:, None] & n_mask[None, :]
                if DIAG == 1:  # the pairs (i, i) get t = 0 below: not a reason to take the branch
                    near = near & (offs_m[:, None] != offs_n[None, :])
                if tl.max(near.to(tl.int32)) > 0:  # a tile with close pairs: their t from the coordinates
                    direct = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
                    for c in range(0, d):
                        x_c = tl.load(X + offs_m * stride_xm + c * stride_xd, mask=m_mask, other=0.0).to(tl.float32)
                        y_c = tl.load(Y + offs_n * stride_ym + c * stride_yd, mask=n_mask, other=0.0).to(tl.float32)
                        diff = x_c[:, None] - y_c[None, :]
                        direct += diff * diff
                    t = tl.where(near, direct, t)
            else:
                t = tl.maximum(t, 0.0)
    if not DOT:
        if DIAG == 1:
            t = tl.where(offs_m[:, None] == offs_n[None, :], 0.0, t)
    return t


@triton.autotune(configs=configs("fwd"), key=_TUNE_KEY + ["ROWS"],
                 prune_configs_by={"early_config_prune": _prune})
@triton.jit(do_not_specialize=["n", "m"])
def _kernel_matmul_fwd(X, Y, XN, YN, V, OUT, n, m, d, p,
                       stride_xm, stride_xd, stride_ym, stride_yd, stride_vm, stride_vp,
                       stride_om, stride_op,
                       a0, b0, w0, a1, b1, w1, a2, b2, w2, a3, b3, w3,
                       KIND0: tl.constexpr, KIND1: tl.constexpr, KIND2: tl.constexpr, KIND3: tl.constexpr,
                       DEGREE: tl.constexpr, DOT: tl.constexpr, CUSP: tl.constexpr, BOUNDED: tl.constexpr,
                       DIRECT: tl.constexpr, DIAG: tl.constexpr, PRECISION: tl.constexpr, ROWS: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                       BLOCK_P: tl.constexpr):
    # OUT[i, c] = sum_j k(t_ij) V[j, c] for the rows i of this program and the columns c of its P block;
    # DIAG == 2 drops the pairs i == j (U-statistics).
    # ROWS == 0: acc += k @ V tile (tl.dot, V's columns padded to BLOCK_P >= 8).
    # ROWS in (1, 2) (p == ROWS, one program per row block): one fp32 (BM, BN) accumulator per column,
    # acc_c += k * v_c (one FMA per pair and column), summed over j once after the loop.
    # Columns j >= m read y_j = 0 and v_j = 0: with BOUNDED kernels (k in [0, 1]) k v_j = 0 there without
    # a select; Energy and Polynomial (k may overflow at y = 0: inf * 0) mask k.
    pid_m = tl.program_id(0).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < n
    xn = tl.load(XN + offs_m, mask=m_mask, other=0.0)
    if ROWS == 0:
        pid_p = tl.program_id(1).to(tl.int64)
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        p_mask = offs_p < p
        acc = tl.zeros((BLOCK_M, BLOCK_P), dtype=tl.float32)
    else:
        acc0 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc1 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start_n in range(0, m, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N).to(tl.int64)
        n_mask = offs_n < m
        yn = tl.load(YN + offs_n, mask=n_mask, other=0.0)
        t = _pair_t(X, Y, xn, yn, offs_m, offs_n, m_mask, n_mask, d, stride_xm, stride_xd, stride_ym,
                    stride_yd, DOT, DIRECT, CUSP, DIAG, PRECISION, BLOCK_M, BLOCK_N, BLOCK_D)
        k = _kernel_tile(t, KIND0, a0, b0, w0, KIND1, a1, b1, w1, KIND2, a2, b2, w2, KIND3, a3, b3, w3,
                         False, DEGREE)
        if DIAG == 2:
            keep = offs_m[:, None] != offs_n[None, :]
            if not BOUNDED:
                keep = keep & n_mask[None, :]
            k = tl.where(keep, k, 0.0)
        elif not BOUNDED:
            k = tl.where(n_mask[None, :], k, 0.0)
        if ROWS == 0:
            v_ptrs = V + offs_n[:, None] * stride_vm + offs_p[None, :] * stride_vp
            v = tl.load(v_ptrs, mask=n_mask[:, None] & p_mask[None, :], other=0.0)
            acc = tl.dot(k, v, acc, input_precision=PRECISION)  # (BM, BN) @ (BN, BP) -> (BM, BP)
        else:
            v0 = tl.load(V + offs_n * stride_vm, mask=n_mask, other=0.0)
            acc0 += k * v0[None, :]  # (BM, BN) * (1, BN) -> (BM, BN)
            if ROWS == 2:
                v1 = tl.load(V + offs_n * stride_vm + stride_vp, mask=n_mask, other=0.0)
                acc1 += k * v1[None, :]
    w = w0 if KIND1 == _NONE else 1.0  # one term: its weight, once per output (see _kernel_tile)
    if ROWS == 0:
        out_ptrs = OUT + offs_m[:, None] * stride_om + offs_p[None, :] * stride_op
        tl.store(out_ptrs, w * acc, mask=m_mask[:, None] & p_mask[None, :])
    else:
        tl.store(OUT + offs_m * stride_om, w * tl.sum(acc0, axis=1), mask=m_mask)  # (BM, BN) -> (BM,)
        if ROWS == 2:
            tl.store(OUT + offs_m * stride_om + stride_op, w * tl.sum(acc1, axis=1), mask=m_mask)


@triton.autotune(configs=configs("bwd"), key=_TUNE_KEY, prune_configs_by={"early_config_prune": _prune})
@triton.jit(do_not_specialize=["n", "m"])
def _kernel_matmul_bwd(X, Y, XN, YN, A, B, DX, n, m, d, q,
                       stride_xm, stride_xd, stride_ym, stride_yd, stride_am, stride_aq,
                       stride_bm, stride_bq, stride_om, stride_od,
                       a0, b0, w0, a1, b1, w1, a2, b2, w2, a3, b3, w3,
                       KIND0: tl.constexpr, KIND1: tl.constexpr, KIND2: tl.constexpr, KIND3: tl.constexpr,
                       DEGREE: tl.constexpr, DOT: tl.constexpr, CUSP: tl.constexpr, DIRECT: tl.constexpr,
                       GRAD_DIRECT: tl.constexpr, DIAG: tl.constexpr, PRECISION: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                       BLOCK_Q: tl.constexpr):
    # DX[i, e] = sum_j c_ij dt_ij/dx_ie,  c_ij = k'(t_ij) (A_i . B_j), for the d-columns e of this program:
    # distance: dt/dx_i = 2 (x_i - y_j)  ->  DX_i = 2 (x_i sum_j c_ij - sum_j c_ij y_j);  dot: DX_i = sum_j c_ij y_j.
    # GRAD_DIRECT (low d, where those two sums cancel): DX_ie = 2 sum_j c_ij (x_ie - y_je), elementwise per tile.
    # Pairs i == j are dropped when DIAG != 0 (excluded, or one sample with itself where x_i - x_i = 0).
    pid_m = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_e = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    m_mask = offs_m < n
    e_mask = offs_e < d
    xn = tl.load(XN + offs_m, mask=m_mask, other=0.0)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    rowsum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for start_n in range(0, m, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N).to(tl.int64)
        n_mask = offs_n < m
        yn = tl.load(YN + offs_n, mask=n_mask, other=0.0)
        t = _pair_t(X, Y, xn, yn, offs_m, offs_n, m_mask, n_mask, d, stride_xm, stride_xd, stride_ym,
                    stride_yd, DOT, DIRECT, CUSP, DIAG, PRECISION, BLOCK_M, BLOCK_N, BLOCK_D)
        ab = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start_q in range(0, q, BLOCK_Q):
            offs_q = start_q + tl.arange(0, BLOCK_Q)
            q_mask = offs_q < q
            a_ptrs = A + offs_m[:, None] * stride_am + offs_q[None, :] * stride_aq
            bt_ptrs = B + offs_n[None, :] * stride_bm + offs_q[:, None] * stride_bq
            a_tile = tl.load(a_ptrs, mask=m_mask[:, None] & q_mask[None, :], other=0.0)
            bt_tile = tl.load(bt_ptrs, mask=q_mask[:, None] & n_mask[None, :], other=0.0)
            ab = tl.dot(a_tile, bt_tile, ab, input_precision=PRECISION)  # (BM, BQ) @ (BQ, BN) -> (BM, BN)
        dk = _kernel_tile(t, KIND0, a0, b0, w0, KIND1, a1, b1, w1, KIND2, a2, b2, w2, KIND3, a3, b3, w3,
                          True, DEGREE)
        keep = n_mask[None, :]
        if DIAG != 0:
            keep = keep & (offs_m[:, None] != offs_n[None, :])
        c = tl.where(keep, dk * ab, 0.0)
        if GRAD_DIRECT:
            for e in range(0, d):  # column e of acc += sum_j c_ij (x_ie - y_je)
                x_e = tl.load(X + offs_m * stride_xm + e * stride_xd, mask=m_mask, other=0.0).to(tl.float32)
                y_e = tl.load(Y + offs_n * stride_ym + e * stride_yd, mask=n_mask, other=0.0).to(tl.float32)
                g_e = tl.sum(c * (x_e[:, None] - y_e[None, :]), axis=1)  # (BM, BN) -> (BM,)
                acc += tl.where(offs_e[None, :] == e, g_e[:, None], 0.0)
        else:
            y_ptrs = Y + offs_n[:, None] * stride_ym + offs_e[None, :] * stride_yd
            y = tl.load(y_ptrs, mask=n_mask[:, None] & e_mask[None, :], other=0.0).to(tl.float32)
            acc = tl.dot(c, y, acc, input_precision=PRECISION)  # (BM, BN) @ (BN, BD) -> (BM, BD)
            rowsum += tl.sum(c, axis=1)
    if DOT:
        dx = acc
    elif GRAD_DIRECT:
        dx = 2.0 * acc
    else:
        x_ptrs = X + offs_m[:, None] * stride_xm + offs_e[None, :] * stride_xd
        x = tl.load(x_ptrs, mask=m_mask[:, None] & e_mask[None, :], other=0.0).to(tl.float32)
        dx = 2.0 * (x * rowsum[:, None] - acc)
    if KIND1 == _NONE:  # one term: its weight, once per output (see _kernel_tile)
        dx = w0 * dx
    out_ptrs = DX + offs_m[:, None] * stride_om + offs_e[None, :] * stride_od
    tl.store(out_ptrs, dx, mask=m_mask[:, None] & e_mask[None, :])


# ---------------------------------------------------------------------------
# Layer 2: launchers (check shapes, allocate, launch; never synchronise)
# ---------------------------------------------------------------------------
def _direct(d: int, dot: bool) -> dict:
    """DIRECT and GRAD_DIRECT: direct differences x - y at the d where the torch engine needs them
    (distance tiles for d <= blocked.DIRECT_MAX_D: DIRECT = d, unrolled in the kernel, else 0;
    gradient sums where blocked.grad_dtype widens)."""
    return {"DIRECT": d if not dot and d <= DIRECT_MAX_D else 0,
            "GRAD_DIRECT": not dot and grad_dtype(torch.empty(0, d, dtype=torch.float32)) == torch.float64}


def _launch_fwd(Xc: Tensor, Yc: Tensor, xn: Tensor, yn: Tensor, V: Tensor, terms: list[Terms],
                diag: int, precision: str) -> Tensor:
    """(n, p) float32 K(Xc, Yc) @ V; Xc, Yc, xn, yn as :func:`_prepare` returns them."""
    n, d = Xc.shape
    m, p = V.shape
    assert Yc.shape == (m, d) and V.dtype == torch.float32 and xn.shape == (n,) and yn.shape == (m,)
    rows = p if p <= MAX_ROWS else 0  # p = 1, 2: row reductions instead of a dot padded to 8 columns
    arch = _arch(Xc.device)
    block_p = 1 if rows else _block_p(p, precision, arch)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_M"]), triton.cdiv(p, block_p) if not rows else 1)  # noqa: E731
    total = None
    for term in terms:
        out = torch.full((n, p), float("nan"), dtype=torch.float32, device=Xc.device)
        _kernel_matmul_fwd[grid](
            Xc, Yc, xn, yn, V, out, n, m, d, p,
            Xc.stride(0), Xc.stride(1), Yc.stride(0), Yc.stride(1), V.stride(0), V.stride(1),
            out.stride(0), out.stride(1), **term.kwargs(), DIRECT=_direct(d, term.dot)["DIRECT"], DIAG=diag,
            PRECISION=precision, ROWS=rows, BLOCK_D=_block_d(d, Xc.dtype, precision, arch),
            BLOCK_P=block_p)
        total = out if total is None else total.add_(out)
    return total


def _launch_bwd(Xc: Tensor, Yc: Tensor, xn: Tensor, yn: Tensor, A: Tensor, B: Tensor, terms: list[Terms],
                diag: int, precision: str) -> Tensor:
    """(n, d) float32 sum_j k'(t_ij) (A_i . B_j) dt_ij/dx_i; A (n, q) and B (m, q) float32."""
    n, d = Xc.shape
    m, q = B.shape
    assert Yc.shape == (m, d) and A.shape == (n, q) and A.dtype == B.dtype == torch.float32
    block_d = _block_d(d, Xc.dtype)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_M"]), triton.cdiv(d, block_d))  # noqa: E731
    total = None
    for term in terms:
        out = torch.full((n, d), float("nan"), dtype=torch.float32, device=Xc.device)
        _kernel_matmul_bwd[grid](
            Xc, Yc, xn, yn, A, B, out, n, m, d, q,
            Xc.stride(0), Xc.stride(1), Yc.stride(0), Yc.stride(1), A.stride(0), A.stride(1),
            B.stride(0), B.stride(1), out.stride(0), out.stride(1), **term.kwargs(backward=True),
            **_direct(d, term.dot),
            DIAG=diag, PRECISION=precision, BLOCK_D=block_d, BLOCK_Q=_block(q, 8, MAX_BLOCK_Q))
        total = out if total is None else total.add_(out)
    return total


def _prepare(X: Tensor, Y: Tensor | None, kernel: KernelSpec):
    """Contiguous copies of the points the kernels read and their fp32 squared norms.

    Distance kernels are centred at the pooled mean for the norm expansion, except with direct
    distance tiles (d <= DIRECT_MAX_D), which take x - y from the inputs as they are (one rounding,
    exact for close points). Centred points are cast back to the dot dtype, except where the
    gradient sums take differences too (GRAD_DIRECT, d <= 3): there they stay float32.
    """
    flags = _direct(X.shape[1], kernel.kind == "dot")
    Y = None if Y is None else Y.to(X.dtype)
    if flags["DIRECT"]:
        Xc, Yc = X.detach().contiguous(), None if Y is None else Y.detach().contiguous()
    else:
        Xc, Yc = _centre(X, Y, kernel)  # fp32, pooled mean removed (distance kernels)
        dtype = torch.float32 if flags["GRAD_DIRECT"] else X.dtype
        Xc, Yc = Xc.to(dtype).contiguous(), None if Y is None else Yc.to(dtype).contiguous()
    Yc = Xc if Y is None else Yc
    sq = lambda A: A.float().square().sum(1)  # noqa: E731  norms of the values the dot sees
    xn = sq(Xc)
    return Xc, Yc, xn, (xn if Y is None else sq(Yc))


def _diag_mode(same: bool, exclude: bool, kernel: KernelSpec) -> int:
    """0: nothing; 1: t_ii = 0 (one sample with itself, distance kernel); 2: pairs i == j dropped."""
    if exclude:
        return 2
    return 1 if same and kernel.kind == "distance" else 0


def _check(X: Tensor, Y: Tensor | None, V: Tensor | None, precision: str) -> None:
    """Boundary checks of the engine functions (the estimators validate user input before)."""
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}")
    for name, T in (("X", X), ("Y", Y), ("V", V)):
        if T is None:
            continue
        if T.dtype not in DTYPES:
            raise TypeError(f"`{name}` has dtype {T.dtype}; the Triton engine computes float32, float16 and "
                            "bfloat16 (use backend='torch' for float64)")
        if T.dim() != 2:
            raise ValueError(f"`{name}` must be 2-D, got shape {tuple(T.shape)}")
        if T.device != X.device:
            raise ValueError(f"`{name}` is on {T.device} but `X` is on {X.device}")
    if Y is not None and Y.shape[1] != X.shape[1]:
        raise ValueError(f"`Y` must have d = {X.shape[1]} columns like `X`, got {Y.shape[1]}")
    if V is not None and V.shape[0] != (X if Y is None else Y).shape[0]:
        raise ValueError(f"`V` must have {(X if Y is None else Y).shape[0]} rows, got {V.shape[0]}")


# ---------------------------------------------------------------------------
# Layer 3: autograd Function
# ---------------------------------------------------------------------------
class _KernelMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, Y, V, kernel, exclude_diagonal, precision):
        Xc, Yc, xn, yn = _prepare(X, Y, kernel)
        Vf = V.detach().float().contiguous()
        terms, diag = kernel_terms(kernel), _diag_mode(Y is None, exclude_diagonal, kernel)
        out = _launch_fwd(Xc, Yc, xn, yn, Vf, terms, diag, precision)
        ctx.save_for_backward(Xc, Yc, xn, yn, Vf, X, Y, V)  # X, Y, V: for a backward with create_graph
        ctx.terms, ctx.diag, ctx.precision, ctx.same = terms, diag, precision, Y is None
        ctx.kernel, ctx.exclude = kernel, exclude_diagonal
        ctx.dtypes = (X.dtype, None if Y is None else Y.dtype, V.dtype)
        return out.to(V.dtype)

    @staticmethod
    def backward(ctx, G):
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward on the torch engine
            return _KernelMatmul._backward_on_torch(ctx, G)
        Xc, Yc, xn, yn, Vf = ctx.saved_tensors[:5]
        G = G.float().contiguous()
        terms, diag, prec = ctx.terms, ctx.diag, ctx.precision
        nx, ny, nv = ctx.needs_input_grad[:3]
        gX = gY = gV = None
        if ctx.same:
            # x_i sits in both slots of k(x_i, x_j): c_ij = k'_ij (G_i . V_j + V_i . G_j)
            if nx:
                gX = _launch_bwd(Xc, Xc, xn, xn, torch.cat([G, Vf], 1), torch.cat([Vf, G], 1), terms, diag, prec)
            if nv:
                gV = _launch_fwd(Xc, Xc, xn, xn, G, terms, diag, prec)  # K.T G = K G
        else:
            if nx:
                gX = _launch_bwd(Xc, Yc, xn, yn, G, Vf, terms, diag, prec)
            if ny:
                gY = _launch_bwd(Yc, Xc, yn, xn, Vf, G, terms, diag, prec)
            if nv:
                gV = _launch_fwd(Yc, Xc, yn, xn, G, terms, diag, prec)  # K.T G = K(Y, X) G
        cast = lambda g, dt: None if g is None else g.to(dt)  # noqa: E731
        dx, dy, dv = ctx.dtypes
        return cast(gX, dx), cast(gY, dy), cast(gV, dv), None, None, None

    @staticmethod
    def _backward_on_torch(ctx, G):
        """The backward as a graph: recompute K(X, Y) @ V with the (twice differentiable) torch
        engine on the same device and differentiate that, so higher derivatives exist."""
        inputs = ctx.saved_tensors[5:]
        needs = ctx.needs_input_grad[:3]
        with torch.enable_grad():
            out = blocked.kernel_matmul(*inputs, ctx.kernel, ctx.exclude)
            grads = iter(torch.autograd.grad(out, [T for T, nd in zip(inputs, needs) if nd], G,
                                             create_graph=True))
        return tuple(next(grads) if nd else None for nd in needs) + (None, None, None)


# ---------------------------------------------------------------------------
# Layer 4: public functions
# ---------------------------------------------------------------------------
def kernel_matmul(X: Tensor, Y: Tensor | None, V: Tensor, kernel: KernelSpec,
                  exclude_diagonal: bool = False, precision: str = "ieee") -> Tensor:
    r"""K(X, Y) @ V with fused Triton kernels, differentiable in X, Y and V.

    .. math:: \mathrm{out}_{ic} = \sum_j k(x_i, y_j) V_{jc}

    Parameters
    ----------
    X : tensor (n, d), float32, float16 or bfloat16
    Y : tensor (m, d) or None
        None means Y = X (one sample with itself: pairs (i, i) get a distance
        of exactly 0).
    V : tensor (m, p)
    kernel : KernelSpec
        Gaussian, Laplace, Energy, RationalQuadratic, IMQ, Polynomial or a
        Mixture of distance kernels (bandwidths set).
    exclude_diagonal : bool
        Drop the pairs i == j (U-statistics; Y None or len(X) == len(Y)).
    precision : {"ieee", "tf32", "tf32x3"}
        "ieee" (default): float32 dots are exact fp32 (no tensor cores for
        float32 input). "tf32": float32 dots on tensor cores with 10-bit
        mantissas, for speed (GAN training). "tf32x3": float32 dots on tensor
        cores as three tf32 products of split operands (a = a_hi + a_lo,
        a_hi = tf32(a): a_lo b_hi + a_hi b_lo + a_hi b_hi, Triton's
        ``tl.dot(..., input_precision="tf32x3")``), float32-level accuracy at
        three times the tensor-core work; worth it where the distance tile is
        a dot of d >= 16. float16/bfloat16 distance tiles always use tensor
        cores (exact products, fp32 accumulation); the other dots (K @ V and
        the backward's) follow ``precision``. With d <= ``DIRECT_MAX_D`` the
        distance tile is no dot, and V with p <= ``MAX_ROWS`` columns is
        summed by row reductions (exact fp32 FMAs), so there ``precision``
        only enters the backward.

    Returns
    -------
    Tensor (n, p) in V's dtype.

    Notes
    -----
    Same contract and numerics as :func:`mmdkit.kernels.blocked.kernel_matmul`,
    so the engine error budgets (at most 2x plain dense torch's error at the
    same precision) hold on both. Squared distances come from direct
    differences ``sum_c (x_c - y_c)^2`` of the inputs for
    d <= ``blocked.DIRECT_MAX_D``; above it from ``|x|^2 + |y|^2 - 2 x.y`` on
    data centred at the pooled mean, clamped at 0, accumulated in fp32, and
    for kernels with a cusp at 0 (Laplace, Energy) pairs within ``blocked.NEAR``
    times that expansion's rounding (``t <= NEAR 4 (d + 2) eps32 (|x|^2 + |y|^2)``)
    get t from direct differences of their coordinates: exactly 0 where x = y, so
    coincident points give k(0) and a zero gradient, and accurate where they are
    close (the rule uses the float32 epsilon also under "tf32", whose rounding is
    larger). For such close pairs the gradient's error exceeds the budget: the
    sums ``x_i sum_j c_ij - sum_j c_ij y_j`` keep a rounding of ~eps |x| / |x - y|
    (bench/RESULTS.md, "Close pairs"). Where
    ``blocked.grad_dtype`` widens to float64 (d <= 3) the gradient sums
    ``sum_j c_ij (x_i - y_j)`` are taken from direct differences per tile
    instead of ``x_i sum_j c_ij - sum_j c_ij y_j``, which cancels. Cost
    O(n m (d + p)) time, O((n + m)(d + p)) memory forward and backward (the
    backward is two more sweeps: one per input of the kernel, plus one for V).

    Twice differentiable: a backward with ``create_graph=True`` (gradient
    penalties) does not use the fused first-order kernels; it recomputes the
    output with the torch engine (:func:`mmdkit.kernels.blocked.kernel_matmul`)
    on the same device and differentiates that, so second derivatives run at
    the torch engine's speed. A plain backward stays on the Triton kernels.

    Measured error against float64 on the same (rounded) inputs, MMD^2
    U-statistic from :func:`block_sums` and the largest gradient entry,
    n = 64, m = 56, X ~ N(2, I), Y ~ N(2.3, I) (generator seed 0),
    Gaussian h = 4 sqrt(d / 8) / Energy, under ``TRITON_INTERPRET=1``
    (``test_precision_table_of_the_docstring`` in tests/test_triton.py
    re-measures it):

    ==========================  ===================  ===================
    dtype, precision, d         MMD^2 (rel.)         gradient (rel.)
    ==========================  ===================  ===================
    float32, "ieee", 8          7e-8 / 1.1e-7        5e-7 / 4.7e-7
    float32, "tf32", 8          6.8e-4 / 7.1e-4      1.9e-3 / 2.0e-3
    float32, "tf32x3", 8        7e-8 / 5e-8          4.4e-7 / 4.3e-7
    float32, "ieee", 64         2.3e-8 / 2.4e-7      4.2e-7 / 6.6e-7
    float32, "tf32x3", 16       1.0e-7 / 2.8e-7      3.8e-7 / 3.3e-7
    float32, "tf32x3", 64       2.6e-7 / 3.4e-7      4.4e-7 / 4.0e-7
    float16, 8                  1.3e-4 / 1.2e-4      4.6e-4 / 4.6e-4
    bfloat16, 8                 6.6e-4 / 6.0e-4      3.6e-3 / 3.2e-3
    ==========================  ===================  ===================

    "tf32" and "tf32x3" there are emulated; the interpreter itself computes
    fp32 dots exactly whatever ``input_precision`` says. "tf32": dot operands
    truncated to 10 mantissa bits (the worst case of the hardware's
    rounding). "tf32x3": the split above with both parts rounded to nearest
    even (the GPU rounds a_hi with cvt.rna, ties away from zero, and takes
    a_lo as the tensor core reads it; the lost a_lo b_lo is ~2^-22 |a b|).
    The same emulation on the distance tile alone (``|x|^2 + |y|^2 - 2 x.y``,
    normwise error, d = 16 / 64): exact fp32 products 5.3e-8 / 5.4e-8,
    "tf32x3" 5.5e-8 / 5.4e-8, tf32 rounded to nearest 6.9e-5 / 3.6e-5,
    tf32 truncated 1.8e-4 / 9.4e-5 (tests/test_triton.py,
    ``test_tf32x3_split_keeps_the_distance_tile_at_float32_accuracy``).
    Measured under emulation only; no GPU has run "tf32x3" here. Under the
    interpreter bfloat16 dot operands are widened to float32 (exact) because
    its tl.dot cannot multiply bfloat16.
    The engine budget table of ``tests/test_triton.py`` (11 kernels, every
    dtype, d in {1, 2, 3, 17}, X vs Y and one sample, with and without the
    diagonal) holds every output and gradient within 2x plain dense torch's
    error at the same precision, as the torch engine does.

    Examples
    --------
    >>> import torch
    >>> from mmdkit.kernels import Gaussian
    >>> from mmdkit.kernels.triton_engine import kernel_matmul  # CUDA tensors, or TRITON_INTERPRET=1
    >>> X = torch.randn(50, 3)
    >>> kernel_matmul(X, None, torch.ones(50, 1), Gaussian(bandwidth=1.0)).shape
    torch.Size([50, 1])
    """
    _check(X, Y, V, precision)
    kernel = kernel.resolve(X.shape[1])
    return _KernelMatmul.apply(X, Y, V, kernel, bool(exclude_diagonal), precision)


def block_sums(Z: Tensor, sizes: tuple[int, ...], kernel: KernelSpec,
               exclude_diagonal: bool = False, precision: str = "ieee") -> Tensor:
    r"""S[a, b] = sum over i in block a, j in block b of k(z_i, z_j), by Triton kernels.

    Parameters
    ----------
    Z : tensor (N, d), float32, float16 or bfloat16
        Consecutive blocks of rows (e.g. ``torch.cat([X, Y])``).
    sizes : tuple of int
        Block lengths, summing to N.
    kernel : KernelSpec
    exclude_diagonal : bool
        Drop the pairs i == j (U-statistics).
    precision : {"ieee", "tf32"}
        As in :func:`kernel_matmul`.

    Returns
    -------
    float64 tensor (p, p), p = len(sizes), differentiable in Z.

    Notes
    -----
    ``K(Z, Z) @ E`` with E the (N, p) block-indicator matrix (one
    :func:`kernel_matmul` sweep, fp32 row sums), then the rows are summed per
    block in float64. Same contract as :func:`mmdkit.kernels.blocked.block_sums`.

    Examples
    --------
    >>> import torch
    >>> from mmdkit.kernels import Energy
    >>> from mmdkit.kernels.triton_engine import block_sums  # CUDA tensors, or TRITON_INTERPRET=1
    >>> block_sums(torch.tensor([[0.0], [3.0]]), (1, 1), Energy()).tolist()
    [[0.0, -3.0], [-3.0, 0.0]]
    """
    _check(Z, None, None, precision)
    sizes = tuple(int(s) for s in sizes)
    if sum(sizes) != Z.shape[0] or any(s < 0 for s in sizes):
        raise ValueError(f"`sizes` must be non-negative and sum to {Z.shape[0]}, got {sizes}")
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    E = torch.zeros(Z.shape[0], len(sizes), dtype=torch.float32, device=Z.device)
    for b in range(len(sizes)):
        E[bounds[b]:bounds[b + 1], b] = 1.0
    KE = kernel_matmul(Z, None, E, kernel, exclude_diagonal, precision)  # (N, p): row sums per block
    return torch.stack([KE[bounds[a]:bounds[a + 1]].double().sum(0) for a in range(len(sizes))])
