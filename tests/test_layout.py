"""The package's import direction (docs/architecture.md): every import inside fastmlp,
function-level ones included, points down the layer list below, and there is no cycle.

Read with ``ast``, not by importing, so a lazy import inside a function counts as much as one
at the top of a file."""
from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "python" / "fastmlp"

# Lowest first. A module may import from its own layer or any layer before it.
LAYERS = (
    ("foundation", ("errors", "_validation", "_keywords", "_files", "_memory", "_sparse",
                    "_version")),
    ("backends", ("backends",)),
    ("nn", ("nn",)),
    ("optim", ("optim",)),
    ("io", ("io",)),
    ("train", ("train",)),
    ("model", ("model",)),
    ("tools", ("tools",)),
    ("outer", ("sklearn", "estimators", "cli", "__init__", "__main__")),
)
RANK = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def is_package(path: pathlib.Path) -> bool:
    return path.name == "__init__.py"


def imported_modules(path: pathlib.Path):
    """(line, target module relative to fastmlp) for every import of fastmlp code."""
    name = module_name(path)
    package = name if is_package(path) and name != "__init__" else name.rpartition(".")[0]
    if name == "__init__":
        package = ""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = parts[:len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "fastmlp":
                target = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:   # `from . import x` imports the module x
                sub = f"{target}.{alias.name}" if target else alias.name
                yield node.lineno, sub if _exists(sub) else target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fastmlp":
                    yield node.lineno, alias.name.partition(".")[2]


def _exists(module: str) -> bool:
    if module == "_core":   # the compiled extension
        return True
    path = PACKAGE.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def top(module: str) -> str:
    return module.split(".")[0] if module else "__init__"


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    unplaced = sorted({top(module_name(p)) for p in SOURCES} - set(RANK))
    assert not unplaced, f"add {unplaced} to LAYERS in tests/test_layout.py and docs/architecture.md"


def test_imports_point_down():
    upward = []
    for path in SOURCES:
        here = module_name(path)
        for line, target in imported_modules(path):
            if target == "_core":
                continue
            if RANK[top(target)] > RANK[top(here)]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not upward, "imports against the direction:\n" + "\n".join(upward)


def test_only_the_native_backend_imports_the_core():
    importers = sorted(str(p.relative_to(PACKAGE)) for p in SOURCES
                       if any(t == "_core" for _, t in imported_modules(p)))
    assert importers == ["backends/native.py"]


def graph():
    edges = {module_name(p): set() for p in SOURCES}
    for path in SOURCES:
        for _, target in imported_modules(path):
            if target in edges and target != module_name(path):
                edges[module_name(path)].add(target)
    return edges


def find_cycle(edges):
    """One cycle as a list of modules, or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_find_cycle_finds_cycles(edges, expected):
    assert find_cycle(edges) == expected


def test_an_upward_import_is_caught(tmp_path, monkeypatch):
    fake = tmp_path / "fastmlp"
    (fake / "nn").mkdir(parents=True)
    (fake / "nn" / "__init__.py").write_text("")
    (fake / "model").mkdir()
    (fake / "model" / "__init__.py").write_text("")
    (fake / "nn" / "x.py").write_text("def f():\n    from ..model import y\n")
    (fake / "model" / "y.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    targets = [t for _, t in imported_modules(fake / "nn" / "x.py")]
    assert targets == ["model.y"] and RANK[top("model.y")] > RANK[top("nn.x")]


FORMER_PATHS = {"activations": "nn.activations", "layers": "nn.layers",
                "regularizers": "nn.regularizers", "optimizers": "optim.optimizers",
                "schedules": "optim.schedules", "callbacks": "train.callbacks",
                "training": "train.loop", "plotting": "io.plotting",
                "modelfile": "model.modelfile", "data": "tools.data",
                "diagnosis": "tools.diagnosis", "search": "tools.search",
                "interop.onnx": "io.onnx", "interop.torch": "io.torch",
                "initializers": "nn.initializers", "losses": "nn.losses",
                "metrics": "nn.metrics", "checkpoint": "train.checkpoint",
                "fused": "train.fused", "guards": "train.guards",
                "preflight": "train.preflight", "progress": "train.progress",
                "runtime": "backends.runtime", "network": "model.sequential",
                "multitask": "model.multitask", "gradcheck": "tools.gradcheck"}


@pytest.mark.parametrize("former, module", sorted(FORMER_PATHS.items()))
def test_the_flat_package_paths_still_import(former, module):
    """Code written against the flat package keeps working: ``from fastmlp.layers import
    Layer`` and ``fastmlp.optimizers.Adam`` name what the subpackages define."""
    import importlib
    import fastmlp
    real = importlib.import_module(f"fastmlp.{module}")
    assert importlib.import_module(f"fastmlp.{former}") is real
    owner = fastmlp
    for part in former.split("."):
        owner = getattr(owner, part)
    assert owner is real


def test_a_model_pickled_under_the_flat_paths_loads():
    """A pickle names classes by module path: one written before the subpackages
    (``fastmlp.network.Sequential``, ``fastmlp.layers.Dense``) still loads."""
    import pickle
    import fastmlp
    model = fastmlp.Sequential([fastmlp.Dense(3, "relu"), fastmlp.Dense(2)], input_dim=4,
                               backend="numpy", seed=0)
    flat = pickle.dumps(model, protocol=0)
    for module, former in (("model.sequential", "network"), ("nn.layers", "layers")):
        flat = flat.replace(f"fastmlp.{module}\n".encode(), f"fastmlp.{former}\n".encode())
    assert b"fastmlp.network\n" in flat and b"fastmlp.layers\n" in flat
    loaded = pickle.loads(flat)
    X = np.linspace(-1, 1, 8).reshape(2, 4)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def loss_name_comparisons(source: str, names) -> list:
    """(line, name) of every comparison (==, !=, in, not in) with a loss name's string."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in ast.walk(node):
                if isinstance(operand, ast.Constant) and operand.value in names:
                    found.append((node.lineno, operand.value))
    return found


def test_only_the_losses_compare_loss_names():
    """A loss object answers for its own behaviour: no module but nn/losses.py asks which
    loss it has by comparing its name."""
    from fastmlp.nn.losses import LOSSES
    found = {str(path.relative_to(PACKAGE)): hits for path in SOURCES
             if path.name != "losses.py"
             and (hits := loss_name_comparisons(path.read_text(), set(LOSSES)))}
    assert found == {}


def test_a_loss_name_comparison_is_caught():
    source = 'if loss == "mse":\n    pass\nok = kind == "relu"\n'
    assert loss_name_comparisons(source, {"mse"}) == [(1, "mse")]
