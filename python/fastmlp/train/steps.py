"""An epoch's steps on either path, and their running totals.

:class:`PerOpSteps` runs each step as one backend call per kernel (the reference);
:class:`FusedSteps` runs step ranges in one C++ call each (:mod:`fastmlp.train.fused`). Both
take the same arguments, keep running totals the same way (:meth:`state` as a checkpoint's
plain data, :meth:`load_totals` back) and give the epoch's History values (:meth:`record`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from ..errors import DivergenceError, diverged_at, diverged_loss
from ..nn.losses import get_loss
from ..nn.metrics import weight_total
from ..optim.optimizers import Optimizer
from .checkpoint import Snapshot, non_finite
from .fused import FusedEpochs
from .guards import Interrupt

__all__ = ["FusedSteps", "PerOpSteps", "TrainingData", "epoch_steps", "no_progress"]


@dataclass(frozen=True)
class TrainingData:
    """The training arrays (W: sample weights or None) and the steps over them. When they
    are one block of a streamed epoch (:mod:`fastmlp.train.stream`), ``n_samples`` is the
    whole training set's rows (the regularizers' n and the epoch's penalty mean) and
    ``first_step`` the block's first step in its epoch of ``epoch_batches`` steps (what a
    divergence's error names); by default the arrays are the whole set."""
    X: np.ndarray
    Y: np.ndarray
    W: Optional[np.ndarray]
    batch: int
    n_samples: Optional[int] = None
    first_step: int = 0
    epoch_batches: Optional[int] = None

    @property
    def n(self) -> int:
        """The training set's rows (the arrays' unless they are a block of a stream)."""
        return len(self.X) if self.n_samples is None else self.n_samples

    @property
    def n_batches(self) -> int:
        """The steps of the epoch (of the stream's whole epoch for a block)."""
        if self.epoch_batches is not None:
            return self.epoch_batches
        return -(-self.n // self.batch)

    def step_number(self, step: int) -> int:
        """The 1-based number in its epoch of step ``step`` over these arrays."""
        return self.first_step + step + 1

    def rows(self, order: np.ndarray, step: int) -> np.ndarray:
        return order[step * self.batch:(step + 1) * self.batch]


def no_progress(steps: int = 1) -> None:
    """The progress callback of replayed steps."""


# ------------------------------------------------------------------ running totals
# An epoch's running totals as plain data (a checkpoint's "totals"), the same for both
# paths: loss_sum, weight_sum, penalty_sum, count, and correct (accuracy) or r2's shift,
# sse, sum, sum_sq (float64 arrays, y's sums taken minus the epoch's first batch mean).
_R2_SUMS = ("shift", "sse", "sum", "sum_sq")


class _PerOpTotals:
    """The per-op loop's running totals: PassTotals (losses, metric) and the penalty."""

    def __init__(self, passes):
        self.passes = passes
        self.penalty_sum = 0.0

    def state(self) -> dict:
        return {**self.passes.state(), "penalty_sum": self.penalty_sum}

    def load(self, state: dict) -> "_PerOpTotals":
        self.passes.load(state)
        self.penalty_sum = state["penalty_sum"]
        return self


class PerOpSteps:
    """Steps of an epoch on the per-op loop: each step's batch gathered into the model's
    training cache, then one backend call per kernel through the layers, the loss and the
    optimizer."""

    def __init__(self, model, optimizer: Optimizer, data: TrainingData):
        self.model, self.optimizer, self.data = model, optimizer, data

    def new_totals(self) -> _PerOpTotals:
        return _PerOpTotals(self.model.new_totals())

    def load_totals(self, state: dict) -> _PerOpTotals:
        return self.new_totals().load(state)

    def first_batch(self, order: np.ndarray) -> None:
        """What :meth:`state` needs of the epoch's first batch: nothing (PassTotals keeps
        r2's shift itself)."""
        return None

    def state(self, totals: _PerOpTotals, first: None) -> dict:
        return totals.state()

    def record(self, totals: _PerOpTotals) -> Dict[str, float]:
        return {**totals.passes.result(), "penalty": totals.penalty_sum / self.data.n}

    def non_finite(self, totals: _PerOpTotals) -> str:
        """What is not finite after a step range (checkpoint.non_finite)."""
        return non_finite(self.model, self.optimizer)

    def snapshot(self) -> Snapshot:
        """The state the epoch's steps start from, to roll back to."""
        return Snapshot(self.model, self.optimizer)

    def run(self, order: np.ndarray, begin: int, end: int, epoch: int,
            totals: _PerOpTotals, on_steps: Callable[[int], None],
            interrupt: Optional[Interrupt] = None) -> _PerOpTotals:
        """Steps [begin, end) of the epoch visiting rows in ``order``, added to ``totals``;
        DivergenceError before the update of a step whose loss or gradient is not finite.
        Stops before the next step once ``interrupt`` is requested."""
        model = self.model
        with model.writing_params():
            for step in range(begin, end):
                if interrupt is not None and interrupt.requested:
                    break
                with model.weights_lock.writing:
                    self._step(order, step, epoch, totals)
                on_steps(1)
        return totals

    def _step(self, order: np.ndarray, step: int, epoch: int, totals: _PerOpTotals) -> None:
        """One step: the batch gathered, forward, loss, backward, penalty, update."""
        model, optimizer, data = self.model, self.optimizer, self.data
        rows = data.rows(order, step)
        loss_sum, outputs, yb, weight = self._gradient(rows)
        if not math.isfinite(loss_sum):
            raise diverged_loss(epoch, data.step_number(step), data.n_batches, loss_sum / len(rows),
                                optimizer.current_learning_rate)
        penalty = model.penalty(data.n, len(rows), batch_weight=weight)
        totals.penalty_sum += penalty * len(rows)
        totals.passes.add(outputs, yb, loss_sum, weight)
        try:
            optimizer.step(model.backend, model.flat_params, model.flat_grads,
                           samples=len(rows))
        except DivergenceError as exc:     # a non-finite gradient: nothing was updated
            raise diverged_at(epoch, data.step_number(step), data.n_batches, exc) from None
        model.training_step += 1

    def _gradient(self, rows: np.ndarray):
        """The batch ``rows``' loss sum, outputs, targets and weight sum (None without
        sample weights), its gradient in the model's flat_grads."""
        model, data = self.model, self.data
        xb, yb, wb = model.gather_batch(data.X, data.Y, data.W, rows)
        loss_sum, outputs = model.loss_and_grad(xb, yb, wb)
        return loss_sum, outputs, yb, None if wb is None else weight_total(wb)


class _FoldedTotals:
    """The fused path's totals of an epoch resumed from a checkpoint: the C++ totals
    cannot be set, so each remaining step runs alone and is added here exactly as the C++
    run adds it, per loss head (``heads``: each head's totals as plain data; r2's y sums,
    which the C++ takes around its own first batch's mean, are taken here around the
    epoch's, row by row in double as the C++ does)."""

    # Its steps each ran in a call of their own: the finite check runs in Python.
    state_finite = False

    def __init__(self, heads: List[dict], penalty_sum: float):
        self.steps = 0
        self.penalty_sum = penalty_sum
        self.heads = [{k: np.array(v, np.float64) if k in _R2_SUMS else v
                       for k, v in head.items()} for head in heads]

    def fold(self, step: "object", targets: List[np.ndarray]) -> None:
        """Add one step's run (its totals) whose rows of each head's targets are
        ``targets``."""
        self.penalty_sum += step.penalty_sum
        self.steps += step.steps
        for head, totals, yb in zip(self.heads, step.heads, targets):
            head["loss_sum"] += totals.loss_sum
            head["weight_sum"] += step.weight_sum
            head["count"] += totals.count
            if "shift" in head:
                centered = yb.astype(np.float64) - head["shift"]
                head["sse"] = head["sse"] + totals.sse
                head["sum"] = head["sum"] + np.add.accumulate(centered, axis=0)[-1]
                head["sum_sq"] = head["sum_sq"] + np.add.accumulate(centered * centered,
                                                                    axis=0)[-1]
            else:
                head["correct"] += totals.correct


class _TrainerSnapshot(Snapshot):
    """A Snapshot whose parameters, m and v the C++ trainer keeps: the next run saves
    them before its first step (``save_first``), and restoring asks the trainer that saved
    them to put them back. The rest (counters, layer state) as Snapshot keeps it."""

    def __init__(self, steps: "FusedSteps"):
        self.steps = steps
        super().__init__(steps.fused.model, steps.fused.optimizer)

    def _save_arrays(self) -> None:
        self.steps.save_next = True

    def _restore_arrays(self) -> None:
        self.steps.fused.saved_by.restore_saved()


class FusedSteps:
    """Steps of an epoch on the fused path (:class:`fastmlp.train.fused.FusedEpochs`): one C++
    call per step range, its totals (a backend TrainTotals, or _FoldedTotals after a
    resume) read per loss head into the model's own totals (``new_totals``: the per-op
    path's) for the checkpoint's state and the History values. A program of several
    heads (MultiTask) gets the heads' targets side by side in one array."""

    def __init__(self, fused: FusedEpochs, data: TrainingData, program: dict):
        self.fused, self.data, self.program = fused, data, program
        self.stateless = not any(layer.get_state() for layer in fused.model.layers)
        self.save_next = False      # the next run saves the state first (_TrainerSnapshot)
        heads = program.get("heads")
        self.names = None if heads is None else [head["name"] for head in heads]
        if heads is None:
            self.metrics = [get_loss(fused.model.loss).metric_name]
            self.targets, self.Y = [data.Y], data.Y
        else:
            self.metrics = [head["metric"] for head in heads]
            self.targets = [data.Y[name] for name in self.names]
            self.Y = np.concatenate(self.targets, axis=1)

    def new_totals(self):
        return None          # run_steps creates the backend's totals at the first call

    def load_totals(self, state: dict) -> _FoldedTotals:
        heads = ([{k: v for k, v in state.items() if k != "penalty_sum"}]
                 if self.names is None else [state["heads"][name] for name in self.names])
        return _FoldedTotals(heads, state["penalty_sum"])

    def first_batch(self, order: np.ndarray) -> Optional[List[np.ndarray]]:
        """What :meth:`state` needs of the epoch's first batch: each head's targets of it
        when a head's metric is r2 (the C++ takes y's sums around their mean), else None."""
        if "r2" not in self.metrics:
            return None
        rows = self.data.rows(order, 0)
        return [Y[rows] for Y in self.targets]

    def state(self, totals, first: Optional[List[np.ndarray]]) -> dict:
        """The totals as the per-op path's state (``first``: :meth:`first_batch` of the
        epoch's order, for r2's shift; None leaves it out)."""
        if isinstance(totals, _FoldedTotals):
            heads = totals.heads
        else:
            heads = [self._head_state(i, head, totals.weight_sum, first)
                     for i, head in enumerate(totals.heads)]
        if self.names is None:
            return {**heads[0], "penalty_sum": totals.penalty_sum}
        return {"heads": dict(zip(self.names, heads)), "penalty_sum": totals.penalty_sum}

    def _head_state(self, i: int, head, weight_sum: float,
                    first: Optional[List[np.ndarray]]) -> dict:
        state = {"loss_sum": head.loss_sum, "weight_sum": weight_sum, "count": head.count}
        if self.metrics[i] != "r2":
            return {**state, "correct": head.correct}
        shift = None
        if first is not None:    # the C++ shift: the first batch's mean of y, summed in order
            rows = first[i].astype(np.float64)
            shift = np.add.accumulate(rows, axis=0)[-1] / len(rows)
        return {**state, "shift": shift, "sse": head.sse, "sum": head.sum,
                "sum_sq": head.sum_sq}

    def snapshot(self) -> Snapshot:
        """The state the epoch's steps start from, its parameters, m and v saved by the
        trainer in C++ at the next run (a copy without NumPy's per-array overhead)."""
        return _TrainerSnapshot(self)

    def _take_save(self) -> bool:
        save, self.save_next = self.save_next, False
        return save

    def non_finite(self, totals) -> str:
        """What is not finite after a step range: nothing when the C++ run found its
        parameters and optimizer state finite (``state_finite``) and no layer keeps state,
        else checkpoint.non_finite's answer."""
        if totals is not None and totals.state_finite and self.stateless:
            return ""
        return non_finite(self.fused.model, self.fused.optimizer)

    def record(self, totals) -> Dict[str, float]:
        passes = self.fused.model.new_totals()
        passes.load(self.state(totals, None))
        return {**passes.result(), "penalty": totals.penalty_sum / self.data.n}

    def run(self, order: np.ndarray, begin: int, end: int, epoch: int, totals,
            on_steps: Callable[[int], None], interrupt: Optional[Interrupt] = None):
        """As PerOpSteps.run; the C++ run reads ``interrupt``'s watch before each step."""
        data, fused = self.data, self.fused
        watch = None if interrupt is None else interrupt.watch
        if isinstance(totals, _FoldedTotals):
            for step in range(begin, end):
                if interrupt is not None and interrupt.requested:
                    break
                taken = fused.run_steps(data.X, self.Y, data.W, order, step, step + 1, epoch,
                                        watch=watch, program=self.program,
                                        save_first=self._take_save(), **self._numbering())
                rows = data.rows(order, step)
                totals.fold(taken, [Y[rows] for Y in self.targets])
                self._note_interrupt(taken, interrupt)
                on_steps(taken.steps)
        elif interrupt is None or not interrupt.requested:
            before = 0 if totals is None else totals.steps
            totals = fused.run_steps(data.X, self.Y, data.W, order, begin, end, epoch, totals,
                                     watch, self.program, self._take_save(), **self._numbering())
            self._note_interrupt(totals, interrupt)
            on_steps(totals.steps - before)
        return totals

    def _numbering(self) -> dict:
        """run_steps' arguments for a block of a streamed epoch (the penalty's n, the step
        numbers a divergence names); the defaults' values for the whole set."""
        data = self.data
        return {"n_samples": data.n, "first_step": data.first_step, "n_batches": data.n_batches}

    @staticmethod
    def _note_interrupt(totals, interrupt: Optional[Interrupt]) -> None:
        """A run the watch ended: requested now, though Python's handler may not have
        run yet."""
        if totals.interrupted:
            interrupt.requested = True


def epoch_steps(model, optimizer: Optimizer, data: TrainingData, fused: Optional[FusedEpochs]):
    """The steps of the next epoch: fused when ``fused`` applies now (its program, taken
    once for the epoch: a callback may have given a layer a regularizer only the per-op
    path runs), else per-op."""
    program = None if fused is None else fused.program()
    if program is not None:
        return FusedSteps(fused, data, program)
    return PerOpSteps(model, optimizer, data)
