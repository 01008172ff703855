"""The fused training path: fit's steps in one backend call per epoch.

For a model whose layers all state plans (nn/plans.py: the built-in ones, not subclasses
that do not restate it), with a built-in optimizer and regularizers, on a backend that
offers ``fused_trainer`` (the native one, :class:`.backends.base.FusedTraining`),
fit hands each epoch to one GIL-released C++ call: the gather of the shuffled batch rows,
forward, loss, backward, penalty, finite checks and the optimizer update of every step
run over workspaces allocated once per fit, on the model's flat parameter and gradient
buffers and the optimizer's flat state. The layers reach C++ as their plans compiled into
one program (flat buffers and op records, :func:`training_program`; a MultiTask's trunk
and heads with a loss head each, :func:`multitask_program`; docs/plans.md), so it
makes the same kernel calls in the same order with the same arguments as the per-op loop,
which runs the same plans through the Backend: the parameters are the same bit for bit; the per-op loop remains the reference and the path for every other model
(custom layers, optimizers or regularizers, the NumPy backend).

Python keeps what is not per-step work: the shuffled order, the rate of every step
(:meth:`Optimizer.step_rates`, so schedules and ReduceLROnPlateau's scale apply as on the
per-op path), the counters, callbacks and validation between epochs, and the History
values, finished from the run's totals with the per-op path's formulas.
"""
from __future__ import annotations

import sys
from math import prod
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import diverged_at, diverged_loss
from ..nn.losses import get_loss
from ..nn.plans import CODES, OPS, ROWS, Op, Plan, plan_of
from ..optim.optimizers import OPTIMIZERS, Optimizer
from ..nn.regularizers import L1, L1L2, L2, SCALES, Regularizer

_REGULARIZERS = (Regularizer, L1, L2, L1L2)
#: the most buffers an op takes (csrc/train/program.hpp kMaxArgs)
_MAX_ARGS = 7
_PHASES = ("forward", "backward", "penalty")


def _regularization(regularizer) -> Optional[Tuple[float, float, float]]:
    """The regularize op's constants (l1, l2, scale: the index of the regularizer's scale
    in SCALES), or None for a regularizer that may compute its own way (a subclass)."""
    if regularizer is None:
        return (0.0, 0.0, 0.0)
    if type(regularizer) not in _REGULARIZERS:
        return None
    return (regularizer.l1, regularizer.l2, float(SCALES.index(regularizer.scale)))


class _Program:
    """A model's plans compiled into the flat buffers and op records the fused paths run
    (csrc/train/program.hpp): every plan buffer an op uses becomes a program buffer; a
    layer's input is the previous layer's result and its incoming gradient the next
    layer's dx (or the loss gradient)."""

    def __init__(self):
        self.roles: List[str] = []
        self.shapes: List[Tuple[int, int, int]] = []
        self.arrays: List[Optional[np.ndarray]] = []
        self.ops: Dict[str, list] = {phase: [] for phase in _PHASES}

    def add(self, role: str, width: int, per_row: bool, int32: bool = False,
            array: Optional[np.ndarray] = None) -> int:
        self.roles.append(role)
        self.shapes.append((width, int(per_row), int(int32)))
        self.arrays.append(array)
        return len(self.roles) - 1

    def record(self, phase: str, op: Op, ids, key: Tuple[int, int] = (0, 0)) -> None:
        """``op`` with its buffer names looked up in ``ids`` (a layer's :class:`_LayerIds`,
        whose layer gives the key, or a dict of program buffer ids)."""
        constants = dict(zip(OPS[CODES[op.code]].constants, op.constants))
        activation = constants.pop("activation", "linear")
        if isinstance(ids, _LayerIds):
            key = (ids.layer.seed, ids.layer.index)
        self.ops[phase].append((op.code, tuple(ids[name] for name in op.buffers),
                                tuple(constants.values()), activation, key))

    def as_dict(self, input_id: int, output_id: int, loss_grad: Optional[int] = None,
                heads: Optional[List[dict]] = None) -> dict:
        addresses = tuple(None if a is None else a.__array_interface__["data"][0]
                          for a in self.arrays)
        program = {"roles": self.roles, "shapes": np.array(self.shapes, np.int64).reshape(-1, 3),
                   "arrays": self.arrays, "input": input_id, "output": output_id,
                   "loss_grad": -1 if loss_grad is None else loss_grad,
                   "key": (tuple(self.roles), tuple(self.shapes), addresses,
                           tuple(tuple(self.ops[phase]) for phase in _PHASES),
                           tuple(tuple(head.items()) for head in heads or ()))}
        program.update({phase: _records(self.ops[phase]) for phase in _PHASES})
        if heads is not None:
            program["heads"] = heads
        return program


def with_precision(program: Optional[dict], precision: Optional[str]) -> Optional[dict]:
    """``program`` with its products in ``precision`` ("bfloat16": operands rounded to
    bfloat16, float32 sums; None: the program as it is)."""
    if program is not None and precision == "bfloat16":
        program["bf16"] = True
        program["key"] = (program["key"], "bfloat16")
    return program


def _records(ops: list) -> dict:
    """One phase's ops as the arrays the binding reads."""
    n = len(ops)
    args = np.full((n, _MAX_ARGS), -1, np.int64)
    constants, keys = np.zeros((n, 3)), np.zeros((n, 2), np.uint64)
    for i, (_, ids, values, _, key) in enumerate(ops):
        args[i, :len(ids)], constants[i, :len(values)], keys[i] = ids, values, key
    return {"codes": [op[0] for op in ops], "args": args, "constants": constants,
            "keys": keys, "activations": [op[3] for op in ops]}


class _LayerIds:
    """One layer's plan buffers as program buffer ids, each added at its first use."""

    def __init__(self, program: _Program, layer, plan: Plan, x: int):
        self.program, self.layer, self.plan = program, layer, plan
        self.ids = {"x": x}

    def __getitem__(self, name: str) -> int:
        if name not in self.ids:
            buffer = self.plan.buffer(name)
            array = None if buffer.attr is None else getattr(self.layer, buffer.attr).reshape(-1)
            self.ids[name] = self.program.add(
                buffer.role, prod(e for e in buffer.shape if e != ROWS), ROWS in buffer.shape,
                buffer.dtype == "int32", array)
        return self.ids[name]


def _forward(model_layers, program: _Program, training: bool,
             x: Optional[int] = None) -> Optional[list]:
    """Every layer's forward ops in order from the buffer ``x`` (None: a new batch
    buffer); returns the layers' ids (None when a layer states no plan)."""
    layers = []
    current = program.add("batch", model_layers[0].input_dim, True) if x is None else x
    for layer in model_layers:
        plan = plan_of(layer)
        if plan is None:
            return None
        ids = _LayerIds(program, layer, plan, current)
        ops, result = ((plan.forward, plan.forward_result) if training
                       else (plan.inference, plan.inference_result))
        for op in ops:
            program.record("forward", op, ids)
        current = ids[result]
        layers.append(ids)
    return layers


def _training_result(layers: list) -> int:
    return layers[-1][layers[-1].plan.forward_result]


def _backward(program: _Program, layers: list, grad: int, need_dx: bool) -> Optional[int]:
    """Every layer's backward ops, last layer first, from its output's gradient ``grad``;
    the first layer's dx-only ops only when ``need_dx``. Returns the id of the input's
    gradient (None without ``need_dx``)."""
    for i in reversed(range(len(layers))):
        ids, needed = layers[i], i > 0 or need_dx
        ids.ids["dy"] = grad
        for op in ids.plan.backward:
            if needed or not op.dx_only:
                program.record("backward", op, ids)
        grad = ids["dx"] if needed else None
    return grad


def _penalty(program: _Program, layers: list, regularizer_of) -> bool:
    """One regularize op per penalized pair, in layer order; False when a regularizer
    runs only on the per-op path."""
    for ids in layers:
        if not ids.plan.penalized:
            continue
        constants = _regularization(regularizer_of(ids.layer))
        if constants is None:
            return False
        for w, dw in ids.plan.penalized:
            program.record("penalty", Op("regularize", (w, dw), constants), ids)
    return True


def training_program(model_layers, regularizer_of) -> Optional[dict]:
    """A chain of layers' training program as ``fused_trainer`` takes it
    (``regularizer_of(layer)``: the regularizer that applies to a layer), or None when a
    layer (or its regularizer) runs only on the per-op path."""
    program = _Program()
    layers = _forward(model_layers, program, True)
    if layers is None:
        return None
    output = _training_result(layers)
    loss_grad = program.add("loss_grad", program.shapes[output][0], True)
    _backward(program, layers, loss_grad, need_dx=False)   # the first layer's dx: never
    if not _penalty(program, layers, regularizer_of):
        return None
    return program.as_dict(0, output, loss_grad)


def _with_trunk(trunk, training: bool, input_dim: int) -> Optional[tuple]:
    """A new program with its batch buffer and the trunk's forward (training or
    inference): (program, batch, the trunk's layer ids, the trunk's result, the batch
    for an empty trunk), or None when a trunk layer runs only on the per-op path."""
    program = _Program()
    batch = program.add("batch", input_dim, True)
    trunk_ids = _forward(trunk, program, training, batch) if trunk else []
    if trunk_ids is None:
        return None
    if not trunk_ids:
        return program, batch, trunk_ids, batch
    result = _training_result if training else _inference_result
    return program, batch, trunk_ids, result(trunk_ids)


def multitask_program(trunk, heads, regularizer_of, input_dim: int) -> Optional[dict]:
    """A trunk feeding several heads as one training program with a loss head each
    (MultiTask.loss_and_grad): ``heads`` lists ``(name, layers, loss, weight)`` in
    order (``loss`` a :mod:`fastmlp.nn.losses` name). Backward runs every head from its
    loss gradient; the trunk's output gradient is the first head's input gradient with
    each later head's added to it in order (``add_to``, MultiTask._backward), then the
    trunk. None when a layer or regularizer runs only on the per-op path."""
    started = _with_trunk(trunk, True, input_dim)
    if started is None:
        return None
    program, batch, trunk_ids, features = started
    chains, records = [], []
    for name, layers, loss, weight in heads:
        ids = _forward(layers, program, True, features)
        if ids is None:
            return None
        output = _training_result(ids)
        chains.append(ids)
        records.append({"name": name, "loss": get_loss(loss).kernel,
                        "metric": get_loss(loss).metric_name, "weight": float(weight),
                        "output": output,
                        "loss_grad": program.add("loss_grad", program.shapes[output][0], True)})
    trunk_grad = None
    for ids, head in zip(chains, records):
        dx = _backward(program, ids, head["loss_grad"], need_dx=bool(trunk))
        if trunk_grad is None:
            trunk_grad = dx
        else:
            program.record("backward", Op("add_to", ("x", "y")), {"x": dx, "y": trunk_grad})
    if trunk:
        _backward(program, trunk_ids, trunk_grad, need_dx=False)
    if not _penalty(program, [*trunk_ids, *(ids for chain in chains for ids in chain)],
                    regularizer_of):
        return None
    return program.as_dict(batch, records[0]["output"], heads=records)


def without_penalty(program: dict) -> dict:
    """``program`` with no penalty ops: a data-parallel shard's gradient, to which the
    penalty is added once, after the ranks' sum (:mod:`fastmlp.train.distributed`)."""
    return {**program, "penalty": _records([])}


def inference_program(trunk, heads, input_dim: int) -> Optional[dict]:
    """A model's inference program as ``fused_predictor`` takes it: the trunk's layers
    from the batch, then each head's (``heads`` lists ``(layers, loss)`` in order, ``loss``
    a :mod:`fastmlp.nn.losses` name) from the trunk's result, as MultiTask's per-op
    inference runs them; a chain is the one head of an empty trunk. The program lists one
    output head per head (``heads``: ``loss`` kernel, ``output`` buffer id and ``labels``,
    the loss's ``labels_layout``: what predict's labels look like). None when a
    layer runs only on the per-op path (or no layer computes anything at inference)."""
    started = _with_trunk(trunk, False, input_dim)
    if started is None:
        return None
    program, batch, trunk_ids, features = started
    records = []
    for layers, loss in heads:
        ids = _forward(layers, program, False, features)
        if ids is None:
            return None
        records.append({"loss": get_loss(loss).kernel, "output": _inference_result(ids),
                        "labels": get_loss(loss).labels_layout})
    if not program.ops["forward"]:
        return None
    return program.as_dict(batch, records[0]["output"], heads=records)


def _inference_result(layers: list) -> int:
    return layers[-1][layers[-1].plan.inference_result]


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
    when the backend or a layer needs the per-op forward. The model gives its program
    (``fused_inference_program()``: :func:`inference_program` of its trunk and heads). A
    predictor is immutable, so concurrent predict calls may share it; it snapshots the
    weights holding the model's weights lock shared, so between two steps of a fit
    running in another thread."""
    factory = getattr(model.backend, "fused_predictor", None)
    if factory is None:
        return None
    key = inference_key(model)
    cached = model.__dict__.get("_fused_predictor")
    if cached is not None and cached[0] == key:
        return cached[1]
    program, built = model.fused_inference_program(), None
    if program is not None:
        try:
            built = factory(params=model.flat_params, program=program, lock=model.weights_lock)
        except ValueError:   # e.g. an unpickled model whose layers no longer view _params
            built = None
    model._fused_predictor = (key, built)
    return built


def _key(program: dict, optimizer: Optimizer) -> tuple:
    """What a trainer was built from: the program (its arrays by address; the layers'
    views never change) and the optimizer's kernel, constants and state arrays."""
    return (program["key"], type(optimizer),
            tuple(sorted(optimizer.kernel_arguments().items())),
            optimizer.clipnorm, id(optimizer.m), id(optimizer.v))


def _penalty_key(regularizer) -> Optional[tuple]:
    """A regularizer by value (one may be changed in place)."""
    return None if regularizer is None else (type(regularizer), _regularization(regularizer))


def _program_key(model) -> tuple:
    """What a model's program is compiled from: its parameter buffer, and per layer its
    plan's key and the regularizer that applies to it (by value)."""
    key = [id(model.flat_params), _penalty_key(getattr(model, "regularizer", None))]
    for layer in model.layers:
        key.append((id(layer), type(layer), getattr(layer, "plan_key", tuple)(),
                    _penalty_key(getattr(layer, "regularizer", None))))
    return tuple(key)


class FusedEpochs:
    """fit's epochs on the fused path for one fit: :meth:`create` returns None when the
    model, optimizer or backend cannot take it (fit then runs the per-op loop)."""

    def __init__(self, model, optimizer: Optimizer, batch: int, factory):
        self.model, self.optimizer, self.batch = model, optimizer, batch
        self._factory = factory
        self._trainer = None
        self._key = None
        self._program, self._program_key = None, None
        self.saved_by = None     # the trainer whose latest save_first run saved the state

    @classmethod
    def create(cls, model, optimizer: Optimizer, batch: int) -> Optional["FusedEpochs"]:
        factory = getattr(model.backend, "fused_trainer", None)
        if factory is None or type(optimizer) not in OPTIMIZERS.values():
            return None
        epochs = cls(model, optimizer, batch, factory)
        return None if epochs.program() is None else epochs

    def program(self) -> Optional[dict]:
        """The model's compiled program, compiled again only when what it is built from
        changed (a callback may give a layer another regularizer between epochs):
        compiling takes about 70 us, an epoch of a small model 9 ms."""
        key = _program_key(self.model)
        if key != self._program_key:
            self._program, self._program_key = self.model.fused_program(), key
        return self._program

    def _current(self, program: dict):
        """The trainer for the current configuration: built at the first use and again
        only if something changed between epochs (a callback replacing a regularizer or
        the optimizer's state arrays)."""
        key = _key(program, self.optimizer)
        if self._trainer is None or key != self._key:
            opt = self.optimizer
            with self.model.writing_params():   # the trainer binds them for writing
                self._trainer = self._factory(
                    params=self.model.flat_params, grads=self.model.flat_grads, m=opt.m, v=opt.v,
                    program=program, loss=None if "heads" in program
                    else get_loss(self.model.loss).kernel,
                    optimizer=opt.kernel, batch_size=self.batch, clipnorm=opt.clipnorm,
                    lock=self.model.weights_lock,
                    **opt.kernel_arguments())
            self._key = key
        return self._trainer

    def run_steps(self, X, Y, W, order, begin: int, end: int, epoch: int, totals=None,
                  watch=None, program: Optional[dict] = None, save_first: bool = False,
                  n_samples: int = 0, first_step: int = 0, n_batches: Optional[int] = None):
        """Steps [begin, end) of the epoch visiting rows in ``order``; adds them to
        ``totals`` (new ones if None) and returns it. Advances the optimizer's and the
        model's counters by the steps taken; raises DivergenceError (the weights and the
        optimizer's state are those before the failing step) as the per-op loop does.
        With ``watch`` (the backend's ``sigint_watch()``) a SIGINT ends the run at the next
        step boundary: fewer steps are taken and ``totals.interrupted`` is set. ``program``:
        :meth:`program` as the caller took it at the epoch's start (callbacks change a
        model only between epochs), else taken here. ``save_first``: the trainer saves the
        parameters and m and v before the first step (``saved_by`` is then that trainer,
        whose ``restore_saved()`` puts them back). When X is one block of a streamed
        epoch: ``n_samples``, the training set's rows (the penalty's n; 0: the rows
        ``order`` visits), and the block's ``first_step`` in its epoch of ``n_batches``
        steps, which a divergence's error names."""
        model, opt = self.model, self.optimizer
        program = self.program() if program is None else program
        if program is None:
            raise ValueError("the model has a layer or regularizer the fused path does not "
                             "run; fit uses the per-op loop for it")
        unallocated = [name for name in ("m", "v") if getattr(opt, name) is None]
        opt.state_for(model.flat_params)
        n, batch = len(order), self.batch       # the rows the epoch visits
        sizes = [min(batch, n - step * batch) for step in range(begin, end)]
        lrs = opt.step_rates(sizes)
        trainer = self._current(program)
        if totals is None:
            totals = trainer.new_totals()
        before = totals.steps
        trainer.run(X, Y, W, order, begin, end, lrs, opt.iterations + 1, model.training_step,
                    totals, watch, save_first, n_samples)
        if save_first:
            self.saved_by = trainer
        model.weights_written()            # through the trainer's own binding
        done = totals.steps - before
        opt.advance(done, sum(sizes[:done]), float(lrs[done - 1]) if done else 0.0)
        model.training_step += done
        if done:                                   # as the per-op forward leaves it
            last_step = model.training_step - 1
            for layer in model.layers:
                layer.step = last_step
        if opt.iterations == 0:                    # no step ever: no state, as step() leaves it
            for name in unallocated:
                setattr(opt, name, None)
        if totals.diverged is not None:
            step = first_step + totals.diverged_step + 1
            n_batches = -(-n // batch) if n_batches is None else n_batches
            rate = float(lrs[done])
            if totals.diverged == "loss":
                raise diverged_loss(epoch, step, n_batches,
                                    totals.diverged_value / totals.diverged_rows, rate)
            raise diverged_at(epoch, step, n_batches,
                              opt.non_finite_gradient(totals.diverged_value, rate))
        return totals
