#!/usr/bin/env python
"""bfloat16 GEMM: fastmlp's bfloat16 GEMM (``_core.gemm(..., bf16=True)``: float32 in and out, the operands rounded to bfloat16
while packed, float32 sums) on each level this CPU runs, against its float32 GEMM and
PyTorch's bfloat16 matmul. Prints a Markdown table (``--output FILE`` writes it).

    python bench/bf16_report.py            # full run (about a minute)
    python bench/bf16_report.py --quick    # small sizes, a smoke run

Columns, each the median of ``--repeats`` samples after a warm-up (benchlib.time_calls), all sides interleaved in
one process on one thread (``--threads`` for more):

- fastmlp bf16 on each bfloat16 level (the portable path on avx512 or avx2, VDPBF16PS on
  avx512_bf16, the tiles on amx where the CPU has AMX), fastmlp float32 (the GEMM of the
  level chosen at import);
- torch: ``torch.matmul(a.bfloat16(), b.bfloat16()).float()``, the same work as ours
  (conversion from and to float32 included), and the bfloat16 matmul alone on tensors
  converted beforehand; torch float32. Torch columns are left out when it is not installed.

Shapes: square 1024 (the issue's yardstick) and 512, and the products of a 784 -> 256
layer at batch 128: forward X @ W.T, dW = dZ.T @ X and dX = dZ @ W.

Then training, samples/s of one epoch after a warm-up epoch (Adam, benchlib's synthetic
data), configs A, B and D (16,384, 32,768 and 4,096 rows): fastmlp float32 and
``precision="bfloat16"``, PyTorch float32 and with ``torch.autocast("cpu",
dtype=torch.bfloat16)`` around its forward and loss (benchlib.TorchTrainer). Then
inference: predict_proba of 1 and 10,000 rows on config A's network, float32 and bfloat16.
Where amx is usable, training and inference have a bfloat16 column on it too (the
level asked for around each timed call; the rest run on the level chosen at import).

``--amx-emulated`` (smoke runs only) runs the amx columns on emulated tiles, so that a CPU
without AMX exercises them; its figures measure the emulator, not AMX.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import _core  # noqa: E402

try:
    import torch
except ImportError:  # torch is optional: its columns are left out
    torch = None

FULL_SHAPES = [  # (label, m, n, k, trans_a, trans_b)
    ("1024^3", 1024, 1024, 1024, False, False),
    ("512^3", 512, 512, 512, False, False),
    ("784->256 forward, batch 128", 128, 256, 784, False, True),
    ("784->256 dW, batch 128", 256, 784, 128, True, False),
    ("784->256 dX, batch 128", 128, 784, 256, False, False),
]
QUICK_SHAPES = [("64^3", 64, 64, 64, False, False), ("33x17x257 NT", 33, 17, 257, False, True)]


def operands(m, n, k, ta, tb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    return a, b


def bf16_levels():
    usable = _core.backend_info()["usable_isas"]
    return [lv for lv in ("avx2", "avx512", "avx512_bf16", "amx") if lv in usable] or ["generic"]


def amx_usable() -> bool:
    return "amx" in _core.backend_info()["usable_isas"]


IMPORT_LEVEL = _core.backend_info()["isa"]   # "auto": the best level below amx


def fastmlp_runs(a, b, c, ta, tb):
    """{column: callable} for fastmlp's GEMMs, each switching to its level first."""
    runs = {}
    for level in bf16_levels():
        runs[f"fastmlp bf16 ({level})"] = (level, lambda: _core.gemm(a, b, c, ta, tb, bf16=True))
    runs["fastmlp float32"] = (IMPORT_LEVEL, lambda: _core.gemm(a, b, c, ta, tb))
    return runs


class OnLevel:
    """A trainer whose epochs run on one ISA level (asked for around each epoch)."""

    def __init__(self, level: str, trainer):
        self.level, self.trainer = level, trainer

    def epoch(self):
        fastmlp.set_isa(self.level)
        try:
            self.trainer.epoch()
        finally:
            fastmlp.set_isa("auto")


def torch_runs(a, b, ta, tb):
    if torch is None:
        return {}
    A, B = torch.from_numpy(a), torch.from_numpy(b)
    A, B = (A.T if ta else A), (B.T if tb else B)
    A16, B16 = A.bfloat16(), B.bfloat16()
    return {
        "torch bf16 (with conversion)": lambda: torch.matmul(A.bfloat16(), B.bfloat16()).float(),
        "torch bf16 (matmul alone)": lambda: torch.matmul(A16, B16),
        "torch float32": lambda: torch.matmul(A, B),
    }


def measure(shape, repeats: int, rounds: int):
    label, m, n, k, ta, tb = shape
    a, b = operands(m, n, k, ta, tb)
    c = np.empty((m, n), np.float32)
    ours, theirs = fastmlp_runs(a, b, c, ta, tb), torch_runs(a, b, ta, tb)
    samples = {name: [] for name in list(ours) + list(theirs)}
    for _ in range(rounds):   # the sides interleaved, so a noisy neighbour hits them alike
        for name, (level, run) in ours.items():
            fastmlp.set_isa(level)
            samples[name].append(bl.time_calls(run, samples=repeats)[0])
        for name, run in theirs.items():
            samples[name].append(bl.time_calls(run, samples=repeats)[0])
    fastmlp.set_isa("auto")
    flops = 2.0 * m * n * k
    return label, {name: flops / statistics.median(s) / 1e9 for name, s in samples.items()}


TRAIN_ROWS = {"A": 16_384, "B": 32_768, "D": 4_096}
QUICK_TRAIN_ROWS = {"A": 512, "D": 512}


def trainers(cfg: bl.Config, X, y):
    """{column: trainer} for one config, each starting from its own seed-0 weights."""
    out = {"fastmlp float32": bl.FastmlpTrainer("native", cfg, X, y),
           "fastmlp bfloat16": bl.FastmlpTrainer("native", cfg, X, y, precision="bfloat16")}
    if amx_usable():
        out["fastmlp bfloat16 amx"] = OnLevel("amx", bl.FastmlpTrainer("native", cfg, X, y, precision="bfloat16"))
    if torch is not None:
        out["torch float32"] = bl.TorchTrainer(cfg, X, y)
        out["torch bfloat16 autocast"] = bl.TorchTrainer(cfg, X, y, autocast=True)
    return out


def measure_training(name: str, rows: int, rounds: int):
    """Samples/s of one epoch after a warm-up epoch (Adam's state has settled into its
    steady-state cost), the median over interleaved rounds."""
    cfg = bl.CONFIGS[name]
    X, y = bl.synthetic(rows, cfg.dims[0])
    runs = trainers(cfg, X.astype(np.float32), y)
    for trainer in runs.values():
        trainer.epoch()
    samples = {column: [] for column in runs}
    for _ in range(rounds):
        for column, trainer in runs.items():
            seconds = bl.time_calls(trainer.epoch, min_time=0.0, samples=1)[0]
            samples[column].append(rows / seconds)
    return cfg.label, {column: statistics.median(s) for column, s in samples.items()}


def measure_inference(rows_list, rounds: int):
    """Median microseconds of predict_proba on config A's network (trained a little) for
    each row count: {rows: {column: us}}, float32 and bfloat16 interleaved."""
    cfg = bl.CONFIGS["A"]
    X, y = bl.synthetic(max(rows_list), cfg.dims[0])
    X = X.astype(np.float32)
    columns = [("fastmlp float32", None, "auto"), ("fastmlp bfloat16", "bfloat16", "auto")]
    if amx_usable():
        columns.append(("fastmlp bfloat16 amx", "bfloat16", "amx"))
    models = {}
    for column, precision, level in columns:
        trainer = bl.FastmlpTrainer("native", cfg, X[:512], y[:512], precision=precision)
        trainer.epoch()
        models[column] = (level, trainer.model)
    out = {}
    for rows in rows_list:
        samples = {column: [] for column in models}
        part = X[:rows]
        for _ in range(rounds):
            for column, (level, model) in models.items():
                fastmlp.set_isa(level)   # the predictor is packed again once, in the warm-up
                samples[column].append(bl.time_calls(lambda: model.predict_proba(part), samples=5)[0] * 1e6)
        fastmlp.set_isa("auto")
        out[rows] = {column: statistics.median(s) for column, s in samples.items()}
    return out


def inference_table(results) -> str:
    columns = list(next(iter(results.values())))
    faster = [c for c in columns if c != "fastmlp float32"]
    lines = ["Inference, config A's network (784-256-128-10), predict_proba, microseconds per call", "",
             "| rows | " + " | ".join(columns) + " | " + " | ".join(f"{c} speed-up" for c in faster) + " |",
             "|---" * (len(columns) + len(faster) + 1) + "|"]
    for rows, us in results.items():
        lines.append(f"| {rows:,} | " + " | ".join(f"{us[c]:,.1f}" for c in columns) + " | " +
                     " | ".join(f"{us['fastmlp float32'] / us[c]:.2f}x" for c in faster) + " |")
    return "\n".join(lines)


def training_table(results, threads: int) -> str:
    columns = list(results[0][1])
    lines = [f"Training samples/s (Adam, one epoch after a warm-up), {threads} thread(s)", "",
             "| config | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, rates in results:
        lines.append(f"| {label} | " + " | ".join(f"{rates[c]:,.0f}" for c in columns) + " |")
    for ours in (c for c in columns if c.startswith("fastmlp bfloat16")):
        for base in ("fastmlp float32", "torch bfloat16 autocast"):
            if base in columns:
                lines += ["", f"{ours} / {base}: " + ", ".join(
                    f"{label.split(':')[0]} {r[ours] / r[base]:.2f}x" for label, r in results)]
    return "\n".join(lines)


def table(results, threads: int) -> str:
    columns = list(results[0][1])
    lines = [f"GFLOP/s on {bl.cpu_name()}, {threads} thread(s), median of rounds of medians "
             f"(fastmlp {_core.backend_info()['version']}, levels {', '.join(bf16_levels())})", "",
             "| shape | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, gflops in results:
        lines.append(f"| {label} | " + " | ".join(f"{gflops[c]:.0f}" for c in columns) + " |")
    best = [c for c in columns if c.startswith("fastmlp bf16")][-1]
    if "torch bf16 (with conversion)" in columns:
        lines += ["", f"{best} / torch bf16 with conversion: " + ", ".join(
            f"{label} {g[best] / g['torch bf16 (with conversion)']:.2f}x" for label, g in results)]
    lines += ["", f"{best} / fastmlp float32: " + ", ".join(
        f"{label} {g[best] / g['fastmlp float32']:.2f}x" for label, g in results)]
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, few calls: a smoke run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None, help="samples per median")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per shape")
    parser.add_argument("--output", type=pathlib.Path)
    parser.add_argument("--amx-emulated", action="store_true",
                        help="smoke runs: the amx columns on emulated tiles (the emulator's speed, not AMX's)")
    args = parser.parse_args(argv)
    if args.amx_emulated:
        _core._testing.emulate_amx(True)
    repeats = args.repeats or (3 if args.quick else 7)
    rounds = args.rounds or (1 if args.quick else 3)
    if torch is not None:
        torch.set_num_threads(args.threads)
    train_rows = QUICK_TRAIN_ROWS if args.quick else TRAIN_ROWS
    with fastmlp.threads(args.threads):
        results = [measure(s, repeats, rounds) for s in (QUICK_SHAPES if args.quick else FULL_SHAPES)]
        with bl.threads("torch", args.threads) if torch is not None else fastmlp.threads(args.threads):
            training = [measure_training(name, rows, rounds) for name, rows in train_rows.items()]
        inference = measure_inference((1, 100) if args.quick else (1, 10_000), rounds)
    text = "\n\n".join([table(results, args.threads), training_table(training, args.threads),
                         inference_table(inference)])
    if args.amx_emulated:
        text += "\n\n(amx columns: emulated tiles, not AMX)"
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return text


if __name__ == "__main__":
    sys.exit(main() and 0)
