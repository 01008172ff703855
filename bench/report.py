#!/usr/bin/env python
"""Measure fastmlp against numpy.matmul, its NumPy backend, PyTorch and scikit-learn, and
write a Markdown report (bench/RESULTS.md).

    python bench/report.py            # full sizes, 2 rounds (< 20 min on 2 cores)
    python bench/report.py --quick    # fewer rows and repeats, 1 round (~2 min)
    python bench/report.py --quick --readme   # also put the summary into README.md
    python bench/report.py --quick --threads 1,4,16 --impls native,torch   # many cores

Every measurement runs in a fresh subprocess (``report.py --worker SPEC``) that prints one
``BENCH-RESULT {json}`` line, so numpy's OpenBLAS threads and fastmlp's OpenMP threads
never share a process. The fastmlp (native and NumPy backend) and numpy.matmul workers run
with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from their environment (OpenBLAS then
picks its kernel for this CPU itself, shown in the header); the PyTorch and scikit-learn
workers get the environment unchanged. Threads: threadpoolctl limits every pool in the
worker, plus ``fastmlp.threads(n)`` for ours and ``torch.set_num_threads(n)`` for torch;
onnxruntime's session gets ``intra_op_num_threads=n``. ``--threads`` names the counts.

Rounds are paired: each round runs every worker once, the implementations of a cell back
to back (their order rotates between rounds), and the table shows the median over rounds
of each worker's own median. Ratios are speed-ups of fastmlp native (> 1: native faster)
computed from those medians.

Each round also runs one ``bf16`` worker per thread count: ``precision="bfloat16"``
against float32 and PyTorch's ``torch.autocast`` (bench/bf16_report.py's training and
inference measurements, its columns interleaved in that one process; an amx column where
the CPU has AMX). ``--no-bf16`` leaves it out.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from statistics import median
from typing import Dict, List, Optional

from report_tables import render, summarize

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULT_PREFIX = "BENCH-RESULT "
UNSET_FOR_OURS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
README_BEGIN = "<!-- bench:begin (written by python bench/report.py --readme) -->"
README_END = "<!-- bench:end -->"

MODES = {
    # rows of A, B, C and D (None: the configs' own); training epochs (see _worker_train);
    # GEMM and inference timing (benchlib.time_calls).
    # steady: epochs of config A on synthetic_borders data, all its rows in full mode.
    "quick": dict(rounds=1, rows={"A": 8192, "B": 8192, "C": 8192, "D": 2048},
                  train=dict(warmup=1, epochs=3, min_seconds=0.5, max_epochs=12),
                  gemm=dict(min_time=0.004, samples=5, max_total=0.5),
                  infer=dict(min_time=0.01, samples=5, max_total=1.0), memory_rows=8192,
                 steady=dict(rows=8192, epochs=4),
                 bf16=dict(rows={"A": 4096, "D": 1024}, infer_rows=[1, 1000])),
    "full": dict(rounds=2, rows=None,
                 train=dict(warmup=1, epochs=3, min_seconds=2.0, max_epochs=12),
                 gemm=dict(min_time=0.02, samples=7, max_total=2.0),
                 infer=dict(min_time=0.05, samples=9, max_total=3.0), memory_rows=None,
                 steady=dict(rows=None, epochs=10),
                 bf16=dict(rows={"A": 16_384, "B": 32_768, "D": 4_096}, infer_rows=[1, 10_000])),
}


# =========================================================================== workers
def _emit(result: dict) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def worker(spec: dict) -> dict:
    """Run one measurement in this process and return its result (a JSON-able dict)."""
    kind = spec["kind"]
    if kind == "info":
        return _worker_info()
    import benchlib as bl
    impl, n = spec.get("impl"), spec.get("threads", 1)
    with bl.threads(impl, n):
        if kind == "gemm":
            return _worker_gemm(bl, impl, spec)
        if kind == "train":
            return _worker_train(bl, impl, spec)
        if kind == "infer":
            return _worker_infer(bl, impl, spec)
        if kind == "memory":
            return _worker_memory(bl, impl, spec)
        if kind == "steady":
            return _worker_steady(bl, impl, spec)
        if kind == "bf16":
            return _worker_bf16(bl, n, spec)
    raise ValueError(f"unknown worker kind {kind!r}")


def _worker_info() -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "numpy_blas": [p for p in threadpool_info() if p.get("user_api") == "blas"]}
    try:
        import fastmlp
        info["fastmlp"] = fastmlp.__version__
        info["backend_info"] = fastmlp.backend_info()
    except Exception as exc:  # report it, do not hide it
        info["fastmlp_error"] = repr(exc)
    from importlib import metadata
    for name, dist in (("torch", "torch"), ("sklearn", "scikit-learn"),
                       ("onnxruntime", "onnxruntime")):
        try:
            info[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def _worker_gemm(bl, impl: str, spec: dict) -> dict:
    """Every product timed first, then every result checked: the checks' float64
    numpy.matmul would otherwise leave OpenBLAS's threads spinning into the next timing
    (the NumPy/OpenMP alternation README "Threads and SIMD" describes, not the GEMM)."""
    timed = []
    for dtype in spec["dtypes"]:
        for case in bl.gemm_cases():
            run, error = bl.gemm_setup(impl, case, dtype)
            seconds, others = bl.time_calls(run, **spec["timing"])
            timed.append((dtype, case, seconds, others, error))
    rows = []
    for dtype, case, seconds, others, error in timed:
        err = error()
        rows.append(dict(case=case.label, op=case.op, m=case.m, k=case.k, n=case.n,
                         dtype=dtype, seconds=seconds, gflops=case.flops / seconds / 1e9,
                         others=others, error=err, ok=err < bl.GEMM_TOLERANCE[dtype]))
    return {"gemm": rows}


def _epoch_timer(impl: str, trainer):
    """A function that trains one epoch and returns its seconds."""
    if impl in ("native", "numpy"):
        import fastmlp.train.callbacks

        class EpochTimer(fastmlp.train.callbacks.Callback):
            """Times the epoch inside fit (fit's input checks are not part of it)."""
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs):
                self.seconds = time.perf_counter() - self.start

        timer = EpochTimer()

        def epoch() -> float:
            trainer.fit(1, callbacks=[timer])
            return timer.seconds
    else:
        def epoch() -> float:
            start = time.perf_counter()
            trainer.epoch()
            return time.perf_counter() - start
    return epoch


def _worker_train(bl, impl: str, spec: dict) -> dict:
    cfg = bl.CONFIGS[spec["config"]]
    X, y = bl.synthetic(spec["rows"], cfg.dims[0])
    X_eval, y_eval = X[:2048], y[:2048]
    trainer = bl.make_trainer(impl, cfg, X, y)
    before = trainer.loss(X_eval, y_eval)
    epoch = _epoch_timer(impl, trainer)
    # Warm-up, then at least `epochs` timed epochs and at least `min_seconds` of them
    # (short epochs are noisy), at most `max_epochs`.
    meter = bl.CpuMeter()
    seconds = [epoch() for _ in range(spec["warmup"])]
    timed: List[float] = []
    while len(timed) < spec["max_epochs"] and (len(timed) < spec["epochs"]
                                               or sum(timed) < spec["min_seconds"]):
        timed.append(epoch())
    seconds += timed
    others = meter.stop()[1]
    after = trainer.loss(X_eval, y_eval)
    return dict(rows=len(X), epoch_seconds=seconds, samples_per_s=len(X) / median(timed),
                others=others,
                loss_before=before, loss_after=after, ok=after < before,
                flops_per_sample=cfg.flops_per_sample)


def _worker_steady(bl, impl: str, spec: dict) -> dict:
    """Every epoch's seconds of config A trained on synthetic_borders data: whether epochs
    slow down once the optimizer's state has decayed (subnormal numbers)."""
    cfg = bl.CONFIGS["A"]
    X, y = bl.synthetic_borders(spec["rows"], cfg.dims[0])
    trainer = bl.make_trainer(impl, cfg, X, y)
    before = trainer.loss(X[:2048], y[:2048])
    epoch = _epoch_timer(impl, trainer)
    seconds = [epoch() for _ in range(spec["epochs"])]
    after = trainer.loss(X[:2048], y[:2048])
    return dict(rows=len(X), epoch_seconds=seconds, ok=after < before)


def _worker_infer(bl, impl: str, spec: dict) -> dict:
    cfg = bl.CONFIGS[bl.INFERENCE_CONFIG]
    X, _ = bl.synthetic(max(spec["rows"]), cfg.dims[0])
    weights = bl.inference_weights(cfg)
    predictor = bl.make_predictor(impl, cfg, weights, spec.get("threads", 1))
    out = []
    for rows in spec["rows"]:
        Xr = X[:rows]
        seconds, others = bl.time_calls(lambda: predictor.predict_proba(Xr), **spec["timing"])
        err = bl.check_proba(predictor.predict_proba(Xr), bl.reference_proba(weights, Xr))
        out.append(dict(rows=rows, seconds=seconds, others=others,
                        error=err, ok=err < 1e-4))
    return {"infer": out}


def _worker_bf16(bl, n: int, spec: dict) -> dict:
    """bf16_report's training samples/s ({config: {column: rate}}) and inference
    microseconds ({rows: {column: us}}), fastmlp and torch on n threads."""
    import bf16_report
    with contextlib.ExitStack() as stack:
        stack.enter_context(bl.threads("native", n))
        if bf16_report.torch is not None:
            stack.enter_context(bl.threads("torch", n))
        train = {name: bf16_report.measure_training(name, rows, rounds=1)[1]
                 for name, rows in spec["rows"].items()}
        infer = bf16_report.measure_inference(spec["infer_rows"], rounds=1)
    return {"train": train, "infer": {str(rows): us for rows, us in infer.items()}}


def _worker_memory(bl, impl: str, spec: dict) -> dict:
    cfg = bl.CONFIGS[spec["config"]]
    X, y = bl.synthetic(spec["rows"], cfg.dims[0])
    trainer = bl.make_trainer(impl, cfg, X, y)
    before = trainer.loss(X[:2048], y[:2048])
    rss_before = bl.current_rss_mib()
    for _ in range(spec["epochs"]):
        trainer.epoch()
    after = trainer.loss(X[:2048], y[:2048])
    # getrusage's high-water mark is updated lazily: it can trail the current RSS a little.
    peak = max(bl.peak_rss_mib(), bl.current_rss_mib())
    return dict(peak_rss_mib=peak, rss_before_mib=rss_before,
                data_mib=(X.nbytes + y.nbytes) / 2 ** 20, rows=len(X),
                loss_before=before, loss_after=after, ok=after < before)


# =========================================================================== driver
def _env_for(impl: Optional[str]) -> Dict[str, str]:
    env = dict(os.environ)
    if impl in (None, "native", "numpy"):
        for key in UNSET_FOR_OURS:
            env.pop(key, None)
    return env


def run_worker(spec: dict, log) -> dict:
    """Run one worker process; its result, or {"error": ...} if it failed."""
    started = time.perf_counter()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                              env=_env_for(spec.get("impl")), cwd=ROOT)
    except subprocess.TimeoutExpired:
        result = {"error": "timed out after 900 s"}
    else:
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if done.returncode != 0 or not lines:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            result = {"error": f"exit {done.returncode}: " + " | ".join(tail)}
        else:
            result = json.loads(lines[-1][len(RESULT_PREFIX):])
    label = " ".join(f"{k}={v}" for k, v in spec.items() if k in ("kind", "impl", "config",
                                                                  "threads"))
    status = "FAILED: " + result["error"] if "error" in result else "ok"
    log(f"  {label:<45} {time.perf_counter() - started:6.1f} s  {status}")
    return result


def _rotate(items: List[str], r: int) -> List[str]:
    r %= len(items)
    return items[r:] + items[:r]


def measure(mode: str, rounds: int, impls: List[str], threads: List[int], log,
            bf16: bool = True) -> dict:
    """Run every worker ``rounds`` times, GEMM, training and inference on each of
    ``threads`` (and bfloat16 unless ``bf16`` is false); returns the raw results.
    Training, steady state and memory measure the ``impls`` that train (benchlib.IMPLS),
    inference all of them."""
    m = MODES[mode]
    import benchlib as bl
    trainers = [i for i in impls if i in bl.IMPLS]
    rows = {name: (m["rows"] or {}).get(name, cfg.rows) for name, cfg in bl.CONFIGS.items()}
    raw: dict = {"gemm": {}, "train": {}, "infer": {}, "memory": {}, "steady": {}, "bf16": {},
                 "threads": list(threads)}
    for r in range(rounds):
        log(f"round {r + 1}/{rounds}")
        for n in threads:
            for impl in _rotate(list(bl.GEMM_IMPLS), r):
                spec = dict(kind="gemm", impl=impl, threads=n, dtypes=["float32", "float64"],
                            timing=m["gemm"])
                raw["gemm"].setdefault(f"{impl}|{n}", []).append(run_worker(spec, log))
        for name in sorted(bl.CONFIGS):
            for n in threads:
                for impl in _rotate(trainers, r):
                    spec = dict(kind="train", impl=impl, config=name, threads=n,
                                rows=rows[name], **m["train"])
                    raw["train"].setdefault(f"{name}|{n}|{impl}", []).append(
                        run_worker(spec, log))
        for n in threads:
            for impl in _rotate(impls, r):
                spec = dict(kind="infer", impl=impl, threads=n, rows=list(bl.INFERENCE_ROWS),
                            timing=m["infer"])
                raw["infer"].setdefault(f"{impl}|{n}", []).append(run_worker(spec, log))
        for n in threads if bf16 else ():
            spec = dict(kind="bf16", threads=n, **m["bf16"])
            raw["bf16"].setdefault(str(n), []).append(run_worker(spec, log))
        steady_rows = m["steady"]["rows"] or bl.CONFIGS["A"].rows
        for impl in _rotate([i for i in trainers if i != "sklearn"], r):
            spec = dict(kind="steady", impl=impl, threads=1, rows=steady_rows,
                        epochs=m["steady"]["epochs"])
            raw["steady"].setdefault(impl, []).append(run_worker(spec, log))
    log("peak memory (config C, 1 thread, one fresh process each)")
    for impl in trainers:
        spec = dict(kind="memory", impl=impl, config="C", threads=1,
                    rows=m["memory_rows"] or bl.CONFIGS["C"].rows, epochs=2)
        raw["memory"][impl] = run_worker(spec, log)
    raw["rows"] = rows
    return raw


# =========================================================================== tables
# summarize, render and their helpers: bench/report_tables.py


def update_readme(text: str) -> None:
    path = os.path.join(ROOT, "README.md")
    with open(path, encoding="utf-8") as f:
        readme = f.read()
    if README_BEGIN not in readme or README_END not in readme:
        raise SystemExit(f"README.md has no {README_BEGIN} ... {README_END} block")
    start = readme.index(README_BEGIN) + len(README_BEGIN)
    end = readme.index(README_END)
    with open(path, "w", encoding="utf-8") as f:
        f.write(readme[:start] + "\n" + text.rstrip() + "\n" + readme[end:])


def _command(argv: List[str]) -> str:
    """The command line, less the options that only say where files go."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--json", "--output"):
            skip = True
        elif not arg.startswith(("--json=", "--output=")):
            kept.append(arg)
    return shlex.join(["python", "bench/report.py", *kept])


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def thread_counts(text: str) -> List[int]:
    """--threads: a comma-separated list of positive thread counts, e.g. "1,2,4,8,16";
    returned sorted, each once."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as 1,2,4,8,16; got {text!r}")
    return sorted(set(counts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer rows and repeats, 1 round (about 2 minutes)")
    parser.add_argument("--rounds", type=int, help="paired rounds (default: quick 1, full 2)")
    parser.add_argument("--impls", default="native,numpy,torch,sklearn,onnxruntime",
                        help="training/inference implementations (native and numpy always; "
                        "onnxruntime: inference only)")
    parser.add_argument("--threads", type=thread_counts, default=None,
                        help="thread counts measured, e.g. 1,2,4,8,16 (default: 1,2); counts "
                        "above the machine's CPUs run oversubscribed and are marked")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--readme", action="store_true",
                        help="replace the table block in README.md with this run's summary")
    parser.add_argument("--from-json", metavar="FILE",
                        help="measure nothing: render the tables from a --json file")
    parser.add_argument("--no-bf16", action="store_true",
                        help="leave out the bfloat16 workers (precision=\"bfloat16\" vs float32 and torch autocast)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        _emit(worker(json.loads(args.worker)))
        return 0

    sys.path.insert(0, HERE)
    import benchlib as bl
    mode = "quick" if args.quick else "full"
    rounds = args.rounds or MODES[mode]["rounds"]
    wanted = ["native", "numpy"] + [i for i in args.impls.split(",")
                                    if i not in ("native", "numpy")]
    impls = [i for i in wanted if i in bl.INFER_IMPLS and bl.available(i)]
    threads = args.threads or list(bl.THREADS)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    missing = sorted(set(wanted) - set(impls))
    if missing:
        log(f"not measured (not installed or unknown): {', '.join(missing)}")
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            saved = json.load(f)
        meta, info, raw = saved["meta"], saved["info"], saved["raw"]
        if args.threads:
            log("--threads is ignored with --from-json: the tables show the saved run's")
        return _write(args, summarize(raw, saved.get("impls", impls)), info, meta, log)
    started = time.perf_counter()
    meta = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                mode=mode, rounds=rounds, cpu=bl.cpu_name(), cpus=os.cpu_count(),
                load_before=_load(),
                min_seconds=MODES[mode]["train"]["min_seconds"],
                command=_command(sys.argv[1:] if argv is None else argv))
    info = run_worker({"kind": "info"}, log)
    raw = measure(mode, rounds, impls, threads, log, bf16=not args.no_bf16)
    meta.update(minutes=(time.perf_counter() - started) / 60, load_after=_load())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(meta=meta, info=info, raw=raw, impls=impls), f, indent=1)
    return _write(args, summarize(raw, impls), info, meta, log)


def _write(args, s: dict, info: dict, meta: dict, log) -> int:
    title = "# fastmlp benchmark results\n\nWritten by `bench/report.py`; see README.md, " \
            "section Benchmarks, for what is measured.\n\n"
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(title + render(s, info, meta, full=True))
    log(f"wrote {args.output}")
    if args.readme:
        update_readme(render(s, info, meta, full=False))
        log("updated README.md")
    print(render(s, info, meta, full=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
