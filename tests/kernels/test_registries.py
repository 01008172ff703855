"""One registry per concept: the Python registries of losses (fastmlp.nn.losses) and
optimizers (fastmlp.optim.optimizers) against the C++ core's names tables and its
per-optimizer state (csrc/bindings/names.hpp, csrc/ops.hpp state_of), and against the
NumPy oracle's kernels."""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp.backends.native import kernel_tables
from fastmlp.backends.numpy import NumPyBackend
from fastmlp.nn.losses import LOSSES, get_loss
from fastmlp.nn.plans import OPS
from fastmlp.optim.optimizers import OPTIMIZERS, REGISTRY

CORE = kernel_tables()


def test_every_loss_kernel_is_the_cores_and_the_core_has_no_other():
    assert sorted(get_loss(name).kernel for name in LOSSES) == sorted(CORE["losses"])


def test_the_plan_op_codes_are_the_cores_in_its_order():
    """nn/plans.py OPS and csrc/common.hpp OpCode name the same operations, in one order."""
    assert [op.name for op in OPS] == CORE["op_codes"]


def test_every_optimizer_kernel_is_the_cores_and_the_core_has_no_other():
    assert sorted(row.kernel for row in REGISTRY) == sorted(CORE["optimizers"])


@pytest.mark.parametrize("row", REGISTRY, ids=lambda row: row.name)
def test_each_optimizer_keeps_the_state_the_core_keeps(row):
    """The row's state is what the C++ kernel reads and the binding demands."""
    core_state = CORE["optimizer_state"][CORE["optimizers"].index(row.kernel)]
    assert (row.uses_m, row.uses_v) == core_state
    assert set(row.state) <= {"m", "v"}


@pytest.mark.parametrize("row", REGISTRY, ids=lambda row: row.name)
def test_each_class_answers_with_its_row(row):
    assert OPTIMIZERS[row.name] is row.cls
    assert (row.cls.name, row.cls.kernel, row.cls.uses_m, row.cls.uses_v) == \
        (row.name, row.kernel, row.uses_m, row.uses_v)


def test_the_names_are_unique():
    assert len({row.name for row in REGISTRY}) == len(REGISTRY)
    assert len({row.kernel for row in REGISTRY}) == len(REGISTRY)
    assert len({get_loss(name).kernel for name in LOSSES}) == len(LOSSES)


@pytest.mark.parametrize("name", LOSSES)
def test_the_numpy_oracle_has_each_loss_kernel(name):
    z, y = np.zeros((2, 2)), np.array([[1.0, 0.0], [0.0, 1.0]])
    kernel = get_loss(name).kernel
    NumPyBackend().loss(kernel, z, y, None, 1.0)
    NumPyBackend().output(kernel, z, np.empty_like(z))


@pytest.mark.parametrize("row", REGISTRY, ids=lambda row: row.name)
def test_the_numpy_oracle_steps_with_the_rows_state_and_demands_it(row):
    p, g = np.ones(3), np.full(3, 0.5)
    state = {key: (np.zeros(3) if key in row.state else None) for key in ("m", "v")}
    NumPyBackend().optimizer_update(row.kernel, p, g, state["m"], state["v"], lr=0.1,
                                    b1=0.9, b2=0.9, eps=1e-8)
    for key in row.state:
        missing = {**state, key: None}
        with pytest.raises(TypeError, match=f"{key} must be a numpy array"):
            NumPyBackend().optimizer_update(row.kernel, p, g, missing["m"], missing["v"],
                                            lr=0.1)
