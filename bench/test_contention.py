"""Smoke test of bench/contention.py (seconds): every row of both tables is produced, each cell a time or a
ratio. Timings are never asserted (bench/RESULTS.md)."""
import contention


def test_tables_have_every_sweep_and_consistent_ratios(capsys):
    rows = contention.table(n=700, d=5, rounds=1, perm_n=300, perm_b=8, default=2)
    names = [name for name, _, _ in contention.cases(700, 5, 300, 8)]
    assert len(rows) == 2 + len(names) and all(f"| {name} |" in "".join(rows) for name in names)
    for row in rows[2:]:
        cells = [c.strip() for c in row.split("|")[2:7]]
        assert all(float(c) > 0 for c in cells[:3]) and all(c.endswith("x") and float(c[:-1]) > 0 for c in cells[3:])
    scaling = contention.scaling(n=700, d=5, rounds=1, default=2)
    assert [r.split("|")[1].strip() for r in scaling[2:]] == ["mmd2_unbiased", "energy_distance"]
