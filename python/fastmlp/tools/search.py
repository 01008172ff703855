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
"""
from __future__ import annotations

import math
import numbers
import os
import socket
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._validation import (as_labels, as_samples, check_choice, check_finite_float, check_int,
                           check_lengths, check_positive_float, check_seed)
from ..errors import DivergenceError
from ..nn.losses import LOSSES, SoftmaxCrossEntropy, get_loss
from ..nn.stacks import mlp_layers
from ..model.sequential import Sequential
from ..optim.optimizers import OPTIMIZERS
from ..nn.regularizers import L1L2
from ..backends.runtime import threads
from ..train.progress import check_verbose, shows

OBJECTIVES = ("dev_error", "dev_loss")


# ------------------------------------------------------------------ distributions
class Distribution:
    """Values a parameter may take. ``sample(rng)`` draws one value from a
    ``numpy.random.Generator``; ``narrow(values, widen)`` returns a distribution of the same
    kind, inside this one, around ``values`` (the values of the best trials)."""

    def sample(self, rng: np.random.Generator):
        raise NotImplementedError

    def narrow(self, values: Sequence, widen: float) -> "Distribution":
        raise NotImplementedError


def _spread(values: Sequence, low: float, high: float, widen: float,
            to_scale: Callable[[float], float]) -> Tuple[float, float]:
    """``[min, max]`` of ``values`` in the sampling scale, widened on both sides by
    ``widen * (to_scale(high) - to_scale(low))``."""
    scaled = [to_scale(v) for v in values]
    margin = widen * (to_scale(high) - to_scale(low))
    return min(scaled) - margin, max(scaled) + margin


@dataclass(frozen=True)
class Uniform(Distribution):
    """Real numbers uniform on ``[low, high)``, ``low < high`` (finite)."""

    low: float
    high: float

    def __post_init__(self):
        name = type(self).__name__
        low, high = self._check(self.low, f"{name} low"), self._check(self.high, f"{name} high")
        if not low < high:
            raise ValueError(f"{name} needs low < high; got low={low!r}, high={high!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @staticmethod
    def _check(value, name: str) -> float:
        return check_finite_float(value, name)

    @staticmethod
    def _to_scale(value: float) -> float:
        """The scale in which samples are uniform (identity here, log for LogUniform)."""
        return value

    @staticmethod
    def _from_scale(value: float) -> float:
        return value

    def _clip(self, value: float) -> float:
        return min(max(value, self.low), self.high)

    def sample(self, rng: np.random.Generator) -> float:
        """``from_scale(u)`` with u uniform between the scaled bounds (clipped to
        ``[low, high]`` against rounding in the scale's inverse)."""
        u = rng.uniform(self._to_scale(self.low), self._to_scale(self.high))
        return self._clip(float(self._from_scale(u)))

    def narrow(self, values: Sequence, widen: float):
        """``[min, max]`` of ``values`` widened by ``widen`` times this range's width on
        both sides (in the sampling scale), clipped to this range."""
        low, high = _spread(values, self.low, self.high, widen, self._to_scale)
        return type(self)(self._clip(self._from_scale(low)), self._clip(self._from_scale(high)))


@dataclass(frozen=True)
class LogUniform(Uniform):
    """Positive numbers whose logarithm is uniform on ``[log low, log high)``, ``0 < low <
    high``: each decade is equally likely (learning rates, regularization strengths)."""

    @staticmethod
    def _check(value, name: str) -> float:
        return check_positive_float(value, name)

    @staticmethod
    def _to_scale(value: float) -> float:
        return math.log(value)

    @staticmethod
    def _from_scale(value: float) -> float:
        return math.exp(value)


def _integer(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type "
                        f"{type(value).__name__}")
    return int(value)


@dataclass(frozen=True)
class IntUniform(Distribution):
    """Integers uniform on ``low..high``, both included, ``low <= high``."""

    low: int
    high: int

    def __post_init__(self):
        low, high = _integer(self.low, "IntUniform low"), _integer(self.high, "IntUniform high")
        if not low <= high:
            raise ValueError(f"IntUniform needs low <= high; got low={low!r}, high={high!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high, endpoint=True))

    def narrow(self, values: Sequence, widen: float) -> "IntUniform":
        """``[min, max]`` of ``values`` widened by ``widen * (high - low)`` on both sides,
        rounded outward to integers and clipped to this range."""
        low, high = _spread(values, self.low, self.high, widen, float)
        return IntUniform(max(self.low, math.floor(low)), min(self.high, math.ceil(high)))


class Choice(Distribution):
    """One of ``options`` (a non-empty list or tuple), each equally likely; narrowing keeps
    the options among ``values`` (compared with ``==``), in their original order."""

    def __init__(self, options: Sequence):
        if not isinstance(options, (list, tuple)):
            raise TypeError(f"Choice options must be a list or tuple of values; got "
                            f"{type(options).__name__}")
        if not options:
            raise ValueError("Choice options must not be empty")
        self.options = tuple(options)

    def __eq__(self, other) -> bool:
        return isinstance(other, Choice) and self.options == other.options

    __hash__ = None

    def __repr__(self) -> str:
        return f"Choice({list(self.options)!r})"

    def sample(self, rng: np.random.Generator):
        return self.options[int(rng.integers(len(self.options)))]

    def narrow(self, values: Sequence, widen: float) -> "Choice":
        return Choice([option for option in self.options
                       if any(bool(option == value) for value in values)])


# ------------------------------------------------------------------ the default builder
OPTIMIZER_PARAMS = tuple(sorted({name for cls in OPTIMIZERS.values()
                                 for name in cls.hyperparameters}))


def _text_classes(targets: Sequence[np.ndarray]) -> Optional[Tuple[str, ...]]:
    """The sorted distinct labels when the label arrays (n,) hold text, else None."""
    if all(t.ndim == 1 and t.dtype.kind == "U" for t in targets):
        return tuple(str(label) for label in np.unique(np.concatenate(targets)))
    return None


def _n_classes(targets: Sequence[np.ndarray]) -> Optional[int]:
    """Classes in the label arrays (n,): k for whole numbers in 0..k-1 (a class may be
    missing from the data, as the models allow), the distinct values for text labels,
    None for other numbers (regression targets)."""
    text = _text_classes(targets)
    if text is not None:
        return len(text)
    if all(t.dtype.kind in "biuf" and np.array_equal(t, np.floor(t)) and t.min() >= 0
           for t in targets):
        return int(max(t.max() for t in targets)) + 1
    return None


@dataclass(frozen=True)
class MLPBuilder:
    """The default ``build``: a Dense network from a parameter dict (:meth:`__call__`).

    ``input_dim`` features; ``target_columns`` is 1 for targets of shape (n,), k for
    (n, k); ``n_classes`` is 1 + the largest label when the targets are integer labels
    (n,), the number of distinct labels for text labels (n,) (``text_classes``, given
    to every model as its ``classes_``), else None. :meth:`for_data` fills them in from
    the data.
    """

    input_dim: int
    target_columns: int
    n_classes: Optional[int] = None
    text_classes: Optional[Tuple[str, ...]] = None   # text labels: the models' classes_

    # The parameters it reads and their defaults (``epochs`` defaults to random_search's).
    DEFAULTS = {"hidden": (64,), "activation": "relu", "dropout": 0.0, "l1": 0.0, "l2": 0.0,
                "loss": SoftmaxCrossEntropy.name, "optimizer": "adam",
                "learning_rate": None, "batch_size": 32}
    LAYER_SHAPE = {"n_layers": 1, "units": 64}  # alternative to "hidden": (units,) * n_layers
    PARAMS = (*DEFAULTS, *LAYER_SHAPE, "epochs", *OPTIMIZER_PARAMS)

    @classmethod
    def for_data(cls, X: np.ndarray, *targets: np.ndarray) -> "MLPBuilder":
        """Dimensions from the features X (n, d) and the target arrays (train, dev, ...)."""
        first = targets[0]
        return cls(X.shape[1], 1 if first.ndim == 1 else first.shape[1],
                   _n_classes(targets) if first.ndim == 1 else None, _text_classes(targets))

    @classmethod
    def check_names(cls, names: Sequence[str]) -> None:
        """ValueError for a name this builder does not read, or for "hidden" together with
        "n_layers"/"units"."""
        unknown = [name for name in names if name not in cls.PARAMS]
        if unknown:
            raise ValueError(f"unknown parameter names {unknown} in space; the default builder "
                             f"reads {list(cls.PARAMS)} (pass build= to search others)")
        if "hidden" in names and any(name in names for name in cls.LAYER_SHAPE):
            raise ValueError("space gives both 'hidden' and 'n_layers'/'units'; give the "
                             "layer widths one way")

    @classmethod
    def layer_shape(cls, params: Mapping[str, Any]) -> Dict[str, Any]:
        """``{"hidden": (units,) * n_layers}`` when ``params`` give n_layers or units
        (LAYER_SHAPE fills in the other), else nothing."""
        if "n_layers" not in params and "units" not in params:
            return {}
        shape = {**cls.LAYER_SHAPE, **params}
        return {"hidden": (shape["units"],) * check_int(shape["n_layers"], "n_layers",
                                                         minimum=0)}

    def n_outputs(self, loss: str) -> int:
        """Output units: the number of classes for a one-hot loss (softmax) over labels
        (n,), else the targets' columns."""
        loss = get_loss(check_choice(loss, "loss", LOSSES))
        if loss.one_hot and self.target_columns == 1:
            if self.n_classes is None:
                raise ValueError(f"{loss.name} needs class labels of shape (n,) "
                                 "(whole numbers 0..k-1 or text) or one-hot targets (n, k)")
            return self.n_classes
        return self.target_columns

    def __call__(self, params: Mapping[str, Any], seed: int) -> Tuple[Sequential, dict]:
        """``Sequential([Dense(u, activation), Dropout(dropout)?, ...] + [Dense(outputs)],
        loss=loss, regularizer=L1L2(l1, l2) if either > 0, seed=seed)`` with widths
        ``hidden`` (or ``(units,) * n_layers``), and the fit arguments batch_size, epochs
        (if given) and the optimizer named ``optimizer`` with ``learning_rate`` and any of
        its hyperparameters (beta_1, beta_2, eps, momentum, rho, weight_decay)."""
        p = {**self.DEFAULTS, **params, **self.layer_shape(params)}
        if not isinstance(p["hidden"], (tuple, list)):
            raise TypeError(f"hidden must be a tuple of layer widths, e.g. (128, 64); got "
                            f"{p['hidden']!r}")
        layers = mlp_layers(p["hidden"], self.n_outputs(p["loss"]), activation=p["activation"],
                            dropout=p["dropout"])
        regularizer = L1L2(l1=p["l1"], l2=p["l2"]) if p["l1"] or p["l2"] else None
        model = Sequential(layers, input_dim=self.input_dim, loss=p["loss"], seed=seed,
                           regularizer=regularizer)
        if self.text_classes is not None and get_loss(model.loss).one_hot:
            model.classes_ = list(self.text_classes)    # every class, also one train lacks
        fit_kwargs = {"batch_size": p["batch_size"], "optimizer": _optimizer(p)}
        if "epochs" in params:
            fit_kwargs["epochs"] = params["epochs"]
        return model, fit_kwargs


def _optimizer(params: Mapping[str, Any]):
    """The optimizer named ``params["optimizer"]`` with the learning rate and those of its
    hyperparameters that ``params`` holds (ValueError for one it does not have)."""
    name = check_choice(params["optimizer"], "optimizer", OPTIMIZERS)
    cls = OPTIMIZERS[name]
    given = {key: params[key] for key in OPTIMIZER_PARAMS if key in params}
    foreign = sorted(set(given) - set(cls.hyperparameters))
    if foreign:
        raise ValueError(f"{foreign} do not apply to optimizer {name!r}, whose "
                         f"hyperparameters are {list(cls.hyperparameters)}")
    if params["learning_rate"] is not None:
        given["learning_rate"] = params["learning_rate"]
    return cls(**given)


def _built(result, build) -> Tuple[Sequential, dict]:
    """A builder's result as (model, fit_kwargs)."""
    model, fit_kwargs = result if isinstance(result, tuple) and len(result) == 2 \
        else (result, {})
    if not isinstance(model, Sequential) or not isinstance(fit_kwargs, dict):
        raise TypeError(f"build {build!r} must return a Sequential or a pair (Sequential, "
                        f"dict of fit arguments); got {type(result).__name__}")
    return model, fit_kwargs


# ------------------------------------------------------------------ trials
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
class _Task:
    round: int
    index: int
    params: Dict[str, Any]
    seed: int
    epochs: int
    build: Callable


def _trial_seed(seed: int, round_: int, index: int) -> int:
    """The model seed of trial ``index`` of round ``round_``: a pure function of the three."""
    return int(np.random.SeedSequence([seed, round_, index]).generate_state(1, np.uint64)[0])


def _run_trial(task: _Task, data: Tuple[np.ndarray, ...]) -> Trial:
    """Build, train (one native thread) and score one parameter set."""
    X, y, X_dev, y_dev = data
    with threads(1):                   # (loads the native backend on a worker's first trial)
        started = time.perf_counter()
        model, fit_kwargs = _built(task.build(task.params, task.seed), task.build)
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


def _run_trial_in_worker(task: _Task) -> Trial:
    return _run_trial(task, _WORKER_DATA)


Runner = Callable[[List[_Task]], List[Trial]]


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

    def run(tasks: List[_Task]) -> List[Trial]:
        futures = [client.submit(_run_trial, task, data_future, pure=False) for task in tasks]
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
def _runner(executor, n_jobs: Optional[int], trials: int, data) -> Iterator[Runner]:
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
        yield lambda tasks: [_run_trial(task, data) for task in tasks]
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


# ------------------------------------------------------------------ the search
def _ranking_key(objective: str) -> Callable[[Trial], tuple]:
    """Lower objective first (NaN counts as inf), ties broken by (round, index)."""
    def key(trial: Trial) -> tuple:
        value = getattr(trial, objective)
        return (value if not math.isnan(value) else math.inf, trial.round, trial.index)
    return key


def _ranked(trials: Sequence[Trial], objective: str) -> List[Trial]:
    """Successful trials best first, then the failed ones in run order."""
    ok = sorted((t for t in trials if t.ok), key=_ranking_key(objective))
    return ok + [t for t in trials if not t.ok]


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
    trials = check_int(trials, "trials")
    rounds = check_int(rounds, "rounds")
    keep = _check_fraction(keep, "keep")
    widen = check_positive_float(widen, "widen")
    epochs = check_int(epochs, "epochs")
    objective = check_choice(objective, "objective", OBJECTIVES)
    seed = check_seed(seed)
    seed = np.random.SeedSequence().entropy if seed is None else seed
    show = shows(check_verbose(verbose))
    rng = np.random.default_rng(seed)
    n_top = math.ceil(keep * trials)
    spaces, done = [space], []
    with _runner(executor, n_jobs, trials, data) as run:
        for round_ in range(rounds):
            started = time.perf_counter()
            if round_:
                top = [t for t in _ranked(done, objective)[:n_top] if t.ok]
                spaces.append(_narrowed(spaces[-1], top, widen))
            tasks = [_Task(round_, i, _sample(spaces[-1], rng), _trial_seed(seed, round_, i),
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
    best = _ranked(done, objective)[0]
    so_far = (f"best so far {objective} {getattr(best, objective):.4g} with "
              f"{dict(best.params)}" if best.ok else "no trial has succeeded yet")
    print(f"round {round_ + 1}/{rounds}: {len(latest)} trials in {seconds:.1f} s"
          f"{f', {failed} diverged' if failed else ''}; {so_far}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ results
def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class SearchResult:
    """What :func:`random_search` found.

    ``trials``: every :class:`Trial` in run order; ``spaces``: the space each round
    sampled from (``spaces[0]`` is the one given); ``objective``, ``seed``, ``epochs``
    and ``build`` as used. ``best`` is the best successful trial, ``best_params`` its
    parameters; :meth:`best_model` trains a model with them in one call;
    :meth:`to_table` / ``str()`` print the trials best first.
    """

    trials: Tuple[Trial, ...]
    spaces: Tuple[Dict[str, Any], ...]
    objective: str
    seed: int
    epochs: int
    build: Callable = field(repr=False)

    def ranked(self) -> List[Trial]:
        """Successful trials best first (ties: earlier first), then the failed ones."""
        return _ranked(self.trials, self.objective)

    @property
    def best(self) -> Trial:
        best = self.ranked()[0]
        if not best.ok:
            raise ValueError(f"no trial succeeded: all {len(self.trials)} diverged (first: "
                             f"{best.failure}); lower the learning rates in the space")
        return best

    @property
    def best_params(self) -> Dict[str, Any]:
        return dict(self.best.params)

    @suggest_keywords
    def best_model(self, X, y, *, epochs: Optional[int] = None, seed: Optional[int] = None,
                   **fit_kwargs) -> Sequential:
        """A model built with the best parameters (and by default the best trial's seed),
        trained on (X, y) for ``epochs`` (default: the search's) and returned. Further
        keyword arguments go to ``fit`` (validation_data, callbacks, verbose, ...).
        With the training data, the search's epochs and the default seed this is the
        best trial's model, bit for bit."""
        best = self.best
        model, built_kwargs = _built(self.build(best.params, best.seed if seed is None
                                                else check_seed(seed)), self.build)
        kwargs = {"epochs": self.epochs, **built_kwargs, **fit_kwargs}
        if epochs is not None:
            kwargs["epochs"] = check_int(epochs, "epochs")
        model.fit(X, y, **kwargs)
        return model

    def to_table(self, top: Optional[int] = None) -> str:
        """The trials best first (the ``top`` best, if given) as a text table: round,
        trial, dev_error, dev_loss, status, seconds, pid, host, then one column per
        parameter."""
        names = list(dict.fromkeys(name for space in self.spaces for name in space))
        header = ["round", "trial", "dev_error", "dev_loss", "status", "seconds", "pid",
                  "host", *names]
        shown = self.ranked()[:top] if top is not None else self.ranked()
        rows = [[t.round, t.index, t.dev_error, t.dev_loss, "ok" if t.ok else "diverged",
                 t.seconds, t.pid, t.host, *(t.params.get(name, "") for name in names)]
                for t in shown]
        cells = [header] + [[_cell(v) for v in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])

    def __str__(self) -> str:
        rounds = len(self.spaces)
        summary = (f"random search: {len(self.trials)} trials in {rounds} "
                   f"round{'s' * (rounds != 1)}, objective {self.objective} (lower is "
                   f"better), seed {self.seed}")
        ok = [t for t in self.trials if t.ok]
        best = (f"best: {self.objective} {getattr(self.best, self.objective):.4g} with "
                f"{self.best_params}" if ok else "best: none (every trial diverged)")
        return "\n".join([summary, best, self.to_table()])

    def __repr__(self) -> str:
        return (f"SearchResult({len(self.trials)} trials, {len(self.spaces)} rounds, "
                f"objective={self.objective!r}, seed={self.seed})")


__all__ = ["Choice", "Distribution", "IntUniform", "LogUniform", "MLPBuilder", "SearchResult",
           "Trial", "Uniform", "random_search"]
