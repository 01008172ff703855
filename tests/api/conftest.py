import importlib

import pytest


def _native_import_error():
    try:
        importlib.import_module("fastmlp.backends.native")
    except ImportError as exc:
        return exc
    return None


@pytest.fixture(params=["numpy", "native"])
def backend_name(request):
    """Each backend by name; native is skipped only when its module fails to import."""
    if request.param == "native":
        error = _native_import_error()
        if error is not None:
            pytest.skip(f"fastmlp.backends.native failed to import: {error}")
    return request.param


@pytest.fixture
def native():
    """The native backend's name, for tests comparing it with the NumPy oracle."""
    error = _native_import_error()
    if error is not None:
        pytest.skip(f"fastmlp.backends.native failed to import: {error}")
    return "native"



@pytest.fixture
def per_op(monkeypatch):
    """fit runs the per-op loop (the reference) even where the fused path applies: for
    tests that inspect what that loop leaves on the layers (e.g. Dropout's last mask)."""
    import fastmlp.training
    monkeypatch.setattr(fastmlp.training, "_FUSED", False)
