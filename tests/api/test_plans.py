"""The layer plans (fastmlp.nn.plans, docs/plans.md): each built-in layer states its forward
and backward once, as ops of the one op table over its declared buffers; the per-op path
runs them, and a layer whose class does not state a plan runs its own methods."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from fastmlp import Sequential
from fastmlp.nn.layers import LAYERS, Dense, Maxout, Workspace
from fastmlp.nn.plans import CODES, OPS, ROLES, ROWS, plan_of
from layer_cases import CASES, EXAMPLES, TABLE


def built(layer):
    Sequential([layer], input_dim=5, backend="numpy", seed=0)
    return layer


def test_every_built_in_layer_has_a_case_and_every_case_a_layer():
    """A layer added to LAYERS is tested by every "all layers" test once it has a case."""
    missing = sorted(set(LAYERS) - set(CASES))
    assert not missing, f"add a LayerCase for {missing} to CASES in {TABLE}"
    assert list(CASES) == list(LAYERS), \
        f"CASES in {TABLE} must hold the layers of LAYERS, in its order: {list(LAYERS)}"
    assert sum(len(case.examples) for case in CASES.values()) == len(EXAMPLES), \
        f"the example ids in {TABLE} must be unique"


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_covers_its_layer_and_every_argument(name):
    case = CASES[name]
    assert case.examples and all(type(make()) is LAYERS[name]
                                 for make in case.examples.values())
    arguments = list(inspect.signature(LAYERS[name]).parameters)
    assert sorted(case.arguments) == sorted(arguments), \
        f"the arguments of {name}'s case in {TABLE} must be its constructor's: {arguments}"


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_each_plan_uses_the_op_table_over_its_declared_buffers(example):
    plan = built(EXAMPLES[example]()).plan()
    names = [buffer.name for buffer in plan.buffers]
    assert len(set(names)) == len(names)
    for buffer in plan.buffers:
        assert buffer.role in ROLES
        assert all(extent == ROWS or extent >= 1 for extent in buffer.shape)
        assert (buffer.attr is None) == (buffer.role in ("cache", "input", "grad_output"))
    for op in plan.forward + plan.inference + plan.backward:
        code = OPS[CODES[op.code]]
        assert len(op.buffers) == len(code.buffers) and set(op.buffers) <= set(names)
        assert len(op.constants) == len(code.constants)
    for result in (plan.forward_result, plan.inference_result):
        assert result in names
    assert "dx" in names and all(op.code != "regularize" for op in plan.backward)


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_parameter_and_state_buffers_are_the_layers_arrays(example):
    layer = built(EXAMPLES[example]())
    for buffer in layer.plan().buffers:
        if buffer.attr is not None:
            array = getattr(layer, buffer.attr)
            assert array.shape == buffer.shape and array.flags.c_contiguous


def test_every_built_in_layer_states_a_plan_and_a_subclass_does_not_inherit_it():
    class MyDense(Dense):
        pass

    assert all("plan" in cls.__dict__ for cls in LAYERS.values())
    assert plan_of(built(Dense(3))) is not None
    assert plan_of(built(MyDense(3))) is None


class Recording:
    """A backend that records the names of the methods called, then calls NumPy's."""

    def __init__(self, backend):
        self.backend, self.calls = backend, []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self.backend, name)


def test_the_per_op_path_makes_the_plans_calls_in_order():
    m = Sequential([Dense(4, "tanh"), Maxout(3), Dense(2)], input_dim=5, backend="numpy",
                   dtype="float64", seed=0)
    rec = Recording(m.backend)
    x = np.random.default_rng(0).normal(size=(6, 5))
    for layer in m.layers:
        x = layer.forward(rec, x, layer.training_workspace, True)
    assert rec.calls == ["gemm_bias_act", "gemm_bias_act", "maxout_forward", "gemm_bias_act"]
    rec.calls.clear()
    m.layers[1].backward(rec, np.ones((6, 3)), need_dx=False)
    assert rec.calls == ["maxout_backward", "weight_grad", "col_sum"]


def test_the_built_plan_is_reused_and_follows_a_changed_setting():
    """Each step runs the plan built once; swapping the activation of a built layer (or
    a setting it reads) builds it again, so the per-op path computes the new function."""
    model = Sequential([Dense(3, "relu"), Dense(2)], input_dim=4, backend="numpy", seed=0)
    layer = model.layers[0]
    assert layer.built_plan() is layer.built_plan()
    X = np.linspace(-2, 2, 12).reshape(3, 4)
    relu = model.predict_proba(X)
    layer.activation = "tanh"
    assert layer.built_plan().forward[0].constants[0] == "tanh"
    assert not np.array_equal(model.predict_proba(X), relu)


def test_a_compiled_plan_follows_the_layers_arrays_settings_and_rows():
    """The per-op path compiles a layer's plan once per workspace and reuses it while the
    layer's arrays and settings, the backend and the row count stay the same; a change
    compiles it again (the reference: a fresh workspace, compiled for the call)."""
    model = Sequential([Dense(3, "relu")], input_dim=4, backend="numpy", dtype="float64",
                       seed=0)
    layer, kept, rng = model.layers[0], Workspace(), np.random.default_rng(1)

    def check(rows):
        x = rng.normal(size=(rows, 4))
        np.testing.assert_array_equal(layer.forward(model.backend, x, kept, False),
                                      layer.forward(model.backend, x, Workspace(), False))

    check(5)
    params, grads = rng.normal(size=layer.count_params()), np.zeros(layer.count_params())
    layer.bind(params, grads)
    check(5)
    layer.activation = "tanh"
    check(5)
    check(3)
    check(5)
    x = rng.normal(size=(5, 4))
    layer.forward(model.backend, x, layer.training_workspace, True)
    layer.backward(model.backend, np.ones((5, 3)), need_dx=False)
    assert grads.any(), "the backward wrote into the arrays the layer was bound to before"
