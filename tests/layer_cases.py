"""One case per layer of the registry (fastmlp.nn.layers.LAYERS): example instances that
cover its options, and the arguments its constructor checks. Every test that runs over
"all layers" takes its layers from here: the plans (tests/api/test_plans.py), fused
training and inference bit for bit against the per-op path (test_fused.py,
test_fused_predict.py), the gradient check (tests/reference/test_gradient_check.py), the
model file, ONNX and torch round trips (test_modelfile.py, test_onnx.py,
test_torch_interop.py) and the bad-argument fuzzing (tests/fuzz/test_bad_inputs.py).
tests/api/test_plans.py fails when a registry layer has no case here, or a case leaves
one of its constructor's arguments out.

A test puts an example in :func:`stack`, a model around it, unless it needs its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

from fastmlp.nn import activations, initializers
from fastmlp.nn.activations import ELU, LeakyReLU
from fastmlp.nn.layers import BatchNorm, Dense, Dropout, Layer, Maxout, Normalization
from fastmlp.nn.regularizers import L1, L1L2, L2
from helpers import either, int_at_least, is_none, one_of_names, real_in

#: the file the completeness test names
TABLE = "tests/layer_cases.py"


@dataclass(frozen=True)
class Argument:
    """A constructor argument: ``valid``, a value it accepts (the others' value while the
    fuzzing tries a bad one); ``accepts(value)``, its contract (the fuzzing draws junk for
    which it is false and the constructor must refuse naming the argument); ``bad``,
    invalid values to draw besides the junk (the edges of the contract)."""

    valid: object
    accepts: Callable[[object], bool]
    bad: Tuple[object, ...] = ()


@dataclass(frozen=True)
class LayerCase:
    """``examples``: id -> a fresh instance; together they take every option that
    changes the computation or what is saved (activations by name and as objects, init,
    regularizers, pieces, rates, momentum, eps). ``arguments``: every argument of the
    constructor (none: nothing to fuzz)."""

    examples: Dict[str, Callable[[], Layer]]
    arguments: Dict[str, Argument] = field(default_factory=dict)


_INIT = Argument(None, either(is_none, one_of_names(*initializers.INITIALIZERS)))
_REGULARIZER = Argument(None, is_none)
_UNITS = Argument(3, int_at_least(1))

CASES: Dict[str, LayerCase] = {
    "Dense": LayerCase(
        {"dense-linear": lambda: Dense(4),
         "dense-relu": lambda: Dense(4, "relu"),
         "dense-tanh-lecun-l1": lambda: Dense(4, "tanh", init="lecun_normal",
                                              regularizer=L1(1e-3)),
         "dense-leaky-object-l2": lambda: Dense(4, LeakyReLU(0.2),
                                                regularizer=L2(1e-2, scale="batch")),
         "dense-elu-object-l1l2": lambda: Dense(4, ELU(0.5),
                                                regularizer=L1L2(l1=1e-3, l2=1e-2))},
        {"units": _UNITS,
         "activation": Argument(None, either(is_none, one_of_names(*activations.ACTIVATIONS))),
         "init": _INIT, "regularizer": _REGULARIZER}),
    "Dropout": LayerCase(
        {"dropout-0.3": lambda: Dropout(0.3), "dropout-0.5": lambda: Dropout(0.5)},
        {"rate": Argument(0.5, real_in(0, 1, high_open=True), (1.0, 1, -0.1))}),
    "Maxout": LayerCase(
        {"maxout-2": lambda: Maxout(3),
         "maxout-3-l2": lambda: Maxout(4, pieces=3, regularizer=L2(1e-2, scale="batch")),
         "maxout-1": lambda: Maxout(3, pieces=1)},
        {"units": _UNITS, "pieces": Argument(2, int_at_least(1)), "init": _INIT,
         "regularizer": _REGULARIZER}),
    "BatchNorm": LayerCase(
        {"batchnorm": BatchNorm,
         "batchnorm-0.5": lambda: BatchNorm(momentum=0.5),
         "batchnorm-0.9-eps": lambda: BatchNorm(momentum=0.9, eps=1e-2)},
        {"momentum": Argument(0.9, real_in(0, 1, high_open=True), (1.0, 1.5)),
         "eps": Argument(1e-3, real_in(0, float("inf"), low_open=True), (0.0, -1e-3))}),
    "Normalization": LayerCase({"normalization": Normalization}),
}

#: id -> make, every example of every case (the ids are unique: tests/api/test_plans.py)
EXAMPLES: Dict[str, Callable[[], Layer]] = {
    name: make for case in CASES.values() for name, make in case.examples.items()}


def stack(layer: Layer, k: int = 3, regularizers=(None, None)) -> List[Layer]:
    """``layer`` between two Dense layers (the regularizers' pair on them), then the k
    outputs: its input is computed, and its dx reaches a layer with parameters."""
    return [Dense(7, "relu", regularizer=regularizers[0]), layer,
            Dense(5, "tanh", regularizer=regularizers[1]), Dense(k)]
