"""Command line: two-sample tests and witness plots on files of samples.

    mmdkit test A.npy B.csv [--test mmd|energy] [--kernel gaussian] [--bandwidth median]
                [--permutations N] [--seed 0] [--aggregate] [--json] [--plot OUT.png]
    mmdkit witness A.csv B.csv --plot OUT.png
    mmdkit kid REAL.npy FAKE.npy [--subsets 100] [--subset-size 1000] [--exact] [--seed 0] [--json]
    mmdkit cmmd REFERENCE.npy EVALUATED.npy [--unbiased] [--sigma 10] [--json]
    torchrun --nproc-per-node 2 -m mmdkit test A.npy B.npy --seed 0 --json   (sharded over 2 processes)

Samples are ``.npy`` (read with ``allow_pickle=False``), ``.csv`` (commas, an
optional header row) or ``.txt`` (whitespace or commas), one point per row.
Bad files stop with exit status 2 and a message naming the file and the problem.
``mmdkit kid`` memory-maps ``.npy`` files (``np.load(mmap_mode="r")``), so large
feature files are read in row blocks rather than loaded and converted whole.
Under ``torchrun`` (WORLD_SIZE > 1) ``mmdkit test`` runs :mod:`mmdkit.distributed`:
each rank memory-maps the ``.npy`` files and reads its own contiguous block of
rows (``.csv``/``.txt`` are read whole), gloo on CPUs and NCCL when CUDA is
there; rank 0 prints the result, with ``"world_size"``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "load_sample", "InputError"]

EXIT_INPUT = 2


class InputError(ValueError):
    """A sample file that cannot be used (the message names the file)."""


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _load_text(path: Path, delimiter: str | None) -> tuple[np.ndarray, list[int]]:
    """(array, line number of each row) from a text file; the first row may be a header."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (cannot be decoded as UTF-8)") from None
    data = [(i + 1, line) for i, line in enumerate(text.splitlines())
            if line.strip() and not line.lstrip().startswith("#")]
    if not data:
        raise InputError(f"{path}: no data rows")
    if delimiter is None and "," in data[0][1]:
        delimiter = ","
    split = (lambda s: [c.strip() for c in s.split(delimiter)]) if delimiter else str.split
    if not any(_is_number(c) for c in split(data[0][1])):  # a header row
        data = data[1:]
        if not data:
            raise InputError(f"{path}: a header row but no data rows")
    try:
        arr = np.loadtxt([line for _, line in data], delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError as e:  # find the first bad row, with its line number, for the message
        first, ncol = data[0][0], len(split(data[0][1]))
        for lineno, line in data:
            cells = split(line)
            if len(cells) != ncol:
                raise InputError(f"{path}, line {lineno}: {len(cells)} value(s), but line {first} has {ncol} "
                                 "(ragged rows)") from None
            for c, cell in enumerate(cells, 1):
                if not _is_number(cell):
                    what = "an empty cell" if not cell else f"{cell!r} is not a number"
                    raise InputError(f"{path}, line {lineno}, column {c}: {what}") from None
        raise InputError(f"{path}: cannot be read as numbers ({e})") from None
    return arr, [lineno for lineno, _ in data]


def load_sample(path) -> np.ndarray:
    """A (n, d) float array from a .npy, .csv or .txt file; InputError names the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    ext = path.suffix.lower()
    lines = None
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:  # object arrays, corrupt headers
            raise InputError(f"{path}: cannot be read as a .npy array without pickle ({e})") from None
        except (OSError, EOFError) as e:
            raise InputError(f"{path}: cannot be read as a .npy array ({e})") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise InputError(f"{path}: holds {getattr(arr, 'dtype', type(arr).__name__)} values, "
                             "expected real numbers")
        arr = arr.astype(np.float64, copy=False)
    elif ext in (".csv", ".txt"):
        arr, lines = _load_text(path, "," if ext == ".csv" else None)
    else:
        raise InputError(f"{path}: unsupported file type {ext or '(none)'!r}; use .npy, .csv or .txt")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-D array (points x dimensions), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{path}: empty array of shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        where = f"line {lines[r]}" if lines is not None else f"row {r + 1}"
        kind = "NaN" if math.isnan(arr[r, c]) else "infinite"
        raise InputError(f"{path}, {where}, column {c + 1}: {kind} value "
                         f"({int(bad.sum())} NaN or infinite value(s) in the file)")
    return arr


def _load_pair(a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    X, Y = load_sample(a), load_sample(b)
    if X.shape[1] != Y.shape[1]:
        raise InputError(f"{a} has {X.shape[1]} column(s) but {b} has {Y.shape[1]}; "
                         "both samples need the same dimension")
    return X, Y


def _bandwidth(text: str | None):
    """--bandwidth: None, 'median', 'grid', a float or a comma-separated list of floats."""
    if text is None or text in ("median", "grid"):
        return text
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'median', 'grid', a number or a comma-separated list, "
                                         f"got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mmdkit", description="Kernel two-sample tests (MMD, energy distance).")
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("test", help="permutation two-sample test of A against B")
    t.add_argument("a", metavar="A", help="first sample (.npy, .csv or .txt; one point per row)")
    t.add_argument("b", metavar="B", help="second sample")
    t.add_argument("--test", choices=["mmd", "energy", "fuse", "cross"], default="mmd",
                   help="unbiased MMD^2 (default), the energy statistic n m/(n+m) E (as dcor / R energy), "
                        "MMD-FUSE over its default collection of 20 kernels, or cross-MMD (normal p-value, "
                        "no permutations; --kernel and --bandwidth apply)")
    t.add_argument("--kernel", default="gaussian", help="kernel name for --test mmd (default gaussian)")
    t.add_argument("--bandwidth", type=_bandwidth, default=None,
                   help="'median' (default), 'grid' (with --aggregate), a number or a list like 0.5,1,2")
    t.add_argument("--exponent", type=float, default=1.0, help="distance exponent of --test energy")
    t.add_argument("--permutations", type=int, default=None,
                   help="number of permutations (default 1000; 2000 for --aggregate and --test fuse, the papers')")
    t.add_argument("--seed", type=int, default=None, help="seed of the permutations")
    t.add_argument("--alternative", choices=["greater", "less", "two-sided"], default="greater")
    t.add_argument("--aggregate", action="store_true", help="MMDAgg: aggregate over bandwidths")
    t.add_argument("--alpha", type=float, default=0.05, help="level of the aggregated decision")
    t.add_argument("--backend", choices=["auto", "torch", "triton"], default="auto")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.add_argument("--plot", metavar="OUT.png", help="write the null distribution (and 2-D witness) plot")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--timeout", type=float, default=300.0,
                   help="under torchrun: seconds a rank waits for the others before it fails (default 300)")

    w = sub.add_parser("witness", help="witness-function heatmap of two 2-D samples")
    w.add_argument("a", metavar="A")
    w.add_argument("b", metavar="B")
    w.add_argument("--plot", metavar="OUT.png", required=True, help="PNG to write")
    w.add_argument("--kernel", default="gaussian")
    w.add_argument("--bandwidth", type=_bandwidth, default=None, help="'median' (default), a number or a list")
    w.add_argument("--grid", type=int, default=120, help="heatmap resolution (default 120)")

    k = sub.add_parser("kid", help="Kernel Inception Distance of two feature files (unbiased MMD^2, cubic kernel)")
    k.add_argument("a", metavar="REAL", help="real features (.npy, memory-mapped; .csv or .txt), one per row")
    k.add_argument("b", metavar="FAKE", help="generated features")
    k.add_argument("--subsets", type=int, default=100, help="number of random subsets (default 100)")
    k.add_argument("--subset-size", type=int, default=1000,
                   help="points per sample in each subset (default 1000; at most the smaller sample)")
    k.add_argument("--exact", action="store_true",
                   help="the full-sample unbiased MMD^2 and its standard error instead of subsets")
    k.add_argument("--seed", type=int, default=None, help="seed of the subsets")
    k.add_argument("--backend", choices=["auto", "torch", "triton"], default="auto")
    k.add_argument("--json", action="store_true", help="print the result as JSON")

    c = sub.add_parser("cmmd", help="CMMD of two embedding files (Gaussian MMD^2 x 1000 on L2-normalised rows)")
    c.add_argument("a", metavar="REFERENCE", help="reference embeddings (.npy, .csv or .txt), one per row")
    c.add_argument("b", metavar="EVALUATED", help="embeddings of the evaluated (generated) images")
    c.add_argument("--unbiased", action="store_true", help="the U-statistic and its standard error")
    c.add_argument("--sigma", type=float, default=10.0, help="the Gaussian kernel's bandwidth (default 10)")
    c.add_argument("--scale", type=float, default=1000.0, help="factor of the reported value (default 1000)")
    c.add_argument("--no-normalize", action="store_true", help="use the rows as they are (no L2 normalisation)")
    c.add_argument("--backend", choices=["auto", "torch", "triton"], default="auto")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    return ap


def _load_features(path: str):
    """A (n, d) sample for ``kid``: .npy memory-mapped (values are checked where they are read), else load_sample."""
    p = Path(path)
    if p.suffix.lower() != ".npy" or not p.is_file():
        return load_sample(path)
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # object arrays, corrupt headers
        raise InputError(f"{path}: cannot be read as a .npy array without pickle ({e})") from None
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: cannot be read as a .npy array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{path}: holds {arr.dtype} values, expected real numbers")
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise InputError(f"{path}: expected a non-empty 2-D array (points x dimensions), got shape {arr.shape}")
    return arr


def _run_kid(a) -> int:
    from mmdkit.kid import _kid
    X, Y = _load_features(a.a), _load_features(a.b)
    dx, dy = (A.shape[1] if A.ndim == 2 else 1 for A in (X, Y))
    if dx != dy:
        raise InputError(f"{a.a} has {dx} column(s) but {a.b} has {dy}; both samples need the same dimension")
    res = _kid(X, Y, None if a.exact else a.subsets, a.subset_size, a.seed, None, 3, None, 1.0, a.backend, None,
               (a.a, a.b))
    s = dict(value=res.value, std=res.std, method=res.method, subsets=res.subsets, subset_size=res.subset_size,
             ddof=res.ddof, seed=None if a.exact else a.seed, n=res.n, m=res.m, d=res.d,
             kernel=dict(name="polynomial", degree=res.kernel.degree, gamma=res.kernel.gamma,
                         coef0=res.kernel.coef0), backend=res.backend)
    if a.json:
        print(json.dumps(s, indent=2))
        return 0
    how = ("exact: all pairs of both samples" if res.method == "exact"
           else f"mean over {res.subsets} subsets of {res.subset_size} points")
    print(f"KID (unbiased MMD^2, kernel (<x, y>/d + 1)^3), {how}")
    print(f"  n = {res.n}, m = {res.m}, d = {res.d}")
    spread = ("standard error" if res.method == "exact" else "std over subsets, ddof 0")
    print(f"  KID = {res.value:.6g}  ({spread} {res.std:.3g}; not scaled: x 1000 for the usual tables)")
    return 0


def _run_cmmd(a) -> int:
    from mmdkit.cmmd import cmmd
    X, Y = (np.asarray(_load_features(path)) for path in (a.a, a.b))
    dx, dy = (A.shape[1] if A.ndim == 2 else 1 for A in (X, Y))
    if dx != dy:
        raise InputError(f"{a.a} has {dx} column(s) but {a.b} has {dy}; both samples need the same dimension")
    res = cmmd(X, Y, sigma=a.sigma, scale=a.scale, unbiased=a.unbiased, normalize=not a.no_normalize,
               backend=a.backend)
    s = dict(value=res.value, std_error=res.std_error, unbiased=res.unbiased, sigma=res.sigma, scale=res.scale,
             normalize=not a.no_normalize, n=res.n, m=res.m, d=res.d, backend=res.backend)
    if a.json:
        print(json.dumps(s, indent=2))
        return 0
    kind = "unbiased (U-statistic)" if res.unbiased else "biased (V-statistic, the reference code's)"
    print(f"CMMD, {kind}: Gaussian MMD^2 x {res.scale:g}, sigma = {res.sigma:g}")
    print(f"  n = {res.n}, m = {res.m}, d = {res.d}")
    err = "" if res.std_error is None else f"  (standard error {res.std_error:.3g})"
    print(f"  CMMD = {res.value:.6g}{err}")
    return 0


def _summary(res, X, Y) -> dict:
    """The JSON-able fields of a test result."""
    kernel = (", ".join(sorted({f"{k.name} ({k.norm})" for k in res.kernel})) if isinstance(res.kernel, tuple)
              else res.kernel.name)
    out = dict(test=res.test, statistic=res.statistic, pvalue=res.pvalue, n=X.shape[0], m=Y.shape[0],
               d=X.shape[1], n_permutations=res.n_permutations, exact=res.exact, kernel=kernel,
               bandwidth=list(res.bandwidth) if isinstance(res.bandwidth, tuple) else res.bandwidth,
               alternative=res.alternative, backend=res.backend, method=res.method)
    if res.reject is not None:
        out.update(alpha=res.alpha, reject=res.reject)
    if res.per_bandwidth:
        out["per_bandwidth"] = [dict(bandwidth=b.bandwidth, statistic=b.statistic, pvalue=b.pvalue,
                                     threshold=b.threshold, reject=b.reject) for b in res.per_bandwidth]
    return out


def _print_text(s: dict) -> None:
    name = {"mmd": "MMD test (unbiased MMD^2)", "energy": "energy test (n m/(n+m) x energy distance)",
            "mmdagg": "MMDAgg test (aggregated over bandwidths)",
            "fuse": "MMD-FUSE test (soft maximum of normalised MMD^2)",
            "cross_mmd": "cross-MMD test (studentised, normal p-value)"}[s["test"]]
    bw = s["bandwidth"]
    bw = "" if bw is None else (f", bandwidth {bw:.4g}" if isinstance(bw, float)
                                else f", bandwidths {', '.join(f'{h:.3g}' for h in bw)}")
    print(f"{name}: {s['kernel']} kernel{bw}")
    print(f"  n = {s['n']}, m = {s['m']}, d = {s['d']}")
    print(f"  statistic = {s['statistic']:.6g}")
    kind = "exact enumeration of" if s["exact"] else "random"
    how = (f"{kind} {s['n_permutations']} permutations" if s["n_permutations"] else "standard normal")
    print(f"  p-value   = {s['pvalue']:.4g}  ({how}, {s['alternative']})")
    if "reject" in s:
        print(f"  decision at alpha = {s['alpha']:g}: {'reject' if s['reject'] else 'do not reject'} H0")
        for b in s.get("per_bandwidth", []):
            mark = "*" if b["reject"] else " "
            print(f"   {mark} bandwidth {b['bandwidth']:<10.4g} MMD^2 = {b['statistic']:<12.5g} "
                  f"p = {b['pvalue']:<8.4g} threshold = {b['threshold']:.4g}")


def _plot_test(res, X, Y, path: str) -> None:
    """Null histogram, plus the witness heatmap next to it for 2-D data."""
    from mmdkit.plotting import _pyplot, plot_null_distribution, plot_witness
    plt = _pyplot()
    two_d = X.shape[1] == 2
    fig = plt.figure(figsize=(12 if two_d else 6, 4.5))
    plot_null_distribution(res, ax=fig.add_subplot(1, 2 if two_d else 1, 1))
    if two_d:
        if res.test == "mmdagg":  # the single test with the smallest p-value
            best = min(res.per_bandwidth, key=lambda b: b.pvalue)
            kernel, bandwidth = res.kernel.components[0].name, best.bandwidth
        elif res.test == "energy":
            kernel, bandwidth = "energy", None
        elif isinstance(res.kernel, tuple):  # a collection (MMD-FUSE): the median-bandwidth Gaussian's witness
            kernel, bandwidth = "gaussian", None
        else:
            kernel, bandwidth = res.kernel, None
        plot_witness(X, Y, kernel=kernel, bandwidth=bandwidth, ax=fig.add_subplot(1, 2, 2))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _shard_rows(path: str, rank: int, world: int) -> tuple[np.ndarray, int]:
    """(this rank's contiguous block of rows, the file's row count): a .npy file is memory-mapped and only
    those rows are read; .csv and .txt files are read whole (checked like :func:`load_sample`)."""
    p = Path(path)
    if p.suffix.lower() != ".npy" or not p.is_file():
        arr = load_sample(path)
        n = arr.shape[0]
        return arr[rank * n // world:(rank + 1) * n // world], n
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{p}: cannot be read as a .npy array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{p}: holds {arr.dtype} values, expected real numbers")
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise InputError(f"{p}: expected a non-empty 2-D array (points x dimensions), got shape {arr.shape}")
    n = arr.shape[0]
    lo, hi = rank * n // world, (rank + 1) * n // world
    rows = np.asarray(arr[lo:hi], dtype=np.float64).reshape(hi - lo, -1)
    bad = ~np.isfinite(rows)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{p}, row {lo + r + 1}, column {c + 1}: NaN or infinite value")
    return rows, n


def _run_test_distributed(a, world: int) -> int:
    """``torchrun --nproc-per-node P -m mmdkit test ...``: each rank reads its rows, rank 0 prints."""
    import os
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from mmdkit import distributed as sharded
    if a.test not in ("mmd", "energy"):
        raise InputError(f"--test {a.test} does not run on a process group yet; use --test mmd or energy")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=a.timeout))
    try:
        rank = dist.get_rank()
        err, X, Y, n, m = None, None, None, 0, 0
        try:
            (X, n), (Y, m) = _shard_rows(a.a, rank, world), _shard_rows(a.b, rank, world)
        except InputError as e:
            err = str(e)
        errors = [None] * world
        dist.all_gather_object(errors, err)  # every rank learns of a bad file before any statistic waits
        for r, e in enumerate(errors):
            if e is not None:
                raise InputError(f"rank {r}: {e}")
        if cuda:
            X, Y = torch.from_numpy(X).cuda(), torch.from_numpy(Y).cuda()
        common = dict(seed=a.seed, alternative=a.alternative, backend=a.backend,
                      progress=False if a.quiet or a.json else None)
        if a.permutations is not None:  # else each test's own default
            common["n_permutations"] = a.permutations
        if a.test == "energy":
            if a.aggregate or a.bandwidth is not None or a.kernel != "gaussian":
                raise InputError("--aggregate, --bandwidth and --kernel apply to --test mmd, not --test energy")
            res = sharded.energy_test(X, Y, exponent=a.exponent, **common)
        else:
            res = sharded.mmd_test(X, Y, kernel=a.kernel, bandwidth=a.bandwidth, aggregate=a.aggregate,
                                   alpha=a.alpha, **common)
        s = _summary(res, np.empty((n, X.shape[1])), np.empty((m, 0)))
        s["world_size"] = world
        if rank == 0:
            if a.plot:
                from mmdkit.plotting import plot_null_distribution
                plot_null_distribution(res, path=a.plot)
                s["plot"] = a.plot
            if a.json:
                print(json.dumps(s, indent=2))
            else:
                _print_text(s)
                print(f"  ranks: {world}")
    finally:
        dist.destroy_process_group()
    return 0


def _run_test(a) -> int:
    import os
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        return _run_test_distributed(a, world)
    from mmdkit.two_sample import energy_test, mmd_test
    X, Y = _load_pair(a.a, a.b)
    common = dict(seed=a.seed, alternative=a.alternative,
                  backend=a.backend, progress=False if a.quiet or a.json else None)
    if a.permutations is not None:  # else each test's own default
        common["n_permutations"] = a.permutations
    if a.test in ("energy", "fuse") and (a.aggregate or a.bandwidth is not None or a.kernel != "gaussian"):
        raise InputError(f"--aggregate, --bandwidth and --kernel apply to --test mmd, not --test {a.test}")
    if a.test == "cross" and a.aggregate:
        raise InputError("--aggregate applies to --test mmd, not --test cross")
    if a.test == "energy":
        res = energy_test(X, Y, exponent=a.exponent, **common)
    elif a.test == "fuse":
        if a.alternative != "greater":
            raise InputError("--test fuse is one-sided: --alternative must be 'greater'")
        from mmdkit.fuse import fuse_test
        del common["alternative"]
        res = fuse_test(X, Y, alpha=a.alpha, **common)
    elif a.test == "cross":
        from mmdkit.cross_mmd import cross_mmd_test
        res = cross_mmd_test(X, Y, kernel=a.kernel, bandwidth=a.bandwidth, seed=a.seed,
                             alternative=a.alternative, backend=a.backend)
    else:
        res = mmd_test(X, Y, kernel=a.kernel, bandwidth=a.bandwidth, aggregate=a.aggregate, alpha=a.alpha,
                       **common)
    s = _summary(res, X, Y)
    if a.plot:
        _plot_test(res, X, Y, a.plot)
        s["plot"] = a.plot
    if a.json:
        print(json.dumps(s, indent=2))
    else:
        _print_text(s)
        if a.plot:
            print(f"  plot: {a.plot}")
    return 0


def _run_witness(a) -> int:
    from mmdkit.plotting import _pyplot, plot_witness
    X, Y = _load_pair(a.a, a.b)
    if X.shape[1] != 2:
        raise InputError(f"{a.a} and {a.b} have {X.shape[1]} column(s); the witness heatmap needs 2")
    fig = plot_witness(X, Y, path=a.plot, kernel=a.kernel, bandwidth=a.bandwidth, grid=a.grid)
    _pyplot().close(fig)
    print(f"witness plot: {a.plot}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``mmdkit`` console script; returns the exit status.

    Examples
    --------
    >>> from mmdkit.cli import main
    >>> main(["test", "missing_a.npy", "missing_b.npy"])  # doctest: +SKIP
    mmdkit: error: missing_a.npy: no such file
    2
    """
    args = _parser().parse_args(argv)
    try:
        return {"test": _run_test, "witness": _run_witness, "kid": _run_kid, "cmmd": _run_cmmd}[args.command](args)
    except (InputError, ValueError, TypeError) as e:
        print(f"mmdkit: error: {e}", file=sys.stderr)
        return EXIT_INPUT
