"""Smoke run of bench/amx_check.py on emulated tiles (a CPU without AMX): a row per quick
shape, each equal to the SDM's chain and within the bound."""
import pytest

import amx_check


def test_amx_check_quick_on_emulated_tiles():
    info = amx_check._core.backend_info()
    if "amx" not in info["compiled_isas"] or "avx512_bf16" not in info["usable_isas"]:
        pytest.skip(f"the emulated tiles need the avx512_bf16 level (usable: {info['usable_isas']})")
    text = amx_check.main(["--emulated", "--quick"])
    rows = [line for line in text.splitlines() if line.startswith("| ") and "x" in line.split("|")[1]
            and not line.startswith("| m x n")]
    assert len(rows) == len(amx_check.QUICK_SHAPES)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "yes" and float(cells[2]) <= 1.0, row
    assert not amx_check._core.backend_info()["amx_emulated"]
