"""An epoch's step ranges checked for divergence, and the roll-back to the failing step.

fit's contract (its docstring, "Divergence"): a step whose loss or gradient is not finite
raises before its update, and so does a step whose update leaves a non-finite parameter,
optimizer state or layer state; either way the model is left exactly as at the start of
the failing step."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import DivergenceError, diverged_update
from ..optim.optimizers import Optimizer
from .checkpoint import non_finite
from .guards import Interrupt
from .steps import no_progress

__all__ = ["CheckedSteps"]


class CheckedSteps:
    """The step ranges of one epoch from its step ``first`` on, visiting rows in ``order``;
    each range is checked after it runs (a snapshot of the model at ``first`` is what a
    divergence rolls back from)."""

    def __init__(self, model, optimizer: Optimizer, steps, order: np.ndarray, epoch: int,
                 first: int):
        self.model, self.optimizer, self.steps = model, optimizer, steps
        self.order, self.epoch, self.first = order, epoch, first
        self.data = steps.data
        self.start = steps.snapshot()

    def run(self, begin: int, end: int, totals, on_steps,
            interrupt: Optional[Interrupt] = None):
        """Steps [begin, end) added to ``totals``; on a divergence (a step's error, or
        anything non-finite after them), roll back to the start of the failing step and
        raise its DivergenceError."""
        try:
            totals = self.steps.run(self.order, begin, end, self.epoch, totals, on_steps,
                                    interrupt)
        except DivergenceError as error:
            raise self._rolled_back(end, error) from None
        if self.steps.non_finite(totals):
            raise self._rolled_back(end, None)
        return totals

    def _rerun(self, begin: int, end: int) -> None:
        """Steps [begin, end) again, into totals of their own."""
        self.steps.run(self.order, begin, end, self.epoch, self.steps.new_totals(), no_progress)

    def _rolled_back(self, end: int, error: Optional[DivergenceError]) -> DivergenceError:
        """Put the model back at the start of the failing step and return its error.

        ``error`` is the failing step's (its update not applied); None when something
        became non-finite in steps [first, end), found by running them again one at a
        time from the snapshot. When the state is finite and no layer keeps state, the
        model already is at the start of the failing step; otherwise it is restored to
        the snapshot and the steps before the failing one run again (deterministic: the
        same bits)."""
        model, optimizer = self.model, self.optimizer
        broken = bool(non_finite(model, optimizer))
        if error is not None and not broken \
                and not any(layer.get_state() for layer in model.layers):
            return error
        self.start.restore()
        if error is None or broken:
            failing, error = self._first_bad_step(end)
            self.start.restore()
        else:
            failing = error.step - 1 - self.data.first_step
        if failing > self.first:
            self._rerun(self.first, failing)
        return error

    def _first_bad_step(self, end: int) -> Tuple[int, DivergenceError]:
        """The first step of [first, end) that fails or leaves a non-finite value, and its
        error (the model is somewhere after ``first``; the caller restores it)."""
        model, optimizer, epoch, first = self.model, self.optimizer, self.epoch, self.first
        data = self.data
        for step in range(first, end):
            try:
                self._rerun(step, step + 1)
            except DivergenceError as error:
                return step, error
            what = non_finite(model, optimizer)
            if what:
                return step, diverged_update(epoch, data.step_number(step), data.n_batches,
                                             optimizer.last_learning_rate, what)
        number = data.step_number(first)
        return first, DivergenceError(
            f"training diverged at epoch {epoch} within steps {number} to "
            f"{data.step_number(end - 1)} of {data.n_batches}, but running them again did "
            f"not (a layer that is not deterministic?); the weights are those before step "
            f"{number}", epoch=epoch, step=number)
