"""Soak test of fit's checkpoints: SIGKILL a training process at random points, resume it,
repeat until it finishes, many times; the result must equal an uninterrupted run bit for bit.

    python scripts/soak_checkpoints.py --kills 200 [--seed 0] [--backend native] [--dir D]

A worker process (this script with --worker DIR) fits a fixed workload (Dense-Dropout-
Dense, Adam on a per-step schedule, EarlyStopping with restore_best_weights,
ReduceLROnPlateau, validation data) with ``checkpoint_every_steps=5`` and
``resume=True`` into DIR, then saves the final model (weights, optimizer state, History,
training_step) as DIR/result.fmlp. The driver starts workers, waits until one has
imported fastmlp and built its data, sleeps a seeded random time within one training's
duration and SIGKILLs it, until a worker finishes; then it compares the result with the
uninterrupted run (a worker with --reference: no checkpoints) and starts the next run,
until --kills kills. After each kill it checks
that the newest checkpoint loads (atomic writes) and counts the kills that left a
temporary file behind (those landed inside a checkpoint write).

Prints kills survived, runs, kills inside a write and the time; exits 1 on any mismatch
or damaged checkpoint. tests/api/test_checkpoint.py runs :func:`soak` with a few kills.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RESULT = "result.fmlp"
FIT = dict(epochs=4, batch_size=16)           # 75 steps per epoch
CHECKPOINT_EVERY_STEPS = 5


def workload(backend: str):
    """(model, fit keyword arguments) of the training every run repeats."""
    from fastmlp.train.callbacks import EarlyStopping, ReduceLROnPlateau
    from fastmlp.nn.layers import Dense, Dropout
    from fastmlp.model.sequential import Sequential
    from fastmlp.optim.optimizers import Adam
    from fastmlp.optim.schedules import ExponentialDecay

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 16))
    y = (X @ rng.normal(size=(16, 3))).argmax(axis=1)
    model = Sequential([Dense(32, "relu"), Dropout(0.2), Dense(3)], input_dim=16, seed=1,
                       backend=backend)
    callbacks = [EarlyStopping(patience=3, restore_best_weights=True),
                 ReduceLROnPlateau(patience=1, factor=0.5)]
    return model, dict(X=X[:1200], y=y[:1200], validation_data=(X[1200:], y[1200:]),
                       optimizer=Adam(ExponentialDecay(0.01, 0.02, per="step")),
                       callbacks=callbacks, **FIT)


def train(backend: str, directory=None):
    """The workload fitted (checkpointing into ``directory`` and resuming from it when
    given); prints "ready" when about to fit; returns the model."""
    from fastmlp.train import loop as training
    model, kwargs = workload(backend)
    X, y = kwargs.pop("X"), kwargs.pop("y")
    if directory is not None:
        kwargs.update(checkpoint_dir=directory, resume=True,
                      checkpoint_every_steps=CHECKPOINT_EVERY_STEPS)
    print("ready", flush=True)
    training.fit(model, X, y, **kwargs)
    return model


def differences(model, reference) -> list:
    """What differs from ``reference``, bit for bit: "weights", "optimizer" (state and
    counters), "history", "training_step"."""
    ours, theirs = model.optimizer.state_dict(), reference.optimizer.state_dict()
    arrays_equal = all(np.array_equal(ours.pop(k), theirs.pop(k)) for k in ("m", "v"))
    checks = {"weights": np.array_equal(model._params, reference._params),
              "optimizer": arrays_equal and ours == theirs,
              "history": model.history.history == reference.history.history,
              "training_step": model.training_step == reference.training_step}
    return [name for name, same in checks.items() if not same]


@dataclass
class Report:
    kills: int = 0            # workers SIGKILLed while training
    runs: int = 0             # trainings finished through kills and resumes
    kills_in_write: int = 0   # kills that left a checkpoint's temporary file behind
    mismatches: int = 0       # finished runs whose result differs from the reference
    damaged: int = 0          # kills after which the newest checkpoint did not load
    seconds: float = 0.0
    problems: list = field(default_factory=list)

    def __str__(self) -> str:
        return (f"kills survived: {self.kills}, runs: {self.runs}, kills inside a checkpoint "
                f"write: {self.kills_in_write}, mismatches: {self.mismatches}, damaged "
                f"checkpoints: {self.damaged}, time: {self.seconds:.1f} s"
                + "".join(f"\n  {problem}" for problem in self.problems))


def _check_after_kill(directory: Path, report: Report) -> None:
    from fastmlp.train.checkpoint import list_checkpoints
    from fastmlp import ModelFileError, Sequential
    report.kills_in_write += any(name.endswith(".tmp") for name in os.listdir(directory))
    files = list_checkpoints(directory)
    if files:
        try:
            Sequential.read_checkpoint(files[-1][1])
        except ModelFileError as exc:
            report.damaged += 1
            report.problems.append(str(exc))


def _finish_run(directory: Path, backend: str, duration: float, rng: random.Random,
                reference, report: Report, kills: int) -> None:
    """Start workers on ``directory`` until one finishes, SIGKILLing each after a random
    delay while fewer than ``kills`` kills were made; compare the result."""
    while True:
        worker = _worker(directory, backend)
        if report.kills < kills:
            time.sleep(rng.uniform(0.0, duration))
            if worker.poll() is None:
                worker.kill()
                worker.wait()
                worker.stdout.close()
                report.kills += 1
                _check_after_kill(directory, report)
                continue
        report.runs += 1
        different = differences(_finished(worker, directory), reference)
        if different:
            report.mismatches += 1
            report.problems.append(f"{directory.name}: {different} differ")
        return


def _worker(directory: Path, backend: str, *options: str) -> subprocess.Popen:
    """A worker process on ``directory``, started once it has printed "ready"."""
    worker = subprocess.Popen([sys.executable, __file__, "--worker", str(directory),
                               "--backend", backend, *options], stdout=subprocess.PIPE,
                              text=True)
    ready = worker.stdout.readline().strip()
    if ready != "ready":
        raise RuntimeError(f"worker on {directory} did not start: {ready!r}")
    return worker


def _finished(worker: subprocess.Popen, directory: Path):
    """The result of a worker left to finish."""
    from fastmlp import load
    worker.stdout.close()
    if worker.wait() != 0:
        raise RuntimeError(f"worker on {directory} exited with status {worker.returncode}")
    return load(directory / RESULT)


def soak(kills: int, seed: int, directory, backend: str = "native") -> Report:
    """Runs until ``kills`` kills; the run the last kill interrupts is finished without
    more kills, so every run is compared. The reference and the duration of one run come
    from workers too (fresh processes, as the killed ones: the same ISA and threads)."""
    directory = Path(directory)
    started = time.perf_counter()
    reference = _finished(_worker(directory / "reference", backend, "--reference"),
                          directory / "reference")
    timing = _worker(directory / "timing", backend)
    begin = time.perf_counter()
    _finished(timing, directory / "timing")
    duration = time.perf_counter() - begin
    rng, report = random.Random(seed), Report()
    while report.kills < kills:
        _finish_run(directory / f"run{report.runs:04d}", backend, duration, rng, reference,
                    report, kills)
    report.seconds = time.perf_counter() - started
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="native", choices=["native", "numpy"])
    parser.add_argument("--dir", help="where the runs checkpoint (default: a temporary one)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        os.makedirs(args.worker, exist_ok=True)
        model = train(args.backend, None if args.reference else args.worker)
        model.save(os.path.join(args.worker, RESULT))
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        report = soak(args.kills, args.seed, args.dir or scratch, args.backend)
    print(report)
    return 0 if report.mismatches == 0 and report.damaged == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
