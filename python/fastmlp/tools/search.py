"""Hyperparameter search: random search in coarse-to-fine rounds, run serially, in local
processes or on a Dask cluster, with the same results whatever runs it.

A *space* maps parameter names to distributions (:class:`Uniform`, :class:`LogUniform`,
:class:`IntUniform`, :class:`Choice`) or to constants. Each round samples ``trials``
parameter sets, trains one model per set for a few epochs on the training data and
scores it on the dev data; the objective is lower-is-better:

- ``"dev_error"`` (the default): ``1 - model.score(X_dev, y_dev)``, i.e. 1 - accuracy for
  classification and 1 - R^2 for mse (docs/conventions.md);
- ``"dev_loss"``: the mean data loss on the dev set (``model.evaluate``'s "loss").

A trial whose training diverges (:class:`fastmlp.DivergenceError`) is recorded as failed
with both values inf. Every later round narrows the space around the best trials so far
(the top ``ceil(keep * trials)`` successful ones): a numeric range becomes
``[min, max]`` of their values widened on both sides by ``widen`` times the current width
(in log space for LogUniform; outward to integers for IntUniform) and clipped to the
current range; a Choice keeps the options they used. Each round's range therefore lies
inside the previous one and contains the best trial so far.

Determinism: every parameter set is drawn in the calling process from one
``numpy.random.default_rng(seed)``, in order (round, trial, the space's key order), and
trial i of round r trains a model seeded with ``SeedSequence([seed, r, i])``. A trial runs
with one native thread (``fastmlp.threads(1)``) and training is bitwise independent of
the thread count, so the trials' parameters and scores depend on nothing but the seed,
the space, the data and the SIMD path: ``executor="serial"``, the local process pool and
a Dask cluster give the same results bit for bit (the AVX2 and AVX-512 paths agree bit
for bit; the generic path, without FMA, differs in the last bits).

This module holds the search loop and the public names; the parts live beside it: the
distributions in :mod:`fastmlp.tools.distributions`, the default builder in
:mod:`fastmlp.tools.mlp_builder`, the trials and their executors in
:mod:`fastmlp.tools.trials` and the result in :mod:`fastmlp.tools.search_result`.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._validation import (as_labels, as_samples, check_choice, check_int, check_lengths,
                           check_positive_float, check_seed)
from ..train.progress import check_verbose, shows
from .distributions import Choice, Distribution, IntUniform, LogUniform, Uniform
from .mlp_builder import OPTIMIZER_PARAMS, MLPBuilder  # noqa: F401 (fastmlp.search.X, as before)
from .search_result import SearchResult, ranked_trials
from .trials import Runner, Task, Trial, runner, trial_seed  # noqa: F401 (Runner: as before)

OBJECTIVES = ("dev_error", "dev_loss")


def _narrowed(space: Mapping[str, Any], top: Sequence[Trial], widen: float) -> Dict[str, Any]:
    """Each distribution narrowed around the ``top`` trials' values; constants kept. With
    no successful trial there is nothing to narrow toward: the space is kept."""
    if not top:
        return dict(space)
    return {name: value.narrow([t.params[name] for t in top], widen)
            if isinstance(value, Distribution) else value for name, value in space.items()}


def _sample(space: Mapping[str, Any], rng: np.random.Generator) -> Dict[str, Any]:
    return {name: value.sample(rng) if isinstance(value, Distribution) else value
            for name, value in space.items()}


def _check_space(space) -> Dict[str, Any]:
    if not isinstance(space, Mapping):
        raise TypeError(f"space must be a dict {{name: distribution or constant}}; got "
                        f"{type(space).__name__}")
    if not space:
        raise ValueError("space is empty; give at least one parameter, e.g. "
                         "{'learning_rate': LogUniform(1e-4, 1e-1)}")
    for name, value in space.items():
        if not isinstance(name, str):
            raise TypeError(f"space keys must be parameter names (str); got {name!r}")
        if isinstance(value, list):
            raise TypeError(f"space[{name!r}] is a list; write Choice({value!r}) to search "
                            f"over it, or a tuple for a constant")
    return dict(space)


def _check_pair(pair, name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(X, y) with X (n, d) and y (n,) or (n, k), finite."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{name} must be a pair (X, y); got {type(pair).__name__}")
    X = as_samples(pair[0], f"{name}[0]", (2,))
    y = as_labels(pair[1], f"{name}[1]")
    check_lengths(X, y, f"{name}[0]", f"{name}[1]")
    return X, y


def _check_data(train, dev) -> Tuple[np.ndarray, ...]:
    X, y = _check_pair(train, "train")
    X_dev, y_dev = _check_pair(dev, "dev")
    if X_dev.shape[1] != X.shape[1] or y_dev.shape[1:] != y.shape[1:]:
        raise ValueError(f"dev must have train's features and target columns: train[0] "
                         f"{X.shape}, train[1] {y.shape}; dev[0] {X_dev.shape}, dev[1] "
                         f"{y_dev.shape}")
    return X, y, X_dev, y_dev


def _check_fraction(value, name: str) -> float:
    value = check_positive_float(value, name)
    if value > 1:
        raise ValueError(f"{name} must be in (0, 1]; got {value!r}")
    return value


def _check_build(build, space: Mapping[str, Any], data) -> Callable:
    if build is None:
        MLPBuilder.check_names(list(space))
        return MLPBuilder.for_data(data[0], data[1], data[3])
    if not callable(build):
        raise TypeError(f"build must be None (the default MLPBuilder) or a callable "
                        f"build(params, seed); got {type(build).__name__}")
    return build


@suggest_keywords
def random_search(space: Mapping[str, Any], train, dev, *, build=None, trials: int = 20,
                  rounds: int = 1, keep: float = 0.25, widen: float = 0.1, epochs: int = 5,
                  objective: str = "dev_error", seed: Optional[int] = 0, executor=None,
                  n_jobs: Optional[int] = None, verbose="auto") -> "SearchResult":
    """Random search over ``space`` in ``rounds`` coarse-to-fine rounds of ``trials``
    trials each; returns a :class:`SearchResult`.

    ``space``: ``{name: Uniform | LogUniform | IntUniform | Choice | constant}`` (a list is
    refused: write Choice). ``train`` and ``dev``: pairs (X, y); models train on train and
    are scored on dev by ``objective``, "dev_error" (``1 - model.score``) or "dev_loss",
    lower is better. ``build(params, seed)`` returns a Sequential seeded with ``seed``, or
    a pair (Sequential, fit kwargs) (``epochs`` in them overrides ``epochs``); it must be
    picklable (a module-level function) unless the executor is "serial". None means
    :class:`MLPBuilder` with dimensions from the data, whose parameter names (hidden,
    n_layers, units, activation, dropout, l1, l2, loss, optimizer, learning_rate, beta_1,
    beta_2, eps, momentum, rho, weight_decay, batch_size, epochs) are checked up front.

    After each round the space narrows around the best ``ceil(keep * trials)`` successful
    trials so far, each range widened by ``widen`` times its width (module docstring).
    ``seed`` (int >= 0; None draws one, recorded in the result) fixes every parameter set
    and model seed, whatever the executor.

    ``executor``: None runs the trials in a local pool of ``n_jobs`` processes (default
    min(trials, CPUs)) started with forkserver (spawn where there is none), each sent the
    data once; "serial" runs them one by one in this process; a
    ``dask.distributed.Client``, or a scheduler address ("tcp://host:8786": a client is
    opened and closed here), runs them as Dask tasks, the data scattered to every worker
    once (the workers need fastmlp installed). Every trial runs with one native thread.
    An exception other than DivergenceError in a trial (a bad parameter value) ends the
    search with that exception.

    ``verbose``: "auto" (on when stderr is a terminal or a Jupyter kernel's), 1 or 0. When
    on, each round ends with a line on stderr: its time, its failed trials and the best
    trial so far.
    """
    space = _check_space(space)
    data = _check_data(train, dev)
    build = _check_build(build, space, data)
    trials, rounds = check_int(trials, "trials"), check_int(rounds, "rounds")
    keep, widen = _check_fraction(keep, "keep"), check_positive_float(widen, "widen")
    epochs, objective = check_int(epochs, "epochs"), check_choice(objective, "objective",
                                                                  OBJECTIVES)
    seed = check_seed(seed)
    seed = np.random.SeedSequence().entropy if seed is None else seed
    show = shows(check_verbose(verbose))
    rng = np.random.default_rng(seed)
    n_top = math.ceil(keep * trials)
    spaces, done = [space], []
    with runner(executor, n_jobs, trials, data) as run:
        for round_ in range(rounds):
            started = time.perf_counter()
            if round_:
                top = [t for t in ranked_trials(done, objective)[:n_top] if t.ok]
                spaces.append(_narrowed(spaces[-1], top, widen))
            tasks = [Task(round_, i, _sample(spaces[-1], rng), trial_seed(seed, round_, i),
                          epochs, build) for i in range(trials)]
            done.extend(run(tasks))
            if show:
                _report_round(round_, rounds, done[-trials:], done, objective,
                              time.perf_counter() - started)
    return SearchResult(tuple(done), tuple(spaces), objective, seed, epochs, build)


def _report_round(round_: int, rounds: int, latest: Sequence[Trial], done: Sequence[Trial],
                  objective: str, seconds: float) -> None:
    """One line on stderr for a finished round: its trials, time, failures, best so far."""
    failed = sum(not t.ok for t in latest)
    best = ranked_trials(done, objective)[0]
    so_far = (f"best so far {objective} {getattr(best, objective):.4g} with "
              f"{dict(best.params)}" if best.ok else "no trial has succeeded yet")
    print(f"round {round_ + 1}/{rounds}: {len(latest)} trials in {seconds:.1f} s"
          f"{f', {failed} diverged' if failed else ''}; {so_far}", file=sys.stderr, flush=True)


__all__ = ["Choice", "Distribution", "IntUniform", "LogUniform", "MLPBuilder", "SearchResult",
           "Trial", "Uniform", "random_search"]
