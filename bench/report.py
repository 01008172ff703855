#!/usr/bin/env python
"""Measure fastmlp against numpy.matmul, its NumPy backend, PyTorch and scikit-learn, and
write a Markdown report (bench/RESULTS.md).

    python bench/report.py            # full sizes, 2 rounds (< 20 min on 2 cores)
    python bench/report.py --quick    # fewer rows and repeats, 1 round (~2 min)
    python bench/report.py --quick --readme   # also put the summary into README.md

Every measurement runs in a fresh subprocess (``report.py --worker SPEC``) that prints one
``BENCH-RESULT {json}`` line, so numpy's OpenBLAS threads and fastmlp's OpenMP threads
never share a process. The fastmlp (native and NumPy backend) and numpy.matmul workers run
with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from their environment (OpenBLAS then
picks its kernel for this CPU itself, shown in the header); the PyTorch and scikit-learn
workers get the environment unchanged. Threads: threadpoolctl limits every pool in the
worker, plus ``fastmlp.threads(n)`` for ours and ``torch.set_num_threads(n)`` for torch.

Rounds are paired: each round runs every worker once, the implementations of a cell back
to back (their order rotates between rounds), and the table shows the median over rounds
of each worker's own median. Ratios are speed-ups of fastmlp native (> 1: native faster)
computed from those medians.
"""
from __future__ import annotations

import argparse
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULT_PREFIX = "BENCH-RESULT "
UNSET_FOR_OURS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
README_BEGIN = "<!-- bench:begin (written by python bench/report.py --readme) -->"
README_END = "<!-- bench:end -->"

MODES = {
    # rows of A, B, C and D (None: the configs' own); training epochs (see _worker_train);
    # GEMM and inference timing (benchlib.time_calls).
    "quick": dict(rounds=1, rows={"A": 8192, "B": 8192, "C": 8192, "D": 2048},
                  train=dict(warmup=1, epochs=3, min_seconds=0.5, max_epochs=12),
                  gemm=dict(min_time=0.004, samples=5, max_total=0.5),
                  infer=dict(min_time=0.01, samples=5, max_total=1.0), memory_rows=8192),
    "full": dict(rounds=2, rows=None,
                 train=dict(warmup=1, epochs=3, min_seconds=2.0, max_epochs=12),
                 gemm=dict(min_time=0.02, samples=7, max_total=2.0),
                 infer=dict(min_time=0.05, samples=9, max_total=3.0), memory_rows=None),
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
    for name, dist in (("torch", "torch"), ("sklearn", "scikit-learn")):
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


def _worker_train(bl, impl: str, spec: dict) -> dict:
    cfg = bl.CONFIGS[spec["config"]]
    X, y = bl.synthetic(spec["rows"], cfg.dims[0])
    X_eval, y_eval = X[:2048], y[:2048]
    trainer = bl.make_trainer(impl, cfg, X, y)
    before = trainer.loss(X_eval, y_eval)
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


def _worker_infer(bl, impl: str, spec: dict) -> dict:
    cfg = bl.CONFIGS[bl.INFERENCE_CONFIG]
    X, y = bl.synthetic(max(spec["rows"]), cfg.dims[0])
    weights = bl.inference_weights(cfg)
    trainer = bl.make_trainer(impl, cfg, X[:cfg.batch], y[:cfg.batch])
    trainer.set_weights(weights)
    out = []
    for rows in spec["rows"]:
        Xr = X[:rows]
        seconds, others = bl.time_calls(lambda: trainer.predict_proba(Xr), **spec["timing"])
        err = bl.check_proba(trainer.predict_proba(Xr), bl.reference_proba(weights, Xr))
        out.append(dict(rows=rows, seconds=seconds, others=others,
                        error=err, ok=err < 1e-4))
    return {"infer": out}


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


def measure(mode: str, rounds: int, impls: List[str], log) -> dict:
    """Run every worker ``rounds`` times; returns the raw results."""
    m = MODES[mode]
    import benchlib as bl
    rows = {name: (m["rows"] or {}).get(name, cfg.rows) for name, cfg in bl.CONFIGS.items()}
    raw: dict = {"gemm": {}, "train": {}, "infer": {}, "memory": {}}
    for r in range(rounds):
        log(f"round {r + 1}/{rounds}")
        for n in bl.THREADS:
            for impl in _rotate(list(bl.GEMM_IMPLS), r):
                spec = dict(kind="gemm", impl=impl, threads=n, dtypes=["float32", "float64"],
                            timing=m["gemm"])
                raw["gemm"].setdefault(f"{impl}|{n}", []).append(run_worker(spec, log))
        for name in sorted(bl.CONFIGS):
            for n in bl.THREADS:
                for impl in _rotate(impls, r):
                    spec = dict(kind="train", impl=impl, config=name, threads=n,
                                rows=rows[name], **m["train"])
                    raw["train"].setdefault(f"{name}|{n}|{impl}", []).append(
                        run_worker(spec, log))
        for n in bl.THREADS:
            for impl in _rotate(impls, r):
                spec = dict(kind="infer", impl=impl, threads=n, rows=list(bl.INFERENCE_ROWS),
                            timing=m["infer"])
                raw["infer"].setdefault(f"{impl}|{n}", []).append(run_worker(spec, log))
    log("peak memory (config C, 1 thread, one fresh process each)")
    for impl in impls:
        spec = dict(kind="memory", impl=impl, config="C", threads=1,
                    rows=m["memory_rows"] or bl.CONFIGS["C"].rows, epochs=2)
        raw["memory"][impl] = run_worker(spec, log)
    raw["rows"] = rows
    return raw


# =========================================================================== tables
def _med(values):
    values = [v for v in values if v is not None]
    return median(values) if values else None


def _fmt(value, digits=3, suffix=""):
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value:,.0f}{suffix}"
    return f"{value:.{digits}g}{suffix}"


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _fmt_ratio(value):
    return "–" if value is None else f"{value:.2f}×"


DISTURBED = 0.25   # other processes' CPU use (in CPUs) above which a timing gets a dagger


def summarize(raw: dict, impls: List[str]) -> dict:
    """Medians over rounds, keyed for the tables, plus the cells whose timing was
    disturbed (other processes used more than DISTURBED CPUs in some round)."""
    import benchlib as bl
    problems: List[str] = []
    disturbed: set = set()

    def collect(section, key, value, others):
        cells.setdefault(key, []).append(value)
        if others is not None and others > DISTURBED:
            disturbed.add((section,) + key)

    gemm: Dict[tuple, float] = {}     # (impl, threads, dtype, case) -> GFLOP/s
    cells: Dict[tuple, list] = {}
    for key, runs in raw["gemm"].items():
        impl, n = key.split("|")
        for run in runs:
            if "error" in run:
                problems.append(f"GEMM {impl} {n}t: {run['error']}")
                continue
            for row in run["gemm"]:
                collect("gemm", (impl, int(n), row["dtype"], row["case"]), row["gflops"],
                        row.get("others"))
                if not row["ok"]:
                    problems.append(f"GEMM {impl} {n}t {row['dtype']} {row['case']}: relative "
                                    f"error {row['error']:.2e} above the tolerance")
    gemm = {k: median(v) for k, v in cells.items()}

    cells = {}
    for key, runs in raw["train"].items():
        name, n, impl = key.split("|")
        for run in runs:
            if "error" in run:
                problems.append(f"training {name} {impl} {n}t: {run['error']}")
                continue
            collect("train", (name, int(n), impl), run["samples_per_s"], run.get("others"))
            if not run["ok"]:
                problems.append(f"training {name} {impl} {n}t: loss did not fall "
                                f"({run['loss_before']:.4f} -> {run['loss_after']:.4f})")
    train = {k: median(v) for k, v in cells.items()}

    cells = {}
    for key, runs in raw["infer"].items():
        impl, n = key.split("|")
        for run in runs:
            if "error" in run:
                problems.append(f"inference {impl} {n}t: {run['error']}")
                continue
            for row in run["infer"]:
                collect("infer", (impl, int(n), row["rows"]), row["seconds"],
                        row.get("others"))
                if not row["ok"]:
                    problems.append(f"inference {impl} {n}t {row['rows']} rows: max "
                                    f"probability error {row['error']:.2e}")
    infer = {k: median(v) for k, v in cells.items()}

    for impl, run in raw["memory"].items():
        if "error" in run:
            problems.append(f"memory {impl}: {run['error']}")
        elif not run["ok"]:
            problems.append(f"memory run {impl}: loss did not fall")
    square = bl.GemmCase("square", 1024, 1024, 1024).label
    blas_1024 = {n: gemm.get(("numpy", n, "float32", square)) for n in bl.THREADS}
    return dict(gemm=gemm, train=train, infer=infer, memory=raw["memory"], problems=problems,
                blas_1024=blas_1024, impls=impls, rows=raw["rows"], disturbed=disturbed,
                blas_disturbed={n: ("gemm", "numpy", n, "float32", square) in disturbed
                                for n in bl.THREADS})


def _mark(s: dict, *key) -> str:
    return "†" if key in s["disturbed"] else ""


DAGGER_NOTE = ("† other processes used more than a quarter of a CPU on average while this "
               "was timed (from /proc/stat), in at least one round")


def train_table(s: dict) -> List[str]:
    import benchlib as bl
    impls = s["impls"]
    others = [i for i in impls if i != "native"]
    head = (["config", "rows", "threads"] + [f"{i} samples/s" for i in impls]
            + [f"native/{i}" for i in others] + [f"eff. {i}" for i in impls])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(bl.CONFIGS):
        cfg = bl.CONFIGS[name]
        for n in bl.THREADS:
            values = {i: s["train"].get((name, n, i)) for i in impls}
            peak = s["blas_1024"].get(n)
            effs = [None if values[i] is None or not peak else
                    values[i] * cfg.flops_per_sample / (peak * 1e9) for i in impls]
            cells = ([cfg.label, f"{s['rows'][name]:,}", str(n)]
                     + [_fmt(values[i]) + _mark(s, "train", name, n, i) for i in impls]
                     + [_fmt_ratio(_ratio(values["native"], values[i])) for i in others]
                     + ["–" if e is None else f"{100 * e:.0f} %" for e in effs])
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def gemm_table(s: dict, dtype: str, cases=None) -> List[str]:
    import benchlib as bl
    head = ["product (M×K×N)"]
    for n in bl.THREADS:
        head += [f"fastmlp {n}t", f"numpy {n}t", f"ratio {n}t"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases or bl.gemm_cases():
        cells = [case.label]
        for n in bl.THREADS:
            ours = s["gemm"].get(("native", n, dtype, case.label))
            theirs = s["gemm"].get(("numpy", n, dtype, case.label))
            cells += [_fmt(ours) + _mark(s, "gemm", "native", n, dtype, case.label),
                      _fmt(theirs) + _mark(s, "gemm", "numpy", n, dtype, case.label),
                      _fmt_ratio(_ratio(ours, theirs))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def infer_table(s: dict) -> List[str]:
    import benchlib as bl
    impls = s["impls"]
    others = [i for i in impls if i != "native"]
    head = ["rows", "threads"] + [f"{i}" for i in impls] + [f"native vs {i}" for i in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rows in bl.INFERENCE_ROWS:
        for n in bl.THREADS:
            t = {i: s["infer"].get((i, n, rows)) for i in impls}
            cells = ([f"{rows:,}", str(n)]
                     + [_fmt(None if t[i] is None else t[i] * 1e6, suffix=" µs")
                        + _mark(s, "infer", i, n, rows) for i in impls]
                     + [_fmt_ratio(_ratio(t[i], t["native"])) for i in others])
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_table(s: dict) -> List[str]:
    lines = ["| implementation | peak RSS | RSS before training | training adds | data |",
             "|---|---|---|---|---|"]
    for impl, run in s["memory"].items():
        if "error" in run:
            lines.append(f"| {impl} | failed | | | |")
            continue
        lines.append(f"| {impl} | {run['peak_rss_mib']:.0f} MiB | {run['rss_before_mib']:.0f} "
                     f"MiB | {run['peak_rss_mib'] - run['rss_before_mib']:.0f} MiB | "
                     f"{run['data_mib']:.0f} MiB |")
    return lines


def _key_gemm_cases():
    import benchlib as bl
    keep = {"square", "fwd"}
    return [c for c in bl.gemm_cases()
            if c.op == "square" or (c.op in keep and c.m == 128)
            or c.layer.startswith("b128 784")]


def header(info: dict, meta: dict) -> List[str]:
    blas = info.get("numpy_blas") or [{}]
    b = blas[0]
    backend = info.get("backend_info", {})
    env_notes = [f"`{k}={os.environ[k]}`" for k in sorted(os.environ)
                 if k.startswith(("OMP_", "GOMP_", "OPENBLAS_", "FASTMLP_", "MKL_"))]
    return [
        f"- **When:** {meta['date']} ({meta['mode']} run, {meta['rounds']} round(s), "
        f"{meta['minutes']:.1f} min); command `{meta['command']}`",
        f"- **Machine:** {meta['cpu']}, {os.cpu_count()} logical CPUs; load average "
        f"{meta['load_before']} before, {meta['load_after']} after (shared machine: noisy)",
        f"- **Software:** Python {info.get('python')}, NumPy {info.get('numpy')}, fastmlp "
        f"{info.get('fastmlp')}, PyTorch {info.get('torch') or 'not installed'}, "
        f"scikit-learn {info.get('sklearn') or 'not installed'}",
        f"- **numpy's BLAS (threadpoolctl):** {b.get('internal_api')} {b.get('version')}, "
        f"kernel `{b.get('architecture')}`, {b.get('threading_layer')} threads "
        f"({os.path.basename(b.get('filepath', '?'))})",
        f"- **fastmlp.backend_info():** `{json.dumps(backend)}`",
        "- **Environment:** OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed for the fastmlp "
        "and numpy workers; torch and scikit-learn workers unchanged; set here: "
        + (", ".join(env_notes) if env_notes else "none of OMP_*, GOMP_*, OPENBLAS_*, "
           "FASTMLP_*, MKL_*"),
    ]


def render(s: dict, info: dict, meta: dict, *, full: bool) -> str:
    """The Markdown report; ``full`` adds every GEMM shape (the README gets key ones)."""
    out = header(info, meta) + [""]
    out += ["**Training throughput** (samples/s, median of the epochs after one warm-up "
            "epoch: at least 3, more while they add up to under "
            f"{meta.get('min_seconds', '?')} s, at most 12; "
            "Adam 1e-3, softmax cross-entropy, synthetic float32 data). native/x: speed-up "
            "of the native backend. eff. = samples/s × training FLOPs per sample / "
            "numpy float32 GEMM GFLOP/s at 1024³ with the same threads in this run "
            f"({', '.join(f'{n}t: {_fmt(v)} GFLOP/s' for n, v in s['blas_1024'].items())}); "
            "FLOPs per sample = 6 Σ in·out − 2 in₁·out₁.", ""]
    out += train_table(s) + [""]
    out += ["**GEMM float32** (GFLOP/s; ratio = fastmlp / numpy.matmul"
            + ("" if full else "; key shapes, all of them in bench/RESULTS.md") + ")", ""]
    out += gemm_table(s, "float32", None if full else _key_gemm_cases()) + [""]
    if full:
        out += ["**GEMM float64** (GFLOP/s)", ""] + gemm_table(s, "float64") + [""]
    else:
        out += ["**GEMM float64** (GFLOP/s, square)", ""]
        out += gemm_table(s, "float64", [c for c in _key_gemm_cases() if c.op == "square"])
        out += [""]
    out += ["**Inference latency** of config A (predict_proba; native vs x: how many times "
            "faster native is)", ""] + infer_table(s) + [""]
    mem_rows = s["memory"].get("native", {}).get("rows")
    out += [f"**Peak memory** of training config C ({_fmt(mem_rows)} rows, 2 epochs, "
            "1 thread) in a fresh process (getrusage ru_maxrss)", ""]
    out += memory_table(s) + [""]
    if s["disturbed"]:
        out += [DAGGER_NOTE, ""]
    notes = observations(s, meta)
    if notes:
        out += ["**Read with care** (found automatically in this run):", ""]
        out += [f"- {note}" for note in notes] + [""]
    if s["problems"]:
        out += ["**Problems in this run:**", ""] + [f"- {p}" for p in s["problems"]] + [""]
    return "\n".join(out)


def observations(s: dict, meta: dict) -> List[str]:
    """Signs of a noisy run, and the cells where fastmlp native is slower than the
    baseline it must beat (numpy.matmul for GEMM, the NumPy backend for the rest)."""
    import benchlib as bl
    notes = []
    n_timings = len(s["gemm"]) + len(s["train"]) + len(s["infer"])
    if s["disturbed"]:
        notes.append(f"{len(s['disturbed'])} of {n_timings} timings (†) ran while other "
                     "processes used the CPUs; multi-thread ones suffer most, since their "
                     "threads wait for each other")
    one, two = s["blas_1024"].get(1), s["blas_1024"].get(2)
    if one and two and two < 1.3 * one:
        notes.append(f"numpy.matmul float32 1024³ ran at {_fmt(two)} GFLOP/s on 2 threads "
                     f"against {_fmt(one)} on 1: the second core was not free, so 2-thread "
                     "efficiencies are not comparable with 1-thread ones")
    high = [f"{name} {impl} {n}t" for (name, n, impl), v in sorted(s["train"].items())
            if s["blas_1024"].get(n) and v * bl.CONFIGS[name].flops_per_sample
            > s["blas_1024"][n] * 1e9]
    if high:
        notes.append("efficiency above 100 % (" + ", ".join(high) + "): the GEMM reference "
                     "it divides by was slowed in this run, or the training epochs ran at a "
                     "quieter moment")
    slow = []
    for (name, n, impl), ours in sorted(s["train"].items()):
        theirs = s["train"].get((name, n, "numpy"))
        if impl == "native" and theirs and ours < 0.95 * theirs:
            slow.append(f"training {name} {n}t {ours / theirs:.2f}×")
    for (impl, n, rows), ours in sorted(s["infer"].items()):
        theirs = s["infer"].get(("numpy", n, rows))
        if impl == "native" and theirs and ours > theirs / 0.95:
            slow.append(f"inference {rows} rows {n}t {theirs / ours:.2f}×")
    for dtype in ("float32", "float64"):
        for n in bl.THREADS:
            ratios = []
            for case in bl.gemm_cases():
                ours = s["gemm"].get(("native", n, dtype, case.label))
                theirs = s["gemm"].get(("numpy", n, dtype, case.label))
                if ours and theirs:
                    ratios.append((ours / theirs, case.label))
            behind = sorted(r for r in ratios if r[0] < 0.95)
            if behind:
                worst = ", ".join(f"{label} {r:.2f}×" for r, label in behind[:3])
                slow.append(f"GEMM {dtype} {n}t in {len(behind)} of {len(ratios)} products "
                            f"(worst: {worst})")
    if slow:
        notes.append("native slower than numpy (ratio < 0.95): " + "; ".join(slow))
    return notes


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


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer rows and repeats, 1 round (about 2 minutes)")
    parser.add_argument("--rounds", type=int, help="paired rounds (default: quick 1, full 2)")
    parser.add_argument("--impls", default="native,numpy,torch,sklearn",
                        help="training/inference implementations (native and numpy always)")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--readme", action="store_true",
                        help="replace the table block in README.md with this run's summary")
    parser.add_argument("--from-json", metavar="FILE",
                        help="measure nothing: render the tables from a --json file")
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
    impls = [i for i in wanted if i in bl.IMPLS and bl.available(i)]
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    missing = sorted(set(wanted) - set(impls))
    if missing:
        log(f"not measured (not installed or unknown): {', '.join(missing)}")
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            saved = json.load(f)
        meta, info, raw = saved["meta"], saved["info"], saved["raw"]
        return _write(args, summarize(raw, saved.get("impls", impls)), info, meta, log)
    started = time.perf_counter()
    meta = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                mode=mode, rounds=rounds, cpu=_cpu_name(), load_before=_load(),
                min_seconds=MODES[mode]["train"]["min_seconds"],
                command=_command(sys.argv[1:] if argv is None else argv))
    info = run_worker({"kind": "info"}, log)
    raw = measure(mode, rounds, impls, log)
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
