"""Ahead-of-time compile report of the Triton kernels (no GPU needed).

``python -m mmdkit.kernels.report [--json]`` compiles every variant -- kernel x
dtype x precision x forward/backward x distance path x V columns, at the default config --
for sm_80 and sm_90 with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))``,
runs the ptxas bundled with triton (``ptxas -v``) on the PTX for registers and
spills, reads the shared memory from the compiled metadata, and checks the PTX
for tensor-core instructions (``mma`` / ``wgmma``). It prints a table, or with
``--json`` a list of objects; the exit status is 1 if any variant spills.

With ``--sass`` each row also counts the instructions of the kernel's main loop
(one (BLOCK_M, BLOCK_N) tile per iteration) in the SASS that the bundled
``nvdisasm`` prints: ``loop_sass`` and ``sass_per_pair`` = that count over the
pairs one thread handles per iteration (inner loops -- the d chunks of the
expansion path, the q chunks of the backward -- counted once; their own
lengths in ``loop_inner_sass``). ``--diag 0`` compiles X against Y instead of
the U-statistic (DIAG = 2), as bench/ROOFLINE.md counts. On sm_90 every
instruction takes one of the 128 issue slots per clock of an SM, the FP32 FMA
rate, so ``sass_per_pair`` is the lane cost that bench/ROOFLINE.md's model
uses (a static count, not a timing).

The distance paths: "expansion" (d > DIRECT_MAX_D: the distance tile is a
``tl.dot`` of 32-wide d chunks, ``|x|^2 + |y|^2 - 2 x.y``) and "direct"
(d <= DIRECT_MAX_D: direct differences of the coordinates, and the gradient
sums from direct differences too); the dot-product Polynomial has no direct
path.

The V columns of the forward: "dot" (V with >= 32 columns: ``acc += tl.dot(k, v)``,
BLOCK_P = 32, 16 under "tf32x3") and "rows1" / "rows2" (V with 1 / 2 columns: row reductions, no
dot, ``ROWS`` = 1 / 2); the backward has one ("-": A, B with >= 16 columns).
The variants compile with DIAG = 2 (U-statistics, the most code). A variant
without a float32 ``tl.dot`` (the row-reduction forward of the direct path or
of 16-bit inputs) compiles to the same code under every precision: it is
compiled once, under the first selected precision, and reported under each
with ``same_code_as_precision`` naming it (as rq and imq, one kernel id, are
compiled once and reported with ``same_code_as``).

Options ``--kernels``, ``--dtypes``, ``--precisions``, ``--directions``,
``--paths``, ``--columns`` and ``--archs`` select a subset; ``--jobs`` compiles in
parallel processes; ``--quiet`` prints a one-line summary (and any spilling variant).
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
REPORT_PRECISIONS = ("ieee", "tf32", "tf32x3")
REPORT_DIRECTIONS = ("fwd", "bwd")
REPORT_PATHS = ("expansion", "direct")
REPORT_COLUMNS = ("dot", "rows1", "rows2")
REPORT_ARCHS = (80, 90)
FIELDS = ("kernel", "direction", "dtype", "precision", "path", "columns", "arch", "registers", "spill_bytes",
          "shared_bytes", "tensor_cores", "mma", "compile_s")

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


def _source(kernel: str, direction: str, dtype: str, precision: str, path: str = "expansion",
            columns: str = "dot", diag: int = 2, arch: int = 90):
    """(ASTSource, options) of one variant at the default config.

    ``columns`` (forward only): "dot" (V with >= 32 columns: ROWS = 0, the widest BLOCK_P), "rows1" / "rows2"
    (V with 1 / 2 columns: row reductions, ROWS = 1 / 2). ``diag``: the DIAG mode (2: U-statistic,
    the largest code; 0: X against Y). ``arch``: the target (it sets the "tf32x3" tiles).
    """
    import torch
    import triton
    from mmdkit.kernels import triton_engine as te

    body = te._kernel_matmul_fwd if direction == "fwd" else te._kernel_matmul_bwd
    fn = getattr(body, "fn", body)  # the JITFunction under the autotuner
    if not isinstance(fn, triton.runtime.JITFunction):
        raise RuntimeError("the kernels were decorated under TRITON_INTERPRET=1; run the report without it")
    (terms,) = te.kernel_terms(_spec(kernel))
    kw = terms.kwargs(backward=direction == "bwd")
    constexprs = {k: v for k, v in kw.items() if k.isupper()}
    config = te.DEFAULT_CONFIG[direction]
    if direction == "fwd":
        rows = {"dot": 0, "rows1": 1, "rows2": 2}[columns]
        wide = {"ROWS": rows, "BLOCK_P": 1 if rows else te._block_p(1 << 16, precision, arch)}  # p >= 32 or rows
    else:
        wide = {"BLOCK_Q": te.MAX_BLOCK_Q}  # q >= 16
    if path == "direct":  # d = DIRECT_MAX_D: direct differences, the smallest d tile
        constexprs.update(te._direct(te.DIRECT_MAX_D, terms.dot))
        block_d = te._block_d(te.DIRECT_MAX_D, getattr(torch, dtype))
    else:  # the largest tiles: d >= 32
        constexprs.update(DIRECT=0, GRAD_DIRECT=False)
        wide_d = te._block_d(1 << 16, getattr(torch, dtype), precision, arch)
        block_d = wide_d if direction == "fwd" else te.MAX_BLOCK_D
    if direction == "fwd":
        constexprs.pop("GRAD_DIRECT")
    constexprs.update(DIAG=diag, PRECISION=precision, BLOCK_M=config["BLOCK_M"], BLOCK_N=config["BLOCK_N"],
                      BLOCK_D=block_d, **wide)
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


_SASS_INSTRUCTION = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*)\S*\s*([^;]*);")
_SASS_LABEL = re.compile(r"^\s*(\.L_x_\d+):")


def sass_loop(cubin: bytes, arch: int) -> dict:
    """Opcode counts of the main loop in the SASS of ``cubin`` (``nvdisasm``).

    Loops are backward branches; the main loop is the longest outermost one, and loops nested in
    it are counted once. Returns ``{"instructions": n, "opcodes": {opcode: count}, "nested": k,
    "inner": [instructions of each nested loop]}``.
    """
    from triton.backends.nvidia.compiler import get_ptxas
    nvdisasm = os.path.join(os.path.dirname(get_ptxas(arch).path), "nvdisasm")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        sass = subprocess.run([nvdisasm, "-c", path], check=True, capture_output=True, text=True).stdout
    ops, labels = [], {}
    for line in sass.splitlines():
        label = _SASS_LABEL.match(line)
        if label:
            labels[label.group(1)] = len(ops)
        elif (ins := _SASS_INSTRUCTION.search(line)):
            ops.append(ins.groups())
    loops = []  # (first, last) instruction of each backward branch's loop
    for i, (op, args) in enumerate(ops):
        target = re.search(r"\((\.L_x_\d+)\)", args) if op == "BRA" else None
        if target and labels.get(target.group(1), i + 1) <= i:
            loops.append((labels[target.group(1)], i))
    outer = [a for a in loops if not any(b != a and b[0] <= a[0] and a[1] <= b[1] for b in loops)]
    if not outer:
        return {"instructions": 0, "opcodes": {}, "nested": 0, "inner": []}
    first, last = max(outer, key=lambda a: a[1] - a[0])
    counts: dict = {}
    for op, _ in ops[first:last + 1]:
        counts[op] = counts.get(op, 0) + 1
    inner = [b - a + 1 for a, b in loops if first <= a and b <= last and (a, b) != (first, last)]
    return {"instructions": last - first + 1, "nested": len(inner), "inner": inner,
            "opcodes": dict(sorted(counts.items(), key=lambda kv: -kv[1]))}


def compile_variant(kernel: str, direction: str, dtype: str, precision: str, arch: int,
                    path: str = "expansion", columns: str = "dot", sass: bool = False, diag: int = 2) -> dict:
    """Compile one variant for ``sm_<arch>`` and return its report row (``columns`` "-" for the backward)."""
    import triton
    from triton.backends.compiler import GPUTarget

    from mmdkit.kernels import triton_engine as te

    t0 = time.perf_counter()
    src, options = _source(kernel, direction, dtype, precision, path, columns, diag, arch)
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    ptx = compiled.asm["ptx"]
    mma = sorted(set(re.findall(r"\b(wgmma\.mma_async[\w.]*|mma\.sync[\w.]*)", ptx)))
    row = {"kernel": kernel, "direction": direction, "dtype": dtype, "precision": precision, "path": path,
           "columns": columns if direction == "fwd" else "-", "arch": f"sm_{arch}",
           **_ptxas(ptx, arch), "shared_bytes": int(compiled.metadata.shared), "tensor_cores": bool(mma),
           "mma": mma}
    if sass:
        config = te.DEFAULT_CONFIG[direction]
        loop = sass_loop(compiled.asm["cubin"], arch)
        pairs = config["BLOCK_M"] * config["BLOCK_N"] / (32 * config["num_warps"])  # per thread and iteration
        row.update(loop_sass=loop["instructions"], sass_per_pair=round(loop["instructions"] / pairs, 2),
                   loop_nested=loop["nested"], loop_inner_sass=loop["inner"], loop_opcodes=loop["opcodes"])
    row["compile_s"] = round(time.perf_counter() - t0, 2)
    return row


def _run(args) -> dict:
    return compile_variant(*args)


def _has_f32_dot(direction: str, dtype: str, path: str, columns: str) -> bool:
    """Whether a variant's code has a float32 tl.dot (the only place ``precision`` enters)."""
    return direction == "bwd" or columns == "dot" or (dtype == "float32" and path == "expansion")


def _code(kernel: str) -> tuple:
    """What decides the generated code of a kernel (ids, degree, dot); rq and imq share theirs."""
    from mmdkit.kernels.triton_engine import kernel_terms
    (terms,) = kernel_terms(_spec(kernel))
    return terms.kinds, terms.degree, terms.dot


def report(kernels=REPORT_KERNELS, dtypes=REPORT_DTYPES, precisions=REPORT_PRECISIONS,
           directions=REPORT_DIRECTIONS, archs=REPORT_ARCHS, jobs: int = 1, paths=REPORT_PATHS,
           columns=REPORT_COLUMNS, sass: bool = False, diag: int = 2) -> list[dict]:
    """Report rows for every selected variant (compiled in ``jobs`` processes).

    Kernels whose generated code is identical (rq and imq: one id, different parameters) are
    compiled once and reported under each name, with ``same_code_as`` naming the compiled one;
    variants without a float32 dot are compiled under the first precision only and reported under
    each, with ``same_code_as_precision`` naming it.
    """
    first = {}
    for k in kernels:
        first.setdefault(_code(k), k)
    variants = [(k, dr, dt, p, a, ph, c) for k in dict.fromkeys(first.values()) for ph in paths for dt in dtypes
                for dr in directions for c in (columns if dr == "fwd" else ("-",)) for p in precisions
                for a in archs
                if ph == "expansion" or not _code(k)[2]]  # no direct path for the dot-product kernel
    compiled_as = {v: v if _has_f32_dot(v[1], v[2], v[5], v[6]) else v[:3] + (precisions[0],) + v[4:]
                   for v in variants}
    todo = list(dict.fromkeys(compiled_as.values()))
    args = [v + (sass, diag) for v in todo]
    if jobs <= 1:
        rows = [_run(t) for t in args]
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            rows = list(pool.map(_run, args))
    by_variant = dict(zip(todo, rows))
    out = []
    for k in kernels:
        src = first[_code(k)]
        for v in variants:
            if v[0] != src:
                continue
            row = dict(by_variant[compiled_as[v]], kernel=k, precision=v[3])
            if src != k:
                row["same_code_as"] = src
            if compiled_as[v] != v:
                row["same_code_as_precision"] = compiled_as[v][3]
            out.append(row)
    return out


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of report rows."""
    cols = ("kernel", "direction", "dtype", "precision", "path", "columns", "arch", "registers", "spill_bytes",
            "shared_bytes", "tensor_cores", "compile_s") + (("sass_per_pair",) if rows and "sass_per_pair" in rows[0]
                                                            else ())
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
    ap.add_argument("--columns", nargs="+", default=REPORT_COLUMNS, choices=REPORT_COLUMNS,
                    help="V columns of the forward: dot (p >= 32), rows1 (p = 1), rows2 (p = 2)")
    ap.add_argument("--sass", action="store_true", help="count the main loop's SASS instructions per pair")
    ap.add_argument("--diag", type=int, default=2, choices=(0, 1, 2),
                    help="DIAG mode compiled: 2 U-statistics (default, the most code), 1 one sample, 0 X against Y")
    ap.add_argument("--archs", nargs="+", type=int, default=REPORT_ARCHS, choices=REPORT_ARCHS)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile processes")
    ap.add_argument("--quiet", action="store_true", help="print a one-line summary and the spilling variants only")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("unset TRITON_INTERPRET: the report compiles real GPU code", file=sys.stderr)
        return 2
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    rows = report(args.kernels, args.dtypes, args.precisions, args.directions, args.archs, args.jobs, args.paths,
                  args.columns, args.sass, args.diag)
    spills = [r for r in rows if r["spill_bytes"]]
    if args.json:
        print(json.dumps(rows, indent=1))
    elif args.quiet:
        compiled = sum("same_code_as" not in r and "same_code_as_precision" not in r for r in rows)
        print(f"compile report: {len(rows)} variants ({compiled} compiled), max {max(r['registers'] for r in rows)} "
              f"registers, {len(spills)} spilling, tensor cores in {sum(r['tensor_cores'] for r in rows)}")
        if spills:
            print(format_table(spills))
    else:
        print(format_table(rows))
    if spills:
        print(f"{len(spills)} variant(s) spill registers", file=sys.stderr)
    return 1 if spills else 0


if __name__ == "__main__":
    sys.exit(main())
