#!/usr/bin/env python
"""Data-parallel training on MPI (fastmlp.distributed): what a step's gradient exchange
costs on this machine's loopback, and what a distributed fit trains per second, for
configs A and D at 2 and 4 ranks. Prints a Markdown table (``--output FILE`` writes it).

    python bench/distributed_report.py                  # full run (a few minutes)
    python bench/distributed_report.py --quick          # small sizes, a smoke run

For each rank count P the script launches ``mpiexec -n P`` on itself (``--worker``), every
rank with one thread. Per config (float32, Adam 1e-3, the config's global batch):

- **exchange**: the step's collectives alone (``Exchange.step``: Ialltoall of the gradient
  chunks, their sums, Iallgather of the summed chunks with loss and logits), 5 warm-up
  calls then the median of ``--calls`` calls, on a gradient of the model's size; and the
  bytes each rank sends and receives, 2 (P - 1) / P gradients plus the logits;
- **fit**: a warm-up epoch on ``--rows`` rows (Adam's state settles), then one timed epoch
  (wall clock of fit on rank 0): samples/s, and the share of that epoch spent in the
  exchange (waiting for the slowest rank included).

The reference, in this process: one process's fit of the same epoch, fused (the default
path) and per-op (the path each rank runs), one thread. More ranks than cores (4 on a
2-core machine) slows every rank's compute; the exchange figures stay loopback costs.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

import fastmlp  # noqa: E402

FULL = dict(rows={"A": 16_384, "D": 4_096}, calls=50)
QUICK = dict(rows={"A": 1_024, "D": 512}, calls=5)


def build(cfg: bl.Config):
    layers = [fastmlp.Dense(width, activation="relu") for width in cfg.dims[1:-1]]
    return fastmlp.Sequential(layers + [fastmlp.Dense(cfg.dims[-1])], input_dim=cfg.dims[0],
                              loss="softmax_cross_entropy", seed=0)


def epoch_seconds(model, X, y, cfg: bl.Config, **kwargs) -> float:
    """A warm-up epoch, then one timed epoch's wall clock."""
    fit = dict(epochs=1, batch_size=cfg.batch, optimizer="adam", verbose=0, **kwargs)
    model.fit(X, y, learning_rate=bl.LEARNING_RATE, **fit)
    started = time.perf_counter()
    model.fit(X, y, **fit)
    return time.perf_counter() - started


# ------------------------------------------------------------------ one rank of P
def worker(configs, rows, calls) -> None:
    from fastmlp.distributed import MPI, Exchange
    mpi = MPI()
    results = {}
    for name in configs:
        cfg = bl.CONFIGS[name]
        model = build(cfg)
        exchange = Exchange(mpi)
        grads = np.random.default_rng(mpi.rank).standard_normal(model.n_params).astype(np.float32)
        most = -(-cfg.batch // mpi.size)
        logits = np.zeros((most, cfg.dims[-1]), np.float32)
        times = []
        for call in range(5 + calls):
            started = time.perf_counter()
            exchange.step(grads, [0.0], [logits], cfg.batch, False)
            times.append(time.perf_counter() - started)
        X, y = bl.synthetic(rows[name], cfg.dims[0])
        waited = [0.0]
        step = Exchange.step

        def timed(self, *args):
            started = time.perf_counter()
            try:
                return step(self, *args)
            finally:
                waited[0] += time.perf_counter() - started
        Exchange.step = timed
        model.fit(X, y, epochs=1, batch_size=cfg.batch, optimizer="adam", verbose=0,
                  learning_rate=bl.LEARNING_RATE, distributed=mpi)
        waited[0] = 0.0
        started = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=cfg.batch, verbose=0, distributed=mpi)
        seconds = time.perf_counter() - started
        Exchange.step = step
        results[name] = {"exchange_ms": 1e3 * float(np.median(times[5:])),
                         "grad_mb": model.n_params * 4 / 1e6,
                         "samples_per_s": rows[name] / seconds,
                         "exchange_share": waited[0] / seconds}
    if mpi.is_root:
        print("RESULT " + json.dumps(results))


# ------------------------------------------------------------------ the driver
def mpiexec() -> str:
    beside = pathlib.Path(sys.executable).with_name("mpiexec")
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if not found:
        sys.exit("mpiexec not found: pip install 'fastmlp[mpi]'")
    return found


def run_ranks(ranks: int, configs, mode: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [mpiexec(), "-n", str(ranks), sys.executable, __file__, "--worker",
            "--configs", ",".join(configs), "--rows", json.dumps(mode["rows"]),
            "--calls", str(mode["calls"])]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"mpiexec -n {ranks} failed:\n{done.stdout}\n{done.stderr}")
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def reference(name: str, rows: int) -> dict:
    """One process, one thread: the fused fit and the per-op fit of the same epoch."""
    cfg = bl.CONFIGS[name]
    X, y = bl.synthetic(rows, cfg.dims[0])
    speeds = {}
    with fastmlp.threads(1):
        speeds["fused"] = rows / epoch_seconds(build(cfg), X, y, cfg)
        fastmlp.training._FUSED = False
        try:
            speeds["per_op"] = rows / epoch_seconds(build(cfg), X, y, cfg)
        finally:
            fastmlp.training._FUSED = True
    return speeds


def table(configs, ranks, mode) -> str:
    lines = ["| config | ranks | gradient MB | exchange ms/step (median) | bytes in+out per rank "
             "| fit samples/s | share of the epoch in the exchange | 1 process fused / per-op "
             "samples/s |", "|---|---|---|---|---|---|---|---|"]
    measured = {p: run_ranks(p, configs, mode) for p in ranks}
    for name in configs:
        ref = reference(name, mode["rows"][name])
        for p in ranks:
            r = measured[p][name]
            moved = 2 * 2 * (p - 1) / p * r["grad_mb"]
            lines.append(f"| {bl.CONFIGS[name].label} | {p} | {r['grad_mb']:.2f} | "
                         f"{r['exchange_ms']:.2f} | {moved:.2f} MB | "
                         f"{r['samples_per_s']:,.0f} | {r['exchange_share']:.0%} | "
                         f"{ref['fused']:,.0f} / {ref['per_op']:,.0f} |")
    return "\n".join(lines + [""] + model_check(configs, ranks, measured))


def model_check(configs, ranks, measured) -> list:
    """The exchange model t = 2 (P - 1) alpha + 2 (P - 1) / P * S / beta (README "Beyond
    one machine") fitted to the first rank count's two configs (least squares over
    every config when there are more), then its prediction for the other counts."""
    if len(configs) < 2:
        return []
    first = ranks[0]
    rows = [(2 * (first - 1), 2 * (first - 1) / first * measured[first][n]["grad_mb"] * 1e6)
            for n in configs]
    seconds = [measured[first][n]["exchange_ms"] / 1e3 for n in configs]
    alpha, per_byte = np.linalg.lstsq(np.array(rows), np.array(seconds), rcond=None)[0]
    lines = [f"The exchange model fitted at {first} ranks: alpha = {alpha * 1e6:.1f} us per "
             f"round, beta = {1e-9 / per_byte:.2f} GB/s. Predicted / measured ms per step:",
             ""]
    for p in ranks:
        for n in configs:
            size = measured[p][n]["grad_mb"] * 1e6
            predicted = 2 * (p - 1) * alpha + 2 * (p - 1) / p * size * per_byte
            lines.append(f"- {n}, {p} ranks: {predicted * 1e3:.2f} / "
                         f"{measured[p][n]['exchange_ms']:.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ranks", default="2,4")
    parser.add_argument("--configs", default="A,D")
    parser.add_argument("--output")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    configs = args.configs.split(",")
    if args.worker:
        fastmlp.set_num_threads(1)
        worker(configs, json.loads(args.rows), args.calls)
        return
    mode = QUICK if args.quick else FULL
    command = "python bench/distributed_report.py" + (" --quick" if args.quick else "")
    text = (f"Measured with `{command}` on {bl.cpu_name()}, {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d')}; one thread per rank.\n\n"
            + table(configs, [int(p) for p in args.ranks.split(",")], mode) + "\n")
    print(text)
    if args.output:
        pathlib.Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
