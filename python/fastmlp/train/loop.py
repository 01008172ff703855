"""The fit loop: epochs, batching, shuffling, validation, per-epoch history.

Each epoch runs on the fused path (fused.py) when the model and backend allow it, else on
the per-op loop (steps.py), which stays the reference: both make the same kernel calls.
Step ranges are checked for divergence and rolled back in rollback.py; fit's arguments
become what the loop uses in arguments.py."""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._validation import check_bool, check_int
from ..io.sources import as_source
from ..errors import DivergenceError
from ..optim.optimizers import Optimizer, check_learning_rate
from .arguments import fit_data, fit_optimizer, sample_weights, validation_pass
from .callbacks import check_callbacks
from .checkpoint import (Checkpoint, Checkpoints, Position, callback_states, check_compatible,
                         load_callback_states, restore)
from .distributed import MPI, AgreedInterrupt, DistributedSteps, Exchange, FusedShard, fingerprint
from .fused import FusedEpochs
from .guards import Interrupt, one_fit_at_a_time
from .history import History
from .preflight import check_fit_memory, warn_if_unscaled
from .progress import EpochProgress, check_verbose
from .protocol import TrainableModel
from .rollback import CheckedSteps
from .steps import TrainingData, epoch_steps
from .stream import StreamData


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


# fit and predict take the fused paths (fused.py) whenever the model, optimizer and backend
# allow them; tests set this to False to run the per-op paths, the reference, on the native
# backend.
_FUSED = True


def fused_enabled() -> bool:
    """Whether fit and predict take the fused paths where a model allows them (the switch
    tests turn off, ``_FUSED``)."""
    return _FUSED


# ------------------------------------------------------------------------ the fit
class _FitCheckpoints:
    """A fit's checkpoints (none when ``checkpoints`` is None): when they are due, what
    they record, and resuming from the newest."""

    def __init__(self, checkpoints: Optional[Checkpoints], model, data: TrainingData,
                 shuffle: bool, history: History, callbacks):
        self.checkpoints, self.model, self.data, self.shuffle = checkpoints, model, data, shuffle
        self.history, self.callbacks = history, callbacks

    def describe(self) -> dict:
        """What a checkpoint must share with this fit (Checkpoint.fit)."""
        described = {"n_samples": self.data.n, "batch_size": self.data.batch,
                     "shuffle": self.shuffle, "history_keys": list(self.history.history)}
        if isinstance(self.data, StreamData):
            described["shuffle_buffer"] = self.data.buffer_rows
        return described

    def resume(self, optimizer: Optimizer, epochs: int) -> Optional[Checkpoint]:
        """Restore the model, optimizer, callbacks and History from the newest valid
        checkpoint (None when there is none)."""
        found = self.checkpoints.latest(type(self.model))
        if found is None:
            return None
        loaded, checkpoint = found
        check_compatible(self.model, loaded, checkpoint, self.describe(), self.callbacks,
                         epochs)
        restore(self.model, optimizer, loaded)
        self.history.history = loaded.history.history
        return checkpoint

    def steps_due(self, epoch: int) -> Set[int]:
        """The epoch's steps, but its last, after which a checkpoint is due."""
        if self.checkpoints is None:
            return set()
        n_batches = self.data.n_batches
        done = (epoch - 1) * n_batches
        return {s for s in range(1, n_batches) if self.checkpoints.due_in_epoch(done + s)}

    def write_in_epoch(self, epoch: int, step: int, shuffle_state: dict, totals: dict) -> None:
        """The checkpoint after the epoch's step ``step``: where it is, the shuffle state
        the epoch began with and its running ``totals``."""
        self.checkpoints.write(self.model, self.history, Checkpoint(
            Position(epoch - 1, step), self.describe(), shuffle_state, totals,
            callback_states(self.callbacks)))

    def after_epoch(self, epoch: int, finished: bool) -> None:
        """The checkpoint after ``epoch``, when one is due (always when ``finished``)."""
        if self.checkpoints is not None and self.checkpoints.due_after_epoch(
                epoch, epoch * self.data.n_batches, finished):
            self.checkpoints.write(self.model, self.history, Checkpoint(
                Position(epoch, 0), self.describe(), callbacks=callback_states(self.callbacks),
                finished=finished))


class _EpochLog:
    """What surrounds an epoch's steps: the callbacks, the progress line, and the History
    values (loss, rate, validation) recorded at its end."""

    def __init__(self, model, optimizer: Optimizer, validation, callbacks, history: History,
                 progress: EpochProgress):
        self.model, self.optimizer, self.validation = model, optimizer, validation
        self.callbacks, self.history, self.progress = callbacks, history, progress

    def begin(self, epoch: int, resumed_inside: bool) -> None:
        """An epoch resumed inside does not call on_epoch_begin again (the callbacks'
        saved state already includes it)."""
        if not resumed_inside:
            for callback in self.callbacks:
                callback.on_epoch_begin(epoch)
        self.progress.start_epoch(epoch)

    def end(self, epoch: int, record: Dict[str, float], samples_per_s: float) -> None:
        """The epoch's History values from the steps' ``record``, then the callbacks."""
        optimizer = self.optimizer
        record.update(loss=record["data_loss"] + record["penalty"],
                      lr=optimizer.last_learning_rate)
        optimizer.end_epoch()
        if self.validation is not None:
            record.update({f"val_{k}": v for k, v in self.validation().items()})
        logs = {k: record[k] for k in self.history.history}
        self.history.append(logs)
        self.progress.end_epoch(epoch, logs, samples_per_s)
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, dict(logs))


class _Fit:
    """One fit's epochs: shuffling, step ranges on either path (checked for divergence,
    :class:`fastmlp.train.rollback.CheckedSteps`), Ctrl-C, with the epochs' bookkeeping
    (_EpochLog) and checkpoints (_FitCheckpoints)."""

    def __init__(self, model, optimizer: Optimizer, data: TrainingData, log: _EpochLog,
                 saving: _FitCheckpoints, shuffle: bool, fused: Optional[FusedEpochs],
                 exchange: Optional[Exchange] = None):
        self.model, self.optimizer, self.data, self.fused = model, optimizer, data, fused
        self.log, self.saving, self.shuffle, self.exchange = log, saving, shuffle, exchange
        self.interrupt = (Interrupt if exchange is None else AgreedInterrupt)(model.backend)
        # a distributed fit's shards on the fused path where the model allows it
        self.shard = (FusedShard.create(model, data, exchange.size)
                      if exchange is not None and _FUSED else None)
        self._epoch_first_step = 0      # model.training_step at the epoch's first step

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
                    raise self.interrupt.error(self.model, self.log.history,
                                               f"after epoch {epoch}")
                if self.model.stop_training:
                    break

    def _epoch(self, epoch: int, epochs: int, resumed: Optional[Checkpoint]) -> None:
        """One epoch: its steps, History values, validation, callbacks, checkpoint."""
        self.log.begin(epoch, resumed is not None)
        started = time.perf_counter()
        record = self.train_epoch(epoch, resumed)
        self.log.end(epoch, record, self.data.n / (time.perf_counter() - started))
        self.saving.after_epoch(epoch, self.model.stop_training or epoch == epochs)

    def _order(self, keep_state: bool) -> Tuple[Optional[dict], np.ndarray]:
        """The shuffle generator's state (when ``keep_state``: a mid-epoch checkpoint
        saves it; else None), then the epoch's order: the backend's shuffled order of a
        seed drawn from it (one 64-bit draw an epoch)."""
        rng = self.model.shuffle_rng
        state = rng.bit_generator.state if keep_state else None
        n = self.data.n
        if not self.shuffle:
            return state, np.arange(n, dtype=np.int64)
        return state, self.model.backend.shuffled_order(n, rng.bit_generator.random_raw())

    def _segment_ends(self, begin: int, end: int, due: Set[int]) -> List[int]:
        """Where the step ranges of the epoch's steps [begin, end) end: at ``end``, at
        each mid-epoch checkpoint (``due``) and, with a progress bar, every 1% of the epoch
        (one C++ call each on the fused path). The finite checks run after each range."""
        n_batches, ends = self.data.n_batches, {end, *due}
        if self.log.progress.has_bar:
            per_call = max(1, n_batches // 100)
            ends.update(range(per_call, n_batches, per_call))
        return sorted(e for e in ends if begin < e <= end)

    def train_epoch(self, epoch: int, resumed: Optional[Checkpoint]) -> Dict[str, float]:
        """The epoch's steps (from a mid-epoch checkpoint's position when ``resumed``);
        returns its data loss, penalty and metric from the running totals."""
        if self.exchange is not None:
            steps = DistributedSteps(self.model, self.optimizer, self.data, self.exchange,
                                     self.shard)
        else:
            steps = epoch_steps(self.model, self.optimizer, self.data, self.fused)
        begin = 0
        if resumed is not None:
            self.model.shuffle_rng.bit_generator.state = resumed.epoch_shuffle
        due = self.saving.steps_due(epoch)
        shuffle_state, order = self._order(keep_state=bool(due))
        totals = steps.new_totals()
        if resumed is not None:
            begin = resumed.position.step
            totals = steps.load_totals(resumed.totals)
            self.log.progress.step(begin)
        self._epoch_first_step = self.model.training_step - begin
        checked = CheckedSteps(self.model, self.optimizer, steps, order, epoch, begin)
        for end in self._segment_ends(begin, self.data.n_batches, due):
            totals = checked.run(begin, end, totals, self.log.progress.step, self.interrupt)
            self._stop_if_interrupted(epoch)
            if end in due:
                self.saving.write_in_epoch(epoch, end, shuffle_state,
                                         steps.state(totals, steps.first_batch(order)))
            begin = end
        return steps.record(totals)

    def _stop_if_interrupted(self, epoch: int) -> None:
        """KeyboardInterrupt when Ctrl-C stopped the steps (the model as after the last
        step taken)."""
        if self.interrupt.requested:
            step = self.model.training_step - self._epoch_first_step
            raise self.interrupt.error(self.model, self.log.history,
                                       f"at epoch {epoch}, after step {step} of "
                                       f"{self.data.n_batches}")


class _StreamFit(_Fit):
    """A fit's epochs over a streamed source (:mod:`fastmlp.train.stream`): each epoch's
    blocks in turn, each block's step ranges checked as an in-memory epoch's (a
    divergence rolls back within the block); the running totals, the checkpoints' step
    positions and the History values are the epoch's."""

    def train_epoch(self, epoch: int, resumed: Optional[Checkpoint]) -> Dict[str, float]:
        model, data, rng = self.model, self.data, self.model.shuffle_rng
        if resumed is not None:
            rng.bit_generator.state = resumed.epoch_shuffle
        due = self.saving.steps_due(epoch)
        shuffle_state = rng.bit_generator.state if due else None
        plan = data.plan(rng.bit_generator.random_raw() if self.shuffle else None)
        begin = 0 if resumed is None else resumed.position.step
        if resumed is not None:
            self.log.progress.step(begin)
        self._epoch_first_step = model.training_step - begin
        steps = totals = first = None
        with data.blocks(plan, begin) as blocks:
            for block in blocks:
                steps = epoch_steps(model, self.optimizer, block.data, self.fused)
                if totals is None:
                    totals = (steps.new_totals() if resumed is None
                              else steps.load_totals(resumed.totals))
                    first = steps.first_batch(block.order)
                totals = self._block(block, steps, begin, due, totals, epoch,
                                     lambda end, totals: self.saving.write_in_epoch(
                                         epoch, end, shuffle_state, steps.state(totals, first)))
                begin = block.data.first_step + block.steps
        return steps.record(totals)

    def _block(self, block, steps, begin: int, due: Set[int], totals, epoch: int, save):
        """The block's steps from the epoch's step ``begin`` on, in checked ranges; a
        checkpoint (``save(end, totals)``) after each due step."""
        offset = block.data.first_step
        local = begin - offset
        checked = CheckedSteps(self.model, self.optimizer, steps, block.order, epoch, local)
        for end in self._segment_ends(begin, offset + block.steps, due):
            totals = checked.run(local, end - offset, totals, self.log.progress.step,
                                 self.interrupt)
            self._stop_if_interrupted(epoch)
            if end in due:
                save(end, totals)
            local = end - offset
        return totals


@suggest_keywords
@one_fit_at_a_time
def fit(model: TrainableModel, X, y=None, *, epochs: int, batch_size: Optional[int] = 32,
        learning_rate=None, optimizer=None, shuffle: bool = True,
        validation_data=None, callbacks=None, verbose="auto",
        sample_weight=None, class_weight=None, checkpoint_dir=None,
        checkpoint_every: Optional[int] = 1, checkpoint_every_steps: Optional[int] = None,
        resume: bool = False, keep_checkpoints: int = 2,
        shuffle_buffer: Optional[int] = None, distributed: Optional[MPI] = None) -> History:
    """Train ``model`` on (X, y) from its current weights with gradient descent.

    ``model`` is any :class:`fastmlp.train.protocol.TrainableModel` (Sequential, MultiTask).

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

    Data larger than memory (:mod:`fastmlp.train.stream`, README "Training from disk"):
    X may be a :class:`fastmlp.sources.Source` (y None), the path of an .npy file or a
    np.memmap (y another's, or an array), a directory or file of Parquet or a CSV file (y
    the target column's name), a Dask array (y a Dask array) or DataFrame (y the target column's
    name), or an object with ``reset()`` and ``next()`` (y None). fit then reads it in
    chunks, in a new chunk order each epoch, through a shuffle buffer of
    ``shuffle_buffer`` rows (default: 128 MiB of rows, rounded down to a multiple of the
    batch size; docs/streaming.md) from which each step draws its batch; sample weights
    come from the source (``sample_weight`` is then a ValueError), ``batch_size`` must
    be a number, and everything else (validation, callbacks, checkpoints and resume)
    works as for arrays. A Sequential model only. ``validation_data`` may be a source
    too (or a pair that X, y above would make one), read at every epoch's end.

    Data-parallel training (:mod:`fastmlp.train.distributed`, README "Beyond one
    machine"): with ``distributed=fastmlp.distributed.MPI()``, run the same script on
    every rank (``mpirun -n P``) with the same model (seed) and arrays; each rank computes
    its shard of every global batch of ``batch_size`` rows and the gradients are summed
    in rank order every step, so every rank ends with the same model, equal to one
    process's fit to float rounding (docs/distributed.md). Rank 0 alone writes
    checkpoints and prints progress; every rank resumes from the same directory, with
    any number of ranks. Arrays only (not a streamed source), one step per call.

    The History is also kept as ``model.history`` (the model file saves it).
    """
    epochs = check_epochs(epochs)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size")
    if learning_rate is not None:
        learning_rate = check_learning_rate(learning_rate)
    shuffle = check_bool(shuffle, "shuffle")
    verbose = check_verbose(verbose)
    exchange = _exchange(distributed, X, y)
    if exchange is not None and exchange.rank:
        verbose = 0
    callbacks = check_callbacks(callbacks)
    checkpoints = Checkpoints.create(checkpoint_dir, checkpoint_every, checkpoint_every_steps,
                                     keep_checkpoints, resume,
                                     writes=exchange is None or exchange.rank == 0)
    source = as_source(X, y)
    if source is None:
        columns = getattr(X, "columns", None)      # a DataFrame's, for the scale warning
        data = _in_memory(model, X, y, batch_size, sample_weight, class_weight, shuffle_buffer)
        X = data.X
    else:
        columns = None
        data = _streamed(model, source, batch_size, sample_weight, class_weight, shuffle_buffer)
        X = data.first_rows                        # the scale warning's sample
    validation = validation_pass(model, validation_data)
    optimizer = fit_optimizer(model, optimizer, learning_rate)
    optimizer.check_params(model.flat_params)
    check_fit_memory(model, optimizer, data.batch, X)
    warn_if_unscaled(model, X, columns)
    model.optimizer = optimizer
    if checkpoints is not None:
        checkpoints.check_model(model)

    history = History(model.history_keys(validation is not None))
    progress = EpochProgress(verbose, epochs, data.n_batches, data.n * model.n_params)
    model.stop_training = False
    saving = _FitCheckpoints(checkpoints, model, data, shuffle, history, callbacks)
    resumed = saving.resume(optimizer, epochs) if checkpoints is not None and resume else None

    if source is None:
        model.adapt(X)           # a stream's Normalization adapted in StreamData's survey
    fused = FusedEpochs.create(model, optimizer, data.batch) if _FUSED and exchange is None \
        else None
    log = _EpochLog(model, optimizer, validation, callbacks, history, progress)
    run = (_Fit if source is None else _StreamFit)(model, optimizer, data, log, saving,
                                                   shuffle, fused, exchange)
    if exchange is None:
        _train(run, epochs, resumed)
    else:
        _train_distributed(run, epochs, resumed, exchange)
    return history


def _exchange(distributed, X, y) -> Optional[Exchange]:
    """fit's ``distributed``: None, or the Exchange of an MPI() over arrays."""
    if distributed is None:
        return None
    if not isinstance(distributed, MPI):
        raise TypeError("distributed must be None or fastmlp.distributed.MPI(); got "
                        f"{type(distributed).__name__}")
    if as_source(X, y) is not None:
        raise ValueError("a distributed fit takes arrays X and y (every rank the same; "
                         "np.load(path, mmap_mode='r') maps an .npy file), not a streamed "
                         "source")
    return Exchange(distributed)


def _in_memory(model, X, y, batch_size: Optional[int], sample_weight, class_weight,
               shuffle_buffer) -> TrainingData:
    """fit's arrays as the steps take them."""
    if shuffle_buffer is not None:
        raise ValueError("shuffle_buffer applies to streamed data (X a source, a path, a "
                         "Dask collection or a chunk iterator); arrays are shuffled whole")
    X, Y = fit_data(model, X, y)
    W = sample_weights(model, X, Y, sample_weight, class_weight)
    return TrainingData(X, Y, W, len(X) if batch_size is None else min(batch_size, len(X)))


def _streamed(model, source, batch_size: Optional[int], sample_weight, class_weight,
              shuffle_buffer) -> StreamData:
    """fit's streamed source as the epochs read it (its survey pass, when one is
    needed, runs here)."""
    if batch_size is None:
        raise ValueError("batch_size=None (the whole set per step) needs the data in "
                         "memory; a streamed fit takes a batch_size")
    if sample_weight is not None:
        raise ValueError("a streamed fit takes its sample weights from the source (e.g. "
                         "fastmlp.sources.Npy(X, y, sample_weight=...), a Parquet column, "
                         "or an iterator's (X, y, w) chunks), not sample_weight=")
    if shuffle_buffer is not None:
        shuffle_buffer = check_int(shuffle_buffer, "shuffle_buffer")
    return StreamData(model, source, batch_size, shuffle_buffer, class_weight)


def _train_distributed(run: _Fit, epochs: int, resumed: Optional[Checkpoint],
                       exchange: Exchange) -> None:
    """_train on every rank, once they agree that they train the same model on the same
    data with the same arguments; an error that only this rank meets then ends the job
    (Exchange.ending_the_job)."""
    exchange.agree(fingerprint(run.model, run.optimizer, run.data, {
        "epochs": epochs, "shuffle": run.shuffle, "batch_size": run.data.batch,
        "validation": run.log.validation is not None,
        "resumed": None if resumed is None else (resumed.position.epochs_done,
                                                 resumed.position.step),
        "callbacks": [type(c).__qualname__ for c in run.log.callbacks]}))
    with exchange.ending_the_job():
        _train(run, epochs, resumed)


def _train(run: _Fit, epochs: int, resumed: Optional[Checkpoint]) -> None:
    """fit's epochs between the callbacks' on_train_begin and on_train_end; the History is
    kept as ``model.history`` however they end (and on a DivergenceError too)."""
    model, callbacks, history = run.model, run.log.callbacks, run.log.history
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
            error.learning_rate = run.optimizer.current_learning_rate
        raise
    except KeyboardInterrupt:
        model.history = history
        raise
    for callback in callbacks:
        callback.on_train_end()
    model.history = history
