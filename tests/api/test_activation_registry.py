"""The activation registry (fastmlp.nn.activations.KINDS) against the C++ core's names and
the test cases: one row per kernel activation, named as the kernel names it, and one test
case per row (tests/activation_cases.py), so that nothing depends on the enum's order and
no activation goes untested."""
import pytest

from activation_cases import CASES
from fastmlp.backends import native
from fastmlp.nn import activations, initializers


def test_registry_names_are_the_kernels_names_in_enum_order():
    assert list(activations.ACTIVATIONS) == native.kernel_tables()["activations"]


def test_every_row_has_a_test_case_and_every_case_a_row():
    assert tuple(CASES) == activations.ACTIVATIONS


@pytest.mark.parametrize("row", activations.KINDS, ids=lambda row: row.name)
def test_row_is_consistent(row):
    assert activations.kind(row.name) is row
    assert row.initializer in initializers.INITIALIZERS
    assert initializers.resolve(None, row.name) == row.initializer
    assert CASES[row.name].param == row.default_param
    if row.object_type is not None:
        obj = row.object_type()
        assert (obj.name, obj.param) == (row.name, row.default_param)
        assert activations.resolve_with_param(obj) == (row.name, row.default_param)
    assert (row.torch is None) == (row.name == "linear")


def test_unknown_names_are_refused_with_the_list():
    with pytest.raises(ValueError, match=r"unknown activation 'softmax'; expected one of "
                                         r"\['linear', 'sigmoid'"):
        activations.kind("softmax")
    with pytest.raises(TypeError, match="activation must be a string"):
        activations.kind(3)
