"""The design, checked: one engine in kernels/, public engine names only outside it, one sync from
validation, bars only where someone watches, and the fixes the one-engine issue asked for."""
import ast
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import mmdkit
from mmdkit import Energy, Gaussian, Laplace, Mixture
from mmdkit._progress import Progress

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = sorted((ROOT / "mmdkit").glob("*.py")) + sorted((ROOT / "gan").glob("*.py"))


@pytest.mark.parametrize("path", OUTSIDE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_engine_import_tile_loop_or_spec_outside_kernels(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mmdkit.kernels"):
            assert node.module in ("mmdkit.kernels", "mmdkit.kernels.report"), \
                f"{path.name} imports engine module {node.module} (use mmdkit.kernels' public names)"
            assert not [a.name for a in node.names if a.name.startswith("_")], f"{path.name}: private engine name"
        if isinstance(node, ast.ClassDef):
            bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
            assert not bases & {"KernelSpec", "Gaussian", "Laplace", "Energy", "Mixture"}, \
                f"{path.name} defines a kernel spec ({node.name}); specs live in kernels/specs.py"
        if isinstance(node, ast.Compare):  # never branch on a backend's name
            names = {getattr(n, "attr", getattr(n, "id", None)) for n in [node.left, *node.comparators]}
            consts = {getattr(n, "value", None) for n in [node.left, *node.comparators]}
            assert not (consts & {"torch", "triton"} and names & {"name", "backend"}), \
                f"{path.name}:{node.lineno} branches on the backend's name"


def test_validation_syncs_once_per_public_call(monkeypatch):
    """mmd_test validates X and Y once: one finiteness test per sample (isfinite of the sample's sum,
    check_finite's first step; the elementwise check runs only when a sum is not finite), one sync each."""
    calls = []
    real_isfinite, real_sum = torch.isfinite, torch.Tensor.sum
    monkeypatch.setattr(torch, "isfinite", lambda T: calls.append(("isfinite", T.shape)) or real_isfinite(T))
    monkeypatch.setattr(torch.Tensor, "sum", lambda T, *a, **k: (calls.append(("sum", T.shape)) if not a and not k
                                                               else None) or real_sum(T, *a, **k))
    X, Y = torch.randn(20, 2), torch.randn(15, 2)
    mmdkit.mmd_test(X, Y, bandwidth=1.0, n_permutations=20, seed=0, progress=False)
    checks = lambda *shapes: [c for s in shapes for c in (("sum", s), ("isfinite", ()))]  # noqa: E731
    assert [c for c in calls if c[0] == "isfinite" or c in checks((20, 2), (15, 2))] == checks((20, 2), (15, 2))
    calls.clear()
    mmdkit.witness(X, Y, torch.randn(4, 2), bandwidth=1.0)
    assert [c for c in calls if c[0] == "isfinite" or c in checks((20, 2), (15, 2), (4, 2))] == \
        checks((20, 2), (15, 2), (4, 2))


def test_witness_of_a_mixture_with_an_energy_component_is_the_sum_of_witnesses(gen):
    X = torch.randn(17, 3, generator=gen, dtype=torch.float64) + 1.0
    Y = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    T = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    parts = (Gaussian(0.8), Energy(exponent=1.5), Laplace(2.0))
    weights = (0.5, 2.0, 1.5)
    mix = mmdkit.witness(X, Y, T, kernel=Mixture(components=parts, weights=weights))
    total = sum(w * mmdkit.witness(X, Y, T, kernel=k) for k, w in zip(parts, weights))
    torch.testing.assert_close(mix, total, rtol=1e-12, atol=1e-12)


def test_linear_estimator_refuses_a_precision_it_would_ignore():
    X, Y = np.zeros((4, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match="`precision`"):
        mmdkit.mmd2(X, Y, bandwidth=1.0, estimator="linear", precision="tf32")
    assert mmdkit.mmd2(X, Y, bandwidth=1.0, estimator="linear") == pytest.approx(2 - 2 * np.exp(-1.0))


def test_progress_bar_only_on_a_terminal_or_when_asked(monkeypatch):
    """progress=None never writes carriage-return updates into a pipe or a log file."""
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    bar = Progress(total=10, enabled=None, desc="x")
    bar.t0 -= 100  # as if the run had been slow: a terminal would get a bar now
    for _ in range(5):
        bar(1)
    bar.close()
    assert bar.bar is None and pipe.getvalue() == ""
    asked = Progress(total=10, enabled=True, desc="x")
    asked(10)
    asked.close()
    assert "\r" in pipe.getvalue() or "x" in pipe.getvalue()
