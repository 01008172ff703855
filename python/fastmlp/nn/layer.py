"""The Layer protocol, the Workspace a layer computes in, and the built-in layers' base.

A model's parameters live in one flat buffer (and its gradients in another); every layer
takes views into both. Subclass :class:`Layer` to write your own; a custom layer runs on
the same Python loop as the built-in ones, on either backend. The protocol, in the order
the model calls it:

``build(input_dim) -> output_dim``
    Called once, when the layer joins a model; sets ``input_dim``/``output_dim`` and
    anything that depends on them. Afterwards ``count_params()`` is the number of
    trainable values the layer takes from the flat buffer.
``bind(params, grads)``
    ``params`` and ``grads`` are the layer's slices (length ``count_params()``, the
    model's dtype) of the flat buffers: keep views into them (``self.dtype`` is set).
``initialize(rng)``
    Fill the parameters (a ``numpy.random.Generator`` seeded from the model's seed)
    and reset the state.
``forward(backend, x, workspace, training) -> y``
    ``x`` is (m, input_dim); return y (m, output_dim), computed with ``backend`` (or
    NumPy) into arrays of ``workspace.get(name, shape, dtype)``. With ``training=True``
    (the fit loop; ``workspace`` is the layer's own training cache) keep on ``self``
    what ``backward`` needs. With ``training=False`` (inference) never write to ``self``:
    the workspace is per call, so predict stays safe from several threads.
``backward(backend, dy, need_dx) -> dx``
    ``dy`` already carries the 1/m of the mean loss. Write the parameter gradients
    into the gradient views (overwrite, do not accumulate) and return dx, or None
    when ``need_dx`` is False.
``parameters()`` / ``gradients()``
    Lists of the views (same order, same shapes); ``parameter_names()`` names them.
``get_state()`` / ``set_state(arrays)``
    Non-trainable state (BatchNorm's running averages, Normalization's statistics) as
    a list of arrays; empty by default. The built-in layers name them in
    ``state_names`` and give their shapes, known after ``build``, by ``state_shapes()``.
``penalized()``
    [(W, dW), ...] flat views that a weight regularizer applies to (weights, never
    biases); empty by default. ``regularizer`` overrides the model's for this layer.

The built-in layers (:mod:`fastmlp.nn.layers`) derive from :class:`PlannedLayer`: each
states its computation once, as a plan (:mod:`fastmlp.nn.plans`), that its forward,
backward and penalized weights run or read. They also have ``get_config()``: their
constructor's arguments, so ``type(layer)(**layer.get_config())`` is a fresh copy (an
activation object and a regularizer are given as the objects). ``LAYERS`` maps their class
names to the classes (the model file, :mod:`fastmlp.model.modelfile`, saves only these).

The model sets ``index`` (the layer's position), ``seed`` (model.seed mod 2**64) and,
before every training forward, ``step`` (the model's training-step counter).
"""
from __future__ import annotations

from contextlib import contextmanager
from operator import attrgetter
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import plans
from .._validation import as_shaped
from ..backends.base import Backend
from .plans import Plan

__all__ = ["Layer", "PlannedLayer", "Workspace", "WorkspacePool"]


class Workspace:
    """Named scratch arrays, kept while their shape and dtype stay the same: a training
    cache reallocates only when the batch size changes (the last, partial batch)."""

    #: the plan of the planned layer computing here, compiled for its last call
    #: (:class:`.plans.CompiledPlan`; PlannedLayer keeps it up to date); never pickled
    compiled_plan: Optional[plans.CompiledPlan] = None

    def __init__(self):
        self._arrays: Dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {"_arrays": self._arrays}

    def get(self, name: str, shape: Tuple[int, ...], dtype) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype)
        return array


class WorkspacePool:
    """Inference scratch kept between calls: :meth:`lend` gives a call a list of
    workspaces (one per layer) that no other call holds, made when none is free, and takes
    it back when the call ends. Repeated predicts so reuse their arrays and compiled plans,
    while concurrent calls from several threads never share scratch (list pop and append
    are atomic). What a call returns must not be a workspace's array (the callers copy).
    Never pickled: a copy starts empty."""

    def __init__(self):
        self._free: List[List[Workspace]] = []

    def __getstate__(self) -> dict:
        return {"_free": []}

    @contextmanager
    def lend(self, n: int) -> Iterator[List[Workspace]]:
        try:
            workspaces = self._free.pop()
        except IndexError:
            workspaces = []
        if len(workspaces) != n:
            workspaces = [Workspace() for _ in range(n)]
        try:
            yield workspaces
        finally:
            self._free.append(workspaces)


class Layer:
    """Base class of every layer (see the module docstring for the protocol).

    Defaults: no parameters, no state, nothing penalized, identity forward/backward
    is *not* provided (``forward``/``backward`` must be overridden)."""

    #: short name used by ``summary()`` ("dense", "dropout", ...)
    kind = "layer"
    #: the output activation, for the loss contract check (None: not applicable)
    activation: Optional[str] = None
    regularizer = None
    #: names of the arrays get_state() returns (the built-in layers' state: one value per
    #: input feature each)
    state_names: Tuple[str, ...] = ()
    #: the index in its global batch of the training batch's first row: 0 but for a
    #: data-parallel shard (fastmlp.distributed), so Dropout's masks are the whole batch's
    first_row = 0

    def __init__(self):
        self.input_dim: Optional[int] = None
        self.output_dim: Optional[int] = None
        self.dtype: Optional[np.dtype] = None
        self.index = 0
        self.seed = 0
        self.step = 0
        self._cache = Workspace()

    @property
    def training_workspace(self) -> Workspace:
        """The layer's own workspace, the one the model's training forwards pass it (what
        the forward keeps for the backward lives there)."""
        return self._cache

    # -- construction
    def build(self, input_dim: int) -> int:
        """Record the input width; return the output width (the same, by default)."""
        self.input_dim = self.output_dim = input_dim
        return self.output_dim

    def count_params(self) -> int:
        """Number of trainable values in the flat buffer (after build)."""
        return 0

    def bind(self, params: np.ndarray, grads: np.ndarray) -> None:
        """Keep views into the layer's slices of the flat buffers."""
        self.dtype = params.dtype

    def initialize(self, rng: np.random.Generator) -> None:
        pass

    # -- computation
    def forward(self, backend: Backend, x: np.ndarray, workspace: Workspace,
                training: bool) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, backend: Backend, dy: np.ndarray, need_dx: bool) -> Optional[np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    # -- parameters and state
    def parameters(self) -> List[np.ndarray]:
        return []

    def gradients(self) -> List[np.ndarray]:
        return []

    def parameter_names(self) -> List[str]:
        return [f"p{i}" for i in range(len(self.parameters()))]

    def get_state(self) -> List[np.ndarray]:
        return []

    def state_shapes(self) -> List[Tuple[int, ...]]:
        """The shapes of get_state()'s arrays, known after build (before bind): one
        (input_dim,) vector per name in ``state_names``."""
        return [(self.input_dim,)] * len(self.state_names)

    def set_state(self, state: Sequence[np.ndarray]) -> None:
        if len(state):
            raise ValueError(f"{type(self).__name__} keeps no state; got {len(state)} arrays")

    def penalized(self) -> List[Tuple[np.ndarray, np.ndarray]]:
        return []

    def describe(self) -> str:
        """What summary() shows in parentheses after the layer's name."""
        return ""

    def _check_state(self, state) -> List[np.ndarray]:
        """``state`` as arrays of ``state_shapes()`` in the layer's dtype, finite."""
        shapes, names = self.state_shapes(), self.state_names
        if not isinstance(state, (list, tuple)) or len(state) != len(shapes):
            raise ValueError(f"{type(self).__name__} state must be a list of {len(shapes)} "
                             f"arrays {list(names)}; got {state!r:.80}")
        return [as_shaped(s, name, shape, self.dtype)
                for s, shape, name in zip(state, shapes, names)]


class PlannedLayer(Layer):
    """A layer that states its computation once, as a plan (:mod:`.plans`): its forward,
    backward and penalized weights run or read that plan, and the fused paths compile it.
    The built-in layers' base; a subclass states ``plan()``."""

    #: the last training forward's compiled plan, input and workspace (for the backward)
    _training: Optional[Tuple[plans.CompiledPlan, np.ndarray, Workspace]] = None
    #: what a plan reads besides the built sizes: a change builds the plan again (the
    #: activation may be swapped on a built model; the fused predictor's key has it too)
    PLAN_SETTINGS = ("activation", "param", "rate", "momentum", "eps")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_training", None)      # bound backend calls: compiled again on demand
        return state

    def plan(self) -> Plan:
        raise NotImplementedError

    def built_plan(self) -> Plan:
        """:meth:`plan`, built once per input width and settings (every step runs it:
        building it each time cost as much as the step's small products)."""
        return self._plan_and_buffers()[0]

    def plan_key(self) -> tuple:
        """What the plan is built from: the input width and the settings."""
        return (self.input_dim,) + tuple(getattr(self, s, None) for s in self.PLAN_SETTINGS)

    def _plan_and_buffers(self) -> Tuple[Plan, Dict[str, plans.Buffer], Tuple[str, ...]]:
        """The built plan, its buffers by name and the attributes its arrays live in."""
        key = self.plan_key()
        cached = self.__dict__.get("_built_plan")
        if cached is None or cached[0] != key:
            plan = self.plan()
            cached = self.__dict__["_built_plan"] = (
                key, plan, {b.name: b for b in plan.buffers},
                tuple(b.attr for b in plan.buffers if b.attr is not None))
        return cached[1:]

    def _compiled(self, backend: Backend, workspace: Workspace, rows: int,
                  dtype) -> plans.CompiledPlan:
        """The plan compiled in ``workspace`` for a call: kept while the layer's width,
        settings and arrays (another array: the layer was bound again), the backend, the
        row count and the dtype stay the same."""
        call = (self, backend, rows, dtype)
        compiled = workspace.compiled_plan
        if compiled is None or not compiled.fits(call):
            plan, buffers, attributes = self._plan_and_buffers()
            settings = [s for s in self.PLAN_SETTINGS if hasattr(self, s)]
            layer_state = attrgetter("input_dim", "dtype", *settings, *attributes)
            arrays = plans.Arrays(self, buffers, workspace, rows, dtype)
            compiled = workspace.compiled_plan = plans.CompiledPlan(plan, arrays, call,
                                                                    layer_state)
        return compiled

    def training_buffer(self, name: str) -> Optional[np.ndarray]:
        """The last training forward's buffer ``name`` (None before the first)."""
        return None if self._training is None else self._training[0].buffer(name)

    def _call_values(self, x: np.ndarray, dy: Optional[np.ndarray]) -> tuple:
        """A run's :data:`.plans.CALL_VALUES`."""
        return x, dy, self.seed, self.index, self.step, self.first_row

    def forward(self, backend: Backend, x: np.ndarray, workspace: Workspace,
                training: bool = False) -> np.ndarray:
        """The plan's training or inference ops over x and the workspace's arrays; returns
        the result. A training forward keeps what the backward needs."""
        compiled = self._compiled(backend, workspace, len(x), x.dtype)
        result = compiled.program("forward" if training else "inference").run(
            self._call_values(x, None))
        if training:
            self._training = (compiled, x, workspace)
        return result

    def backward(self, backend: Backend, dy: np.ndarray, need_dx: bool) -> Optional[np.ndarray]:
        """The plan's backward ops from dy (the dx-only ones only with ``need_dx``)."""
        compiled, x, workspace = self._training
        if compiled.backend is not backend:
            compiled = self._compiled(backend, workspace, len(x), x.dtype)
        return compiled.program("backward" if need_dx else "backward_params").run(
            self._call_values(x, dy))

    def penalized(self) -> List[Tuple[np.ndarray, np.ndarray]]:
        plan = self.built_plan()
        return [(getattr(self, plan.buffer(w).attr).reshape(-1),
                 getattr(self, plan.buffer(dw).attr).reshape(-1)) for w, dw in plan.penalized]
