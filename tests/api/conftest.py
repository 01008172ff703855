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
    import fastmlp.train.loop
    monkeypatch.setattr(fastmlp.train.loop, "_FUSED", False)


# The training paths of the divergence and checkpoint tests.
PATHS = ["numpy", "native-per-op", "native-fused"]


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    """The training path: the NumPy backend, or the native one on the per-op loop or the
    fused path (whose C++ runs are counted, so a test cannot pass on the other path)."""
    if request.param == "numpy":
        return "numpy", None
    request.getfixturevalue("native")
    if request.param == "native-per-op":
        from fastmlp.train import loop as training
        monkeypatch.setattr(training, "_FUSED", False)
        return "native", None
    from fastmlp.backends.native import FusedTrainer
    runs, run = [], FusedTrainer.run

    def counting(self, *args):
        runs.append(args[4:6])
        return run(self, *args)

    monkeypatch.setattr(FusedTrainer, "run", counting)
    return "native", runs


@pytest.fixture
def fused_runs(monkeypatch):
    """Counts the fused trainer runs, so a comparison cannot pass on the per-op path."""
    from fastmlp.backends.native import FusedTrainer
    calls = []
    run = FusedTrainer.run

    def counting(self, *args):
        calls.append(args[4:6])
        return run(self, *args)

    monkeypatch.setattr(FusedTrainer, "run", counting)
    return calls
