#!/usr/bin/env python
"""Streaming training from .npy files (fit on a path / fastmlp.sources.Npy) against the
in-memory fit: throughput with the file in the page cache and evicted from it, peak
anonymous memory on a file larger than the buffers, and accuracy on a label-sorted file.
Prints Markdown tables (``--output FILE`` writes them too).

    python bench/stream_report.py                 # full run (~1 GB and a 10 GB file; < 30 min)
    python bench/stream_report.py --quick         # small sizes, a smoke run (~1 min)
    python bench/stream_report.py --big-gb 0      # without the big file

Sections:

1. **Throughput, warm page cache**: a float32 .npy file (``--data-mb`` of X, 784
   features, 10 classes: a random teacher network's argmax labels, 10 % of them replaced
   by random ones), the model 784-256-128-10 ReLU, Adam(1e-3), batch 128, per thread
   count (``--threads``): a warm-up streamed epoch (the survey pass, Adam's first steps,
   the file read into the page cache) and a warm-up in-memory epoch, then ``--rounds``
   rounds of one streamed epoch (``fit("X.npy", "y.npy")``, default shuffle buffer) and
   one in-memory epoch (``fit(X, y)`` on the arrays ``np.load`` read), alternating which
   goes first; each fit call is timed whole (wall clock). The table shows the medians and
   the ratio of the medians.
2. **Cold page cache**: the same model, ``--cold-rounds`` streamed epochs each after
   ``posix_fadvise(POSIX_FADV_DONTNEED)`` on X.npy and y.npy (the resident fraction
   after eviction, from ``fincore``, is shown when available), and the raw cold read
   speed of X.npy: ``read()`` of 8 MiB blocks in order, and the stream's own access (a
   memmap's ~8 MiB row runs copied out in a shuffled order).
3. **Memory on a big file**: ``--big-gb`` GB of float32 X written with
   ``np.lib.format.open_memmap`` in chunks, then evicted; in a fresh process (a clean
   baseline) a 784-64-10 model (Adam, batch 1024) trains one streamed epoch on it while a
   thread samples ``RssAnon`` of /proc/self/status every 20 ms. A fresh classifier's fit
   first surveys the whole file (its labels), so the fit reads the file twice; the peak
   is shown for the survey and the epoch apart. The survey leaves the file in the page
   cache when memory allows (the fit maps it, so it cannot be evicted before the epoch):
   the fraction cached when the epoch begins is shown (``fincore``), and the same model's
   in-memory speed on the first rows, after the measurement. The file is deleted at the
   end.
4. **Accuracy on a label-sorted file**: 10-class teacher data, ``--parity-rows`` x 32,
   the file's rows sorted by label, a separate shuffled test set; a 32-64-10 model
   trained ``--parity-epochs`` epochs in memory (fully shuffled) and streamed from
   ``Npy(..., chunk_rows=2048)`` with each ``--buffers`` shuffle buffer, mean test
   accuracy over ``--seeds`` seeds.

Data files go to a new directory under ``--dir`` (default: the temporary directory; it
should be on a disk, not tmpfs, for the cold measurements), removed at the end.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from statistics import median, pstdev
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

import benchlib as bl

HERE = os.path.dirname(os.path.abspath(__file__))
RESULT_PREFIX = "STREAM-RESULT "
N_CLASSES = 10
THROUGHPUT_DIMS = (784, 256, 128, 10)
BIG_DIMS = (784, 64, 10)
PARITY_DIMS = (32, 64, 10)
LEARNING_RATE = 1e-3
READ_BLOCK = 8 << 20

MODES = {
    "full": dict(data_mb=1000.0, rounds=7, cold_rounds=3, big_gb=10.0, parity_rows=200_000,
                 parity_test=20_000, seeds=5, parity_epochs=5,
                 buffers="1024,8192,65536,200000"),
    "quick": dict(data_mb=20.0, rounds=2, cold_rounds=1, big_gb=0.2, parity_rows=20_000,
                  parity_test=5_000, seeds=2, parity_epochs=2, buffers="1024,8192,20000"),
}


# =========================================================================== machine
def machine_line(threads: Sequence[int]) -> str:
    import fastmlp
    info = fastmlp.backend_info()
    return (f"{bl.cpu_name()}, {os.cpu_count()} logical CPUs, fastmlp native {info.get('isa')}, "
            f"fastmlp.threads {','.join(map(str, threads))}; Python {platform.python_version()}, "
            f"NumPy {np.__version__}")


def filesystem_of(path: str) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/mounts)."""
    path, best, kind = os.path.realpath(path), "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and (path == parts[1] or path.startswith(
                        parts[1].rstrip("/") + "/")) and len(parts[1]) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


# =========================================================================== data
def _teacher(dim: int, classes: int, seed: int, hidden: int = 64):
    """A random teacher network: tanh hidden units (symmetric, so the classes come out
    about balanced) and unit-norm output columns."""
    rng = np.random.default_rng([seed, 7])
    W1 = (rng.standard_normal((dim, hidden)) / math.sqrt(dim)).astype(np.float32)
    W2 = rng.standard_normal((hidden, classes))
    W2 = (W2 / np.linalg.norm(W2, axis=0)).astype(np.float32)
    return W1, W2


def teacher_chunks(rows: int, dim: int, classes: int = N_CLASSES, seed: int = 0,
                   noise: float = 0.1, chunk_rows: int = 32768):
    """(X, y) in chunks of ``chunk_rows``: X standard normal float32, y int64 the teacher's
    argmax, a ``noise`` fraction of them replaced by random labels. Deterministic in the
    seed and the chunk size."""
    W1, W2 = _teacher(dim, classes, seed)
    rng = np.random.default_rng([seed, 11])
    for start in range(0, rows, chunk_rows):
        n = min(chunk_rows, rows - start)
        X = rng.standard_normal((n, dim), dtype=np.float32)
        y = np.argmax(np.tanh(X @ W1) @ W2, axis=1).astype(np.int64)
        noisy = rng.random(n) < noise
        y[noisy] = rng.integers(0, classes, size=int(noisy.sum()))
        yield X, y


def teacher_task(rows: int, dim: int, classes: int = N_CLASSES, seed: int = 0,
                 noise: float = 0.1) -> Tuple[np.ndarray, np.ndarray]:
    parts = list(teacher_chunks(rows, dim, classes, seed, noise))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def write_task(directory: str, name: str, rows: int, dim: int, seed: int = 0,
               noise: float = 0.1, chunk_rows: int = 32768) -> Tuple[str, str]:
    """Teacher data written to ``name``_X.npy and ``name``_y.npy with open_memmap, a chunk
    at a time (the memory a chunk needs, whatever ``rows``); returns the two paths."""
    X_path = os.path.join(directory, f"{name}_X.npy")
    y_path = os.path.join(directory, f"{name}_y.npy")
    X_file = np.lib.format.open_memmap(X_path, mode="w+", dtype=np.float32, shape=(rows, dim))
    y_file = np.lib.format.open_memmap(y_path, mode="w+", dtype=np.int64, shape=(rows,))
    try:
        start = 0
        for X, y in teacher_chunks(rows, dim, seed=seed, noise=noise, chunk_rows=chunk_rows):
            X_file[start:start + len(X)] = X
            y_file[start:start + len(y)] = y
            start += len(X)
        X_file.flush()
        y_file.flush()
    finally:
        del X_file, y_file
    return X_path, y_path


# =========================================================================== page cache
def evict(*paths: str) -> None:
    """Drop the files' pages from the page cache (written back first)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_fraction(path: str) -> Optional[float]:
    """The fraction of the file in the page cache (util-linux ``fincore``), or None."""
    tool = shutil.which("fincore")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "--bytes", "--noheadings", "--raw", "--output", "RES",
                              path], capture_output=True, text=True, timeout=30)
        return int(out.stdout.split()[0]) / max(1, os.path.getsize(path))
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def read_speed(path: str, cold: bool = True, block: int = READ_BLOCK) -> float:
    """MB/s of read() in ``block``-byte pieces, in order, after eviction when ``cold``."""
    if cold:
        evict(path)
    buffer = bytearray(block)
    total, start = 0, time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            got = f.readinto(buffer)
            if not got:
                break
            total += got
    return total / (time.perf_counter() - start) / 1e6


def memmap_chunk_speed(path: str, cold: bool = True, chunk_bytes: int = READ_BLOCK,
                       seed: int = 0) -> float:
    """MB/s of the stream's access to an .npy file: runs of ~``chunk_bytes`` of rows of a
    read-only memmap copied out, in a shuffled order (as fastmlp.sources.Npy and the
    block filling do), after eviction when ``cold``."""
    if cold:
        evict(path)
    start = time.perf_counter()
    X = np.load(path, mmap_mode="r")
    rows = max(1, chunk_bytes // (X.shape[1] * X.dtype.itemsize))
    out = np.empty((rows, X.shape[1]), X.dtype)
    order = np.random.default_rng(seed).permutation(-(-len(X) // rows))
    for i in order:
        part = X[i * rows:(i + 1) * rows]
        out[:len(part)] = part
    seconds = time.perf_counter() - start
    nbytes = X.nbytes
    del X
    return nbytes / seconds / 1e6


# =========================================================================== models
def make_model(dims: Sequence[int], seed: int = 0):
    import fastmlp
    layers = [fastmlp.Dense(units, "relu") for units in dims[1:-1]]
    layers.append(fastmlp.Dense(dims[-1]))
    return fastmlp.Sequential(layers, input_dim=dims[0], loss="softmax_cross_entropy",
                              seed=seed)


def _last(history, key: str) -> float:
    return float(history.history[key][-1])


# =========================================================================== 1 and 2
def throughput(X_path: str, y_path: str, threads: Sequence[int] = (1, 2), rounds: int = 5,
               cold_rounds: int = 3, batch: int = 128, shuffle_buffer: Optional[int] = None,
               dims: Sequence[int] = THROUGHPUT_DIMS, log=print) -> Dict[int, dict]:
    """Sections 1 and 2 per thread count: samples/s of every timed streamed and in-memory
    epoch (warm), of the cold streamed epochs, and the History's loss and accuracy."""
    import fastmlp
    X, y = np.load(X_path), np.load(y_path)
    rows = len(X)
    results = {}
    for n in threads:
        with fastmlp.threads(n):
            model = make_model(dims)

            def streamed(optimizer=None):
                return model.fit(X_path, y_path, epochs=1, batch_size=batch,
                                 optimizer=optimizer, shuffle_buffer=shuffle_buffer, verbose=0)

            def in_memory():
                return model.fit(X, y, epochs=1, batch_size=batch, verbose=0)

            def timed(run):
                start = time.perf_counter()
                history = run()
                seconds = time.perf_counter() - start
                return dict(samples_per_s=rows / seconds, seconds=seconds,
                            loss=_last(history, "loss"), accuracy=_last(history, "accuracy"))

            first = timed(lambda: streamed(fastmlp.Adam(LEARNING_RATE)))   # survey + cache
            warm = timed(in_memory)
            result = dict(warmup=[first, warm], streamed=[], in_memory=[], cold=[])
            for r in range(rounds):
                runs = [("streamed", streamed), ("in_memory", in_memory)]
                for name, run in runs if r % 2 == 0 else runs[::-1]:
                    result[name].append(timed(run))
            log(f"  {n} thread(s), warm: streamed "
                f"{median(t['samples_per_s'] for t in result['streamed']):,.0f}/s, in memory "
                f"{median(t['samples_per_s'] for t in result['in_memory']):,.0f}/s")
            for _ in range(cold_rounds):
                evict(X_path, y_path)
                resident = resident_fraction(X_path)
                cold = timed(streamed)
                cold["resident_before"] = resident
                result["cold"].append(cold)
            if cold_rounds:
                log(f"  {n} thread(s), cold: streamed "
                    f"{median(t['samples_per_s'] for t in result['cold']):,.0f}/s")
            result["evaluate"] = model.evaluate(X[:20000], y[:20000])
        results[n] = result
    return results


def read_speeds(X_path: str, rounds: int = 1) -> dict:
    """Raw speeds of X.npy: cold read() in order, cold and warm memmap chunks shuffled."""
    out = dict(cold_read=[], cold_memmap_chunks=[], warm_memmap_chunks=[], warm_read=[])
    for r in range(rounds):
        out["cold_read"].append(read_speed(X_path, cold=True))
        out["cold_memmap_chunks"].append(memmap_chunk_speed(X_path, cold=True, seed=r))
        out["warm_read"].append(read_speed(X_path, cold=False))
        out["warm_memmap_chunks"].append(memmap_chunk_speed(X_path, cold=False, seed=r))
    return out


# =========================================================================== 3
def rss_anon() -> int:
    """This process's RssAnon in bytes (/proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no RssAnon")


class RssSampler:
    """RssAnon sampled every ``interval`` s on a thread while the ``with`` runs:
    ``samples`` a list of (perf_counter time, bytes)."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter(), rss_anon()))
            if self._stop.wait(self.interval):
                break

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter(), rss_anon()))

    def peak(self, start: float = -math.inf, end: float = math.inf) -> int:
        return max((v for t, v in self.samples if start <= t <= end), default=0)


def peak_memory(X_path: str, y_path: str, dims: Sequence[int] = BIG_DIMS, batch: int = 1024,
                threads: int = 2, shuffle_buffer: Optional[int] = None,
                interval: float = 0.02, reference_rows: int = 131072) -> dict:
    """One streamed epoch of a fresh model on the files, RssAnon sampled meanwhile: the
    baseline (before fit), the peak during the survey pass and during the epoch, times;
    then (after the peak) the median of 3 in-memory epochs of the first ``reference_rows``
    rows, the training's own speed."""
    import fastmlp
    import fastmlp.train.callbacks as callbacks

    class Marks(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.resident = resident_fraction(X_path)      # what the survey left cached
            self.begin = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.end = time.perf_counter()

    with fastmlp.threads(threads):
        model = make_model(dims)
        marks = Marks()
        baseline = rss_anon()
        start = time.perf_counter()
        with RssSampler(interval) as sampler:
            history = model.fit(X_path, y_path, epochs=1, batch_size=batch,
                                optimizer=fastmlp.Adam(LEARNING_RATE),
                                shuffle_buffer=shuffle_buffer, verbose=0, callbacks=[marks])
        end = time.perf_counter()
        # the training's own speed: an in-memory epoch of the first rows (after the peak)
        X_ref = np.array(np.load(X_path, mmap_mode="r")[:reference_rows])
        y_ref = np.array(np.load(y_path, mmap_mode="r")[:reference_rows])
        speeds = []
        for _ in range(3):
            ref_start = time.perf_counter()
            model.fit(X_ref, y_ref, epochs=1, batch_size=batch, verbose=0)
            speeds.append(len(X_ref) / (time.perf_counter() - ref_start))
        reference = median(speeds)
        del X_ref, y_ref
    rows = len(np.load(y_path, mmap_mode="r"))
    X_bytes = os.path.getsize(X_path)
    return dict(rows=rows, file_bytes=X_bytes + os.path.getsize(y_path),
                baseline=baseline, peak=sampler.peak(),
                peak_survey=sampler.peak(start, marks.begin),
                peak_epoch=sampler.peak(marks.begin, end), samples=len(sampler.samples),
                fit_seconds=end - start, survey_seconds=marks.begin - start,
                epoch_seconds=marks.end - marks.begin, params=int(model.n_params),
                model_bytes=int(model.n_params) * model.dtype.itemsize * 4,
                loss=_last(history, "loss"), accuracy=_last(history, "accuracy"),
                threads=threads, batch=batch, in_memory_samples_per_s=reference,
                resident_at_epoch=marks.resident,
                in_memory_rows=min(rows, reference_rows))


def big_file_memory(directory: str, gb: float, threads: int, log=print) -> dict:
    """Section 3: the file written (and evicted), peak_memory in a fresh process, the file
    deleted whatever happens."""
    rows = max(1, int(gb * 1e9) // (BIG_DIMS[0] * 4))
    paths = (os.path.join(directory, "big_X.npy"), os.path.join(directory, "big_y.npy"))
    try:
        start = time.perf_counter()
        write_task(directory, "big", rows, BIG_DIMS[0], seed=1)
        evict(*paths)
        write_seconds = time.perf_counter() - start
        log(f"  wrote {os.path.getsize(paths[0]) / 1e9:.2f} GB in {write_seconds:.0f} s; "
            f"training in a fresh process")
        spec = dict(X=paths[0], y=paths[1], threads=threads)
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-worker",
                               json.dumps(spec)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the memory worker failed:\n{done.stderr[-3000:]}")
        result = [json.loads(line[len(RESULT_PREFIX):]) for line in done.stdout.splitlines()
                  if line.startswith(RESULT_PREFIX)][-1]
        result["write_seconds"] = write_seconds
        return result
    finally:
        for path in paths:
            if os.path.exists(path):
                os.remove(path)


# =========================================================================== 4
def sorted_task(directory: str, rows: int, test_rows: int, dim: int = 32, seed: int = 0,
                noise: float = 0.0):
    """Teacher data with its file's rows sorted by label, and a shuffled test set (other
    rows of the same teacher): (X_path, y_path, X_train, y_train, X_test, y_test)."""
    X, y = teacher_task(rows + test_rows, dim, seed=seed, noise=noise)
    X_test, y_test = X[rows:], y[rows:]
    order = np.argsort(y[:rows], kind="stable")
    X, y = np.ascontiguousarray(X[:rows][order]), y[:rows][order]
    X_path, y_path = (os.path.join(directory, "sorted_X.npy"),
                      os.path.join(directory, "sorted_y.npy"))
    np.save(X_path, X)
    np.save(y_path, y)
    return X_path, y_path, X, y, X_test, y_test


def parity(directory: str, rows: int = 200_000, test_rows: int = 20_000,
           buffers: Sequence[int] = (1024, 8192, 65536), seeds: int = 5, epochs: int = 5,
           chunk_rows: int = 2048, batch: int = 128, dims: Sequence[int] = PARITY_DIMS,
           threads: int = 1, log=print) -> dict:
    """Section 4: test accuracy of the in-memory fit and of the streamed fit per shuffle
    buffer, for each seed (the model's: initial weights and shuffling)."""
    import fastmlp
    X_path, y_path, X, y, X_test, y_test = sorted_task(directory, rows, test_rows, dims[0])
    accuracy: Dict[str, List[float]] = {"in memory": []}
    for b in buffers:
        accuracy[str(b)] = []
    try:
        with fastmlp.threads(threads):
            for seed in range(seeds):
                model = make_model(dims, seed)
                model.fit(X, y, epochs=epochs, batch_size=batch,
                          optimizer=fastmlp.Adam(LEARNING_RATE), verbose=0)
                accuracy["in memory"].append(model.evaluate(X_test, y_test)["accuracy"])
                for b in buffers:
                    model = make_model(dims, seed)
                    model.fit(fastmlp.sources.Npy(X_path, y_path, chunk_rows=chunk_rows),
                              epochs=epochs, batch_size=batch, shuffle_buffer=b,
                              optimizer=fastmlp.Adam(LEARNING_RATE), verbose=0)
                    accuracy[str(b)].append(model.evaluate(X_test, y_test)["accuracy"])
                log(f"  seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}"
                                                   for k, v in accuracy.items()))
    finally:
        for path in (X_path, y_path):
            os.remove(path)
    counts = np.bincount(y, minlength=N_CLASSES)
    return dict(accuracy=accuracy, rows=rows, test_rows=test_rows, chunk_rows=chunk_rows,
                batch=batch, epochs=epochs, dims=list(dims), buffers=list(buffers),
                class_share=[float(c) / rows for c in counts],
                majority=float(np.bincount(y_test, minlength=N_CLASSES).max() / len(y_test)))


def smallest_within(result: dict, points: float = 0.5) -> Optional[int]:
    """The smallest buffer whose mean accuracy is within ``points`` percentage points of
    the in-memory mean (or above it), else None."""
    reference = float(np.mean(result["accuracy"]["in memory"]))
    for b in sorted(result["buffers"]):
        if float(np.mean(result["accuracy"][str(b)])) >= reference - points / 100:
            return b
    return None


# =========================================================================== tables
def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def _mb(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def _speed(runs: List[dict]) -> float:
    """The median samples/s of timed epochs."""
    return median(run["samples_per_s"] for run in runs)


def render_throughput(results: Dict[int, dict], rows: int, row_bytes: int, head: str,
                      target: float = 0.8) -> str:
    lines = [head, "",
             f"**Throughput, warm page cache** — {rows:,} rows x 784 float32 "
             f"({rows * 784 * 4 / 1e9:.2f} GB of X), 784-256-128-10 ReLU, Adam, batch 128, "
             f"one epoch per fit call timed whole; medians of "
             f"{len(next(iter(results.values()))['streamed'])} alternating rounds after a "
             f"warm-up epoch of each. Target: streamed >= {target}x in memory.", "",
             "| threads | streamed (samples/s) | in memory (samples/s) | streamed / in memory "
             "| median of the rounds' ratios | streamed MB/s of X | target |",
             "|---:|---:|---:|---:|---:|---:|:---:|"]
    for n, r in results.items():
        s, m = _speed(r["streamed"]), _speed(r["in_memory"])
        paired = median(a["samples_per_s"] / b["samples_per_s"]
                        for a, b in zip(r["streamed"], r["in_memory"]))
        lines.append(f"| {n} | {_fmt(s)} | {_fmt(m)} | {s / m:.2f}x | {paired:.2f}x | "
                     f"{s * row_bytes / 1e6:,.0f} | {'met' if s / m >= target else 'MISSED'} |")
    spread = "; ".join(
        f"{n}t streamed {min(t['samples_per_s'] for t in r['streamed']):,.0f}–"
        f"{max(t['samples_per_s'] for t in r['streamed']):,.0f}, in memory "
        f"{min(t['samples_per_s'] for t in r['in_memory']):,.0f}–"
        f"{max(t['samples_per_s'] for t in r['in_memory']):,.0f}"
        for n, r in results.items())
    lines += ["", f"Range over rounds: {spread}. Training accuracy of the last streamed / "
              "in-memory epoch: " + "; ".join(
                  f"{n}t {r['streamed'][-1]['accuracy']:.3f} / {r['in_memory'][-1]['accuracy']:.3f}"
                  for n, r in results.items()) + "."]
    return "\n".join(lines)


def render_cold(results: Dict[int, dict], speeds: dict, rows: int, row_bytes: int,
                head: str) -> str:
    lines = [head, "",
             f"**Cold page cache** — the same files and models; each streamed epoch after "
             f"posix_fadvise(DONTNEED) on X.npy and y.npy; medians of "
             f"{len(next(iter(results.values()))['cold'])} epochs.", "",
             "| threads | cold streamed (samples/s) | implied MB/s of X+y | warm streamed "
             "(samples/s) | cold / warm | X resident after eviction |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n, r in results.items():
        c, w = _speed(r["cold"]), _speed(r["streamed"])
        res = [t["resident_before"] for t in r["cold"] if t["resident_before"] is not None]
        lines.append(f"| {n} | {_fmt(c)} | {c * row_bytes / 1e6:,.0f} | {_fmt(w)} | "
                     f"{c / w:.2f}x | {f'{max(res):.1%}' if res else 'n/a'} |")
    lines += ["", "Raw speed of X.npy (MB/s, median of "
              f"{len(speeds['cold_read'])}): ", "",
              "| access | cold | warm |", "|---|---:|---:|",
              f"| read() of 8 MiB blocks in order | {_fmt(median(speeds['cold_read']))} | "
              f"{_fmt(median(speeds['warm_read']))} |",
              f"| memmap ~8 MiB row runs, shuffled order (the stream's reads) | "
              f"{_fmt(median(speeds['cold_memmap_chunks']))} | "
              f"{_fmt(median(speeds['warm_memmap_chunks']))} |"]
    return "\n".join(lines)


def render_memory(r: dict, head: str, limit: int = 1 << 30) -> str:
    over = r["peak"] - r["baseline"]
    resident = "n/a" if r.get("resident_at_epoch") is None else f"{r['resident_at_epoch']:.0%}"
    ok = r["peak"] < limit + r["model_bytes"]
    return "\n".join([
        head, "",
        f"**Memory on a big file** — {r['file_bytes'] / 1e9:.2f} GB on disk ({r['rows']:,} rows "
        f"x 784 float32 + int64 labels), evicted from the page cache after writing; a fresh "
        f"process trains 784-64-10 ReLU, Adam, batch {r['batch']}, {r['threads']} thread(s), "
        f"one full streamed epoch (default shuffle buffer) after fit's survey pass (a fresh "
        f"classifier's labels: a read of y.npy). RssAnon of /proc/self/status "
        f"sampled every 20 ms ({r['samples']:,} samples).", "",
        "| | value |", "|---|---:|",
        f"| RssAnon before fit (baseline) | {_mb(r['baseline'])} |",
        f"| peak RssAnon, survey pass | {_mb(r['peak_survey'])} |",
        f"| peak RssAnon, epoch | {_mb(r['peak_epoch'])} |",
        f"| peak - baseline | {_mb(over)} |",
        f"| model (weights, gradients, Adam's 2 moments) | {r['model_bytes'] / 2**20:,.2f} MiB |",
        f"| limit: 1 GiB + model | {'met' if ok else 'MISSED'} |",
        f"| survey / epoch / whole fit | {r['survey_seconds']:.1f} s / "
        f"{r['epoch_seconds']:.1f} s / {r['fit_seconds']:.1f} s |",
        f"| epoch throughput | {r['rows'] / r['epoch_seconds']:,.0f} samples/s, "
        f"{r['file_bytes'] / r['epoch_seconds'] / 1e6:,.0f} MB/s |",
        f"| X in the page cache when the epoch began | {resident} |",
        f"| the same model in memory (median of 3 epochs of the first "
        f"{r['in_memory_rows']:,} rows, after) | {r['in_memory_samples_per_s']:,.0f} "
        f"samples/s |",
        f"| writing the file (open_memmap, chunks of 32,768 rows) | {r['write_seconds']:.0f} s |",
        f"| training loss / accuracy of the epoch | {r['loss']:.3f} / {r['accuracy']:.3f} |"])


def render_parity(r: dict, head: str) -> str:
    acc = r["accuracy"]
    reference = float(np.mean(acc["in memory"]))
    seeds = len(acc["in memory"])
    lines = [head, "",
             f"**Accuracy on a label-sorted file** — {r['rows']:,} rows x 32 float32, 10 "
             f"classes (a tanh teacher's argmax; largest class {max(r['class_share']):.1%}), "
             f"the file's rows sorted by label; test: {r['test_rows']:,} other rows, shuffled "
             f"(majority class {r['majority']:.1%}). 32-64-10 ReLU, Adam, batch {r['batch']}, "
             f"{r['epochs']} epochs; streamed from Npy(chunk_rows={r['chunk_rows']:,}). Test "
             f"accuracy, mean ± sd over {seeds} seeds.", "",
             "| training | shuffle buffer (rows) | test accuracy | vs in memory (points) |",
             "|---|---:|---:|---:|",
             f"| in memory (fully shuffled) | — | {100 * reference:.2f} ± "
             f"{100 * pstdev(acc['in memory']):.2f} | — |"]
    for b in r["buffers"]:
        mean = float(np.mean(acc[str(b)]))
        lines.append(f"| streamed | {b:,} | {100 * mean:.2f} ± {100 * pstdev(acc[str(b)]):.2f} | "
                     f"{100 * (mean - reference):+.2f} |")
    best = smallest_within(r)
    lines += ["", "Smallest buffer within 0.5 points of in memory: "
              + (f"**{best:,} rows** ({best / r['chunk_rows']:.1f} chunks of "
                 f"{r['chunk_rows']:,} rows)." if best is not None else "**none** of those tried.")]
    return "\n".join(lines)


# =========================================================================== main
def _memory_worker(spec: str) -> None:
    spec = json.loads(spec)
    result = peak_memory(spec["X"], spec["y"], threads=spec["threads"])
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--output", help="also write the Markdown to this file")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the data files go (a new directory in it, removed)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--data-mb", type=float, help="MB of X for sections 1-2")
    parser.add_argument("--rounds", type=int, help="warm rounds (section 1)")
    parser.add_argument("--cold-rounds", type=int, help="cold epochs (section 2)")
    parser.add_argument("--shuffle-buffer", type=int, default=None,
                        help="sections 1-2 (default: fit's, 128 MiB of rows)")
    parser.add_argument("--big-gb", type=float, help="GB of X for section 3 (0: skip)")
    parser.add_argument("--parity-rows", type=int)
    parser.add_argument("--parity-test", type=int, help="test rows of section 4")
    parser.add_argument("--parity-epochs", type=int)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--buffers", help="section 4's shuffle buffers, comma-separated")
    parser.add_argument("--sections", default="1,2,3,4", help="which to run (2 needs 1)")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        _memory_worker(args.memory_worker)
        return
    mode = MODES["quick" if args.quick else "full"]
    for key, value in mode.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    threads = [int(t) for t in args.threads.split(",")]
    sections = {int(s) for s in args.sections.split(",")}
    command = " ".join(shlex.quote(a) for a in ["python", "bench/stream_report.py",
                                                *(sys.argv[1:] if argv is None else argv)])
    machine = machine_line(threads)
    head = f"_`{command}` — {machine}_"
    log = lambda text: print(text, file=sys.stderr, flush=True)   # noqa: E731
    directory = tempfile.mkdtemp(prefix="fastmlp-stream-", dir=args.dir)
    fs = filesystem_of(directory)
    started = time.perf_counter()
    parts = ["## Streaming training (bench/stream_report.py)",
             f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC: "
             f"`{command}`",
             f"Machine: {machine}. Data files on {fs} ({directory}); load average before "
             f"{os.getloadavg()[0]:.2f}."]
    if fs in ("tmpfs", "ramfs"):
        parts.append("**Warning**: the data directory is in memory (tmpfs): the cold "
                     "measurements read memory, not a disk. Give --dir on a disk.")

    def emit(text: str) -> None:
        parts.append(text)
        print("\n" + text + "\n", flush=True)

    print("\n\n".join(parts), flush=True)
    try:
        if sections & {1, 2}:
            rows = max(1024, int(args.data_mb * 1e6) // (784 * 4))
            log(f"[1-2] writing {rows:,} x 784 float32 ...")
            X_path, y_path = write_task(directory, "train", rows, 784)
            row_bytes = 784 * 4 + 8
            log("[1] warm throughput")
            results = throughput(X_path, y_path, threads, args.rounds,
                                 args.cold_rounds if 2 in sections else 0,
                                 shuffle_buffer=args.shuffle_buffer, log=log)
            emit(render_throughput(results, rows, 784 * 4, head))
            if 2 in sections:
                log("[2] raw read speeds")
                speeds = read_speeds(X_path, rounds=max(1, args.cold_rounds))
                emit(render_cold(results, speeds, rows, row_bytes, head))
            for path in (X_path, y_path):
                os.remove(path)
        if 3 in sections and args.big_gb > 0:
            log(f"[3] big file, {args.big_gb} GB")
            emit(render_memory(big_file_memory(directory, args.big_gb, max(threads), log=log),
                               head))
        if 4 in sections:
            log("[4] accuracy on a label-sorted file")
            buffers = [int(b) for b in args.buffers.split(",")]
            emit(render_parity(parity(directory, args.parity_rows, args.parity_test, buffers,
                                      args.seeds, args.parity_epochs, log=log), head))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    emit(f"_{(time.perf_counter() - started) / 60:.1f} minutes; load average after "
         f"{os.getloadavg()[0]:.2f}._")
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
