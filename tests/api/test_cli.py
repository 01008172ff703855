"""The ``fastmlp demo`` command (a short run with the NumPy backend)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastmlp
from fastmlp import cli


def test_demo_runs_and_reports_accuracy_and_speed(capsys):
    assert cli.main(["demo", "--epochs", "2", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "== backend numpy" in out and "epoch 2/2" in out
    accuracies = re.search(r"accuracy  train (\S+)  dev (\S+)  test (\S+)", out)
    assert accuracies is not None
    assert all(0.5 < float(value) <= 1.0 for value in accuracies.groups())   # it learned
    assert re.search(r"training  [\d.]+ s, [\d,]+ samples/s", out)


def test_demo_without_scikit_learn_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert cli.main(["demo", "--backend", "numpy"]) == 1
    assert 'pip install "fastmlp[demo]"' in capsys.readouterr().err


def test_demo_with_an_unavailable_backend_fails_clearly(monkeypatch, capsys):
    def unavailable(name):
        raise ImportError(f"backend={name!r} is unavailable")

    monkeypatch.setattr(cli, "get_backend", unavailable)
    assert cli.main(["demo"]) == 1
    assert "backend='native' is unavailable" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["demo", "--epochs", "two"],
                                  ["demo", "--seed", "-1"], ["demo", "--backend", "gpu"], []])
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage: fastmlp" in capsys.readouterr().err


def test_python_dash_m_fastmlp():
    package_root = str(Path(fastmlp.__file__).parent.parent)
    path = os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    result = subprocess.run([sys.executable, "-m", "fastmlp", "demo", "--help"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--backend" in result.stdout
