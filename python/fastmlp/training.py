"""The fit loop: epochs, batching, shuffling, validation, per-epoch history.

Each epoch runs on the fused path (fused.py) when the model and backend allow it, else on
the per-op loop here, which stays the reference: both make the same kernel calls."""
from __future__ import annotations

import math
import sys
import time
from typing import Dict, List, Optional

import numpy as np

from ._validation import check_bool, check_int, check_nonnegative_float, check_sample_weight
from .callbacks import check_callbacks
from .errors import DivergenceError, diverged_at, diverged_loss
from .fused import FusedEpochs
from .metrics import PassTotals, weight_total
from .optimizers import SGD, Optimizer, check_learning_rate, get_optimizer


class History:
    """What fit recorded: ``history`` maps each key to a list with one value per epoch.

    Keys: "loss" (data loss + penalty), "data_loss", "penalty", the metric ("accuracy"
    or "r2"), "val_loss" and "val_<metric>" with validation data, and "lr" (the rate at
    the epoch's last step).
    """

    def __init__(self, keys: List[str]):
        self.history: Dict[str, List[float]] = {key: [] for key in keys}

    def append(self, values: Dict[str, float]) -> None:
        for key, series in self.history.items():
            series.append(float(values[key]))

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])

    def plot(self, path=None, **kwargs):
        """Learning curves (loss, metric, learning rate per epoch) as a matplotlib Figure,
        saved to ``path`` when given: :func:`fastmlp.plotting.plot_history`."""
        from .plotting import plot_history
        return plot_history(self, path, **kwargs)

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self.history.items() if v)
        return f"History(epochs={self.epochs}{', ' if last else ''}{last})"


class _Progress:
    """verbose=1: one line per epoch on stdout (loss, metric, validation, samples/s), plus
    a tqdm bar over the epoch's batches when tqdm is installed and stderr is a terminal."""

    def __init__(self, verbose: int, epochs: int, n_batches: int):
        self.enabled = verbose > 0
        self.epochs = epochs
        self.n_batches = n_batches
        self._tqdm = _tqdm_on_terminal() if self.enabled else None
        self._bar = None

    def start_epoch(self, epoch: int) -> None:
        if self._tqdm is not None:
            self._bar = self._tqdm(total=self.n_batches, desc=f"epoch {epoch}/{self.epochs}",
                                   leave=False, file=sys.stderr)

    @property
    def has_bar(self) -> bool:
        return self._bar is not None

    def step(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def end_epoch(self, epoch: int, record: Dict[str, float], samples_per_s: float) -> None:
        if self._bar is not None:
            self._bar.close()
        if self.enabled:
            values = "  ".join(f"{key} {value:.4f}" for key, value in record.items()
                               if key not in ("data_loss", "penalty", "lr"))
            print(f"epoch {epoch}/{self.epochs}  {values}  {samples_per_s:,.0f} samples/s",
                  flush=True)


def _tqdm_on_terminal():
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _optimizer(model, optimizer, learning_rate) -> Optimizer:
    """The optimizer this fit uses, not yet stored on the model (DESIGN.md §3): a given
    one (a name: a new instance at ``learning_rate`` or its default rate; an instance:
    as is, ValueError with learning_rate); else the model's kept one (a new SGD the first
    time), whose rate a given learning_rate replaces (its state and counters are kept)."""
    if optimizer is not None:
        return get_optimizer(optimizer, learning_rate)
    if model._optimizer is None:
        return SGD() if learning_rate is None else SGD(learning_rate)
    if learning_rate is not None:
        model._optimizer.learning_rate = learning_rate
    return model._optimizer


def _validation_arrays(model, validation_data):
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise TypeError("validation_data must be a pair (X_val, y_val); got "
                        f"{type(validation_data).__name__}")
    return model._prepare(*validation_data, "validation_data[0]", "validation_data[1]")


def _class_weights(model, Y: np.ndarray, class_weight) -> np.ndarray:
    """Per-sample weights (float64) from ``class_weight``: a dict {label: weight} (labels
    missing from it weigh 1) or "balanced": n_samples / (n_classes * bincount(y)) over the
    classes present in y, as scikit-learn's compute_class_weight."""
    loss = model.loss
    if loss == "mse":
        raise ValueError("class_weight needs a classification loss; this model's loss is "
                         "'mse': use sample_weight")
    if loss == "binary_cross_entropy" and Y.shape[1] != 1:
        raise ValueError("class_weight needs one label per sample; with binary_cross_entropy "
                         f"over {Y.shape[1]} outputs (multilabel) use sample_weight")
    n_classes = Y.shape[1] if loss == "softmax_cross_entropy" else 2
    labels = Y.argmax(axis=1) if loss == "softmax_cross_entropy" else (Y[:, 0] > 0.5)
    labels = labels.astype(np.intp)
    counts = np.bincount(labels, minlength=n_classes)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict {{label: weight}} or 'balanced'; "
                             f"got {class_weight!r}")
        present = counts > 0
        per_class = np.ones(n_classes)
        per_class[present] = len(labels) / (np.count_nonzero(present) * counts[present])
        return per_class[labels]
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{label: weight}} or 'balanced'; got "
                        f"{type(class_weight).__name__}")
    per_class = np.ones(n_classes)
    for label, weight in class_weight.items():
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) \
                or not 0 <= label < n_classes:
            raise ValueError(f"class_weight has key {label!r}; labels must be integers in "
                             f"0..{n_classes - 1}")
        per_class[label] = check_nonnegative_float(weight, f"class_weight[{label!r}]")
    return per_class[labels]


def sample_weights(model, X: np.ndarray, Y: np.ndarray, sample_weight,
                   class_weight) -> Optional[np.ndarray]:
    """The per-sample weights fit uses (None when neither is given): sample_weight times
    the weight of each sample's class, in the model's dtype."""
    if sample_weight is None and class_weight is None:
        return None
    weights = np.ones(len(X))
    if sample_weight is not None:
        weights = check_sample_weight(sample_weight, len(X), np.dtype(np.float64))
    if class_weight is not None:
        weights = weights * _class_weights(model, Y, class_weight)
    return check_sample_weight(weights, len(X), model.dtype)


# fit takes the fused path (fused.py) whenever the model, optimizer and backend allow it;
# tests set this to False to run the per-op loop, the reference, on the native backend.
_FUSED = True


def _train_epoch(model, X, Y, W, batch: int, optimizer: Optimizer, shuffle: bool, epoch: int,
                 progress: _Progress, fused: Optional[FusedEpochs]) -> Dict[str, float]:
    """One pass over (X, Y) (sample weights W or None) in batches of ``batch`` rows;
    returns the running-total data loss, penalty and metric. On the fused path one
    backend call runs the whole epoch (a call per 1% of it while a progress bar shows)."""
    n = len(X)
    n_batches = progress.n_batches
    order = model._shuffle_rng.permutation(n) if shuffle else np.arange(n)
    if fused is not None and fused.applies():
        per_call = max(1, n_batches // 100) if progress.has_bar else n_batches
        return fused.train_epoch(X, Y, W, order, epoch, per_call, progress.step)
    with model._writing_params():
        return _train_epoch_per_op(model, X, Y, W, batch, optimizer, epoch, progress, order)


def _train_epoch_per_op(model, X, Y, W, batch: int, optimizer: Optimizer, epoch: int,
                        progress: _Progress, order: np.ndarray) -> Dict[str, float]:
    """The per-op loop: each step's batch gathered into the model's training cache, then
    one backend call per kernel through the layers, the loss and the optimizer."""
    n = len(X)
    n_batches = progress.n_batches
    cache = model._train_cache
    totals = PassTotals(model._loss.metric())
    penalty_total = 0.0
    for step, start in enumerate(range(0, n, batch), 1):
        rows = order[start:start + batch]
        xb = np.take(X, rows, axis=0, out=cache.get("x", (len(rows), X.shape[1]), X.dtype))
        yb = np.take(Y, rows, axis=0, out=cache.get("y", (len(rows), Y.shape[1]), Y.dtype))
        wb = None if W is None else np.take(W, rows, out=cache.get("w", (len(rows),), W.dtype))
        loss_sum, logits = model._loss_and_grad(xb, yb, wb)
        if not math.isfinite(loss_sum):
            raise diverged_loss(epoch, step, n_batches, loss_sum / len(rows),
                                optimizer.current_learning_rate)
        penalty = model._penalty(n, len(rows))
        penalty_total += penalty * len(rows)
        totals.add(logits, yb, loss_sum, None if wb is None else weight_total(wb))
        try:
            optimizer.step(model.backend, model._params, model._grads, samples=len(rows))
        except DivergenceError as exc:     # a non-finite gradient: nothing was updated
            raise diverged_at(epoch, step, n_batches, exc) from None
        model._step += 1
        progress.step()
    return {**totals.result(), "penalty": penalty_total / n}


def fit(model, X, y, *, epochs: int, batch_size: Optional[int] = 32,
        learning_rate=None, optimizer=None, shuffle: bool = True,
        validation_data=None, callbacks=None, verbose: int = 0,
        sample_weight=None, class_weight=None) -> History:
    """Train ``model`` on (X, y) from its current weights with gradient descent.

    batch_size=None is batch gradient descent (the whole set per step), 1 is stochastic,
    anything else mini-batch (a batch larger than the data is the whole set). Each step
    computes the mean loss over the batch and its gradient and applies the optimizer.

    ``optimizer`` is an instance or a name (:func:`fastmlp.optimizers.get_optimizer`);
    it is kept on the model with its state and reused by later fits unless a new one is
    given (DESIGN.md §3). The first fit without one uses SGD. ``learning_rate`` (a
    number or a schedule) goes with a name (None: that optimizer's default rate) or
    replaces the kept optimizer's rate; together with an instance it is a ValueError.
    The optimizer counts the steps and epochs of its schedule across fits.

    Shuffling draws from a generator seeded by ``model.seed`` and kept on the model, so
    successive fits continue its stream.
    Training metrics are running totals over the epoch's batches, computed from each
    batch's outputs before its update. A non-finite loss raises DivergenceError before
    the update, as does a non-finite gradient (the optimizer's check). ``verbose=1``
    prints a line per epoch. Returns a :class:`History`; its "lr" is the rate of the
    epoch's last step.

    ``callbacks`` is a list of :class:`fastmlp.callbacks.Callback` run between epochs
    (after the epoch's history values are recorded); one of them setting
    ``model.stop_training = True`` ends training after that epoch.

    ``sample_weight`` (n,) weighs each sample's loss; ``class_weight`` (classification
    only) is a dict {label: weight} or "balanced" (n_samples / (n_classes * bincount(y)),
    as scikit-learn); both multiply. Each step then minimizes the batch's weighted mean
    ``sum w_i loss_i / sum w_i``, and "data_loss" is the epoch's weighted mean; the metric
    stays unweighted. Weights must be finite, >= 0 and not all zero.

    The model's regularizers add their penalty after each backward pass (n = len(X));
    "penalty" is its batch-weighted mean over the epoch and "loss" = data_loss + penalty.
    Normalization layers never adapted are adapted to X first. Every step advances
    ``model.training_step`` (Dropout's counter), across fits.

    Models of the built-in layers on the native backend train on the fused path
    (:mod:`fastmlp.fused`: one C++ call per epoch, the same weights bit for bit); models
    with custom layers, optimizers or regularizers on the per-op loop below.

    The History is also kept as ``model.history`` (the model file saves it).
    """
    epochs = check_int(epochs, "epochs")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size")
    if learning_rate is not None:
        learning_rate = check_learning_rate(learning_rate)
    shuffle = check_bool(shuffle, "shuffle")
    verbose = check_int(verbose, "verbose", minimum=0)
    callbacks = check_callbacks(callbacks)
    X, Y = model._prepare(X, y)
    W = sample_weights(model, X, Y, sample_weight, class_weight)
    validation = _validation_arrays(model, validation_data)
    optimizer = _optimizer(model, optimizer, learning_rate)
    optimizer.check_params(model._params)
    model._optimizer = optimizer

    batch = len(X) if batch_size is None else min(batch_size, len(X))
    metric = model._loss.metric_name
    val_keys = [] if validation is None else ["val_loss", f"val_{metric}"]
    history = History(["loss", "data_loss", "penalty", metric, *val_keys, "lr"])
    progress = _Progress(verbose, epochs, math.ceil(len(X) / batch))

    model._adapt(X)
    fused = FusedEpochs.create(model, optimizer, batch) if _FUSED else None
    model.stop_training = False
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    # A diverging model overflows; the loss check reports it, not NumPy's warnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(1, epochs + 1):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            progress.start_epoch(epoch)
            started = time.perf_counter()
            record = _train_epoch(model, X, Y, W, batch, optimizer, shuffle, epoch, progress,
                                  fused)
            samples_per_s = len(X) / (time.perf_counter() - started)
            record.update(loss=record["data_loss"] + record["penalty"],
                          lr=optimizer.last_learning_rate)
            optimizer.end_epoch()
            if validation is not None:
                record.update({f"val_{k}": v for k, v in model._evaluate(*validation).items()})
            logs = {k: record[k] for k in history.history}
            history.append(logs)
            progress.end_epoch(epoch, logs, samples_per_s)
            for callback in callbacks:
                callback.on_epoch_end(epoch, dict(logs))
            if model.stop_training:
                break
    for callback in callbacks:
        callback.on_train_end()
    model.history = history
    return history
