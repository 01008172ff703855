"""Smoke run of bench/bf16_report.py: the quick tables have a row per shape and per
training config and a column per bfloat16 level, and every figure is a positive rate."""
import re

import bf16_report


def test_bf16_report_quick(capsys):
    text = bf16_report.main(["--quick"])
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| shape", "| config", "| rows"))]
    assert len(rows) == len(bf16_report.QUICK_SHAPES) + len(bf16_report.QUICK_TRAIN_ROWS) + 2
    for level in bf16_report.bf16_levels():
        assert f"fastmlp bf16 ({level})" in text
    for row in rows:
        figures = [float(x.replace(",", "")) for x in re.findall(r"\| ([\d,]+(?:\.\d+)?) ", row + " ")]
        assert figures and all(f > 0 for f in figures), row
