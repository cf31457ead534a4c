"""`make gpu-check`: correctness tests and timings on one CUDA GPU, with the machine's own torch and triton.

Run from the repository root on a CUDA machine (no network needed):

    make gpu-check                 # = python3 bench/gpu_check.py (PYTHON=... picks another interpreter)
    python bench/gpu_check.py --dry-run    # the size plan and its time estimate; no GPU needed

It installs nothing into the machine's Python and creates no virtual environment: the working tree is
installed into a temporary folder with that Python's own pip and setuptools,
``pip install --no-deps --no-build-isolation --no-index --target <tmpdir> .`` (pyproject.toml maps the
``kernels/`` and ``gan/`` folders to ``mmdkit.kernels`` and ``mmdkit.gan``, so the repository root itself is
not importable), and that folder goes first on ``sys.path`` and on ``PYTHONPATH`` for the test run; it is
removed at the end. ``--no-install`` uses whatever ``import mmdkit`` finds instead. Needs torch and
triton >= 3.0 (the target machine has triton 3.6; developed with 3.9), numpy, and pytest for the
test step.

Steps, each appending its rows to bench/GPU_RESULTS.md as soon as it has them (a run cut short keeps
what it measured):

1. ``pytest -m gpu`` on the test files that have GPU-marked tests (compiled kernels against the float64
   reference), with ``TRITON_INTERPRET=0`` (tests/conftest.py only sets the interpreter flag when it is
   unset) and a time limit.
2. Timings with the autotuners pinned to the engine's default config (no autotuning sweep; see
   :func:`pin_autotuning`): ``kernel_matmul`` (Gaussian, p = 1; fp32 in every precision of
   ``mmdkit.kernels.PRECISIONS``, bf16), ``mmd2_unbiased`` forward and forward + backward and
   ``energy_distance`` at n = m in {10^4, 10^5, 10^6}; the CPU cost of the permutation labels; ``mmd_test``
   and the aggregated test (MMDAgg) at n <= 10^5. Dense torch (cdist + exp) is timed beside them where
   n <= 3 x 10^4 (``DENSE_MAX_N``).

The whole run is planned to finish within 5 minutes (``--budget``) on one H100/H200-class GPU: each item's
cost is estimated from bench/ROOFLINE.md's model (:func:`estimate_seconds`), and a guard skips an item
(with a row saying so) when its projection -- the previous size's measured time scaled by the estimates'
ratio -- exceeds ``ITEM_LIMIT_S`` or the time left. Without torch or without a CUDA device it says so and
exits 0. The exit status is 1 when the GPU tests fail or time out or an item raises.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().with_name("GPU_RESULTS.md")

BUDGET_S = 300.0          # the whole run, on one H100/H200-class GPU
TESTS_TIMEOUT_S = 100.0   # step 1's limit (the compiled-kernel test autotunes unless the engine is pinned)
ITEM_LIMIT_S = 60.0       # one plan item (all its repeats), projected from the previous size
RESERVE_S = 5.0           # kept free at the end of the budget
FIXED_S = 30.0            # install, imports and first compilations outside the items (estimate)
COMPILE_S = 3.0           # first call of a new kernel variant (estimate)

SIZES = (10**4, 10**5, 10**6)   # n = m for kernel_matmul, mmd2_unbiased, energy_distance
TEST_SIZES = (10**4, 10**5)     # n = m for mmd_test and the aggregated test
DENSE_MAX_N = 3 * 10**4         # dense torch (n x m matrices) only up to here
DS = (3, 64)                    # d <= 3: direct-difference tiles; d = 64: two 32-wide tl.dot chunks
PERMUTATIONS = {10**4: 1000, 10**5: 100}        # mmd_test
AGG_PERMUTATIONS = {10**4: 250, 10**5: 25}      # MMDAgg: B1 = B2 = this (2x draws), 10 bandwidths
AGG_BANDWIDTHS = 10                             # mmdkit.bandwidth.GRID_SIZE
WARMUP_N = 200                  # tests: a first call at this n compiles their kernels (n is not specialised)
LABEL_SECONDS = 1e-8            # CPU time per permutation label (numpy hash and selection; 5e-9 on a quiet 2-core VM)

# bench/ROOFLINE.md's H100 SXM5 model: FP32 lane-ops/s, SFU ex2/s, L2 -> SM bytes/s, SMs, default tile rows
H100 = {"lanes": 33.5e12, "sfu": 4.2e12, "l2": 7e12, "sms": 132, "block_m": 64}
REALISM = 2.5                   # ROOFLINE.md: "expect measured times 1.5-3x the bounds"
FWD_BWD = 3.0                   # forward + backward of a statistic / its forward (one backward sweep, ~1.4x, + V)
ENERGY = 1.5                    # Energy kernel (t^(1/2) by _pow) / Gaussian, per pair

COLUMNS = ("date", "commit", "gpu", "torch / triton", "op", "mode", "n", "d", "dtype / precision", "seconds",
           "rate", "of bound", "vs dense", "note")
HEADER = "| " + " | ".join(COLUMNS) + " |"
PREAMBLE = """# GPU results (`make gpu-check`)

Appended by `bench/gpu_check.py`, one row per measurement as it is taken (a run cut short keeps its rows).
`seconds`: median wall time of one call after a warm-up (CUDA synchronised). `rate`: pairs per second
(kernel_matmul: n m; statistics: the (2n)^2 / 2 distinct pairs of the pooled sample), permutations per
second (tests) or nanoseconds per label (labels). `of bound`: bench/ROOFLINE.md's H100 lower bound / the
measured time (kernel_matmul and the MMD^2 forward; H100/H200 only). `vs dense`: dense torch float32 time
(full n x m matrices from cdist: gpu_check.dense_kernel_matmul and the baselines of bench_mmd2_unbiased.py
and bench_energy_distance.py) / this time, where n <= 3e4. Autotuning is pinned to the engine's default
config (the `setup` row).

"""


# ------------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Item:
    """One measurement: an operation at one size and variant."""

    op: str                 # kernel_matmul, mmd2_unbiased, energy_distance, labels, mmd_test, mmd_test aggregate
    mode: str               # fwd, fwd+bwd, test, cpu
    n: int                  # n = m (labels: the pooled N)
    d: int
    dtype: str = "float32"
    precision: str = "ieee"
    repeats: int = 1        # timed calls (median), after `warmup` untimed ones
    warmup: int = 1
    permutations: int = 0   # tests: n_permutations; labels: the labels' columns
    dense: bool = False     # also time dense torch

    @property
    def group(self) -> tuple:
        """The items a size sweep runs through (same op, mode, d and variant)."""
        return self.op, self.mode, self.d, self.dtype, self.precision


def _repeats(n: int) -> tuple[int, int]:
    """(repeats, warmup) at size n: more repeats for short calls; at 10^6 one call (compiled at the smaller n)."""
    return {10**4: (10, 1), 10**5: (3, 1)}.get(n, (1, 0))


def plan(precisions=("ieee", "tf32")) -> list[Item]:
    """Every item of a run, in order (smaller sizes first within each sweep).

    ``precisions``: the backends' fp32 precisions (``mmdkit.kernels.PRECISIONS``); kernel_matmul runs each in
    float32, and bfloat16 in "ieee". The statistics run float32 "ieee" (the default); d = 64 stops at 10^5
    and forward + backward at d = 3 reaches 10^6 (the estimates of the rest exceed the budget).
    """
    items = []
    variants = [("float32", p) for p in precisions] + [("bfloat16", "ieee")]
    for d in DS:
        for dtype, prec in variants:
            for n in SIZES:
                r, w = _repeats(n)
                items.append(Item("kernel_matmul", "fwd", n, d, dtype, prec, r, w, dense=n <= DENSE_MAX_N))
    for op, mode in (("mmd2_unbiased", "fwd"), ("mmd2_unbiased", "fwd+bwd"), ("energy_distance", "fwd")):
        for d in DS:
            for n in SIZES if d == 3 else SIZES[:2]:
                r, w = _repeats(n)
                items.append(Item(op, mode, n, d, repeats=r, warmup=w, dense=n <= DENSE_MAX_N))
    items.append(Item("labels", "cpu", 2 * 10**4, 0, "-", "-", repeats=3, warmup=0, permutations=100))
    for n in TEST_SIZES:
        items.append(Item("mmd_test", "test", n, 3, permutations=PERMUTATIONS[n], warmup=0))
    for n in TEST_SIZES:
        items.append(Item("mmd_test aggregate", "test", n, 3, permutations=AGG_PERMUTATIONS[n], warmup=0))
    return items


def _block_d(d: int, dtype: str) -> int:
    """The engine's reduction tile over d (kernels/triton_engine._block_d): next power of 2 in [8 | 16, 32]."""
    return max(8 if dtype == "float32" else 16, min(32, 1 << max(d - 1, 0).bit_length()))


def roofline_seconds(n: int, m: int, d: int, dtype: str = "float32", precision: str = "ieee") -> float | None:
    """bench/ROOFLINE.md's H100 lower bound (s) of ``kernel_matmul(X, Y, V, Gaussian)``, p = 1, 64 x 64 tiles.

    The largest of: FP32 lane-ops (per pair: the d chunks of BLOCK_D FMAs + 8 for K @ V + ~10 epilogue in
    "ieee"; ~10 in "tf32"; ~10 + 8 for bfloat16), one ex2 per pair on the SFUs, and each 64-row program
    streaming all of Y from L2 ((4 d + 8) bytes per row in fp32, 2 d + 8 in 16-bit); times the wave
    quantisation ceil(P / 132) 132 / P of P = cdiv(n, 64) programs. None where the model has no entry.
    """
    if dtype == "float32" and precision == "ieee":
        bd = _block_d(d, dtype)
        ops = bd * math.ceil(d / bd) + 8 + 10
    elif dtype == "float32" and precision == "tf32":
        ops = 10
    elif dtype in ("bfloat16", "float16"):
        ops = 10 + 8
    else:
        return None
    pairs = n * m
    programs = -(-n // H100["block_m"])
    row_bytes = (4 if dtype == "float32" else 2) * d + 8
    bound = max(pairs * ops / H100["lanes"], pairs / H100["sfu"], programs * m * row_bytes / H100["l2"])
    return bound * math.ceil(programs / H100["sms"]) * H100["sms"] / programs


def _call_seconds(item: Item) -> float:
    """Estimated seconds of one call of ``item`` on an H100 (bounds x REALISM; labels at LABEL_SECONDS)."""
    n, d = item.n, item.d
    if item.op == "labels":
        return item.n * item.permutations * LABEL_SECONDS
    if item.op == "kernel_matmul":
        bound = roofline_seconds(n, n, d, item.dtype, item.precision)
        return REALISM * (bound if bound is not None else roofline_seconds(n, n, d))  # tf32x3 etc.: ~ "ieee"
    fwd = REALISM * roofline_seconds(2 * n, 2 * n, d)  # one sweep over the pooled sample, p = 2
    if item.op in ("mmd2_unbiased", "energy_distance"):
        return fwd * (FWD_BWD if item.mode == "fwd+bwd" else 1.0) * (ENERGY if item.op == "energy_distance" else 1.0)
    # tests: labels on the CPU, then per kernel one K0 @ [1, E] sweep over all draws (P + 1 columns: an FMA per
    # pair and column, the distance tile again for every 32 columns) and one block_sums for the statistic
    agg = item.op.endswith("aggregate")
    kernels, draws = (AGG_BANDWIDTHS, 2 * item.permutations) if agg else (1, item.permutations)
    N = 2 * n
    per_pair = (draws + 1 + math.ceil((draws + 1) / 32) * (_block_d(d, "float32") + 10)) / H100["lanes"]
    return N * (draws + 1) * LABEL_SECONDS + kernels * (REALISM * N * N * per_pair + fwd)


def _dense_seconds(item: Item) -> float:
    """Estimated seconds of dense torch at ``item``'s size (n x m matrices at ~1e11 entries/s, 3 passes)."""
    if not item.dense:
        return 0.0
    entries = item.n * item.n * (1 if item.op == "kernel_matmul" else 3)
    return 3 * entries / 1e11 * (FWD_BWD if item.mode == "fwd+bwd" else 1.0)


def estimate_seconds(item: Item) -> float:
    """Estimated wall time of ``item``: its warm-up and timed calls and the dense torch ones."""
    calls = item.repeats + item.warmup
    return calls * (_call_seconds(item) + _dense_seconds(item) + 2e-3)


def estimate_total(items: list[Item], tests_timeout: float = TESTS_TIMEOUT_S) -> float:
    """Estimated wall time of a run: the tests' limit, fixed costs, a compilation per sweep, and every item."""
    sweeps = len({i.group for i in items if i.op != "labels"})
    return tests_timeout + FIXED_S + COMPILE_S * sweeps + sum(estimate_seconds(i) for i in items)


# ------------------------------------------------------------------------------- the results table

def table_row(values: dict) -> str:
    """One markdown row of COLUMNS (missing values empty; '|' in a value escaped)."""
    cell = lambda v: "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return "| " + " | ".join(cell(values.get(c)) for c in COLUMNS) + " |"


def append_row(path: Path, values: dict) -> None:
    """Append one row to the results file, writing the preamble and table header first if it has none."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    with open(path, "a") as f:
        if HEADER not in text:
            f.write(("" if not text or text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n")
                    + (PREAMBLE if not text else "") + HEADER + "\n"
                    + "|" + "|".join("---" for _ in COLUMNS) + "|\n")
        f.write(table_row(values) + "\n")


def fmt(x: float | None, digits: int = 3) -> str | None:
    """``x`` with ``digits`` significant digits, None kept."""
    return None if x is None else f"{x:.{digits}g}"


# ------------------------------------------------------------------------------- machine and install

def no_cuda_reason() -> str | None:
    """Why this machine cannot run the check (torch missing, no CUDA device), or None if it can."""
    try:
        import torch
    except ImportError as e:
        return f"torch is not importable by {sys.executable} ({e})"
    if not torch.cuda.is_available():
        return f"no CUDA device is visible to torch {torch.__version__} ({sys.executable})"
    return None


def git_commit(root: Path = ROOT) -> str:
    """Short commit of the checkout, '+dirty' when the package sources differ from it; 'unknown' without git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        clean = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "mmdkit", "kernels", "gan"], cwd=root,
                               timeout=10).returncode == 0
        return sha + ("" if clean else "+dirty")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def install(target: str) -> None:
    """The working tree into ``target`` with this Python's pip, offline and without build isolation."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--no-build-isolation", "--no-index", "--no-cache-dir", "--target", target, str(ROOT)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")


def pin_autotuning(module) -> list[str]:
    """Pin every autotuned kernel of ``module`` to its first config, before the first launch; returns them.

    The engine's ``configs(direction)`` puts ``DEFAULT_CONFIG[direction]`` first, and triton's Autotuner
    neither prunes nor benchmarks when it has one config (the same ``len(self.configs) > 1`` test in
    triton 3.x's ``Autotuner.run``). The engine has no switch for this (see the report in issue 16).
    """
    from triton.runtime.autotuner import Autotuner
    pinned = []
    for name, obj in sorted(vars(module).items()):
        if isinstance(obj, Autotuner):
            obj.configs = list(obj.configs[:1])
            c = obj.configs[0]
            blocks = "x".join(str(v) for k, v in sorted(c.kwargs.items()) if k.startswith("BLOCK"))
            pinned.append(f"{name.strip('_')} {blocks} w{c.num_warps} s{c.num_stages}")
    return pinned


def gpu_test_files(root: Path = ROOT) -> list[Path]:
    """The test files with GPU-marked tests (the others may import packages this machine lacks)."""
    return sorted(p for p in (root / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())


def run_gpu_tests(site: str | None, timeout: float) -> tuple[str, float, bool]:
    """``pytest -m gpu`` in a child process group: (summary, seconds, passed). Killed whole at ``timeout``."""
    files = gpu_test_files()
    env = dict(os.environ, TRITON_INTERPRET="0", PYTHONUNBUFFERED="1",
               MMDKIT_TRITON_AUTOTUNE="0")  # the engine's pin switch (triton_engine.configs)
    if site:
        env["PYTHONPATH"] = os.pathsep.join([site] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "pytest", *map(str, files), "-m", "gpu", "-p", "no:cacheprovider",
           "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), "-rfE"]
    # cwd: not the repository root, whose mmdkit/ folder (without kernels/) would shadow the installed package
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=site or tempfile.gettempdir(), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # pytest and the test's own child process
        out, _ = proc.communicate()
        print(out[-4000:])
        return f"timeout after {timeout:.0f} s", time.perf_counter() - t0, False
    seconds = time.perf_counter() - t0
    print(out[-6000:] if proc.returncode else out[-600:])
    counts = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", out)
    summary = ", ".join(f"{k} {w}" for k, w in counts) or f"exit {proc.returncode}"
    return summary, seconds, proc.returncode == 0


# ------------------------------------------------------------------------------- timing

def time_calls(fn, repeats: int, warmup: int, sync=None) -> tuple[float, float]:
    """(median seconds of ``repeats`` timed calls, seconds of the first call); ``sync()`` (CUDA
    synchronisation) before and after each call."""
    sync = sync or (lambda: None)
    times = []
    for _ in range(warmup + repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[warmup:]), times[0]


def dense_kernel_matmul(X, Y, V, h: float):
    """The obvious torch code: the full Gaussian kernel matrix from cdist, times V."""
    import torch
    return torch.exp(-torch.cdist(X, Y).square() / (2 * h * h)) @ V


class Runner:
    """Runs plan items on the GPU and appends their rows; the budget guard lives in :meth:`run`."""

    def __init__(self, results: Path, deadline: float, base: dict, device: str = "cuda"):
        import torch

        import mmdkit
        from mmdkit.kernels import Gaussian, get_backend
        self.torch, self.mmdkit, self.Gaussian, self.get_backend = torch, mmdkit, Gaussian, get_backend
        self.results, self.deadline, self.base, self.device = results, deadline, base, torch.device(device)
        self.sync = torch.cuda.synchronize if self.device.type == "cuda" else None
        self.h100 = any(s in base["gpu"] for s in ("H100", "H200"))
        self.last: dict[tuple, tuple[Item, float]] = {}  # group -> (item, measured wall seconds)
        self.dense_cache: dict[tuple, float | None] = {}
        self.data_cache: dict[tuple, tuple] = {}
        self.errors = 0
        try:
            from bench_energy_distance import dense_energy_distance
            from bench_mmd2_unbiased import dense_mmd2_unbiased
            self.dense = {"mmd2_unbiased": dense_mmd2_unbiased, "energy_distance": dense_energy_distance}
        except ImportError as e:  # the bench modules import pytest
            print(f"gpu-check: dense baselines of the statistics unavailable ({e})")
            self.dense = {}

    def row(self, item: Item, **values) -> None:
        """Append ``item``'s row (and echo it)."""
        r = dict(self.base, op=item.op, mode=item.mode, n=item.n, d=item.d or None,
                 **{"dtype / precision": f"{item.dtype} / {item.precision}" if item.dtype != "-" else "cpu"},
                 **values)
        append_row(self.results, r)
        print(table_row(r), flush=True)

    def projection(self, item: Item) -> float:
        """Seconds ``item`` is expected to take: the sweep's last measured item scaled by the estimates, or
        the estimate (with a first compilation) when nothing of the sweep ran yet."""
        if item.group in self.last:
            prev, seconds = self.last[item.group]
            return seconds * estimate_seconds(item) / estimate_seconds(prev)
        return estimate_seconds(item) + COMPILE_S

    def run(self, item: Item) -> None:
        """Run ``item`` unless its projection exceeds ITEM_LIMIT_S or the time left; append its row."""
        left = self.deadline - time.monotonic()
        proj = self.projection(item)
        if proj > min(ITEM_LIMIT_S, left):
            why = "item limit" if proj > ITEM_LIMIT_S else "time left"
            self.row(item, note=f"skipped: projected {proj:.0f} s > {min(ITEM_LIMIT_S, left):.0f} s ({why})")
            return
        t0 = time.monotonic()
        try:
            values = self.measure(item)
        except Exception as e:  # noqa: BLE001 -- one failing item must not lose the others' rows
            self.errors += 1
            if self.sync:
                self.torch.cuda.empty_cache()
            self.row(item, note=f"error: {type(e).__name__}: {str(e)[:300]}")
            return
        self.last[item.group] = (item, time.monotonic() - t0 - values.pop("_compile", 0.0))
        self.row(item, **values)

    def data(self, n: int, d: int, dtype: str):
        """make_pair(n, n, d) on the GPU (cached: every sweep uses the same points)."""
        key = (n, d, dtype)
        if key not in self.data_cache:
            from mmdkit.kernels.reference import make_pair
            X, Y = make_pair(n, n, d, shift=0.5, dtype=getattr(self.torch, dtype))
            self.data_cache[key] = (X.to(self.device), Y.to(self.device))
        return self.data_cache[key]

    def measure(self, item: Item) -> dict:
        """Time ``item``; returns its row's values."""
        torch = self.torch
        if item.op == "labels":
            import numpy as np
            from mmdkit._permutations import x_masks
            key = np.array([1, 2], dtype=np.uint32)
            rows = np.arange(item.n)
            run = lambda: x_masks(key, np.arange(item.permutations), rows, item.n, item.n // 2)  # noqa: E731
            t, _ = time_calls(run, item.repeats, item.warmup)
            ns = t / (item.n * item.permutations) * 1e9
            return {"seconds": fmt(t, 4), "rate": f"{ns:.0f} ns/label",
                    "note": f"{item.permutations} permutations of N = {item.n} (numpy, one core)"}
        X, Y = self.data(item.n, item.d, item.dtype)
        h = float(item.d) ** 0.5
        if item.op.startswith("mmd_test"):
            agg = item.op.endswith("aggregate")
            kw = dict(n_permutations=item.permutations, seed=0, backend="triton", progress=False)
            if agg:
                kw["aggregate"] = True
            else:
                kw["bandwidth"] = h
            compile_s = 0.0
            if item.group not in self.last:  # compile on a small problem (same kernels: n is not specialised)
                Xs, Ys = self.data(WARMUP_N, item.d, item.dtype)
                compile_s = time_calls(lambda: self.mmdkit.mmd_test(Xs, Ys, **dict(kw, n_permutations=20)), 1, 0,
                                       self.sync)[0]
            t, _ = time_calls(lambda: self.mmdkit.mmd_test(X, Y, **kw), item.repeats, item.warmup, self.sync)
            draws = item.permutations * (2 if agg else 1)
            note = f"P = {item.permutations}" + (f" (B1 = B2, {AGG_BANDWIDTHS} bandwidths)" if agg else "")
            return {"seconds": fmt(t, 4), "rate": f"{fmt(draws / t)} perm/s", "note": note, "_compile": compile_s}
        f, dense, pairs, bound = self.functions(item, X, Y, h)
        t, first = time_calls(f, item.repeats, item.warmup, self.sync)
        values = {"seconds": fmt(t, 4), "rate": f"{fmt(pairs / t)} pairs/s"}
        if bound is not None and self.h100:
            values["of bound"] = fmt(bound / t, 2)
        if dense is not None and item.dense:
            key = (item.op, item.mode, item.n, item.d)
            if key not in self.dense_cache:
                try:
                    self.dense_cache[key] = time_calls(dense, item.repeats, item.warmup, self.sync)[0]
                except torch.cuda.OutOfMemoryError:
                    self.dense_cache[key] = None
                    torch.cuda.empty_cache()
            td = self.dense_cache[key]
            values["vs dense"] = f"{td / t:.2f}x" if td else "dense OOM"
        if item.group not in self.last:
            values["note"] = f"first call {first:.2f} s (compiles)"
            values["_compile"] = max(first - t, 0.0)
        return values

    def functions(self, item: Item, X, Y, h: float):
        """(Triton call, dense torch call or None, pairs per call, ROOFLINE bound or None) of ``item``."""
        torch, n = self.torch, item.n
        if item.op == "kernel_matmul":
            spec = self.Gaussian(bandwidth=h)
            engine = self.get_backend("triton", X.device, X.dtype, item.precision)
            V = torch.randn(n, 1, generator=torch.Generator().manual_seed(0)).to(X.device, X.dtype)
            Xf, Yf, Vf = X.float(), Y.float(), V.float()
            return (lambda: engine.kernel_matmul(X, Y, V, spec),
                    lambda: dense_kernel_matmul(Xf, Yf, Vf, h),
                    n * n, roofline_seconds(n, n, item.d, item.dtype, item.precision))
        if item.op == "mmd2_unbiased":
            f = lambda A, B: self.mmdkit.mmd2_unbiased(A, B, bandwidth=h, backend="triton")  # noqa: E731
            dense = self.dense.get(item.op)
            g = None if dense is None else (lambda A, B: dense(A, B, h=h))
        else:
            f = lambda A, B: self.mmdkit.energy_distance(A, B, backend="triton")  # noqa: E731
            g = self.dense.get(item.op)
        bound = roofline_seconds(2 * n, 2 * n, item.d) if item.op == "mmd2_unbiased" and item.mode == "fwd" else None
        return self.call(f, X, Y, item.mode), None if g is None else self.call(g, X, Y, item.mode), \
            (2 * n) ** 2 / 2, bound

    def call(self, f, X, Y, mode: str):
        """``f(X, Y)`` (fwd) or it and its gradients in X and Y (fwd+bwd), as a closure."""
        if mode == "fwd":
            return lambda: f(X, Y)
        Xr, Yr = X.clone().requires_grad_(), Y.clone().requires_grad_()
        return lambda: self.torch.autograd.grad(f(Xr, Yr), [Xr, Yr])


# ------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole run (default 300)")
    ap.add_argument("--tests-timeout", type=float, default=TESTS_TIMEOUT_S, help="seconds for pytest -m gpu")
    ap.add_argument("--skip-tests", action="store_true", help="timings only")
    ap.add_argument("--no-install", action="store_true", help="use the mmdkit that `import mmdkit` finds")
    ap.add_argument("--results", type=Path, default=RESULTS, help="markdown file the rows are appended to")
    ap.add_argument("--only", nargs="+", metavar="OP", help="run only these ops (e.g. kernel_matmul mmd_test)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and its estimate, run nothing")
    args = ap.parse_args(argv)
    start = time.monotonic()

    if args.dry_run:
        items = plan()
        for i in items:
            print(f"{i.op:20s} {i.mode:8s} n={i.n:<8d} d={i.d:<3d} {i.dtype}/{i.precision:5s} "
                  f"x{i.warmup}+{i.repeats} P={i.permutations:<5d} dense={i.dense!s:5s} ~{estimate_seconds(i):7.2f} s")
        print(f"estimated total {estimate_total(items, 0 if args.skip_tests else args.tests_timeout):.0f} s "
              f"(budget {args.budget:.0f} s)")
        return 0

    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("gpu-check: TRITON_INTERPRET was set; running the compiled kernels (TRITON_INTERPRET=0)")
    os.environ["TRITON_INTERPRET"] = "0"  # before anything imports triton (the flag is read at decoration)
    reason = no_cuda_reason()
    if reason:
        print(f"gpu-check: {reason}; nothing to run on this machine (run `make gpu-check` on a CUDA machine).")
        return 0
    import torch
    try:
        import triton
    except ImportError as e:
        print(f"gpu-check: CUDA is here but triton is not importable ({e}); the Triton engine cannot run.")
        return 1

    site = None if args.no_install else tempfile.mkdtemp(prefix="mmdkit-gpu-check-")
    try:
        if site:
            install(site)
            sys.path.insert(0, site)
        import mmdkit
        base = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                "commit": git_commit(), "gpu": torch.cuda.get_device_name(),
                "torch / triton": f"{torch.__version__} / {triton.__version__}"}
        print(f"gpu-check: {base['gpu']}, torch {torch.__version__}, triton {triton.__version__}, "
              f"mmdkit from {Path(mmdkit.__file__).parent}")
        failed = False
        deadline = start + args.budget - RESERVE_S
        if not args.skip_tests:
            summary, seconds, ok = run_gpu_tests(site, min(args.tests_timeout, deadline - time.monotonic()))
            failed = not ok
            append_row(args.results, dict(base, op="pytest -m gpu", mode="test", seconds=fmt(seconds, 3),
                                          note=f"{summary} ({', '.join(p.name for p in gpu_test_files())})"))
        from mmdkit.kernels import triton_engine
        pinned = pin_autotuning(triton_engine)
        runner = Runner(args.results, deadline, base)
        from mmdkit.kernels import PRECISIONS  # what get_backend accepts
        items = plan(PRECISIONS)
        if args.only:
            items = [i for i in items if i.op in args.only or i.op.split()[0] in args.only]
        append_row(args.results, dict(base, op="setup", note=f"pinned {'; '.join(pinned)}; {len(items)} items, "
                                      f"estimated {estimate_total(items, 0):.0f} s"))
        for item in items:
            runner.run(item)
        total = time.monotonic() - start
        append_row(args.results, dict(base, op="total", seconds=f"{total:.0f}",
                                      note=f"{runner.errors} errors" + ("; GPU tests failed" if failed else "")))
        print(f"gpu-check: done in {total:.0f} s; rows appended to {args.results}")
        return 1 if failed or runner.errors else 0
    finally:
        if site:
            shutil.rmtree(site, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
