"""Power tables: rejection rates at alpha = 0.05 of mmdkit's two-sample tests on two published benchmarks.

    .venv/bin/python bench/power.py --table blob|perturbed-uniform [--reps N] [--sizes ...]
        [--perturbations ...] [--methods ...] [--cache bench/power_cache] [--workers 1] [--output bench/POWER.md]
        [--device cpu|cuda] [--dtype float64|float32] [--null] [--report-only] [--no-write]

Each (table, setting, method, repetition) result is appended, as soon as it
exists, as one JSON line to ``<cache>/<table>/<method>/<setting>.jsonl``
(keyed by repetition index and both seeds); a restart skips what is there, so
a run can be killed at any time and the next one continues. Repetitions run
in order (every setting and method of repetition r before r + 1), so a partial
run leaves every cell with about the same count. After the run (or with
``--report-only``) the table is rewritten from the cache into ``--output``
between the markers ``<!-- power:<table> begin -->`` / ``end -->``, with the
command that made it. A cell is the rejection rate p over R repetitions and
its binomial standard error sqrt(p (1 - p) / R).

Seeds. Repetition r of a setting uses a data seed and a test seed derived
from (table, setting, r) only, identical for every method:

- Blob (H1): data seed 11 r + 10 + n (n = points per mode), the seed of test
  set r in Liu et al.'s ``Deep_Kernel_Blob.py`` / ``Baselines_Blob.py``, so
  repetitions 0-99 are exactly the paper's 100 test sets.
- Perturbed uniform: data seed ``generate_seed(1, 0, 0, 0, p - 1, r)`` for p >= 1
  perturbations (experiment 1 bis) and ``generate_seed(1, 0, 0, 0, 5, r)`` for
  p = 0 (experiment 5 bis) of Schrab et al.'s ``computations_mmdagg.ipynb``, i.e.
  the paper's own data sets for r < 500 (r < 5000 at p = 0).
- Blob P-vs-P rows (``--null``, no published protocol): data seed the first 32
  bits of sha256("blob|<setting>|<r>|data").
- Test seed (permutations, splits, training): the first 63 bits of
  sha256("<table>|<setting>|<r>|test").

Data sets (own code; the protocols read from the authors' reference code):

Blob (Liu, Xu, Lu, Zhang, Gretton, Sutherland, "Learning Deep Kernels for
Non-Parametric Two-Sample Tests", ICML 2020; github.com/fengliu90/DK-for-TST,
``sample_blobs_Q`` in ``Deep_Kernel_Blob.py``). P: a 3 x 3 grid of Gaussians
N(mu, 0.03 I), mu in {0, 1, 2}^2, each point's blob uniform. Q: the same grid,
blob b = 3 row + col (row = first coordinate) has covariance built from
Sigma_b = [[0.03, c_b], [c_b, 0.03]], c_b = -0.02 - 0.002 b (b < 4), 0 (b = 4),
0.02 + 0.002 (b - 5) (b > 4). The reference code draws z ~ N(0, I) and sets
y = z L_b + mu with L_b = cholesky(Sigma_b) (row vector times L), so the
covariance it actually samples is L_b' L_b, not Sigma_b: for c = -0.02 that is
[[0.0433, -0.0149], [-0.0149, 0.0167]] (correlation -0.56, the axes rotated)
instead of [[0.03, -0.02], [-0.02, 0.03]]. The published numbers come from
that code, so it is reproduced here (``blob_effective_covariances``). n counts
points per mode: each sample has N1 = 9 n points (N1 = N2), n in
{10, 20, 40, 50, 70, 80, 90, 100} as in the scripts. In the paper MMD-D and
the other trained tests learn on an independent training pair of N1 points per
sample and test on another; here every method gets the same one pair
(X, Y) of N1 points each, and a data-splitting method splits it.

Perturbed uniform (Schrab, Kim, Albert, Laurent, Guedj, Gretton, "MMD Aggregated
Two-Sample Test", JMLR 24 (2023), Eq. (17); github.com/antoninschrab/mmdagg-paper,
``sampling.py`` and ``computations_mmdagg.ipynb``, experiments 1 bis and 5 bis).
X has density f(x) = 1 + c p^-s sum_{j in {1..p}^d} theta_j prod_r G(p x_r - j_r)
on [0, 1]^d with p perturbations, s = 1, c = 2.7 for d = 1, theta_j = +-1 drawn
by ``RandomState(seed + 1).choice([-1, 1], p^d)``, and
G(t) = exp(-1 / (1 - (4t + 3)^2)) on (-1, -1/2), -exp(-1 / (1 - (4t + 1)^2)) on
(-1/2, 0), 0 elsewhere; X is drawn by rejection from RandomState(seed + 2) (a
candidate x ~ U[0, 1]^d, then y ~ U[0, max f], accepted when y <= f(x)), and
Y ~ U[0, 1]^d from RandomState(seed). p = 0: X and Y both uniform from
RandomState(seed). n = m = 500 in the paper. (MMD-FUSE's ``sampler_perturbations``
in antoninschrab/mmdfuse-paper is the same density with c = e^d p^s scale; c = 2.7
at p = 2 is its scale = 1.35 / e = 0.497.)

Methods (name -> test; reject when ``result.reject`` if the result has one, else
pvalue <= 0.05; every call with the method's own defaults, which follow its paper):
median (``mmdkit.mmd_test``, Gaussian, median bandwidth, permutations), mmdagg
(``mmdkit.mmd_test(aggregate=True, bandwidth="grid")``), fuse
(``mmdkit.fuse.fuse_test``), cross (``mmdkit.cross_mmd.cross_mmd_test``), mmd_d
(``mmdkit.deep_kernel.learned_kernel_test``). A method whose module does not
import is skipped with a message.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib
import itertools
import json
import math
import multiprocessing
import os
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

ALPHA = 0.05
ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------------------------- Blob

BLOB_LOCS = [(row, col) for row in range(3) for col in range(3)]  # blob b = 3 row + col
BLOB_VAR = 0.03
BLOB_SIZES = (10, 20, 40, 50, 70, 80, 90, 100)  # points per mode, Liu et al.'s n_list


def blob_covariances() -> np.ndarray:
    """Sigma_b (9, 2, 2) as the reference code writes them (diagonal 0.03, off-diagonal c_b)."""
    sig = np.zeros((9, 2, 2))
    for b in range(9):
        c = -0.02 - 0.002 * b if b < 4 else 0.0 if b == 4 else 0.02 + 0.002 * (b - 5)
        sig[b] = [[BLOB_VAR, c], [c, BLOB_VAR]]
    return sig


def blob_effective_covariances() -> np.ndarray:
    """The covariances Q's blobs really have: L_b' L_b with L_b = cholesky(Sigma_b) (y = z L_b)."""
    L = np.linalg.cholesky(blob_covariances())
    return np.transpose(L, (0, 2, 1)) @ L


def sample_blob(n_per_mode: int, seed: int, null: bool = False, return_blobs: bool = False):
    """(X, Y) of N1 = 9 n_per_mode points each, float64: X ~ P; Y ~ Q (or P when ``null``).

    The draws follow ``sample_blobs_Q`` call for call on RandomState(seed), so
    a seed gives the reference code's data bit for bit. ``return_blobs`` adds
    the blob index (3 row + col) of every point of X and of Y.
    """
    N1 = 9 * n_per_mode
    rs = np.random.RandomState(seed)
    X = rs.multivariate_normal(np.zeros(2), BLOB_VAR * np.eye(2), size=N1)
    Z = rs.multivariate_normal(np.zeros(2), np.eye(2) if not null else BLOB_VAR * np.eye(2), size=N1)
    x_row, x_col = rs.randint(3, size=N1), rs.randint(3, size=N1)
    X[:, 0] += x_row
    X[:, 1] += x_col
    y_row, y_col = rs.randint(3, size=N1), rs.randint(3, size=N1)
    if null:
        Y = Z + np.stack([y_row, y_col], 1)
    else:
        Y = Z
        L = np.linalg.cholesky(blob_covariances())
        for b, loc in enumerate(BLOB_LOCS):  # each row is in one blob, so it is transformed once
            rows = ((y_row == loc[0]) & (y_col == loc[1]))[:, None]
            Y = np.where(rows, Y @ L[b] + np.asarray(loc, dtype=float), Y)
    if return_blobs:
        return X, Y, 3 * x_row + x_col, 3 * y_row + y_col
    return X, Y


# ---------------------------------------------------------------------------------- Perturbed uniform

PU_MULTIPLIER = 2.7  # c_d for d = 1 (7.3 for d = 2)
PU_SMOOTHNESS = 1
PU_SIZE = 500
PU_PERTURBATIONS = (0, 1, 2, 3, 4)


def bump(t: np.ndarray) -> np.ndarray:
    """G(t): a positive bump on (-1, -1/2) and its negative on (-1/2, 0), 0 elsewhere."""
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    left, right = (t > -1) & (t < -0.5), (t > -0.5) & (t < 0)
    out[left] = np.exp(-1 / (1 - (4 * t[left] + 3) ** 2))
    out[right] = -np.exp(-1 / (1 - (4 * t[right] + 1) ** 2))
    return out


def perturbation_signs(seed: int, p: int, d: int = 1) -> np.ndarray:
    """theta (p^d,) in {-1, +1}: ``RandomState(seed).choice([-1, 1], p^d)`` (the reference's draw)."""
    return np.random.RandomState(seed).choice([-1, 1], p ** d)


def perturbed_density(x: np.ndarray, p: int, theta: np.ndarray, c: float = PU_MULTIPLIER,
                      s: float = PU_SMOOTHNESS) -> np.ndarray:
    """f(x) = 1 + c p^-s sum_j theta_j prod_r G(p x_r - j_r) for x (k, d) in [0, 1]^d (0 outside).

    j runs over {1..p}^d in lexicographic order (theta's order); the sum is
    accumulated in that order, then scaled, then 1 added, as the reference does.
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    d = x.shape[1]
    acc = np.zeros(x.shape[0])
    for i, j in enumerate(itertools.product(range(1, p + 1), repeat=d)):
        term = np.ones(x.shape[0])
        for r in range(d):
            term = term * bump(x[:, r] * p - j[r])
        acc = acc + theta[i] * term
    inside = np.all((x >= 0) & (x <= 1), axis=1)
    return acc * (p ** (-s) * c) + inside


def sample_perturbed_uniform(n: int, p: int, seed: int, d: int = 1, c: float = PU_MULTIPLIER,
                             s: float = PU_SMOOTHNESS, m: int | None = None):
    """(X, Y) float64: X (n, d) from the p-perturbed uniform density, Y (m = n, d) uniform.

    p = 0: X, Y both ~ U[0, 1]^d from RandomState(seed). p >= 1: theta from
    seed + 1, X by rejection from RandomState(seed + 2) (candidate x then level
    y per draw; the vectorized draws consume the same stream, so the accepted
    points equal the reference loop's), Y from RandomState(seed).
    """
    m = n if m is None else m
    rs = np.random.RandomState(seed)
    if p == 0:
        X = rs.uniform(0, 1, (n, d))
        return X, rs.uniform(0, 1, (m, d))
    Y = rs.uniform(0, 1, (m, d))
    theta = perturbation_signs(seed + 1, p, d)
    f_max = 1 + c * p ** (-s) * np.exp(-d)
    assert c * p ** (-s) * np.exp(-d) <= 1, "density is negative"
    rej = np.random.RandomState(seed + 2)
    accepted, count, chunk = [], 0, max(64, int(1.2 * n * f_max) + 16)
    while count < n:
        U = rej.random_sample((chunk, d + 1))  # per candidate: x (d values), then the level u
        keep = U[:, d] * f_max <= perturbed_density(U[:, :d], p, theta, c, s)
        accepted.append(U[keep, :d])
        count += int(keep.sum())
    return np.concatenate(accepted)[:n], Y


# ------------------------------------------------------------------------------------------- Tables

@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of a table: ``key`` names its cache file; ``params`` feed the generator."""

    key: str
    label: str
    params: dict

    def __hash__(self):
        return hash(self.key)


def generate_seed(*args) -> int:
    """Schrab et al.'s seed rule (``seed.py``): the digits of the arguments joined, the last padded to 4."""
    *head, last = (str(a) for a in args)
    return int("".join(head) + last.rjust(4, "0"))


def testing_seed(table: str, setting: Setting, r: int) -> int:
    digest = hashlib.sha256(f"{table}|{setting.key}|{r}|test".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def data_seed(table: str, setting: Setting, r: int) -> int:
    if table == "blob":
        if setting.params["null"]:
            digest = hashlib.sha256(f"{table}|{setting.key}|{r}|data".encode()).digest()
            return int.from_bytes(digest[:4], "big")  # RandomState takes 32-bit seeds
        return 11 * r + 10 + setting.params["n"]
    p = setting.params["p"]
    return generate_seed(1, 0, 0, 0, p - 1 if p else 5, r)


def settings_of(table: str, sizes, perturbations=PU_PERTURBATIONS, null: bool = False) -> list[Setting]:
    if table == "blob":
        out = [Setting(f"n{n}", f"{n} ({9 * n})", {"n": n, "null": False}) for n in sizes]
        if null:
            out += [Setting(f"n{n}-null", f"{n} ({9 * n}), P vs P", {"n": n, "null": True}) for n in sizes]
        return out
    return [Setting(f"n{n}-p{p}", f"{p}" + (" (level)" if p == 0 else "") + ("" if len(sizes) == 1 else f", n = {n}"),
                    {"n": n, "p": p}) for n in sizes for p in perturbations]


def sample(table: str, setting: Setting, seed: int):
    if table == "blob":
        return sample_blob(setting.params["n"], seed, null=setting.params["null"])
    return sample_perturbed_uniform(setting.params["n"], setting.params["p"], seed)


TABLES = {"blob": BLOB_SIZES, "perturbed-uniform": (PU_SIZE,)}
DEFAULT_REPS = {"blob": 100, "perturbed-uniform": 500}  # the papers': 100 test sets; 500 repetitions

# Published rejection rates at the settings of these tables (see bench/POWER.md for the sources).
PUBLISHED = {
    "perturbed-uniform": {
        "MMDAgg Gaussian, perm. [1]": {"n500-p0": 0.0492, "n500-p1": 1.0, "n500-p2": 0.986, "n500-p3": 0.622,
                                       "n500-p4": 0.23},
        "MMDAgg Laplace+Gaussian, wild b. [2]": {"n500-p1": 1.0, "n500-p2": 0.988, "n500-p3": 0.602,
                                                 "n500-p4": 0.228},
        "median Gaussian, perm. [3]": {"n500-p0": 0.0468, "n500-p1": 1.0, "n500-p2": 0.804, "n500-p3": 0.082,
                                       "n500-p4": 0.02},
    },
}

# ------------------------------------------------------------------------------------------ Methods


@dataclasses.dataclass(frozen=True)
class Method:
    """A test by import name: ``call(fn, X, Y, seed)`` runs it and returns its result object."""

    name: str
    module: str
    attr: str
    call: Callable
    describe: str
    threads: int | None = None  # torch threads for this method (None: the run's)

    def load(self):
        """(function, None) or (None, why it cannot run)."""
        try:
            return getattr(importlib.import_module(self.module), self.attr), None
        except (ImportError, AttributeError) as e:
            return None, f"{self.module}.{self.attr} is not importable ({type(e).__name__}: {e})"


METHODS = {m.name: m for m in [
    Method("median", "mmdkit", "mmd_test",
           lambda f, X, Y, seed: f(X, Y, kernel="gaussian", bandwidth="median", seed=seed, progress=False),
           "mmd_test, Gaussian kernel, median bandwidth, permutations (defaults)"),
    Method("mmdagg", "mmdkit", "mmd_test",
           lambda f, X, Y, seed: f(X, Y, aggregate=True, bandwidth="grid", seed=seed, progress=False),
           "mmd_test(aggregate=True, bandwidth='grid') (MMDAgg, defaults)"),
    Method("fuse", "mmdkit.fuse", "fuse_test", lambda f, X, Y, seed: f(X, Y, seed=seed, progress=False),
           "fuse_test (MMD-FUSE, defaults)"),
    Method("cross", "mmdkit.cross_mmd", "cross_mmd_test", lambda f, X, Y, seed: f(X, Y, seed=seed),
           "cross_mmd_test (cross-MMD, defaults)"),
    Method("mmd_d", "mmdkit.deep_kernel", "learned_kernel_test",
           lambda f, X, Y, seed: f(X, Y, seed=seed, progress=False),
           "learned_kernel_test (MMD-D, defaults)",
           # its training is hundreds of tiny steps: one thread avoids OpenMP's waits (a Blob n = 10 test,
           # machine under load: 5.0 s on 1 thread against 27.6 s on 2)
           threads=1),
]}


def decide(result) -> tuple[bool, float | None]:
    """(reject at ALPHA, p-value): a result's own ``reject`` when it has one, else pvalue <= ALPHA."""
    pvalue = getattr(result, "pvalue", None)
    pvalue = None if pvalue is None else float(pvalue)
    reject = getattr(result, "reject", None)
    if reject is None:
        if pvalue is None:
            raise TypeError(f"{type(result).__name__} has neither `reject` nor `pvalue`")
        reject = pvalue <= ALPHA
    return bool(reject), pvalue


def run_one(method: Method, fn, X, Y, seed: int) -> dict:
    start = time.perf_counter()
    result = method.call(fn, X, Y, seed)
    seconds = time.perf_counter() - start
    reject, pvalue = decide(result)
    return {"reject": reject, "pvalue": pvalue, "seconds": round(seconds, 4),
            "n_permutations": getattr(result, "n_permutations", None)}


# -------------------------------------------------------------------------------------------- Cache

DEFAULT_WHERE = {"device": "cpu", "dtype": "float64"}  # numpy float64 in: the papers' precision

def cache_file(cache: Path, table: str, method: str, setting: Setting) -> Path:
    return cache / table / method / f"{setting.key}.jsonl"


def load_cache(path: Path) -> list[dict]:
    """The records of ``path``; a partial last line (a run killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[:raw.rfind(b"\n") + 1]
        path.write_bytes(raw)
    records = []
    for line in raw.decode().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def completed(cache: Path, table: str, method: str, setting: Setting, where: dict = DEFAULT_WHERE) -> dict[int, dict]:
    """rep -> record for the repetitions already in the cache with this harness's seeds, device and dtype."""
    done = {}
    for rec in load_cache(cache_file(cache, table, method, setting)):
        r = rec.get("rep")
        if (isinstance(r, int) and rec.get("data_seed") == data_seed(table, setting, r)
                and rec.get("test_seed") == testing_seed(table, setting, r)
                and all(rec.get(k, v) == where[k] for k, v in DEFAULT_WHERE.items())):
            done[r] = rec
    return done


# -------------------------------------------------------------------------------------------- Run

def _work(table: str, setting: Setting, r: int, names: list[str], threads: int | None,
          where: dict = DEFAULT_WHERE) -> list[tuple[str, dict]]:
    """One repetition of one setting for the methods ``names`` (in a worker process or in-process).

    The samples go to the tests as float64 numpy arrays, or as torch tensors
    when ``where`` asks for another device or dtype.
    """
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    ds, ts = data_seed(table, setting, r), testing_seed(table, setting, r)
    X, Y = sample(table, setting, ds)
    if where != DEFAULT_WHERE:
        import torch
        X, Y = (torch.as_tensor(A, dtype=getattr(torch, where["dtype"]), device=where["device"]) for A in (X, Y))
    out = []
    for name in names:
        method = METHODS[name]
        fn, why = method.load()
        if fn is None:
            raise RuntimeError(why)
        rec = {"rep": r, "data_seed": ds, "test_seed": ts, "n": len(X), "m": len(Y), **where}
        import torch
        before = torch.get_num_threads()
        if method.threads is not None:
            torch.set_num_threads(method.threads)
        try:
            rec.update(run_one(method, fn, X, Y, ts))
        except Exception as e:  # a failing test is reported and retried by the next run, never cached
            rec["error"] = f"{type(e).__name__}: {e}"
        finally:
            torch.set_num_threads(before)
        out.append((name, rec))
    return out


def run(table: str, settings: list[Setting], methods: list[str], reps: int, cache: Path, workers: int = 1,
        log=print, where: dict = DEFAULT_WHERE) -> dict:
    """Run every missing (setting, method, repetition < reps); returns {method: seconds per repetition}."""
    pending = []  # (r, setting, [methods missing at r])
    for s in settings:
        done = {name: completed(cache, table, name, s, where) for name in methods}
        for r in range(reps):
            missing = [name for name in methods if r not in done[name]]
            if missing:
                pending.append((r, s, missing))
    pending.sort(key=lambda job: job[0])  # repetition-major: a partial run stays balanced
    total = sum(len(job[2]) for job in pending)
    log(f"{table}: {total} test runs to do ({len(settings)} settings x {len(methods)} methods x {reps} reps, "
        f"the rest cached in {cache / table})")
    if not total:
        return {}
    from mmdkit._progress import Progress
    bar = Progress(total, None, f"power {table}")
    timing: dict[str, list[float]] = {name: [] for name in methods}
    errors = []

    def store(s, results):
        for name, rec in results:
            if "error" in rec:
                errors.append(f"{name} {s.key} rep {rec['rep']}: {rec['error']}")
                log(f"error (not cached, retried by the next run): {errors[-1]}")
                continue
            append_record(cache_file(cache, table, name, s), rec)
            timing[name].append(rec["seconds"])
        bar(len(results))

    try:
        if workers <= 1:
            for r, s, names in pending:
                for name in names:  # one method at a time: each result is on disk as soon as it exists
                    store(s, _work(table, s, r, [name], None, where))
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                queue, running = iter(pending), {}
                for job in itertools.islice(queue, 2 * workers):
                    running[pool.submit(_work, table, job[1], job[0], job[2], threads, where)] = job
                while running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        store(running.pop(fut)[1], fut.result())
                        nxt = next(queue, None)
                        if nxt is not None:
                            running[pool.submit(_work, table, nxt[1], nxt[0], nxt[2], threads, where)] = nxt
    finally:
        bar.close()
    if errors:
        log(f"{len(errors)} test run(s) failed; they are missing from the cache")
    return {name: float(np.mean(t)) for name, t in timing.items() if t}


# ------------------------------------------------------------------------------------------ Report

def summarize(records: list[dict]) -> tuple[float, float, int]:
    """(rejection rate p, binomial standard error sqrt(p (1 - p) / R), R)."""
    R = len(records)
    p = sum(bool(rec["reject"]) for rec in records) / R
    return p, math.sqrt(p * (1 - p) / R), R


def render(table: str, settings: list[Setting], methods: list[str], reps: int, cache: Path, command: str,
           notes: list[str] = (), where: dict = DEFAULT_WHERE) -> str:
    """The markdown block (table and provenance) from the cache: the first ``reps`` repetitions of each cell."""
    header = {"blob": "n per mode (N1 = N2)", "perturbed-uniform": "perturbations"}[table]
    published = {name: col for name, col in PUBLISHED.get(table, {}).items()
                 if any(s.key in col for s in settings)}
    cols = [f"{name}" for name in methods] + list(published)
    lines = [f"| {header} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    seconds = {name: [] for name in methods}
    for s in settings:
        cells = []
        for name in methods:
            recs = [rec for r, rec in sorted(completed(cache, table, name, s, where).items()) if r < reps]
            if not recs:
                cells.append("-")
                continue
            p, se, R = summarize(recs)
            seconds[name] += [rec["seconds"] for rec in recs]
            cells.append(f"{p:.3f} ± {se:.3f}" + ("" if R == reps else f" (R={R})"))
        cells += [f"{col[s.key]:g}" if s.key in col else "" for col in published.values()]
        lines.append(f"| {s.label} | " + " | ".join(cells) + " |")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    out = [f"Command ({stamp}): `{command}`", "",
           f"Rejection rate at alpha = {ALPHA} ± binomial standard error sqrt(p (1 - p) / R), R = {reps} "
           f"repetitions per cell (a cell with fewer says so; '-' = not run); samples given to the tests as "
           f"{where['dtype']} on {where['device']}.", ""] + lines
    timing = [f"{name} {np.mean(t):.2f} s" for name, t in seconds.items() if t]
    if timing:
        out += ["", "Mean seconds per test run (this machine, as cached): " + ", ".join(timing) + "."]
    if notes:
        out += [""] + list(notes)
    return "\n".join(out).rstrip() + "\n"


def write_block(path: Path, table: str, block: str) -> None:
    """Replace the text between this table's markers in ``path`` (appended, with markers, when absent)."""
    begin, end = f"<!-- power:{table} begin -->", f"<!-- power:{table} end -->"
    text = path.read_text() if path.exists() else ""
    new = f"{begin}\n{block}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + new + rest.split(end, 1)[1]
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + new + "\n"
    path.write_text(text)


# -------------------------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    a = argparse.ArgumentParser(prog="bench/power.py", description=__doc__.split("\n\n")[0])
    a.add_argument("--table", required=True, choices=sorted(TABLES))
    a.add_argument("--reps", type=int, default=None, help="repetitions per cell (blob 100, perturbed-uniform 500)")
    a.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="blob: points per mode n (N1 = 9 n); perturbed-uniform: n = m (default 500)")
    a.add_argument("--perturbations", type=int, nargs="+", default=list(PU_PERTURBATIONS),
                   help="perturbed-uniform: numbers of perturbations (0 = level)")
    a.add_argument("--null", action="store_true", help="blob: add P-vs-P rows (level) at every size")
    a.add_argument("--methods", nargs="+", default=list(METHODS), help=f"of {list(METHODS)}")
    a.add_argument("--cache", type=Path, default=ROOT / "bench" / "power_cache",
                   help="one JSONL file per table, method and setting; committed, so the next session resumes")
    a.add_argument("--workers", type=int, default=1, help="processes (each gets cpu_count / workers threads)")
    a.add_argument("--device", default="cpu", help="cpu (default: float64 numpy input) or e.g. cuda: torch tensors")
    a.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="of the samples given to the tests (cached results are kept apart by device and dtype)")
    a.add_argument("--output", type=Path, default=ROOT / "bench" / "POWER.md")
    a.add_argument("--no-write", action="store_true", help="do not touch --output")
    a.add_argument("--report-only", action="store_true", help="run nothing; rewrite the table from the cache")
    return a


def main(argv=None, log=print) -> int:
    a = _parser().parse_args(argv)
    reps = a.reps if a.reps is not None else DEFAULT_REPS[a.table]
    if reps < 1 or a.workers < 1:
        raise SystemExit("--reps and --workers must be at least 1")
    unknown = [m for m in a.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    settings = settings_of(a.table, a.sizes or TABLES[a.table], a.perturbations, a.null)
    where = {"device": a.device, "dtype": a.dtype}
    methods, notes = [], []
    for name in a.methods:
        fn, why = METHODS[name].load()
        if fn is None:
            log(f"skipping {name}: {why}")
            notes.append(f"Skipped {name}: {why}.")
        else:
            methods.append(name)
    if not a.report_only and methods:
        per_rep = run(a.table, settings, methods, reps, a.cache, a.workers, log, where)
        for name, sec in per_rep.items():
            log(f"{name}: {sec:.2f} s per test run (mean this session)")
    if not a.no_write:
        command = ".venv/bin/python bench/power.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
        shown = [m for m in a.methods if m in methods or any(
            cache_file(a.cache, a.table, m, s).exists() for s in settings)]
        write_block(a.output, a.table, render(a.table, settings, shown, reps, a.cache, command, notes, where))
        log(f"wrote the {a.table} table to {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
