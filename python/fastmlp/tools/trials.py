"""A search's trials and who runs them: :class:`Trial` (one trained and scored parameter
set, public path ``fastmlp.search.Trial``), :func:`run_trial`, and the runners
(:func:`runner`) for the serial, local-process and Dask executors."""
from __future__ import annotations

import math
import os
import socket
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .._validation import check_int
from ..backends.runtime import threads
from ..errors import DivergenceError
from .mlp_builder import unpack_built

__all__ = ["Runner", "Task", "Trial", "run_trial", "runner", "trial_seed"]


@dataclass(frozen=True)
class Trial:
    """One trained and scored parameter set.

    ``round`` and ``index`` count from 0; ``seed`` is the model's seed; ``dev_error`` is
    ``1 - model.score`` on the dev set (1 - accuracy, or 1 - R^2 for mse) and
    ``dev_loss`` the mean dev data loss (both inf when training diverged, with the
    message in ``failure``); ``seconds`` the time to build, train and score; ``pid`` and
    ``host`` the process that ran it.
    """

    round: int
    index: int
    params: Dict[str, Any] = field(hash=False)   # hashed without it (a dict is not)
    seed: int
    dev_error: float
    dev_loss: float
    seconds: float
    pid: int
    host: str
    failure: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether training finished (did not diverge)."""
        return self.failure is None


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one trial: its place, parameters, model seed, epochs and
    the builder."""

    round: int
    index: int
    params: Dict[str, Any]
    seed: int
    epochs: int
    build: Callable


def trial_seed(seed: int, round_: int, index: int) -> int:
    """The model seed of trial ``index`` of round ``round_``: a pure function of the three."""
    return int(np.random.SeedSequence([seed, round_, index]).generate_state(1, np.uint64)[0])


def run_trial(task: Task, data: Tuple[np.ndarray, ...]) -> Trial:
    """Build, train (one native thread) and score one parameter set."""
    X, y, X_dev, y_dev = data
    with threads(1):                   # (loads the native backend on a worker's first trial)
        started = time.perf_counter()
        model, fit_kwargs = unpack_built(task.build(task.params, task.seed), task.build)
        try:
            model.fit(X, y, **{"epochs": task.epochs, "verbose": 0, **fit_kwargs})
        except DivergenceError as exc:
            error = loss = math.inf
            failure: Optional[str] = str(exc)
        else:
            scores = model.evaluate(X_dev, y_dev)
            loss = scores.pop("loss")
            error, failure = 1.0 - scores.popitem()[1], None
        seconds = time.perf_counter() - started
    return Trial(task.round, task.index, dict(task.params), task.seed, error, loss, seconds,
                 os.getpid(), socket.gethostname(), failure)


# ------------------------------------------------------------------ executors
_WORKER_DATA: Optional[Tuple[np.ndarray, ...]] = None   # a pool worker's copy of the data


def _install_data(data: Tuple[np.ndarray, ...]) -> None:
    global _WORKER_DATA
    _WORKER_DATA = data


def _run_trial_in_worker(task: Task) -> Trial:
    return run_trial(task, _WORKER_DATA)


Runner = Callable[[List[Task]], List[Trial]]


@contextmanager
def _process_pool(n_jobs: int, data) -> Iterator[Runner]:
    """A local pool of ``n_jobs`` processes (forkserver, else spawn: never fork after
    OpenMP), each given the data once by its initializer."""
    method = "forkserver" if "forkserver" in get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(n_jobs, mp_context=get_context(method),
                               initializer=_install_data, initargs=(data,))
    try:
        yield lambda tasks: list(pool.map(_run_trial_in_worker, tasks))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _dask(client, data) -> Iterator[Runner]:
    """Trials as tasks on a Dask cluster; the data is scattered to every worker once,
    under a key of its own (hash=False: a content key would be shared with other
    scatters of the same arrays, and released under their feet)."""
    data_future = client.scatter([data], broadcast=True, hash=False)[0]

    def run(tasks: List[Task]) -> List[Trial]:
        futures = [client.submit(run_trial, task, data_future, pure=False) for task in tasks]
        try:
            return client.gather(futures)
        except BaseException:          # a trial failed (or Ctrl-C): stop the others
            client.cancel(futures)
            raise

    try:
        yield run
    finally:
        data_future.release()


def _dask_client_type():
    """dask.distributed's Client class if distributed is imported (a user holding a
    Client has imported it), else None."""
    distributed = sys.modules.get("distributed")
    return None if distributed is None else distributed.Client


@contextmanager
def runner(executor, n_jobs: Optional[int], trials: int, data) -> Iterator[Runner]:
    """The runner for ``executor`` (see :func:`random_search`)."""
    client_type = _dask_client_type()
    if n_jobs is not None and executor is not None:
        raise ValueError(f"n_jobs={n_jobs!r} sizes the local process pool (executor=None); "
                         f"got executor={executor!r}")
    if executor is None:
        jobs = min(trials, os.cpu_count() or 1) if n_jobs is None else check_int(n_jobs, "n_jobs")
        with _process_pool(jobs, data) as run:
            yield run
    elif isinstance(executor, str) and executor == "serial":
        yield lambda tasks: [run_trial(task, data) for task in tasks]
    elif isinstance(executor, str) and "://" in executor:
        try:
            from distributed import Client
        except ImportError as exc:
            raise ImportError(f"executor={executor!r} needs dask.distributed: pip install "
                              f"'dask[distributed]'") from exc
        with Client(executor) as client, _dask(client, data) as run:
            yield run
    elif client_type is not None and isinstance(executor, client_type):
        with _dask(executor, data) as run:
            yield run
    elif isinstance(executor, str):
        raise ValueError(f"executor must be None, 'serial' or a Dask scheduler address such as "
                         f"'tcp://host:8786'; got {executor!r}")
    else:
        raise TypeError(f"executor must be None (local processes), 'serial', a Dask scheduler "
                        f"address or a dask.distributed.Client; got {type(executor).__name__}")
