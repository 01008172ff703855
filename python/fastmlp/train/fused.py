"""The fused training path: fit's steps in one backend call per epoch.

For a model whose layers are all built-in (Dense, Maxout, Dropout, BatchNorm,
Normalization; not subclasses), with a built-in optimizer and regularizers, on a
backend that offers ``fused_trainer`` (the native one, :class:`.backends.base.FusedTraining`),
fit hands each epoch to one GIL-released C++ call: the gather of the shuffled batch rows,
forward, loss, backward, penalty, finite checks and the optimizer update of every step
run over workspaces allocated once per fit, on the model's flat parameter and gradient
buffers and the optimizer's flat state. It makes the same kernel calls in the same order
with the same arguments as the per-op loop (training.py), so the parameters are the same
bit for bit; the per-op loop remains the reference and the path for every other model
(custom layers, optimizers or regularizers, the NumPy backend).

Python keeps what is not per-step work: the shuffled order, the rate of every step
(:meth:`Optimizer.step_rates`, so schedules and ReduceLROnPlateau's scale apply as on the
per-op path), the counters, callbacks and validation between epochs, and the History
values, finished from the run's totals with the per-op path's formulas.
"""
from __future__ import annotations

import sys
from typing import List, Optional

import numpy as np

from ..errors import diverged_at, diverged_loss
from ..nn.layers import BatchNorm, Dense, Dropout, Maxout, Normalization
from ..nn.losses import get_loss
from ..optim.optimizers import OPTIMIZERS, Optimizer
from ..nn.regularizers import L1, L1L2, L2, Regularizer

_REGULARIZERS = (Regularizer, L1, L2, L1L2)


def _regularization(regularizer) -> Optional[dict]:
    if regularizer is None:
        return {"l1": 0.0, "l2": 0.0, "per_batch": False}
    if type(regularizer) not in _REGULARIZERS:       # a subclass may compute its own way
        return None
    return {"l1": regularizer.l1, "l2": regularizer.l2, "per_batch": regularizer.scale == "batch"}


def _affine(layer, kind: str) -> dict:
    """A Dense or Maxout layer's widths and parameter views (W and b as 2-D/1-D, (rows,
    n_in) and (rows,), rows = units * pieces for Maxout)."""
    described = {"kind": kind, "inputs": layer.input_dim, "units": layer.units,
                 "W": layer.W2, "b": layer.b2, "dW": layer.dW2, "db": layer.db2}
    if kind == "dense":
        described.update(activation=layer.activation, param=layer.param)
    else:
        described["pieces"] = layer.pieces
    return described


def _describe(layer) -> Optional[dict]:
    """One built-in layer as the fused paths take it (without a regularizer), or None for
    a layer they do not run (a custom layer or a subclass of a built-in one)."""
    kind = type(layer)
    if kind is Dense:
        return _affine(layer, "dense")
    if kind is Maxout:
        return _affine(layer, "maxout")
    if kind is Dropout:
        return {"kind": "dropout", "width": layer.input_dim, "rate": layer.rate,
                "seed": layer.seed, "index": layer.index}
    if kind is BatchNorm:
        return {"kind": "batchnorm", "width": layer.input_dim, "momentum": layer.momentum,
                "eps": layer.eps, "gamma": layer.gamma, "beta": layer.beta,
                "dgamma": layer.dgamma, "dbeta": layer.dbeta,
                "running_mean": layer.running_mean, "running_var": layer.running_var}
    if kind is Normalization:
        return {"kind": "normalization", "width": layer.input_dim, "mean": layer.mean,
                "var": layer._var, "inv": layer._inv}
    return None


def describe_layers(model_layers, regularizer_of) -> Optional[List[dict]]:
    """A chain of layers as ``fused_trainer`` takes them (``regularizer_of(layer)``: the
    regularizer that applies to a layer), or None when one of them (or its regularizer)
    runs only on the per-op path."""
    layers = []
    for layer in model_layers:
        described = _describe(layer)
        if described is None:
            return None
        if described["kind"] in ("dense", "maxout"):
            penalty = _regularization(regularizer_of(layer))
            if penalty is None:
                return None
            described.update(penalty)
        layers.append(described)
    return layers


def describe_inference(model) -> Optional[List[dict]]:
    """The model's layers as ``fused_predictor`` takes them (Dropout is the identity at
    inference and is left out), or None when a layer runs only on the per-op path (a
    custom layer or a subclass of a built-in one)."""
    layers = [_describe(layer) for layer in model.layers]
    if any(described is None for described in layers):
        return None
    return [described for described in layers if described["kind"] != "dropout"] or None


def inference_key(model) -> tuple:
    """What a predictor is built from: the backend, the selected ISA (the weights are
    packed for it), the weights' version (the predictor keeps a packed snapshot; the
    parameter views are read-only between the library's writes, each of which bumps the
    version: Sequential.writing_params) and every layer's type and activation."""
    isa = sys.modules.get("fastmlp.backends.native")
    return (id(model.backend), getattr(isa, "isa_generation", 0), id(model.flat_params),
            model.weights_version) + tuple(
        (type(layer), getattr(layer, "activation", None), getattr(layer, "param", None))
        for layer in model.layers)


def predictor(model):
    """The model's fused predictor, built at the first use and kept on the model (rebuilt
    when :func:`inference_key` changes: new weights, ISA, activation or backend), or None
    when the backend or a
    layer needs the per-op forward. A predictor is immutable, so concurrent predict calls
    may share it; it snapshots the weights holding the model's weights lock shared, so
    between two steps of a fit running in another thread."""
    factory = getattr(model.backend, "fused_predictor", None)
    if factory is None:
        return None
    key = inference_key(model)
    cached = model.__dict__.get("_fused_predictor")
    if cached is not None and cached[0] == key:
        return cached[1]
    layers, built = describe_inference(model), None
    if layers is not None:
        try:
            built = factory(params=model.flat_params, layers=layers,
                            loss=get_loss(model.loss).kernel, lock=model.weights_lock)
        except ValueError:   # e.g. an unpickled model whose layers no longer view _params
            built = None
    model._fused_predictor = (key, built)
    return built


def _key(layers: List[dict], optimizer: Optimizer) -> tuple:
    """What a trainer was built from, arrays by identity (the layers' views never change)."""
    scalars = tuple(tuple((k, v) for k, v in layer.items() if not isinstance(v, np.ndarray))
                    for layer in layers)
    return (scalars, type(optimizer), tuple(sorted(optimizer.kernel_arguments().items())),
            optimizer.clipnorm, id(optimizer.m), id(optimizer.v))


class FusedEpochs:
    """fit's epochs on the fused path for one fit: :meth:`create` returns None when the
    model, optimizer or backend cannot take it (fit then runs the per-op loop)."""

    def __init__(self, model, optimizer: Optimizer, batch: int, factory):
        self.model, self.optimizer, self.batch = model, optimizer, batch
        self._factory = factory
        self._trainer = None
        self._key = None

    @classmethod
    def create(cls, model, optimizer: Optimizer, batch: int) -> Optional["FusedEpochs"]:
        factory = getattr(model.backend, "fused_trainer", None)
        if factory is None or type(optimizer) not in OPTIMIZERS.values() \
                or model.fused_layers() is None:
            return None
        return cls(model, optimizer, batch, factory)

    def applies(self) -> bool:
        """Whether the model can still take the fused path (a callback may have given a
        layer a regularizer only the per-op path runs)."""
        return self.model.fused_layers() is not None

    def _current(self, layers: List[dict]):
        """The trainer for the current configuration: built at the first use and again
        only if something changed between epochs (a callback replacing a regularizer or
        the optimizer's state arrays)."""
        key = _key(layers, self.optimizer)
        if self._trainer is None or key != self._key:
            opt = self.optimizer
            with self.model.writing_params():   # the trainer binds them for writing
                self._trainer = self._factory(
                    params=self.model.flat_params, grads=self.model.flat_grads, m=opt.m, v=opt.v,
                    layers=layers, loss=get_loss(self.model.loss).kernel,
                    optimizer=opt.kernel, batch_size=self.batch, clipnorm=opt.clipnorm,
                    lock=self.model.weights_lock,
                    **opt.kernel_arguments())
            self._key = key
        return self._trainer

    def run_steps(self, X, Y, W, order, begin: int, end: int, epoch: int, totals=None,
                  watch=None):
        """Steps [begin, end) of the epoch visiting rows in ``order``; adds them to
        ``totals`` (new ones if None) and returns it. Advances the optimizer's and the
        model's counters by the steps taken; raises DivergenceError (the weights and the
        optimizer's state are those before the failing step) as the per-op loop does.
        With ``watch`` (the backend's ``sigint_watch()``) a SIGINT ends the run at the next
        step boundary: fewer steps are taken and ``totals.interrupted`` is set."""
        model, opt = self.model, self.optimizer
        layers = model.fused_layers()
        if layers is None:
            raise ValueError("the model has a layer or regularizer the fused path does not "
                             "run; fit uses the per-op loop for it")
        unallocated = [name for name in ("m", "v") if getattr(opt, name) is None]
        opt.state_for(model.flat_params)
        n = len(X)
        sizes = np.minimum(self.batch, n - np.arange(begin, end) * self.batch)
        lrs = opt.step_rates(sizes)
        trainer = self._current(layers)
        if totals is None:
            totals = trainer.new_totals()
        before = totals.steps
        trainer.run(X, Y, W, order, begin, end, lrs, opt.iterations + 1, model.training_step,
                    totals, watch)
        model.weights_written()            # through the trainer's own binding
        done = totals.steps - before
        opt.advance(done, int(sizes[:done].sum()), float(lrs[done - 1]) if done else 0.0)
        model.training_step += done
        if done:                                   # as the per-op forward leaves it
            for layer in model.layers:
                layer.step = model.training_step - 1
        if opt.iterations == 0:                    # no step ever: no state, as step() leaves it
            for name in unallocated:
                setattr(opt, name, None)
        if totals.diverged is not None:
            step, n_batches = totals.diverged_step + 1, -(-n // self.batch)
            rate = float(lrs[done])
            if totals.diverged == "loss":
                raise diverged_loss(epoch, step, n_batches,
                                    totals.diverged_value / totals.diverged_rows, rate)
            raise diverged_at(epoch, step, n_batches,
                              opt.non_finite_gradient(totals.diverged_value, rate))
        return totals
