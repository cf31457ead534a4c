"""bench/gan_item3.py: one cached run per (design, toy, seed), read back, not retrained; the target check."""
import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("gan_item3", Path(__file__).with_name("gan_item3.py"))
gi3 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gi3)


@pytest.fixture
def tiny(monkeypatch):
    designs = {"tiny": {"loss": "gmmn", "steps": 4, "settings": {"lr_g": 3e-3}, "packing": 1, "batch_size": 64}}
    monkeypatch.setattr(gi3, "DESIGNS", designs)
    return designs["tiny"]


def test_a_run_is_trained_once_then_read_back(tiny, tmp_path, monkeypatch):
    m = gi3.run_one("tiny", "grid25", 1, tmp_path)
    saved = json.loads((tmp_path / "tiny" / "grid25-seed1" / "metrics.json").read_text())
    assert saved["design"] == {"name": "tiny", **tiny} and saved["steps"] == 4 and saved["seed"] == 1
    assert saved["settings"]["lr_g"] == 3e-3 and [r["step"] for r in saved["trajectory"]] == [0, 1, 2, 3, 4]
    import mmdkit.gan.trainer
    monkeypatch.setattr(mmdkit.gan.trainer, "train", lambda *a, **k: pytest.fail("retrained a cached run"))
    assert gi3.run_one("tiny", "grid25", 1, tmp_path)["high_quality"] == m["high_quality"]
    # a changed design is not the cached run
    monkeypatch.setitem(gi3.DESIGNS, "tiny", {**tiny, "steps": 5})
    assert gi3.cached("tiny", "grid25", 1, tmp_path) is None


def test_table_means_and_target(tiny, tmp_path):
    for seed, (modes, hq, rkl) in enumerate([(25, 0.95, 0.01), (25, 0.93, 0.03)]):
        folder = tmp_path / "tiny" / f"grid25-seed{seed}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(
            {"modes_covered": modes, "high_quality": hq, "reverse_kl": rkl, "cpu_seconds": 100.0 + seed,
             "design": {"name": "tiny", **tiny}}))
    row = gi3.table(tmp_path).splitlines()[2]
    # mean 94.0 % >= 93.6 %, 25 >= 24.8 modes, 0.02 <= 0.04
    assert row == "| tiny | grid25 | [0, 1] | 25 ± 0 | 94 ± 1 | 0.02 ± 0.01 | 100 ± 0.5 | yes (24.8, 93.6 %, 0.04) |"
    (tmp_path / "tiny" / "grid25-seed1" / "metrics.json").write_text(json.dumps(
        {"modes_covered": 25, "high_quality": 0.92, "reverse_kl": 0.01, "cpu_seconds": 1.0,
         "design": {"name": "tiny", **tiny}}))
    assert gi3.table(tmp_path).splitlines()[2].endswith("| no (24.8, 93.6 %, 0.04) |")  # mean 93.5 %
