"""Layer plans: each built-in layer states its forward and backward once, as a short list
of backend operations over named, sized buffers (docs/plans.md).

A :class:`Plan` names the layer's buffers (:class:`Buffer`: its parameters and their
gradients, its state, its per-batch caches, its input ``x`` and the incoming gradient
``dy``) and four op lists: the training forward, the inference forward, the backward and
the weights the regularizer penalizes. An :class:`Op` is an operation code of
:data:`OPS` with the buffers it reads and writes, in the order the table gives, and its
constants. The per-op path runs a plan through the Backend (``Layer.forward``/``backward``:
each op list compiled, once per layer, backend, row count and arrays, into a
:class:`Program` of bound backend calls); the fused C++ paths run the same plan compiled
into flat records (:mod:`fastmlp.train.fused`, csrc/train/program.hpp). ``OPS`` is the one table of
op codes: the C++ enum ``OpCode`` (csrc/common.hpp) names the same codes in the same order
(tests/kernels/test_registries.py checks).
"""
from __future__ import annotations

from operator import is_
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

from . import activations

__all__ = ["Buffer", "Op", "OpCode", "OPS", "Plan", "ROWS", "ROLES", "Arrays", "CallValue",
           "CALL_VALUES", "Program", "CompiledPlan", "compile_ops", "multiplies_input",
           "plan_of"]

#: the batch's row count in a buffer's shape
ROWS = -1

#: what a buffer is: a trainable parameter (a view into the model's flat parameters, its
#: gradient at the same offset of the flat gradients), a parameter's gradient, state that
#: training writes (BatchNorm's running averages), a constant the layer keeps and training
#: never writes (Normalization's statistics), a cache (per-batch scratch, kept from the
#: training forward to the backward), the layer's input and the incoming gradient
ROLES = ("parameter", "gradient", "state", "constant", "cache", "input", "grad_output")


class Buffer(NamedTuple):
    """A named buffer of a plan. ``shape`` holds ints and :data:`ROWS`; ``attr`` is the
    layer attribute holding the array (parameters, gradients, state, constants);
    ``dtype`` is "float" (the model's dtype) or "int32"."""

    name: str
    role: str
    shape: Tuple[int, ...]
    attr: Optional[str] = None
    dtype: str = "float"

    def sized(self, rows: int) -> Tuple[int, ...]:
        return tuple(rows if extent == ROWS else extent for extent in self.shape)


class OpCode(NamedTuple):
    """One operation: the buffers it takes (reads, then writes) and its constants."""

    name: str
    buffers: Tuple[str, ...]
    constants: Tuple[str, ...] = ()


#: the op codes, in the order of the C++ enum OpCode (csrc/common.hpp)
OPS: Tuple[OpCode, ...] = (
    OpCode("gemm_bias_act", ("x", "w", "b", "z", "a"), ("activation", "param")),
    OpCode("act_backward", ("z", "a", "da", "dz"), ("activation", "param")),
    OpCode("gemm_weight_grad", ("dz", "x", "dw")),          # dw = dz^T x
    OpCode("col_sum", ("dz", "db")),
    OpCode("gemm_input_grad", ("dz", "w", "dx")),           # dx = dz w
    OpCode("maxout_forward", ("z", "a", "argmax")),
    OpCode("maxout_backward", ("da", "argmax", "dz")),
    OpCode("dropout_forward", ("x", "y", "mask"), ("rate",)),
    OpCode("mul", ("a", "b", "out")),
    OpCode("batchnorm_forward_train", ("x", "gamma", "beta", "y", "xhat", "mean", "inv_std"),
           ("eps",)),
    OpCode("batchnorm_running_update", ("mean", "inv_std", "running_mean", "running_var"),
           ("momentum", "eps")),
    OpCode("batchnorm_forward_infer", ("x", "gamma", "beta", "mean", "var", "y"), ("eps",)),
    OpCode("batchnorm_backward", ("dy", "xhat", "gamma", "inv_std", "dx", "dgamma", "dbeta")),
    OpCode("scale_columns", ("x", "scale", "y")),            # y = x * scale per column
    OpCode("add_to", ("x", "y")),                              # y += x (heads' gradients)
    OpCode("regularize", ("w", "dw"), ("l1", "l2", "scale")),
)
CODES: Dict[str, int] = {op.name: i for i, op in enumerate(OPS)}


class Op(NamedTuple):
    """One step of a plan: ``code`` (a name of :data:`OPS`), the plan's buffer names in
    the code's order, the constants (the activation by name) and ``dx_only``: the step
    only computes the input's gradient, skipped when it is not needed (the first layer)."""

    code: str
    buffers: Tuple[str, ...]
    constants: Tuple = ()
    dx_only: bool = False


class Plan(NamedTuple):
    """A layer's buffers and op lists; each list's result is a buffer name."""

    buffers: Tuple[Buffer, ...]
    forward: Tuple[Op, ...]
    forward_result: str
    inference: Tuple[Op, ...]
    inference_result: str
    backward: Tuple[Op, ...]
    penalized: Tuple[Tuple[str, str], ...] = ()   # (weights, their gradient)

    def buffer(self, name: str) -> Buffer:
        for buffer in self.buffers:
            if buffer.name == name:
                return buffer
        raise KeyError(f"the plan has no buffer {name!r}")


def multiplies_input(plan: Plan) -> bool:
    """Whether every op of the plan that reads its input ``x`` (its dx-only ops aside,
    which a first layer skips) multiplies it: gemm_bias_act's ``x`` and gemm_weight_grad's
    ``x``. Such a layer takes sparse input rows (docs/sparse.md)."""
    products = {("gemm_bias_act", 0), ("gemm_weight_grad", 1)}
    return all((op.code, i) in products
               for ops in (plan.forward, plan.inference, plan.backward)
               for op in ops if not op.dx_only
               for i, name in enumerate(op.buffers) if name == "x")


def plan_of(layer) -> Optional[Plan]:
    """The layer's plan when its own class states one (a subclass that does not restate it
    may compute otherwise: it runs its forward and backward on the per-op path), else
    None."""
    return layer.built_plan() if "plan" in type(layer).__dict__ else None


class CallValue(NamedTuple):
    """A place in a compiled op's arguments that each run fills: the layer's input ``x``,
    the incoming gradient ``dy``, or a part of dropout's mask key (the layer's seed and
    index, the model's step, the batch's first row: a data-parallel shard's offset in its
    global batch). ``slot`` is its index in :data:`CALL_VALUES`."""

    slot: int
    name: str


#: the values a run gets, in the order of :meth:`Program.run`'s ``values``
CALL_VALUES = X, DY, SEED, INDEX, STEP, FIRST_ROW = tuple(
    CallValue(slot, name)
    for slot, name in enumerate(("x", "dy", "seed", "index", "step", "first_row")))


class Arrays(dict):
    """A plan's buffers for one compilation, by name: the input and incoming gradient as
    their :class:`CallValue`, parameters, state and constants from the layer's
    attributes, caches from the workspace at the row count (resolved when an op first
    asks)."""

    def __init__(self, layer, buffers: Dict[str, Buffer], workspace, rows: int, dtype):
        super().__init__(x=X, dy=DY)
        self._layer, self._buffers, self._workspace = layer, buffers, workspace
        self.rows, self._dtype = rows, dtype

    def __missing__(self, name: str) -> np.ndarray:
        buffer = self._buffers[name]
        if buffer.role == "cache":
            dtype = np.int32 if buffer.dtype == "int32" else self._dtype
            array = self._workspace.get(name, buffer.sized(self.rows), dtype)
        else:
            array = getattr(self._layer, buffer.attr)
        self[name] = array
        return array


class Program:
    """An op list compiled for one layer, backend, row count and set of arrays: each op a
    backend method with its arguments in place; a run fills the :class:`CallValue`
    places and calls the methods in order."""

    __slots__ = ("_calls", "_places", "_result")

    def __init__(self, calls, result):
        self._calls = [(method, list(args)) for method, args in calls]
        self._places = [(args, i, value.slot) for _, args in self._calls
                        for i, value in enumerate(args) if isinstance(value, CallValue)]
        self._result = result

    def run(self, values: tuple):
        """Run the ops with ``values`` (one per :data:`CALL_VALUES`); returns the result
        buffer (None when the list has none)."""
        for args, i, slot in self._places:
            args[i] = values[slot]
        for method, args in self._calls:
            method(*args)
        result = self._result
        return values[result.slot] if type(result) is CallValue else result


def compile_ops(ops, arrays: Arrays, backend, result: Optional[str],
                need_dx: bool = True) -> Program:
    """``ops`` over ``arrays`` through ``backend`` as a :class:`Program` (dx-only steps
    only with ``need_dx``) whose run returns the buffer ``result``."""
    calls = [_BINDERS[op.code](backend, tuple(arrays[name] for name in op.buffers),
                               op.constants)
             for op in ops if need_dx or not op.dx_only]
    return Program(calls, None if result is None else arrays[result])


class CompiledPlan:
    """A layer's plan compiled for one call, ``(layer, backend, rows, dtype)``: a
    :class:`Program` per phase, compiled when first run. Phases: "forward" (training),
    "inference", "backward" and "backward_params" (the backward without its dx-only
    steps). ``layer_state(layer)`` reads the layer's attributes the plan and its arrays
    come from (its width, settings and arrays); it serves a call while they stay the
    same objects (held here, so no other object can take their ids)."""

    def __init__(self, plan: Plan, arrays: Arrays, call: tuple, layer_state: Callable):
        self.plan, self.call, self.backend = plan, call, call[1]
        self._layer_state, self._state = layer_state, layer_state(call[0])
        self._arrays, self._programs = arrays, {}

    def fits(self, call: tuple) -> bool:
        """Whether it serves ``call``: the same call, the layer's attributes unchanged."""
        return call == self.call and all(map(is_, self._layer_state(call[0]), self._state))

    def buffer(self, name: str) -> np.ndarray:
        """The array of the plan's buffer ``name``."""
        return self._arrays[name]

    def program(self, phase: str) -> Program:
        program = self._programs.get(phase)
        if program is None:
            program = self._programs[phase] = self._compile(phase)
        return program

    def _compile(self, phase: str) -> Program:
        plan, arrays, backend = self.plan, self._arrays, self.backend
        if phase == "forward":
            return compile_ops(plan.forward, arrays, backend, plan.forward_result)
        if phase == "inference":
            return compile_ops(plan.inference, arrays, backend, plan.inference_result)
        need_dx = phase == "backward"
        return compile_ops(plan.backward, arrays, backend, "dx" if need_dx else None, need_dx)


def _plain(method: str):
    """An op whose arguments are its buffers, in the table's order."""
    return lambda backend, a, c: (getattr(backend, method), a)


def _with_activation(method: str):
    """An op given its buffers, then the activation (resolved by name once) and param."""
    return lambda backend, a, c: (getattr(backend, method), (*a, activations.kind(c[0]), c[1]))


# each op code's backend method and its arguments (a: the buffers, c: the constants)
_Binder = Callable[..., Tuple[Callable[..., None], tuple]]
_BINDERS: Dict[str, _Binder] = {
    "gemm_bias_act": _with_activation("gemm_bias_act"),
    "act_backward": _with_activation("act_backward"),
    "gemm_weight_grad": _plain("weight_grad"),
    "col_sum": _plain("col_sum"),
    "gemm_input_grad": _plain("gemm"),
    "maxout_forward": _plain("maxout_forward"),
    "maxout_backward": _plain("maxout_backward"),
    "dropout_forward": lambda be, a, c: (be.dropout_forward,
                                                 (*a, c[0], SEED, INDEX, STEP, FIRST_ROW)),
    "mul": _plain("mul"),
    "batchnorm_forward_train": lambda be, a, c: (be.batchnorm_forward_train, (*a, c[0])),
    "batchnorm_running_update": lambda be, a, c: (be.batchnorm_running_update, (*a, *c)),
    "batchnorm_forward_infer": lambda be, a, c: (be.batchnorm_forward_infer,
                                                 (*a[:5], c[0], a[5])),
    "batchnorm_backward": _plain("batchnorm_backward"),
    "scale_columns": _plain("scale_columns"),
    "add_to": _plain("add_to"),
}
# the penalty's op runs on the per-op path as the model's regularizer applies it
# (Regularizer.apply over Layer.penalized()), with the step's divisor
assert tuple(_BINDERS) == tuple(op.name for op in OPS if op.name != "regularize")
