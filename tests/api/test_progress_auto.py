"""fit's verbose="auto" (the default): progress when stderr is a terminal (a line per
epoch, a tqdm bar only for long epochs), nothing in pipes, files, CI or pytest's capture;
verbose=0 and 1 force it off and on."""
import importlib.util
import sys

import numpy as np
import pytest

import fastmlp.train.progress as progress
from fastmlp import Dense, MultiTask, Sequential

X = np.random.default_rng(0).normal(size=(40, 3))
Y = (X[:, 0] > 0).astype(int)
HAS_TQDM = importlib.util.find_spec("tqdm") is not None


def _model():
    return Sequential([Dense(4, "relu"), Dense(2)], input_dim=3, backend="numpy", seed=0)


def _terminal(monkeypatch):
    """stderr claims to be a terminal (called in the test: capsys swaps stderr only when
    the test runs)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


def test_auto_is_quiet_off_a_terminal(capsys):
    _model().fit(X, Y, epochs=2)
    assert capsys.readouterr() == ("", "")


def test_auto_prints_a_line_per_epoch_on_a_terminal_without_a_bar_for_short_epochs(
        monkeypatch, capsys):
    _terminal(monkeypatch)
    _model().fit(X, Y, epochs=2, batch_size=4)
    out, err = capsys.readouterr()
    assert [line.split("  ")[0] for line in out.splitlines()] == ["epoch 1/2", "epoch 2/2"]
    assert err == ""                                  # short epochs: no bar


def test_auto_shows_a_bar_for_long_epochs(monkeypatch, capsys):
    _terminal(monkeypatch)
    monkeypatch.setattr(progress, "LONG_EPOCH_WORK", 1)      # every first epoch is "long"
    _model().fit(X, Y, epochs=1, batch_size=4)
    out, err = capsys.readouterr()
    assert out.startswith("epoch 1/1")
    assert ("epoch 1/1" in err) == HAS_TQDM


def test_a_long_epoch_brings_the_bar_to_the_next(monkeypatch, capsys):
    _terminal(monkeypatch)
    monkeypatch.setattr(progress, "LONG_EPOCH_S", 0.0)       # every epoch took "long"
    _model().fit(X, Y, epochs=2, batch_size=4)
    err = capsys.readouterr().err
    assert "epoch 1/2" not in err and ("epoch 2/2" in err) == HAS_TQDM


def test_verbose_0_and_1_force_it(monkeypatch, capsys):
    _terminal(monkeypatch)
    _model().fit(X, Y, epochs=1, verbose=0)
    assert capsys.readouterr() == ("", "")
    _model().fit(X, Y, epochs=1, verbose=1)
    out, err = capsys.readouterr()
    assert out.startswith("epoch 1/1") and ("epoch 1/1" in err) == HAS_TQDM


def test_a_jupyter_kernel_stream_counts_as_watched(monkeypatch):
    stream = type("OutStream", (), {"__module__": "ipykernel.iostream",
                                    "isatty": lambda self: False})()
    monkeypatch.setattr(sys, "stderr", stream)
    assert progress.interactive()


def test_multitask_uses_the_same_default(monkeypatch, capsys):
    _terminal(monkeypatch)
    model = MultiTask([Dense(4, "relu")], {"a": [Dense(2)]}, {"a": "softmax_cross_entropy"},
                      input_dim=3, backend="numpy", seed=0)
    model.fit(X, {"a": Y}, epochs=1)
    assert capsys.readouterr().out.startswith("epoch 1/1")


@pytest.mark.parametrize("verbose, error", [("loud", ValueError), (-1, ValueError),
                                            (1.5, TypeError)])
def test_bad_verbose(verbose, error):
    with pytest.raises(error, match="verbose must be"):
        _model().fit(X, Y, epochs=1, verbose=verbose)
