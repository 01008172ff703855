"""Smoke run of bench/bf16_accuracy.py: a row per task with accuracies in [0, 1], and the
loss-curve picture written."""
import re

import bf16_accuracy


def test_bf16_accuracy_quick(tmp_path):
    picture = tmp_path / "curves.png"
    text = bf16_accuracy.main(["--quick", "--plot", str(picture)])
    rows = [line for line in text.splitlines() if line.startswith("| ") and "task" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["digits", "synthetic A"]
    for row in rows:
        f32, b16 = (float(x) for x in re.findall(r"\| (0\.\d{4}|1\.0000) ", row)[:2])
        assert 0 <= f32 <= 1 and 0 <= b16 <= 1
    assert picture.stat().st_size > 10_000
