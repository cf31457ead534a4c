"""The ahead-of-time compile report on a small subset (four compiles, sm_90, no GPU needed).

The report compiles real GPU code, so it runs in a subprocess without the
TRITON_INTERPRET=1 that conftest.py sets for this process. The full report
(every kernel x dtype x precision x direction x distance path x arch) runs in CI as
``python -m mmdkit.kernels.report``.
"""
import json
import os
import subprocess
import tempfile
import sys

import pytest

FIELDS = {"kernel": str, "direction": str, "dtype": str, "precision": str, "path": str, "arch": str,
          "registers": int, "spill_bytes": int, "shared_bytes": int, "tensor_cores": bool, "mma": list}


@pytest.fixture(scope="module")
def rows():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    cmd = [sys.executable, "-m", "mmdkit.kernels.report", "--json", "--kernels", "rq", "imq",
           "--dtypes", "float32", "bfloat16", "--precisions", "ieee", "--directions", "fwd", "--archs", "90",
           "--paths", "expansion", "direct", "--jobs", "2"]
    # cwd away from the repository root (`python -m` would import the unmapped source folder mmdkit/)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_report_json_fields(rows):
    assert len(rows) == 8  # (rq, imq) x (float32, bfloat16) x (expansion, direct)
    for r in rows:
        for name, typ in FIELDS.items():
            assert isinstance(r[name], typ), (name, r)
        assert r["arch"] == "sm_90" and r["direction"] == "fwd" and r["precision"] == "ieee"
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
