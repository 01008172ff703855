#!/usr/bin/env python
"""The amx level where the CPU has AMX: what the engine the tests run on emulated tiles
does on the instructions (docs/bfloat16.md, "The amx level"). One command for such a
machine, from the repository root:

    pip install --no-build-isolation --no-deps . && python bench/amx_check.py

For each shape (tails of every tile dimension, one row, the 1024^3 yardstick), on the
amx level: whether C equals oracle.bf16_amx_chain (TDPBF16PS's order as the SDM writes
it) bit for bit, how many elements differ if not, the worst error against the exact
product as a fraction of the derived bound (tests/kernels/test_gemm_bf16.py), and
whether C equals the same engine on emulated tiles. Then bench/bf16_report.py on one
thread and on every core, whose tables have amx columns.

    python bench/amx_check.py --emulated --quick   # a CPU without AMX: the emulator, no report
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "kernels"), str(HERE.parent / "tests")]
import bf16_report  # noqa: E402
from test_gemm_bf16 import bf16_tolerance, chain, rounding_steps  # noqa: E402

from fastmlp import _core  # noqa: E402
from fastmlp.backends.numpy import round_to_bfloat16  # noqa: E402
import fastmlp  # noqa: E402

SHAPES = [(1, 1, 1), (1, 256, 784), (15, 17, 31), (16, 16, 32), (17, 33, 33), (33, 65, 97),
          (144, 32, 512), (145, 100, 1000), (300, 77, 517)]
QUICK_SHAPES = SHAPES[:5]
LARGE = (1024, 1024, 1024)   # the exact chain in NumPy takes a minute here: bound and emulator only


def product(a, b):
    c = np.empty((a.shape[0], b.shape[1]), np.float32)
    _core.gemm(a, b, c, bf16=True)
    return c


def on_emulated_tiles(a, b):
    _core._testing.emulate_amx(True)
    try:
        return product(a, b)
    finally:
        _core._testing.emulate_amx(False)


def check(m, n, k, emulated: bool) -> str:
    rng = np.random.default_rng(m * 10_000 + n * 100 + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    got = product(a, b)
    A, B = round_to_bfloat16(a), round_to_bfloat16(b)
    if (m, n, k) == LARGE:
        sdm = "not computed"
    else:
        differ = int(np.count_nonzero(got != chain(A, B, "amx")))
        sdm = "yes" if differ == 0 else f"no: {differ:,} of {got.size:,}"
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    bound = bf16_tolerance(k, 1.0, 0.0, np.abs(A64) @ np.abs(B64), np.zeros_like(got), True,
                           rounding_steps(k, "amx"))
    worst = float((np.abs(got - A64 @ B64) / bound).max())
    if emulated:
        same = "(this is the emulator)"
    else:
        same = "yes" if np.array_equal(got, on_emulated_tiles(a, b)) else "no"
    return f"| {m}x{n}x{k} | {sdm} | {worst:.3f} | {same} |"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emulated", action="store_true", help="emulated tiles (a CPU without AMX)")
    parser.add_argument("--quick", action="store_true", help="small shapes only, no bf16_report")
    args = parser.parse_args(argv)
    if args.emulated:
        _core._testing.emulate_amx(True)
    try:
        return check_all(args)
    finally:
        if args.emulated:
            _core._testing.emulate_amx(False)


def check_all(args) -> str:
    info = _core.backend_info()
    if "amx" not in info["usable_isas"]:
        raise SystemExit(f"amx is not usable here (usable: {info['usable_isas']}): it needs AMX-TILE, "
                         "AMX-BF16 and Linux's permission for the tile data; --emulated runs the emulator")
    lines = [f"amx level on {'emulated tiles' if args.emulated else 'the CPU'} ({bf16_report.bl.cpu_name()}), "
             f"backend_info: {info}", "",
             "| m x n x k | equals the SDM's chain | worst error / bound | equals the emulated tiles |",
             "|---|---|---|---|"]
    fastmlp.set_isa("amx")
    try:
        for shape in (QUICK_SHAPES if args.quick else SHAPES + [LARGE]):
            lines.append(check(*shape, emulated=args.emulated))
    finally:
        fastmlp.set_isa("auto")
    text = "\n".join(lines)
    print(text, flush=True)
    if not args.quick:
        for threads in sorted({1, os.cpu_count() or 1}):
            bf16_report.main(["--threads", str(threads)])
    return text


if __name__ == "__main__":
    sys.exit(main() and 0)
