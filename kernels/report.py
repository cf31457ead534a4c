"""Ahead-of-time compile report of the Triton kernels (no GPU needed).

``python -m mmdkit.kernels.report [--json]`` compiles every variant -- kernel x
dtype x precision x forward/backward x distance path, at the default config --
for sm_80 and sm_90 with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))``,
runs the ptxas bundled with triton (``ptxas -v``) on the PTX for registers and
spills, reads the shared memory from the compiled metadata, and checks the PTX
for tensor-core instructions (``mma`` / ``wgmma``). It prints a table, or with
``--json`` a list of objects; the exit status is 1 if any variant spills.

The distance paths: "expansion" (d > DIRECT_MAX_D: the distance tile is a
``tl.dot`` of 32-wide d chunks, ``|x|^2 + |y|^2 - 2 x.y``) and "direct"
(d <= DIRECT_MAX_D: direct differences of the coordinates, and the gradient
sums from direct differences too); the dot-product Polynomial has no direct
path.

Options ``--kernels``, ``--dtypes``, ``--precisions``, ``--directions``,
``--paths`` and ``--archs`` select a subset; ``--jobs`` compiles in parallel processes;
``--quiet`` prints a one-line summary (and any spilling variant).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

REPORT_KERNELS = ("gaussian", "laplace", "energy", "rq", "imq", "polynomial", "mixture")
REPORT_DTYPES = ("float32", "float16", "bfloat16")
REPORT_PRECISIONS = ("ieee", "tf32")
REPORT_DIRECTIONS = ("fwd", "bwd")
REPORT_PATHS = ("expansion", "direct")
REPORT_ARCHS = (80, 90)
FIELDS = ("kernel", "direction", "dtype", "precision", "path", "arch", "registers", "spill_bytes", "shared_bytes",
          "tensor_cores", "mma", "compile_s")

_POINTER = {"float32": "*fp32", "float16": "*fp16", "bfloat16": "*bf16"}
_INNER_STRIDES = ("stride_xd", "stride_yd", "stride_vp", "stride_op", "stride_aq", "stride_bq", "stride_od")


def _spec(name: str):
    """The kernel spec compiled for ``name`` (parameter values do not change the code)."""
    from mmdkit.kernels.specs import IMQ, Energy, Gaussian, Laplace, Mixture, Polynomial, RationalQuadratic
    return {
        "gaussian": Gaussian(bandwidth=1.0), "laplace": Laplace(bandwidth=1.0), "energy": Energy(),
        "rq": RationalQuadratic(bandwidth=1.0), "imq": IMQ(bandwidth=1.0),
        "polynomial": Polynomial(degree=3, gamma=1.0),
        "mixture": Mixture.of(Gaussian, [0.5, 1.0, 2.0, 4.0]),
    }[name]


def _source(kernel: str, direction: str, dtype: str, precision: str, path: str = "expansion"):
    """(ASTSource, options) of one variant at the default config."""
    import torch
    import triton
    from mmdkit.kernels import triton_engine as te

    body = te._kernel_matmul_fwd if direction == "fwd" else te._kernel_matmul_bwd
    fn = getattr(body, "fn", body)  # the JITFunction under the autotuner
    if not isinstance(fn, triton.runtime.JITFunction):
        raise RuntimeError("the kernels were decorated under TRITON_INTERPRET=1; run the report without it")
    (terms,) = te.kernel_terms(_spec(kernel))
    kw = terms.kwargs()
    constexprs = {k: v for k, v in kw.items() if k.isupper()}
    config = te.DEFAULT_CONFIG[direction]
    wide = {"BLOCK_P": te.MAX_BLOCK_P} if direction == "fwd" else {"BLOCK_Q": te.MAX_BLOCK_Q}
    if path == "direct":  # d = DIRECT_MAX_D: direct differences, the smallest d tile
        constexprs.update(te._direct(te.DIRECT_MAX_D, terms.dot))
        block_d = te._block_d(te.DIRECT_MAX_D, getattr(torch, dtype))
    else:  # the largest tiles: d >= 32
        constexprs.update(DIRECT=False, GRAD_DIRECT=False)
        block_d = te.MAX_BLOCK_D
    if direction == "fwd":
        constexprs.pop("GRAD_DIRECT")
    constexprs.update(DIAG=2, PRECISION=precision, BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"],
                      BLOCK_D=block_d, **wide)  # p >= 32 (fwd) / q >= 16 (bwd) columns
    constexprs.update({s: 1 for s in _INNER_STRIDES if s in fn.arg_names})  # what a launch specializes
    signature, attrs = {}, {}
    for i, arg in enumerate(fn.arg_names):
        if arg in constexprs:
            signature[arg] = "constexpr"
        elif arg in ("X", "Y"):
            signature[arg] = _POINTER[dtype]
        elif arg.isupper():  # XN, YN, V, OUT, A, B, DX: float32 buffers
            signature[arg] = "*fp32"
        elif arg in kw:  # kernel parameters a0, b0, w0, ...
            signature[arg] = "fp32"
        else:
            signature[arg] = "i32"
        if signature[arg].startswith("*"):
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": config["num_warps"], "num_stages": config["num_stages"], "maxnreg": te.MAX_REGISTERS,
               "enable_fp_fusion": True}
    return src, options


def _ptxas(ptx: str, arch: int) -> dict:
    """Registers and spill bytes from the bundled ptxas (-v) on ``ptx``."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        cmd = [get_ptxas(arch).path, "-v", "--regAllocOptLevel=2", f"--gpu-name={sm_arch_from_capability(arch)}",
               path, "-o", os.path.join(tmp, "k.cubin")]
        log = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", log)
    stores = re.search(r"(\d+) bytes spill stores", log)
    loads = re.search(r"(\d+) bytes spill loads", log)
    return {"registers": int(regs.group(1)) if regs else None,
            "spill_bytes": (int(stores.group(1)) if stores else 0) + (int(loads.group(1)) if loads else 0)}


def compile_variant(kernel: str, direction: str, dtype: str, precision: str, arch: int,
                    path: str = "expansion") -> dict:
    """Compile one variant for ``sm_<arch>`` and return its report row."""
    import triton
    from triton.backends.compiler import GPUTarget

    t0 = time.perf_counter()
    src, options = _source(kernel, direction, dtype, precision, path)
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    ptx = compiled.asm["ptx"]
    mma = sorted(set(re.findall(r"\b(wgmma\.mma_async[\w.]*|mma\.sync[\w.]*)", ptx)))
    row = {"kernel": kernel, "direction": direction, "dtype": dtype, "precision": precision, "path": path,
           "arch": f"sm_{arch}",
           **_ptxas(ptx, arch), "shared_bytes": int(compiled.metadata.shared), "tensor_cores": bool(mma),
           "mma": mma}
    row["compile_s"] = round(time.perf_counter() - t0, 2)
    return row


def _run(args) -> dict:
    return compile_variant(*args)


def _code(kernel: str) -> tuple:
    """What decides the generated code of a kernel (ids, degree, dot); rq and imq share theirs."""
    from mmdkit.kernels.triton_engine import kernel_terms
    (terms,) = kernel_terms(_spec(kernel))
    return terms.kinds, terms.degree, terms.dot


def report(kernels=REPORT_KERNELS, dtypes=REPORT_DTYPES, precisions=REPORT_PRECISIONS,
           directions=REPORT_DIRECTIONS, archs=REPORT_ARCHS, jobs: int = 1, paths=REPORT_PATHS) -> list[dict]:
    """Report rows for every selected variant (compiled in ``jobs`` processes).

    Kernels whose generated code is identical (rq and imq: one id, different parameters) are
    compiled once and reported under each name, with ``same_code_as`` naming the compiled one.
    """
    first = {}
    for k in kernels:
        first.setdefault(_code(k), k)
    todo = [(k, dr, dt, p, a, ph) for k in dict.fromkeys(first.values()) for ph in paths for dt in dtypes
            for p in precisions for dr in directions for a in archs
            if ph == "expansion" or not _code(k)[2]]  # no direct path for the dot-product kernel
    if jobs <= 1:
        rows = [_run(t) for t in todo]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            rows = list(pool.map(_run, todo))
    out = []
    for k in kernels:
        src = first[_code(k)]
        out += [{**r, "kernel": k, **({"same_code_as": src} if src != k else {})} for r in rows
                if r["kernel"] == src]
    return out


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of report rows."""
    cols = ("kernel", "direction", "dtype", "precision", "path", "arch", "registers", "spill_bytes",
            "shared_bytes", "tensor_cores", "compile_s")
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = lambda r: "  ".join(str(r[c]).ljust(width[c]) for c in cols)  # noqa: E731
    return "\n".join([line({c: c for c in cols}), line({c: "-" * width[c] for c in cols})] + [line(r) for r in rows])


def main(argv=None) -> int:
    """CLI entry point; returns 1 if any variant spills, else 0."""
    ap = argparse.ArgumentParser(prog="python -m mmdkit.kernels.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    ap.add_argument("--kernels", nargs="+", default=REPORT_KERNELS, choices=REPORT_KERNELS)
    ap.add_argument("--dtypes", nargs="+", default=REPORT_DTYPES, choices=REPORT_DTYPES)
    ap.add_argument("--precisions", nargs="+", default=REPORT_PRECISIONS, choices=REPORT_PRECISIONS)
    ap.add_argument("--directions", nargs="+", default=REPORT_DIRECTIONS, choices=REPORT_DIRECTIONS)
    ap.add_argument("--paths", nargs="+", default=REPORT_PATHS, choices=REPORT_PATHS)
    ap.add_argument("--archs", nargs="+", type=int, default=REPORT_ARCHS, choices=REPORT_ARCHS)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile processes")
    ap.add_argument("--quiet", action="store_true", help="print a one-line summary and the spilling variants only")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("unset TRITON_INTERPRET: the report compiles real GPU code", file=sys.stderr)
        return 2
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    rows = report(args.kernels, args.dtypes, args.precisions, args.directions, args.archs, args.jobs, args.paths)
    spills = [r for r in rows if r["spill_bytes"]]
    if args.json:
        print(json.dumps(rows, indent=1))
    elif args.quiet:
        print(f"compile report: {len(rows)} variants, max {max(r['registers'] for r in rows)} registers, "
              f"{len(spills)} spilling, tensor cores in {sum(r['tensor_cores'] for r in rows)}")
        if spills:
            print(format_table(spills))
    else:
        print(format_table(rows))
    if spills:
        print(f"{len(spills)} variant(s) spill registers", file=sys.stderr)
    return 1 if spills else 0


if __name__ == "__main__":
    sys.exit(main())
