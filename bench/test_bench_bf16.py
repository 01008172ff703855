"""Smoke run of bench/bf16_report.py: the quick tables have a row per shape and per
training config and a column per bfloat16 level, and every figure is a positive rate."""
import re

import pytest

import bf16_report


def test_bf16_report_quick(capsys):
    text = bf16_report.main(["--quick"])
    check_tables(text)


def test_bf16_report_quick_has_amx_columns_where_amx_runs(capsys):
    """The amx columns (emulated tiles where the CPU has no AMX: the code path, not a speed)."""
    info = bf16_report._core.backend_info()
    if "amx" not in info["compiled_isas"] or "avx512_bf16" not in info["usable_isas"]:
        pytest.skip(f"neither AMX nor its emulator runs here (usable: {info['usable_isas']})")
    try:
        text = bf16_report.main(["--quick", "--amx-emulated"])
    finally:
        bf16_report._core._testing.emulate_amx(False)
    check_tables(text)
    assert "fastmlp bf16 (amx)" in text and "fastmlp bfloat16 amx" in text


def check_tables(text):
    rows = [line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith(("| shape", "| config", "| rows"))]
    assert len(rows) == len(bf16_report.QUICK_SHAPES) + len(bf16_report.QUICK_TRAIN_ROWS) + 2
    for level in bf16_report.bf16_levels():
        assert f"fastmlp bf16 ({level})" in text
    for row in rows:
        figures = [float(x.replace(",", "")) for x in re.findall(r"\| ([\d,]+(?:\.\d+)?) ", row + " ")]
        assert figures and all(f > 0 for f in figures), row
