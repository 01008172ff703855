"""What fit checks before its first step, beyond its arguments: that the step
workspaces and the optimizer's state fit in the memory available, and whether the input
columns are far from the unit scale the default initializers assume."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from .._memory import check_memory, format_bytes
from .._sparse import CsrRows
from ..errors import DataScaleWarning, user_stacklevel
from ..nn.layers import BatchNorm, Normalization


# Columns whose |mean| or standard deviation exceeds this are "far from unit scale". The
# default initializers (He, Glorot) assume inputs of about unit scale; at 100 times that the
# first layer's pre-activations are 100 times too large, which saturates tanh and sigmoid
# and makes the default learning rates diverge or settle on the majority class. Features
# that are merely not standardized (ages, percentages) stay below it.
FAR_FROM_UNIT_SCALE = 100.0
# The column statistics come from at most this many evenly spaced rows: enough to tell a
# factor of 100 from unit scale, and cheap next to even a short fit (about 0.1 ms for 64
# columns; all of a 16,384-row X took 5 ms, as long as a small model's epoch).
SCALE_SAMPLE_ROWS = 1_000
NAMED_COLUMNS = 3               # columns the warning names
_SCALE_WARNING = ContextVar("fastmlp_scale_warning", default=True)


@contextmanager
def no_scale_warning():
    """Fits inside it (in this thread or task only: a context variable, unlike a warnings
    filter) do not check the input scale: the scikit-learn estimators leave scaling to the
    pipeline, as scikit-learn's own do."""
    token = _SCALE_WARNING.set(False)
    try:
        yield
    finally:
        _SCALE_WARNING.reset(token)


def warn_if_unscaled(model, X: np.ndarray, columns=None) -> None:
    """A :class:`fastmlp.errors.DataScaleWarning` naming the first few columns of X that
    are far from unit scale, unless the model normalizes its inputs (its first layer is
    Normalization or BatchNorm). ``columns``: X's column names (a DataFrame's), else
    columns are named by index. Nothing inside :func:`no_scale_warning`."""
    if not _SCALE_WARNING.get() or isinstance(model.layers[0], (Normalization, BatchNorm)) \
            or not len(X):
        return
    every = -(-len(X) // SCALE_SAMPLE_ROWS)
    if type(X) is CsrRows:
        mean, std = X.take(np.arange(0, len(X), every)).column_mean_std()
    else:
        sample = X[::every].astype(np.float64)
        mean, std = sample.mean(axis=0), sample.std(axis=0)
    far = np.flatnonzero((np.abs(mean) > FAR_FROM_UNIT_SCALE) | (std > FAR_FROM_UNIT_SCALE))
    if not far.size:
        return
    names = [f"{columns[i]!r}" if columns is not None else f"{i}" for i in far]
    shown = ", ".join(f"{name} (mean {mean[i]:.3g}, std {std[i]:.3g})"
                      for name, i in zip(names[:NAMED_COLUMNS], far))
    more = f" and {far.size - NAMED_COLUMNS} more" if far.size > NAMED_COLUMNS else ""
    warnings.warn(f"{far.size} input column(s) are far from unit scale: {shown}{more}. "
                  "Training may collapse to the majority class or diverge: make "
                  "fastmlp.Normalization() the model's first layer (it adapts to X), or "
                  "standardize X", DataScaleWarning, stacklevel=user_stacklevel())


# A training step keeps, per layer, about this many arrays of (batch rows x the layer's
# width): the layer's input as its cache holds it, the pre-activation, the output and the
# gradient passed back.
STEP_ARRAYS_PER_WIDTH = 4


def check_fit_memory(model, optimizer, batch: int, X=None) -> None:
    """ValueError with the sizes when the step's workspaces (batch rows x the input and
    every layer's width x STEP_ARRAYS_PER_WIDTH) and the optimizer's state not allocated
    yet would not fit in the memory available. Sparse rows X (CsrRows) add no dense input
    rows: a step holds only its entries."""
    itemsize = model.dtype.itemsize
    widths = (0 if type(X) is CsrRows else model.input_dim) + sum(
        layer.output_dim for layer in model.layers)
    workspaces = STEP_ARRAYS_PER_WIDTH * batch * widths * itemsize
    copies = (optimizer.uses_m and optimizer.m is None) + (optimizer.uses_v
                                                           and optimizer.v is None)
    state = copies * model.n_params * itemsize
    check_memory(workspaces + state,
                 f"training with batch_size {batch} ({format_bytes(workspaces)} of step "
                 f"workspaces: {batch:,} rows x {widths:,} layer widths x "
                 f"{STEP_ARRAYS_PER_WIDTH} arrays in {model.dtype.name}; "
                 f"{format_bytes(state)} of {type(optimizer).__name__} state)",
                 "use a smaller batch_size or fewer units")
