"""Writing into a folder that does not exist (model files, ONNX, plots) is a
FileNotFoundError that names the folder and the path, not a hidden temporary file; nothing
is created."""
import os

import pytest

from fastmlp import Dense, Sequential


def _model():
    return Sequential([Dense(3, "relu"), Dense(2)], input_dim=2, backend="numpy", seed=0)


def _assert_names_folder(error, folder, path):
    message = str(error.value)
    assert f"the folder {str(folder)!r} does not exist; create it first" in message
    assert repr(str(path)) in message
    assert ".tmp" not in message


@pytest.mark.parametrize("relative", [True, False])
def test_save_into_missing_folder(tmp_path, monkeypatch, relative):
    monkeypatch.chdir(tmp_path)
    folder = "nope" if relative else str(tmp_path / "nope")
    path = os.path.join(folder, "x.fmlp")
    with pytest.raises(FileNotFoundError) as error:
        _model().save(path)
    _assert_names_folder(error, folder, path)
    assert list(tmp_path.iterdir()) == []


def test_onnx_into_missing_folder(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "missing" / "model.onnx"
    with pytest.raises(FileNotFoundError) as error:
        _model().to_onnx(path)
    _assert_names_folder(error, tmp_path / "missing", path)
    assert list(tmp_path.iterdir()) == []


def test_plot_into_missing_folder(tmp_path):
    pytest.importorskip("matplotlib")
    history = _model().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1], epochs=1, verbose=0)
    path = tmp_path / "missing" / "curves.png"
    with pytest.raises(FileNotFoundError) as error:
        history.plot(path)
    _assert_names_folder(error, tmp_path / "missing", path)
    assert list(tmp_path.iterdir()) == []
