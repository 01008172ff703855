"""History.plot / plotting.plot_history, and what fit(verbose=1) prints."""
import re
import sys

import numpy as np
import pytest

from fastmlp import Dense, Sequential
from fastmlp.io.plotting import plot_history
from fastmlp.optim.schedules import ExponentialDecay
from fastmlp.train.loop import History
from matplotlib.figure import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fitted_history(loss="softmax_cross_entropy", validation=True, epochs=4):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X[:, 0] - X[:, 1] if loss == "mse" else (X[:, 0] > 0).astype(int)
    model = Sequential([Dense(6, "tanh"), Dense(1 if loss == "mse" else 2)], input_dim=3,
                       loss=loss, backend="numpy", dtype="float64", seed=0)
    return model.fit(X, y, epochs=epochs, batch_size=8, validation_data=(X[:10], y[:10])
                     if validation else None,
                     optimizer="sgd", learning_rate=ExponentialDecay(0.1, 0.5))


def curves(axes):
    """{legend label: (x, y)} of the lines on one subplot."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
            for line in axes.get_lines()}


def test_lines_carry_the_history_values_exactly():
    history = fitted_history()
    h = history.history
    figure = history.plot()
    assert isinstance(figure, Figure)
    loss, accuracy, lr = figure.axes
    epochs = [1, 2, 3, 4]
    assert curves(loss) == {"train": (epochs, h["loss"]), "dev": (epochs, h["val_loss"])}
    assert curves(accuracy) == {"train": (epochs, h["accuracy"]),
                                "dev": (epochs, h["val_accuracy"])}
    assert curves(lr) == {"train": (epochs, h["lr"])}
    assert h["lr"][0] > h["lr"][-1]                          # the schedule really decays
    assert [ax.get_ylabel() for ax in figure.axes] == ["loss", "accuracy", "learning rate"]
    assert lr.get_yscale() == "log" and loss.get_yscale() == "linear"
    assert lr.get_xlabel() == "epoch"


def test_regression_without_validation_draws_what_exists():
    history = fitted_history("mse", validation=False, epochs=2)
    figure = plot_history(history.history)                   # a plain dict works too
    loss, r2, lr = figure.axes
    assert curves(loss) == {"train": ([1, 2], history.history["loss"])}
    assert curves(r2) == {"train": ([1, 2], history.history["r2"])}
    assert r2.get_ylabel() == "r2"


def test_panels_can_be_left_out_and_missing_keys_are_skipped():
    history = fitted_history(epochs=2)
    assert [ax.get_ylabel() for ax in history.plot(metrics=False).axes] == \
        ["loss", "learning rate"]
    assert [ax.get_ylabel() for ax in history.plot(metrics=False, lr=False).axes] == ["loss"]
    only_dev = plot_history({"val_loss": [0.5, 0.4], "lr": [0.0, 0.1]})
    assert curves(only_dev.axes[0]) == {"dev": ([1, 2], [0.5, 0.4])}
    assert only_dev.axes[1].get_yscale() == "linear"         # a rate of 0 has no logarithm


def test_png_is_written_atomically(tmp_path):
    history = fitted_history(epochs=2)
    path = tmp_path / "curve.png"
    path.write_bytes(b"old")
    figure = history.plot(path)
    assert isinstance(figure, Figure)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]    # no temporary left
    history.plot(str(tmp_path / "curve.svg"), lr=False)
    assert b"<svg" in (tmp_path / "curve.svg").read_bytes()[:500]


def test_pyplot_is_never_imported(monkeypatch, tmp_path):
    """No GUI backend, no global figure registry: plotting works with pyplot unimportable."""
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    fitted_history(epochs=1).plot(tmp_path / "one.png")
    assert (tmp_path / "one.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("history, error, message", [
    (History(["loss", "accuracy", "lr"]), ValueError, r"the history is empty"),
    ({"loss": []}, ValueError, r"the history is empty"),
    ({"data_loss": [1.0]}, ValueError, r"none of the keys to plot \(\['data_loss'\]\)"),
    ([1.0, 2.0], TypeError, r"history must be a fastmlp History or a dict .* got list"),
])
def test_invalid_histories(history, error, message):
    with pytest.raises(error, match=message):
        plot_history(history)


def test_invalid_arguments(tmp_path):
    history = fitted_history(epochs=1)
    with pytest.raises(TypeError, match=r"metrics must be True or False; got 'yes'"):
        history.plot(metrics="yes")
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike .*; got 3 of type int"):
        history.plot(3)
    with pytest.raises(ValueError, match=r"Format 'nope' is not supported"):
        history.plot(tmp_path / "curve.nope")
    assert list(tmp_path.iterdir()) == []


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"plotting needs matplotlib: pip install "
                                          r"'fastmlp\[plot\]'"):
        fitted_history(epochs=1).plot()


# --- fit(verbose=1) off a terminal --------------------------------------------------------

EPOCH_LINE = re.compile(r"epoch (\d)/3  loss \d+\.\d{4}  accuracy \d\.\d{4}  "
                        r"val_loss \d+\.\d{4}  val_accuracy \d\.\d{4}  [\d,]+ samples/s")


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_verbose_prints_one_plain_line_per_epoch_off_a_terminal(backend, capsys):
    """capsys is no terminal: no tqdm bar (no carriage returns, block characters or it/s),
    one line per epoch on stdout with the loss, the validation values and samples/s."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    model = Sequential([Dense(4, "relu"), Dense(2)], input_dim=3, backend=backend, seed=0)
    model.fit(X, y, epochs=3, batch_size=4, validation_data=(X, y), verbose=1)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [int(EPOCH_LINE.fullmatch(line).group(1)) for line in lines] == [1, 2, 3]
    assert err == ""
    assert not any(mark in out for mark in ("\r", "█", "it/s", "|"))
