"""Smoke test of bench/relative_power.py (seconds): a two-replicate run writes every row once, and a rerun
into the same table resumes (adds nothing)."""
import relative_power


def test_runs_and_resumes(tmp_path):
    out = tmp_path / "table.md"
    relative_power.main(["--replicates", "2", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(relative_power.SIZES) * len(relative_power.SHIFTS)
    assert all(0.0 <= float(r.split("|")[5]) <= 1.0 for r in rows)
    before = out.read_text()
    relative_power.main(["--replicates", "2", "--out", str(out)])
    assert out.read_text() == before
