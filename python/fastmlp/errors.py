"""Exceptions and warnings shared by the training loop, the optimizers and the checkpoints
(a leaf module: it imports nothing from fastmlp, so every other module can import it
without cycles)."""
from __future__ import annotations

import os
import sys
from typing import Optional

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the first caller outside
    fastmlp (the user's line), seen from the function that calls warn: wrappers and
    helpers in between do not move it."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


class DivergenceError(FloatingPointError, ValueError):
    """Training produced a non-finite loss, gradient or update.

    fit raises it with the model as it was at the start of the failing step (weights,
    layer state, optimizer state and counters), never with non-finite weights. Attributes
    (None where not known, e.g. from ``Optimizer.step`` outside fit): ``epoch`` (counted
    from 1 within the fit), ``step`` (within the epoch, from 1), ``learning_rate`` (the
    failing step's rate) and ``history`` (a :class:`fastmlp.History` of the
    fit's completed epochs, also kept as ``model.history``).
    """

    def __init__(self, message: str, *, epoch: Optional[int] = None,
                 step: Optional[int] = None, learning_rate: Optional[float] = None):
        super().__init__(message)
        self.epoch, self.step, self.learning_rate = epoch, step, learning_rate
        self.history = None


class DistributedError(RuntimeError):
    """A data-parallel fit (:mod:`fastmlp.distributed`) cannot go on: a collective did not
    complete within its timeout (a rank died, stopped on its own error or hangs). The
    job then ends at exit (MPI_Abort) rather than waiting for the lost rank."""


class ModelFileError(ValueError):
    """A file that is not a valid fastmlp model file (malformed, truncated, hostile);
    :mod:`fastmlp.model.modelfile` raises it (and exports it)."""


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read and resuming falls back to an older one."""


class DataScaleWarning(UserWarning):
    """fit's input columns are far from unit scale and the model does not normalize them
    (its first layer is not Normalization or BatchNorm): training may collapse or diverge."""


def _lower(rate: float) -> str:
    return f"lower the learning rate (e.g. {rate / 10:g})"


def diverged_loss(epoch: int, step: int, n_batches: int, mean_loss: float,
                  rate: float) -> DivergenceError:
    """fit's error for a step whose loss is not finite (both training paths)."""
    return DivergenceError(
        f"training diverged at epoch {epoch}, step {step} of {n_batches}: the mean loss "
        f"became {mean_loss} with learning rate {rate:g}; {_lower(rate)}. The weights are "
        f"those before this step.", epoch=epoch, step=step, learning_rate=rate)


def diverged_at(epoch: int, step: int, n_batches: int, cause: Exception) -> DivergenceError:
    """fit's error for a step the optimizer refused (a non-finite gradient); the cause's
    message names the rate and what to do."""
    return DivergenceError(f"training diverged at epoch {epoch}, step {step} of {n_batches}: "
                           f"{cause}", epoch=epoch, step=step,
                           learning_rate=getattr(cause, "learning_rate", None))


def diverged_update(epoch: int, step: int, n_batches: int, rate: float,
                    what: str) -> DivergenceError:
    """fit's error for a step whose loss and gradient were finite but which left ``what``
    (e.g. "the parameters") non-finite: an overflow in the update itself, or in a layer's
    state (BatchNorm's running variance of huge inputs)."""
    return DivergenceError(
        f"training diverged at epoch {epoch}, step {step} of {n_batches}: the step with "
        f"learning rate {rate:g} left {what} non-finite (an overflow in the update or in a "
        f"layer's state); {_lower(rate)} or scale the inputs down. The weights are those "
        f"before this step.", epoch=epoch, step=step, learning_rate=rate)
