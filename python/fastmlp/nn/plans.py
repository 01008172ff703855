"""Layer plans: each built-in layer states its forward and backward once, as a short list
of backend operations over named, sized buffers (docs/plans.md).

A :class:`Plan` names the layer's buffers (:class:`Buffer`: its parameters and their
gradients, its state, its per-batch caches, its input ``x`` and the incoming gradient
``dy``) and four op lists: the training forward, the inference forward, the backward and
the weights the regularizer penalizes. An :class:`Op` is an operation code of
:data:`OPS` with the buffers it reads and writes, in the order the table gives, and its
constants. The per-op path runs a plan through the Backend (:func:`run`, from
``Layer.forward``/``backward``); the fused C++ paths run the same plan compiled into flat
records (:mod:`fastmlp.train.fused`, csrc/train/program.hpp). ``OPS`` is the one table of
op codes: the C++ enum ``OpCode`` (csrc/common.hpp) names the same codes in the same order
(tests/kernels/test_registries.py checks).
"""
from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

from . import activations

__all__ = ["Buffer", "Op", "OpCode", "OPS", "Plan", "ROWS", "ROLES", "Arrays", "run",
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
    OpCode("regularize", ("w", "dw"), ("l1", "l2", "per_batch")),
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


def plan_of(layer) -> Optional[Plan]:
    """The layer's plan when its own class states one (a subclass that does not restate it
    may compute otherwise: it runs its forward and backward on the per-op path), else
    None."""
    return layer.built_plan() if "plan" in type(layer).__dict__ else None


class Arrays(dict):
    """A plan's buffers as arrays for one call, by name: the input and incoming gradient
    as bound, parameters, state and constants from the layer's attributes, caches from
    the workspace at the call's row count (resolved when an op first asks; later reads
    are plain dict lookups)."""

    def __init__(self, layer, buffers: Dict[str, Buffer], workspace, rows: int, dtype):
        super().__init__()
        self._layer, self._buffers, self._workspace = layer, buffers, workspace
        self.rows, self._dtype = rows, dtype

    def bind(self, name: str, array: np.ndarray) -> None:
        self[name] = array

    def __missing__(self, name: str) -> np.ndarray:
        buffer = self._buffers[name]
        if buffer.role == "cache":
            dtype = np.int32 if buffer.dtype == "int32" else self._dtype
            array = self._workspace.get(name, buffer.sized(self.rows), dtype)
        else:
            array = getattr(self._layer, buffer.attr)
        self[name] = array
        return array


class Context(NamedTuple):
    """What an op may read beyond its buffers: dropout's mask key."""

    seed: int
    index: int
    step: int


def run(ops, arrays: Arrays, backend, context: Context, need_dx: bool = True) -> None:
    """Run ``ops`` in order through ``backend`` (dx-only steps only with ``need_dx``)."""
    for op in ops:
        if op.dx_only and not need_dx:
            continue
        _RUNNERS[op.code](backend, [arrays[name] for name in op.buffers], op.constants,
                          context)


_Runner = Callable[..., None]
_RUNNERS: Dict[str, _Runner] = {
    "gemm_bias_act": lambda be, a, c, ctx: be.gemm_bias_act(
        *a, activations.kind(c[0]), c[1]),
    "act_backward": lambda be, a, c, ctx: be.act_backward(*a, activations.kind(c[0]), c[1]),
    "gemm_weight_grad": lambda be, a, c, ctx: be.gemm(a[0], a[1], a[2], trans_a=True),
    "col_sum": lambda be, a, c, ctx: be.col_sum(*a),
    "gemm_input_grad": lambda be, a, c, ctx: be.gemm(*a),
    "maxout_forward": lambda be, a, c, ctx: be.maxout_forward(*a),
    "maxout_backward": lambda be, a, c, ctx: be.maxout_backward(*a),
    "dropout_forward": lambda be, a, c, ctx: be.dropout_forward(
        *a, c[0], ctx.seed, ctx.index, ctx.step),
    "mul": lambda be, a, c, ctx: be.mul(*a),
    "batchnorm_forward_train": lambda be, a, c, ctx: be.batchnorm_forward_train(*a, c[0]),
    "batchnorm_running_update": lambda be, a, c, ctx: be.batchnorm_running_update(*a, *c),
    "batchnorm_forward_infer": lambda be, a, c, ctx: be.batchnorm_forward_infer(
        *a[:5], c[0], a[5]),
    "batchnorm_backward": lambda be, a, c, ctx: be.batchnorm_backward(*a),
    "scale_columns": lambda be, a, c, ctx: be.scale_columns(*a),
    "add_to": lambda be, a, c, ctx: be.add_to(*a),
}
# the penalty's op runs on the per-op path as the model's regularizer applies it
# (Regularizer.apply over Layer.penalized()), with the step's divisor
assert tuple(_RUNNERS) == tuple(op.name for op in OPS if op.name != "regularize")
