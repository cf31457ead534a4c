"""The ahead-of-time compile report on small subsets (twelve compiles, no GPU needed).

The report compiles real GPU code, so it runs in a subprocess without the
TRITON_INTERPRET=1 that conftest.py sets for this process. The full report
(every kernel x dtype x precision x direction x distance path x V columns x arch) runs
in CI as ``python -m mmdkit.kernels.report``.
"""
import json
import os
import subprocess
import tempfile
import sys

import pytest

FIELDS = {"kernel": str, "direction": str, "dtype": str, "precision": str, "path": str, "columns": str, "arch": str,
          "registers": int, "spill_bytes": int, "shared_bytes": int, "tensor_cores": bool, "mma": list}


def _report(*args: str) -> list[dict]:
    """The rows of ``python -m mmdkit.kernels.report --json --jobs 2 *args``."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    cmd = [sys.executable, "-m", "mmdkit.kernels.report", "--json", "--jobs", "2", *args]
    # cwd away from the repository root (`python -m` would import the unmapped source folder mmdkit/)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def rows():
    return _report("--kernels", "rq", "imq", "--dtypes", "float32", "bfloat16", "--precisions", "ieee",
                   "--directions", "fwd", "--archs", "90", "--paths", "expansion", "direct", "--columns", "dot")


@pytest.fixture(scope="module")
def new_paths():
    """The p = 1 row-reduction forward (direct and expansion paths) under "ieee" and "tf32x3", sm_80 and
    sm_90, with the SASS loop counts: six compiles (the direct path has no float32 dot: one per arch)."""
    return _report("--kernels", "gaussian", "--dtypes", "float32", "--precisions", "ieee", "tf32x3",
                   "--directions", "fwd", "--archs", "80", "90", "--paths", "expansion", "direct",
                   "--columns", "rows1", "--sass")


def test_report_json_fields(rows):
    assert len(rows) == 8  # (rq, imq) x (float32, bfloat16) x (expansion, direct)
    for r in rows:
        for name, typ in FIELDS.items():
            assert isinstance(r[name], typ), (name, r)
        assert r["arch"] == "sm_90" and r["direction"] == "fwd" and r["precision"] == "ieee" and r["columns"] == "dot"
        assert 0 < r["registers"] <= 255
        assert r["spill_bytes"] == 0
        assert r["shared_bytes"] > 0  # the layout conversions of the dot operands go through shared memory
    assert {(r["kernel"], r["dtype"], r["path"]) for r in rows} == \
        {(k, d, p) for k in ("rq", "imq") for d in ("float32", "bfloat16") for p in ("expansion", "direct")}


def test_report_tensor_cores_and_shared_code(rows):
    by = {(r["kernel"], r["dtype"]): r for r in rows if r["path"] == "expansion"}
    # bfloat16: the distance tile is a wgmma on sm_90; float32 "ieee": exact fp32 FMAs, no tensor cores
    assert by["rq", "bfloat16"]["tensor_cores"] and any("wgmma" in m or "mma" in m for m in by["rq", "bfloat16"]["mma"])
    assert not by["rq", "float32"]["tensor_cores"]
    # rq and imq are one kernel id with different parameters: compiled once, reported under both names
    assert by["imq", "float32"]["same_code_as"] == "rq"
    assert by["imq", "bfloat16"]["registers"] == by["rq", "bfloat16"]["registers"]


def test_report_direct_path_has_no_distance_dot(rows):
    """d <= DIRECT_MAX_D: the distance tile is direct differences (no tl.dot), so with "ieee" the only
    dot left (K @ V, float32) uses no tensor cores, whatever the input dtype; and it fits in registers."""
    direct = [r for r in rows if r["path"] == "direct"]
    assert len(direct) == 4
    for r in direct:
        assert not r["tensor_cores"] and r["spill_bytes"] == 0, r


def test_tf32x3_compiles_to_tensor_cores_without_spills(new_paths):
    """"tf32x3" on the float32 expansion path: tf32 tensor-core instructions (mma.sync on sm_80, wgmma on
    sm_90), no spills, and code of its own (not "ieee"'s, which has no tensor cores)."""
    x3 = {r["arch"]: r for r in new_paths if r["path"] == "expansion" and r["precision"] == "tf32x3"}
    ieee = {r["arch"]: r for r in new_paths if r["path"] == "expansion" and r["precision"] == "ieee"}
    assert set(x3) == set(ieee) == {"sm_80", "sm_90"}
    for arch, r in x3.items():
        assert r["spill_bytes"] == 0 and r["tensor_cores"], r
        assert all("tf32" in m for m in r["mma"]) and "same_code_as_precision" not in r
        assert not ieee[arch]["tensor_cores"] and ieee[arch]["spill_bytes"] == 0


def test_row_reduction_direct_forward_lane_count(new_paths):
    """p = 1 at d = DIRECT_MAX_D: no dot at all (one code for every precision), no shared-memory round
    trip in the main loop, one SFU instruction per pair, and at most 16 instructions per pair (measured
    13.7 on sm_90 at DIAG = 2; the kernel before the row reductions and the unrolled differences: ~50)."""
    direct = [r for r in new_paths if r["path"] == "direct"]
    assert len(direct) == 4  # (ieee, tf32x3) x (sm_80, sm_90), compiled twice
    for r in direct:
        assert r["columns"] == "rows1" and not r["tensor_cores"] and r["spill_bytes"] == 0, r
        assert r.get("same_code_as_precision") == ("ieee" if r["precision"] == "tf32x3" else None)
        pairs = r["loop_sass"] / r["sass_per_pair"]  # per thread and iteration: 64 x 64 / 256 = 16
        assert abs(pairs - 16) < 0.1 and r["loop_nested"] == 0
        assert r["loop_opcodes"].get("MUFU") == 16 and "LDS" not in r["loop_opcodes"], r["loop_opcodes"]
        assert r["sass_per_pair"] <= 16, r["sass_per_pair"]
