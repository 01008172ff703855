"""The fit loop: epochs, batching, shuffling, validation, per-epoch history.

Each epoch runs on the fused path (fused.py) when the model and backend allow it, else on
the per-op loop here, which stays the reference: both make the same kernel calls."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._validation import check_bool, check_int, check_nonnegative_float, check_sample_weight
from .callbacks import check_callbacks
from .checkpoint import (Checkpoint, Checkpoints, Position, Snapshot, callback_states,
                         check_compatible, load_callback_states, non_finite, restore)
from ..errors import DivergenceError, diverged_at, diverged_loss, diverged_update
from .fused import FusedEpochs
from .guards import Interrupt, one_fit_at_a_time
from .history import History
from ..nn.losses import class_position
from ..nn.metrics import PassTotals, r2_from_sums, weight_total
from ..optim.optimizers import SGD, Optimizer, check_learning_rate, get_optimizer
from .preflight import check_fit_memory, warn_if_unscaled
from .progress import EpochProgress, check_verbose


# The most epochs one fit takes. No training needs more passes over its data (a run "until
# EarlyStopping ends it" fits well below it); a larger count is a typo (extra zeros) that
# would otherwise run silently for ever. It also keeps the step counters (Python ints, but
# 64-bit in the C++ kernels: Adam's step, Dropout's mask counter) far from overflow:
# 10**6 epochs of at most 2**40 batches each stay below 2**63.
MAX_EPOCHS = 10 ** 6


def check_epochs(epochs) -> int:
    """fit's ``epochs``: an integer in 1..MAX_EPOCHS."""
    epochs = check_int(epochs, "epochs")
    if epochs > MAX_EPOCHS:
        raise ValueError(f"epochs must be at most {MAX_EPOCHS:,} (fastmlp.train.loop.MAX_EPOCHS); "
                         f"got {epochs:,}. Ask for fewer epochs, or for a long run a large "
                         "count with an EarlyStopping callback to end it")
    return epochs


def _optimizer(model, optimizer, learning_rate) -> Optimizer:
    """The optimizer this fit uses, not yet stored on the model (docs/conventions.md): a given
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
    """Per-sample weights (float64) from ``class_weight``: a dict {label: weight} over
    labels of ``model.classes_`` (labels missing from it weigh 1) or "balanced":
    n_samples / (n_classes * bincount(y)) over the classes present in y, as
    scikit-learn's compute_class_weight."""
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
        index = class_position(model.classes_, label)
        if index is None:
            raise ValueError(f"class_weight has key {label!r}, not one of the model's "
                             f"classes_ {model.classes_.tolist()[:20]}")
        per_class[index] = check_nonnegative_float(weight, f"class_weight[{label!r}]")
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


@dataclass(frozen=True)
class _Data:
    """The training arrays (W: sample weights or None) and the steps over them."""
    X: np.ndarray
    Y: np.ndarray
    W: Optional[np.ndarray]
    batch: int

    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.batch)

    def rows(self, order: np.ndarray, step: int) -> np.ndarray:
        return order[step * self.batch:(step + 1) * self.batch]


def _no_progress(steps: int = 1) -> None:
    """The progress callback of replayed steps."""


# ------------------------------------------------------------------ running totals
# An epoch's running totals as plain data (a checkpoint's "totals"), the same for both
# paths: loss_sum, weight_sum, penalty_sum, count, and correct (accuracy) or r2's shift,
# sse, sum, sum_sq (float64 arrays, y's sums taken minus the epoch's first batch mean).
_R2_SUMS = ("shift", "sse", "sum", "sum_sq")


class _PerOpTotals:
    """The per-op loop's running totals: PassTotals (losses, metric) and the penalty."""

    def __init__(self, passes: PassTotals):
        self.passes = passes
        self.penalty_sum = 0.0

    def state(self) -> dict:
        return {**self.passes.state(), "penalty_sum": self.penalty_sum}

    def load(self, state: dict) -> "_PerOpTotals":
        self.passes.load(state)
        self.penalty_sum = state["penalty_sum"]
        return self


class _PerOpSteps:
    """Steps of an epoch on the per-op loop: each step's batch gathered into the model's
    training cache, then one backend call per kernel through the layers, the loss and the
    optimizer."""

    def __init__(self, model, optimizer: Optimizer, data: _Data):
        self.model, self.optimizer, self.data = model, optimizer, data

    def new_totals(self) -> _PerOpTotals:
        return _PerOpTotals(PassTotals(self.model._loss.metric()))

    def load_totals(self, state: dict, order: np.ndarray) -> _PerOpTotals:
        return self.new_totals().load(state)

    def state(self, totals: _PerOpTotals, order: np.ndarray) -> dict:
        return totals.state()

    def record(self, totals: _PerOpTotals) -> Dict[str, float]:
        return {**totals.passes.result(), "penalty": totals.penalty_sum / self.data.n}

    def run(self, order: np.ndarray, begin: int, end: int, epoch: int,
            totals: _PerOpTotals, on_steps: Callable[[int], None],
            interrupt: Optional[Interrupt] = None) -> _PerOpTotals:
        """Steps [begin, end) of the epoch visiting rows in ``order``, added to ``totals``;
        DivergenceError before the update of a step whose loss or gradient is not finite.
        Stops before the next step once ``interrupt`` is requested."""
        model = self.model
        with model._writing_params():
            for step in range(begin, end):
                if interrupt is not None and interrupt.requested:
                    break
                with model._weights_lock.writing:
                    self._step(order, step, epoch, totals)
                on_steps(1)
        return totals

    def _step(self, order: np.ndarray, step: int, epoch: int, totals: _PerOpTotals) -> None:
        """One step: the batch gathered, forward, loss, backward, penalty, update."""
        model, optimizer, data = self.model, self.optimizer, self.data
        X, Y, W, cache = data.X, data.Y, data.W, model._train_cache
        rows = data.rows(order, step)
        xb = np.take(X, rows, axis=0, out=cache.get("x", (len(rows), X.shape[1]), X.dtype))
        yb = np.take(Y, rows, axis=0, out=cache.get("y", (len(rows), Y.shape[1]), Y.dtype))
        wb = None if W is None else np.take(W, rows, out=cache.get("w", (len(rows),), W.dtype))
        loss_sum, logits = model._loss_and_grad(xb, yb, wb)
        if not math.isfinite(loss_sum):
            raise diverged_loss(epoch, step + 1, data.n_batches, loss_sum / len(rows),
                                optimizer.current_learning_rate)
        penalty = model._penalty(data.n, len(rows))
        totals.penalty_sum += penalty * len(rows)
        totals.passes.add(logits, yb, loss_sum, None if wb is None else weight_total(wb))
        try:
            optimizer.step(model.backend, model._params, model._grads, samples=len(rows))
        except DivergenceError as exc:     # a non-finite gradient: nothing was updated
            raise diverged_at(epoch, step + 1, data.n_batches, exc) from None
        model._step += 1


class _FoldedTotals:
    """The fused path's totals of an epoch resumed from a checkpoint: the C++ totals
    cannot be set, so each remaining step runs alone and is added here exactly as the C++
    run adds it (r2's y sums, which the C++ takes around its own first batch's mean, are
    taken here around the epoch's, row by row in double as the C++ does)."""

    def __init__(self, state: dict):
        self.steps = 0
        self.__dict__.update({k: np.array(v, np.float64) if k in _R2_SUMS else v
                              for k, v in state.items()})

    def fold(self, step: "object", yb: np.ndarray) -> None:
        self.loss_sum += step.loss_sum
        self.weight_sum += step.weight_sum
        self.penalty_sum += step.penalty_sum
        self.count += step.count
        self.steps += step.steps
        if hasattr(self, "shift"):
            centered = yb.astype(np.float64) - self.shift
            self.sse = self.sse + step.sse
            self.sum = self.sum + np.add.accumulate(centered, axis=0)[-1]
            self.sum_sq = self.sum_sq + np.add.accumulate(centered * centered, axis=0)[-1]
        else:
            self.correct += step.correct


class _FusedSteps:
    """Steps of an epoch on the fused path (:class:`fastmlp.train.fused.FusedEpochs`): one C++
    call per step range, its totals (a backend TrainTotals, or _FoldedTotals after a
    resume) read into the History values with the per-op path's formulas."""

    def __init__(self, fused: FusedEpochs, data: _Data):
        self.fused, self.data = fused, data
        self.metric = fused.model._loss.metric_name

    def new_totals(self):
        return None          # run_steps creates the backend's totals at the first call

    def load_totals(self, state: dict, order: np.ndarray) -> _FoldedTotals:
        return _FoldedTotals(state)

    def state(self, totals, order: np.ndarray) -> dict:
        state = {"loss_sum": totals.loss_sum, "weight_sum": totals.weight_sum,
                 "penalty_sum": totals.penalty_sum, "count": totals.count}
        if self.metric != "r2":
            return {**state, "correct": totals.correct}
        if isinstance(totals, _FoldedTotals):
            shift = totals.shift
        else:                # the C++ shift: the first batch's mean of y, summed in order
            first = self.data.Y[self.data.rows(order, 0)].astype(np.float64)
            shift = np.add.accumulate(first, axis=0)[-1] / len(first)
        return {**state, "shift": shift, "sse": totals.sse, "sum": totals.sum,
                "sum_sq": totals.sum_sq}

    def record(self, totals) -> Dict[str, float]:
        record = {"data_loss": totals.loss_sum / totals.weight_sum
                  if totals.weight_sum > 0 else 0.0,
                  "penalty": totals.penalty_sum / self.data.n}
        if self.metric == "r2":
            record["r2"] = r2_from_sums(totals.count, totals.sse, totals.sum, totals.sum_sq)
        else:
            record["accuracy"] = totals.correct / totals.count
        return record

    def run(self, order: np.ndarray, begin: int, end: int, epoch: int, totals,
            on_steps: Callable[[int], None], interrupt: Optional[Interrupt] = None):
        """As _PerOpSteps.run; the C++ run reads ``interrupt``'s watch before each step."""
        data, fused = self.data, self.fused
        watch = None if interrupt is None else interrupt.watch
        if isinstance(totals, _FoldedTotals):
            for step in range(begin, end):
                if interrupt is not None and interrupt.requested:
                    break
                taken = fused.run_steps(data.X, data.Y, data.W, order, step, step + 1, epoch,
                                        watch=watch)
                totals.fold(taken, data.Y[data.rows(order, step)])
                self._note_interrupt(taken, interrupt)
                on_steps(taken.steps)
        elif interrupt is None or not interrupt.requested:
            before = 0 if totals is None else totals.steps
            totals = fused.run_steps(data.X, data.Y, data.W, order, begin, end, epoch, totals,
                                     watch)
            self._note_interrupt(totals, interrupt)
            on_steps(totals.steps - before)
        return totals

    @staticmethod
    def _note_interrupt(totals, interrupt: Optional[Interrupt]) -> None:
        """A run the watch ended: requested now, though Python's handler may not have
        run yet."""
        if totals.interrupted:
            interrupt.requested = True


# ------------------------------------------------------------------------ the fit
class _Fit:
    """One fit's epochs: shuffling, step ranges on either path, divergence roll-back,
    checkpoints, History values, validation and callbacks."""

    def __init__(self, model, optimizer: Optimizer, data: _Data, fused, validation,
                 callbacks, history: History, progress: EpochProgress, shuffle: bool,
                 checkpoints: Optional[Checkpoints]):
        self.model, self.optimizer, self.data, self.fused = model, optimizer, data, fused
        self.validation, self.callbacks, self.history = validation, callbacks, history
        self.progress, self.shuffle, self.checkpoints = progress, shuffle, checkpoints
        self.interrupt = Interrupt(model.backend)
        self._epoch_first_step = 0      # model.training_step at the epoch's first step

    def describe(self) -> dict:
        """What a checkpoint must share with this fit (Checkpoint.fit)."""
        return {"n_samples": self.data.n, "batch_size": self.data.batch,
                "shuffle": self.shuffle, "history_keys": list(self.history.history)}

    def _steps(self):
        if self.fused is not None and self.fused.applies():
            return _FusedSteps(self.fused, self.data)
        return _PerOpSteps(self.model, self.optimizer, self.data)

    def _order(self) -> Tuple[dict, np.ndarray]:
        """The shuffle generator's state, then the epoch's order drawn from it."""
        rng = self.model._shuffle_rng
        state = rng.bit_generator.state
        n = self.data.n
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        return state, np.ascontiguousarray(order, dtype=np.int64)

    def _segment_ends(self, epoch: int, begin: int) -> List[int]:
        """Where the epoch's step ranges end from ``begin``: at the epoch's end, at each
        mid-epoch checkpoint and, with a progress bar, every 1% of the epoch (one C++ call
        each on the fused path). The finite checks run after each range."""
        n_batches, ends = self.data.n_batches, {self.data.n_batches}
        if self.progress.has_bar:
            per_call = max(1, n_batches // 100)
            ends.update(range(per_call, n_batches, per_call))
        if self.checkpoints is not None:
            done = (epoch - 1) * n_batches
            ends.update(s for s in range(1, n_batches) if self.checkpoints.due_in_epoch(done + s))
        return sorted(end for end in ends if end > begin)

    def train_epoch(self, epoch: int, resumed: Optional[Checkpoint]) -> Dict[str, float]:
        """The epoch's steps (from a mid-epoch checkpoint's position when ``resumed``);
        returns its data loss, penalty and metric from the running totals."""
        steps, begin = self._steps(), 0
        if resumed is not None:
            self.model._shuffle_rng.bit_generator.state = resumed.epoch_shuffle
        shuffle_state, order = self._order()
        totals = steps.new_totals()
        if resumed is not None:
            begin = resumed.position.step
            totals = steps.load_totals(resumed.totals, order)
            self.progress.step(begin)
        self._epoch_first_step = self.model.training_step - begin
        start, first = Snapshot(self.model, self.optimizer), begin
        for end in self._segment_ends(epoch, begin):
            totals = self._run_checked(steps, order, epoch, start, first, begin, end, totals)
            if end < self.data.n_batches and self.checkpoints is not None \
                    and self.checkpoints.due_in_epoch((epoch - 1) * self.data.n_batches + end):
                self.checkpoints.write(self.model, self.history, Checkpoint(
                    Position(epoch - 1, end), self.describe(), shuffle_state,
                    steps.state(totals, order), callback_states(self.callbacks)))
            begin = end
        return steps.record(totals)

    def _run_checked(self, steps, order, epoch: int, start: Snapshot, first: int, begin: int,
                     end: int, totals):
        """Steps [begin, end) added to ``totals``; on a divergence (a step's error, or
        anything non-finite after them), roll back to ``start`` (taken at step ``first``)
        and on to the start of the failing step, and raise; KeyboardInterrupt when Ctrl-C
        stopped them (the model as after the last step taken)."""
        try:
            totals = steps.run(order, begin, end, epoch, totals, self.progress.step,
                               self.interrupt)
        except DivergenceError as error:
            raise self._rolled_back(steps, order, epoch, start, first, end, error) from None
        if non_finite(self.model, self.optimizer):
            raise self._rolled_back(steps, order, epoch, start, first, end, None)
        if self.interrupt.requested:
            step = self.model.training_step - self._epoch_first_step
            raise self.interrupt.error(self.model, self.history,
                                       f"at epoch {epoch}, after step {step} of "
                                       f"{self.data.n_batches}")
        return totals

    def _rolled_back(self, steps, order, epoch: int, start: Snapshot, first: int, end: int,
                     error: Optional[DivergenceError]) -> DivergenceError:
        """Put the model back at the start of the failing step and return its error.

        ``error`` is the failing step's (its update not applied); None when something
        became non-finite in steps [first, end), found by running them again one at a
        time from ``start``. When the state is finite and no layer keeps state, the model
        already is at the start of the failing step; otherwise it is restored to
        ``start`` and the steps before the failing one run again (deterministic: the same
        bits)."""
        model, optimizer = self.model, self.optimizer
        broken = bool(non_finite(model, optimizer))
        if error is not None and not broken \
                and not any(layer.get_state() for layer in model.layers):
            return error
        start.restore()
        if error is None or broken:
            failing, error = self._first_bad_step(steps, order, epoch, first, end)
            start.restore()
        else:
            failing = error.step - 1
        if failing > first:
            steps.run(order, first, failing, epoch, steps.new_totals(), _no_progress)
        return error

    def _first_bad_step(self, steps, order, epoch: int, first: int,
                        end: int) -> Tuple[int, DivergenceError]:
        """The first step of [first, end) that fails or leaves a non-finite value, and its
        error (the model is somewhere after ``first``; the caller restores it)."""
        model, optimizer, n_batches = self.model, self.optimizer, self.data.n_batches
        for step in range(first, end):
            try:
                steps.run(order, step, step + 1, epoch, steps.new_totals(), _no_progress)
            except DivergenceError as error:
                return step, error
            what = non_finite(model, optimizer)
            if what:
                return step, diverged_update(epoch, step + 1, n_batches,
                                             optimizer.last_learning_rate, what)
        return first, DivergenceError(
            f"training diverged at epoch {epoch} within steps {first + 1} to {end} of "
            f"{n_batches}, but running them again did not (a layer that is not "
            f"deterministic?); the weights are those before step {first + 1}",
            epoch=epoch, step=first + 1)


    # ------------------------------------------------------------------ epochs
    def resume(self, epochs: int) -> Optional[Checkpoint]:
        """Restore the model, optimizer, callbacks and History from the newest valid
        checkpoint (None when there is none)."""
        found = self.checkpoints.latest(type(self.model))
        if found is None:
            return None
        loaded, checkpoint = found
        check_compatible(self.model, loaded, checkpoint, self.describe(), self.callbacks,
                         epochs)
        restore(self.model, self.optimizer, loaded)
        self.history.history = loaded.history.history
        return checkpoint

    def run(self, epochs: int, resumed: Optional[Checkpoint]) -> None:
        """The epochs after ``resumed``'s position (from the first without one) until
        ``epochs`` or a callback stops training."""
        if resumed is not None and resumed.finished:
            return
        first = 1 if resumed is None else resumed.position.epochs_done + 1
        inside = resumed if resumed is not None and resumed.position.step > 0 else None
        # A diverging model overflows; the finite checks report it, not NumPy's warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), self.interrupt:
            for epoch in range(first, epochs + 1):
                self._epoch(epoch, epochs, inside if epoch == first else None)
                if self.interrupt.requested:
                    raise self.interrupt.error(self.model, self.history, f"after epoch {epoch}")
                if self.model.stop_training:
                    break

    def _epoch(self, epoch: int, epochs: int, resumed: Optional[Checkpoint]) -> None:
        """One epoch: its steps, History values, validation, callbacks, checkpoint. An
        epoch resumed inside does not call on_epoch_begin again (the callbacks' saved
        state already includes it)."""
        model, optimizer = self.model, self.optimizer
        if resumed is None:
            for callback in self.callbacks:
                callback.on_epoch_begin(epoch)
        self.progress.start_epoch(epoch)
        started = time.perf_counter()
        record = self.train_epoch(epoch, resumed)
        samples_per_s = self.data.n / (time.perf_counter() - started)
        record.update(loss=record["data_loss"] + record["penalty"],
                      lr=optimizer.last_learning_rate)
        optimizer.end_epoch()
        if self.validation is not None:
            record.update({f"val_{k}": v for k, v in model._evaluate(*self.validation).items()})
        logs = {k: record[k] for k in self.history.history}
        self.history.append(logs)
        self.progress.end_epoch(epoch, logs, samples_per_s)
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, dict(logs))
        finished = model.stop_training or epoch == epochs
        if self.checkpoints is not None and self.checkpoints.due_after_epoch(
                epoch, epoch * self.data.n_batches, finished):
            self.checkpoints.write(model, self.history, Checkpoint(
                Position(epoch, 0), self.describe(), callbacks=callback_states(self.callbacks),
                finished=finished))


@suggest_keywords
@one_fit_at_a_time
def fit(model, X, y, *, epochs: int, batch_size: Optional[int] = 32,
        learning_rate=None, optimizer=None, shuffle: bool = True,
        validation_data=None, callbacks=None, verbose="auto",
        sample_weight=None, class_weight=None, checkpoint_dir=None,
        checkpoint_every: Optional[int] = 1, checkpoint_every_steps: Optional[int] = None,
        resume: bool = False, keep_checkpoints: int = 2) -> History:
    """Train ``model`` on (X, y) from its current weights with gradient descent.

    batch_size=None is batch gradient descent (the whole set per step), 1 is stochastic,
    anything else mini-batch (a batch larger than the data is the whole set). Each step
    computes the mean loss over the batch and its gradient and applies the optimizer.

    ``optimizer`` is an instance or a name (:func:`fastmlp.optimizers.get_optimizer`);
    it is kept on the model with its state and reused by later fits unless a new one is
    given (docs/conventions.md). The first fit without one uses SGD. ``learning_rate`` (a
    number or a schedule) goes with a name (None: that optimizer's default rate) or
    replaces the kept optimizer's rate; together with an instance it is a ValueError.
    The optimizer counts the steps and epochs of its schedule across fits.

    Shuffling draws from a generator seeded by ``model.seed`` and kept on the model, so
    successive fits continue its stream.
    Training metrics are running totals over the epoch's batches, computed from each
    batch's outputs before its update. Returns a :class:`History`; its "lr" is the rate
    of the epoch's last step.

    ``epochs`` is at most :data:`MAX_EPOCHS` (10**6). ``verbose``: 0 prints nothing; 1 a
    line per epoch on stdout (loss, metric, validation values, samples/s) and, when tqdm
    is installed and stderr is a terminal, a bar over each epoch's batches on stderr;
    "auto" (the default) is 1 when stderr is a terminal or a Jupyter kernel's, the bar
    only for epochs of a second or more, and 0 elsewhere (pipes, files, CI).

    Before training, fit refuses (ValueError, saying how much is needed and available) a
    batch whose step workspaces and optimizer state would not fit in the memory
    available, and warns (:class:`fastmlp.errors.DataScaleWarning`) when input columns
    are far from unit scale (|mean| or std above 100) and the model's first layer is not
    Normalization or BatchNorm.

    Divergence: a step whose loss or gradient is not finite raises
    :class:`fastmlp.DivergenceError` before its update; so does a step whose update
    leaves a non-finite parameter, optimizer state or layer state (checked after each
    run of steps, then found by running the steps again one at a time). Either way the
    model is left exactly as at the start of the failing step (weights, layer state,
    optimizer, counters), never with non-finite values; the error names the epoch, the
    step and the rate (also as ``.epoch``, ``.step``, ``.learning_rate``) and its
    ``.history`` (also ``model.history``) holds the completed epochs. Callbacks'
    on_train_end is not called.

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

    Checkpoints (:mod:`fastmlp.train.checkpoint`): with ``checkpoint_dir`` (created if needed)
    fit writes a checkpoint after every ``checkpoint_every``-th epoch (None: none by
    epoch), after every ``checkpoint_every_steps``-th training step of the fit (None:
    none by step) and when training ends, keeping the newest ``keep_checkpoints``. Each
    holds the model file (weights, layer state, optimizer, counters, shuffle generator),
    this fit's History so far, the callbacks' ``state_dict()``, the position in the epoch
    and the epoch's running totals. ``resume=True`` continues from the newest valid
    checkpoint in the directory (a damaged one is renamed ``*.corrupt`` with a
    CheckpointWarning and the one before is used), or starts if there is none: call fit
    with the same model architecture and seed, data, batch size, shuffle, validation data,
    optimizer class and callback classes (ValueError otherwise); the weights, optimizer
    state and History then equal the uninterrupted fit's bit for bit. Without
    ``resume``, a directory that already holds checkpoints is a FileExistsError. Models
    with parts the model file cannot hold (custom layers, ...) cannot checkpoint
    (TypeError).

    Ctrl-C (SIGINT) stops fit at the next step boundary (within a step, also on the
    fused path) and raises KeyboardInterrupt: the model is as after the last step taken
    (weights, layer state, optimizer state and counters, ``training_step``), no
    checkpoint is written and ``model.history`` holds the completed epochs. This holds
    when fit runs in the main thread and SIGINT has Python's default handler; a fit in
    another thread is not stopped by Ctrl-C (Python delivers it to the main thread).

    Threads: fit holds the model for its whole run; ``fit``, ``set_weights`` (except from
    the fit's own callbacks) or an estimator's ``partial_fit`` on it from another thread
    raise RuntimeError. ``predict`` (and ``evaluate``) from another thread are allowed
    and see the weights between two steps, never half-updated.

    Models of the built-in layers on the native backend train on the fused path
    (:mod:`fastmlp.train.fused`: one C++ call per epoch, the same weights bit for bit); models
    with custom layers, optimizers or regularizers on the per-op loop.

    The History is also kept as ``model.history`` (the model file saves it).
    """
    epochs = check_epochs(epochs)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size")
    if learning_rate is not None:
        learning_rate = check_learning_rate(learning_rate)
    shuffle = check_bool(shuffle, "shuffle")
    verbose = check_verbose(verbose)
    callbacks = check_callbacks(callbacks)
    checkpoints = Checkpoints.create(checkpoint_dir, checkpoint_every, checkpoint_every_steps,
                                     keep_checkpoints, resume)
    columns = getattr(X, "columns", None)          # a DataFrame's, for the scale warning
    X, Y = model._prepare(X, y)
    W = sample_weights(model, X, Y, sample_weight, class_weight)
    validation = _validation_arrays(model, validation_data)
    optimizer = _optimizer(model, optimizer, learning_rate)
    optimizer.check_params(model._params)
    data = _Data(X, Y, W, len(X) if batch_size is None else min(batch_size, len(X)))
    check_fit_memory(model, optimizer, data.batch)
    warn_if_unscaled(model, X, columns)
    model._optimizer = optimizer
    if checkpoints is not None:
        checkpoints.check_model(model)

    metric = model._loss.metric_name
    val_keys = [] if validation is None else ["val_loss", f"val_{metric}"]
    history = History(["loss", "data_loss", "penalty", metric, *val_keys, "lr"])
    progress = EpochProgress(verbose, epochs, data.n_batches, data.n * model.n_params)
    model.stop_training = False
    run = _Fit(model, optimizer, data, None, validation, callbacks, history, progress,
               shuffle, checkpoints)
    resumed = run.resume(epochs) if checkpoints is not None and resume else None

    model._adapt(X)
    run.fused = FusedEpochs.create(model, optimizer, data.batch) if _FUSED else None
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    if resumed is not None:
        load_callback_states(callbacks, resumed)
    try:
        run.run(epochs, resumed)
    except DivergenceError as error:
        error.history = model.history = history
        if error.learning_rate is None:
            error.learning_rate = optimizer.current_learning_rate
        raise
    except KeyboardInterrupt:
        model.history = history
        raise
    for callback in callbacks:
        callback.on_train_end()
    model.history = history
    return history
