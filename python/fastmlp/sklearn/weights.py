"""The estimators' ``coefs_`` and ``intercepts_``: plain writable arrays, as scikit-learn's,
whose edits take effect at the next predict, score, partial_fit or warm-start fit.

Design. The fitted network (``model_``, a :class:`fastmlp.Sequential`) keeps its weights in
one flat buffer whose views are read-only between the library's writes (the fused
predictor keeps a packed copy, refreshed when ``weights_version`` moves), so the user's
arrays cannot be views of it. Instead the estimator owns two lists of its own arrays:
``coefs_[i]`` (n_in, n_out) and ``intercepts_[i]`` (n_out,), in the model's dtype. After
each fit they are refreshed from the model (in place when they still fit, so a reference
the user holds stays the live one, as in scikit-learn). Before the model is used again,
:func:`write_edits` compares them with the model's weights and writes them in (one
``set_weights``) when they differ, after checking their count and shapes.

The comparison reads every weight, so it runs only once the lists were handed out: the
attribute descriptor :class:`WeightList` records each read or assignment; a predict loop
that never touches ``coefs_``/``intercepts_`` pays nothing.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from ..nn.layers import Dense

EXPOSED = "_weights_exposed"     # the estimator's flag: coefs_/intercepts_ were handed out


def non_finite_weights() -> ValueError:
    """scikit-learn's error for a fit whose solver produced non-finite weights (fastmlp's
    training stops before that step: a DivergenceError, which the estimators turn into
    this, as scikit-learn would end)."""
    return ValueError("Solver produced non-finite parameter weights. The input data may"
                      " contain large values and need to be preprocessed.")


class WeightList:
    """``coefs_`` or ``intercepts_``: the estimator's list, stored as ``_<name>``; reading
    or assigning it marks the weights as handed out (:func:`write_edits` then compares)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name, self.slot = name, "_" + name.rstrip("_")

    def __get__(self, estimator, owner=None):
        if estimator is None:
            return self
        try:
            values = estimator.__dict__[self.slot]
        except KeyError:
            raise AttributeError(f"{type(estimator).__name__!r} object has no attribute "
                                 f"{self.name!r} (not fitted yet)") from None
        estimator.__dict__[EXPOSED] = True
        return values

    def __set__(self, estimator, values) -> None:
        estimator.__dict__[self.slot] = values
        estimator.__dict__[EXPOSED] = True


def dense_layers(model) -> List[Dense]:
    return [layer for layer in model.layers if isinstance(layer, Dense)]


def refresh(estimator, model, anew: bool) -> None:
    """Copy the model's weights into the estimator's lists: new lists when ``anew`` (a
    first fit: nothing handed out yet), else into the arrays in place, an array that no
    longer fits (shape, dtype, read-only) replaced in its list."""
    state = estimator.__dict__
    layers = dense_layers(model)
    if anew or not _lists_of(state.get("_coefs"), state.get("_intercepts"), len(layers)):
        state["_coefs"] = [np.ascontiguousarray(layer.W.T) for layer in layers]
        state["_intercepts"] = [layer.b.copy() for layer in layers]
        state[EXPOSED] = not anew and state.get(EXPOSED, False)
        return
    _copy_into(state["_coefs"], [layer.W.T for layer in layers], model.dtype, True)
    _copy_into(state["_intercepts"], [layer.b for layer in layers], model.dtype, True)


def _lists_of(coefs, intercepts, n: int) -> bool:
    return all(isinstance(values, list) and len(values) == n for values in (coefs, intercepts))


def _copy_into(arrays: list, views: List[np.ndarray], dtype, copy_fitting: bool) -> None:
    """Each model view into ``arrays``: a fitting array (writeable, of the view's shape
    and ``dtype``) is overwritten if ``copy_fitting``, any other replaced by a copy."""
    for i, view in enumerate(views):
        array = arrays[i]
        if isinstance(array, np.ndarray) and array.shape == view.shape and \
                array.dtype == dtype and array.flags.writeable:
            if copy_fitting:
                np.copyto(array, view)
        else:
            arrays[i] = np.ascontiguousarray(view, dtype=dtype)


def checked_weights(estimator, shapes: List[Tuple[int, int]], dtype) -> List[np.ndarray]:
    """The estimator's coefs_ and intercepts_ as fastmlp's [W1 (n_out, n_in), b1, ...] for
    a network of layer ``shapes`` (n_in, n_out), in ``dtype``: ValueError naming
    coefs_[i] or intercepts_[i] on a wrong count, shape or a non-finite value."""
    weights = []
    for name, wanted in (("coefs_", shapes), ("intercepts_", [(n_out,) for _, n_out in shapes])):
        values = getattr(estimator, name)
        if not isinstance(values, (list, tuple)) or len(values) != len(wanted):
            got = (f"{len(values)} arrays" if isinstance(values, (list, tuple))
                   else type(values).__name__)
            raise ValueError(f"{name} must be a list of {len(wanted)} arrays, one per "
                             f"layer; got {got}")
        for i, (value, shape) in enumerate(zip(values, wanted)):
            array = np.asarray(value)
            if array.shape != shape:
                raise ValueError(f"{name}[{i}] must have shape {shape}; got {array.shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"{name}[{i}] holds non-finite values (NaN or inf)")
            weights.append(array.astype(dtype, copy=False))
    n = len(shapes)
    return [w for pair in zip([c.T for c in weights[:n]], weights[n:]) for w in pair]


def write_edits(estimator, model) -> None:
    """Write coefs_ and intercepts_ into the model if they were handed out and differ
    from its weights (checked first: :func:`checked_weights`)."""
    if not estimator.__dict__.get(EXPOSED):
        return
    layers = dense_layers(model)
    weights = checked_weights(estimator, [layer.W.T.shape for layer in layers], model.dtype)
    current = [view for layer in layers for view in (layer.W, layer.b)]
    if not all(np.array_equal(w, view) for w, view in zip(weights, current)):
        model.set_weights(weights)
    state = estimator.__dict__
    if not _lists_of(state["_coefs"], state["_intercepts"], len(layers)):
        refresh(estimator, model, anew=False)     # a tuple: lists again
        return
    _copy_into(state["_coefs"], [layer.W.T for layer in layers], model.dtype, False)
    _copy_into(state["_intercepts"], [layer.b for layer in layers], model.dtype, False)
