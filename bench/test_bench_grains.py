"""Smoke test of bench/grains.py: every kernel at every size, timed on 1 and 2 threads."""
import grains


def test_grains_table(capsys, monkeypatch):
    monkeypatch.setattr(grains, "REPEATS", 2)
    grains.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + sum(len(sizes) for _, sizes, _ in grains.KERNELS.values())
    for row in rows[1:]:
        one, two, ratio = (float(cell) for cell in row.strip("| ").split(" | ")[2:])
        assert one > 0 and two > 0 and abs(ratio - one / two) < 0.01 + 0.01 * ratio
