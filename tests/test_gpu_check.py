"""bench/gpu_check.py (`make gpu-check`) on a machine without CUDA, so the script does not rot before a GPU
run: its results-table writer, its size plan and time estimate (against bench/ROOFLINE.md's numbers), the
autotuner pin, every measurement path on CPU tensors under TRITON_INTERPRET=1 (set by conftest.py) with the
budget guard, and the CUDA-less exit."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import triton
import triton.language as tl

import gpu_check as gc

ROOT = Path(__file__).resolve().parent.parent


def _cells(line: str) -> list[str]:
    """The cells of a markdown row (escaped '|' kept inside a cell)."""
    cells, cur, i = [], "", 1
    while i < len(line) - 1:
        if line[i] == "\\" and line[i + 1] == "|":
            cur, i = cur + "|", i + 2
            continue
        if line[i] == "|":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += line[i]
        i += 1
    return cells + ([cur.strip()] if cur.strip() else [])


# ------------------------------------------------------------------------------- the table writer

def test_append_row_writes_the_header_once_and_each_value_in_its_column(tmp_path):
    path = tmp_path / "results.md"
    gc.append_row(path, {"op": "kernel_matmul", "n": 10000, "seconds": "0.25", "note": "a | b"})
    gc.append_row(path, {"op": "mmd_test", "n": 100000, "vs dense": "3.10x"})
    lines = path.read_text().splitlines()
    assert lines[0] == "# GPU results (`make gpu-check`)"
    assert lines.count(gc.HEADER) == 1
    rows = lines[lines.index(gc.HEADER) + 2:]
    assert len(rows) == 2
    first, second = (dict(zip(gc.COLUMNS, _cells(r))) for r in rows)
    assert len(_cells(rows[0])) == len(gc.COLUMNS)
    assert (first["op"], first["n"], first["seconds"], first["note"], first["vs dense"]) == \
        ("kernel_matmul", "10000", "0.25", "a | b", "")
    assert (second["op"], second["n"], second["vs dense"], second["seconds"]) == ("mmd_test", "100000", "3.10x", "")


def test_append_row_adds_a_table_to_a_file_without_one_and_the_committed_file_has_it(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# notes\nsome text")
    gc.append_row(path, {"op": "labels"})
    gc.append_row(path, {"op": "labels"})
    text = path.read_text()
    assert text.startswith("# notes\nsome text\n\n" + gc.HEADER) and text.count(gc.HEADER) == 1
    assert len(text.splitlines()) == 3 + 2 + 2  # text, blank line, header, separator, two rows
    committed = (ROOT / "bench" / "GPU_RESULTS.md").read_text()
    assert committed.count(gc.HEADER) == 1  # rows appended by a run land in its table


# ------------------------------------------------------------------------------- the plan

# bench/ROOFLINE.md's "Estimates" table (ms, H100 lower bounds, computed by hand there): (n, d) -> fp32 "ieee",
# fp32 "tf32", bf16
ROOFLINE_MS = {
    (10**4, 3): (0.13, 0.05, 0.09), (10**5, 3): (7.8, 3.0, 5.4), (10**6, 3): (780, 300, 540),
    (10**4, 64): (0.41, 0.10, 0.09), (10**5, 64): (25, 5.9, 5.4), (10**6, 64): (2450, 590, 540),
}


@pytest.mark.parametrize("n, d", list(ROOFLINE_MS))
def test_roofline_bound_reproduces_roofline_md(n, d):
    """Within the table's rounding (2 significant digits) plus the wave factor it applies at 10^4 only."""
    variants = [("float32", "ieee"), ("float32", "tf32"), ("bfloat16", "ieee")]
    for (dtype, prec), ms in zip(variants, ROOFLINE_MS[n, d]):
        got = gc.roofline_seconds(n, n, d, dtype, prec) * 1e3
        assert abs(got - ms) <= 0.03 * ms + 0.005, (n, d, dtype, prec, got, ms)
    assert gc.roofline_seconds(n, n, d, "float32", "tf32x3") is None


@pytest.mark.parametrize("precisions", [("ieee", "tf32"), ("ieee", "tf32", "tf32x3")])
def test_plan_sizes_dense_and_budget(precisions):
    items = gc.plan(precisions)
    sizes = lambda op, **kw: sorted({i.n for i in items if i.op == op  # noqa: E731
                                     and all(getattr(i, k) == v for k, v in kw.items())})
    for op in ("kernel_matmul", "mmd2_unbiased", "energy_distance"):
        assert sizes(op, d=3) == [10**4, 10**5, 10**6], op
    assert sizes("mmd2_unbiased", mode="fwd+bwd", d=3) == [10**4, 10**5, 10**6]
    assert sizes("mmd_test") == sizes("mmd_test aggregate") == [10**4, 10**5]
    assert {(i.dtype, i.precision) for i in items if i.op == "kernel_matmul"} == \
        {("float32", p) for p in precisions} | {("bfloat16", "ieee")}
    for i in items:
        has_dense = i.op in ("kernel_matmul", "mmd2_unbiased", "energy_distance")
        assert i.dense == (has_dense and i.n <= 3 * 10**4), i
        assert i.repeats >= 1 and (i.warmup >= 1 or i.n >= 10**6 or i.mode in ("test", "cpu")), i
    for group in {i.group for i in items}:  # each sweep runs smaller sizes first (the guard projects upwards)
        ns = [i.n for i in items if i.group == group]
        assert ns == sorted(ns), group
    total = gc.estimate_total(items)
    assert total <= gc.BUDGET_S - gc.RESERVE_S, total
    # the tests' limit is what a run spends before the timings
    assert gc.estimate_total(items, 0) == pytest.approx(total - gc.TESTS_TIMEOUT_S)


def test_estimates_scale_with_the_work():
    """Sizes x 10: a sweep's pair work x 100; tests: labels (N P) and sweeps (N^2 P) add up."""
    one = gc.Item("kernel_matmul", "fwd", 10**5, 3, repeats=1, warmup=0)
    ten = gc.Item("kernel_matmul", "fwd", 10**6, 3, repeats=1, warmup=0)
    assert gc._call_seconds(ten) / gc._call_seconds(one) == pytest.approx(100, rel=0.02)  # wave factor only
    fwd = gc.Item("mmd2_unbiased", "fwd", 10**5, 3)
    assert gc._call_seconds(gc.Item("mmd2_unbiased", "fwd+bwd", 10**5, 3)) == pytest.approx(gc.FWD_BWD
                                                                                             * gc._call_seconds(fwd))
    t = gc.Item("mmd_test", "test", 10**4, 3, permutations=1000, warmup=0)
    labels = 2 * 10**4 * 1001 * gc.LABEL_SECONDS
    assert labels < gc._call_seconds(t) < labels + 1.0


# ------------------------------------------------------------------------------- the autotuner pin

@triton.jit
def _write_block(OUT, BLOCK: tl.constexpr):
    tl.store(OUT + tl.arange(0, 1), tl.full((1,), BLOCK, tl.int32))


def test_pin_autotuning_keeps_the_first_config_and_the_launch_uses_it():
    configs = [triton.Config({"BLOCK": b}, num_warps=w, num_stages=1) for b, w in ((16, 4), (32, 8), (64, 4))]
    module = type(sys)("fake_engine")
    module._write_block = triton.autotune(configs=configs, key=[])(_write_block)
    module.other = 3
    assert gc.pin_autotuning(module) == ["write_block 16 w4 s1"]
    assert module._write_block.configs == configs[:1]
    out = torch.zeros(1, dtype=torch.int32)
    module._write_block[(1,)](out)  # one config: triton runs it without benchmarking (the interpreter here)
    assert int(out[0]) == 16


def test_the_engine_puts_its_default_config_first():
    """What pin_autotuning relies on, on the engine's real (non-interpreter) tuning space."""
    from mmdkit.kernels import triton_engine as te
    prev, te._INTERPRET = te._INTERPRET, False
    try:
        for direction in ("fwd", "bwd"):
            c = te.configs(direction)[0]
            assert (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) == tuple(
                te.DEFAULT_CONFIG[direction][k] for k in ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages"))
    finally:
        te._INTERPRET = prev


# ------------------------------------------------------------------------------- measurements (CPU, interpreter)

def test_runner_measures_every_op_and_skips_what_does_not_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(gc, "WARMUP_N", 12)
    path = tmp_path / "results.md"
    runner = gc.Runner(path, time.monotonic() + 600, {"gpu": "cpu", "commit": "test"}, device="cpu")
    items = [  # one call each (the interpreter is slow): warmup 0
        gc.Item("kernel_matmul", "fwd", 40, 3, repeats=1, warmup=0, dense=True),
        gc.Item("kernel_matmul", "fwd", 37, 5, "float32", "tf32", repeats=1, warmup=0),
        gc.Item("mmd2_unbiased", "fwd+bwd", 30, 5, repeats=1, warmup=0, dense=True),
        gc.Item("energy_distance", "fwd", 30, 3, repeats=1, warmup=0, dense=True),
        gc.Item("labels", "cpu", 100, 0, "-", "-", repeats=1, warmup=0, permutations=5),
        gc.Item("mmd_test", "test", 20, 3, permutations=9, warmup=0),
        gc.Item("mmd_test aggregate", "test", 16, 3, permutations=2, warmup=0),
        gc.Item("kernel_matmul", "fwd", 10**8, 3, repeats=1, warmup=0),  # projected far above ITEM_LIMIT_S
    ]
    for item in items:
        runner.run(item)
    rows = [dict(zip(gc.COLUMNS, _cells(r))) for r in path.read_text().splitlines()[-len(items):]]
    assert runner.errors == 0, [r["note"] for r in rows]
    assert [(r["op"], r["n"]) for r in rows] == [(i.op, str(i.n)) for i in items]
    for r in rows[:-1]:
        assert float(r["seconds"]) > 0 and float(r["rate"].split()[0]) > 0, r
    assert [r["vs dense"].endswith("x") for r in rows[:4]] == [True, False, True, True]
    assert rows[0]["note"].startswith("first call") and rows[1]["dtype / precision"] == "float32 / tf32"
    assert rows[4]["rate"].endswith("ns/label") and rows[5]["rate"].endswith("perm/s")
    assert rows[-1]["note"].startswith("skipped: projected") and rows[-1]["seconds"] == ""
    # the sweep's next size is projected from its measured time; past the deadline nothing runs
    bigger = gc.Item("kernel_matmul", "fwd", 400, 3, repeats=2, dense=True)
    assert runner.projection(bigger) == pytest.approx(
        runner.last[items[0].group][1] * gc.estimate_seconds(bigger) / gc.estimate_seconds(items[0]))
    runner.deadline = time.monotonic() - 1
    runner.run(gc.Item("energy_distance", "fwd", 30, 3, repeats=1))
    assert "(time left)" in path.read_text().splitlines()[-1]


# ------------------------------------------------------------------------------- the CUDA-less exit

def test_script_without_cuda_says_so_and_exits_0(tmp_path):
    results = tmp_path / "results.md"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--results", str(results)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "nothing to run" in proc.stdout
    assert not results.exists()  # nothing installed, measured or written
    dry = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert dry.returncode == 0 and "estimated total" in dry.stdout, dry.stderr
