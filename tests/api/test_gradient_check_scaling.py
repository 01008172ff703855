"""gradient_check's limits scale with the rounding error of the cost (measured from the
second differences of the same evaluations): a correct model whose cost rounds more than
a small float64 model's passes, a wrong derivative stays a bug; max_params checks a
random subset; progress and the time estimate go to stderr when asked."""
import numpy as np
import pytest

from fastmlp import Dense, Layer, Sequential, gradient_check
from fastmlp.tools.gradcheck import OK, SUSPECT, limits, verdict


class Rounded(Layer):
    """The identity, its output rounded to a grid of spacing ``grid`` (a cost with more rounding
    error than float64's, as a wide layer or a large cost has); backward: the identity's
    derivative, right for the function it approximates."""

    def __init__(self, grid):
        super().__init__()
        self.grid = grid

    def forward(self, backend, x, workspace, training):
        return np.round(x / self.grid) * self.grid

    def backward(self, backend, dy, need_dx):
        return dy if need_dx else None


class Doubled(Rounded):
    """As Rounded, with a derivative twice too large (a planted bug)."""

    def backward(self, backend, dy, need_dx):
        return 2 * dy if need_dx else None


def _check(middle, input_dim=6, n=8, **options):
    model = Sequential([Dense(5, "tanh"), middle, Dense(2)], input_dim=input_dim,
                       backend="numpy", seed=0)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(n, input_dim)), rng.integers(0, 2, n)
    return gradient_check(model, X, y, verbose=0, **options)


def test_a_noisier_correct_cost_passes_where_a_fixed_threshold_says_suspect():
    report = _check(Rounded(1e-11))
    assert verdict(report.overall) == "suspect"          # the fixed 1e-7 threshold
    assert report.overall > OK and report.rounding > OK / 10
    assert report.verdict == "ok", str(report)
    assert report.ok_limit == pytest.approx(10 * report.rounding)


def test_a_wrong_derivative_in_a_noisy_cost_is_still_a_bug():
    report = _check(Doubled(1e-11))
    assert report.verdict == "bug", str(report)
    assert report.per_param_verdict["dense_0.W"] == "bug"
    assert report.per_param_verdict["dense_2.W"] == "ok"


def test_a_cost_too_noisy_to_tell_is_never_ok_beyond_the_suspect_limit():
    assert limits(1.0) == (SUSPECT, 10 * SUSPECT)
    assert limits(0.0) == (OK, SUSPECT)


def test_a_wide_correct_model_passes_on_a_random_subset():
    """The issue's Dense(64, relu) -> Dense(2) on wide inputs (2,000 here; 200 of its
    128,194 coordinates checked)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 2000)), rng.integers(0, 2, 20)
    model = Sequential([Dense(64, "relu"), Dense(2)], input_dim=2000, backend="numpy", seed=0)
    report = gradient_check(model, X, y, max_params=200, seed=3, verbose=0)
    assert report.verdict == "ok", str(report)
    assert (report.checked, report.n_params) == (200, model.n_params)
    assert "200 of 128,194 coordinates" in str(report)
    again = gradient_check(model, X, y, max_params=200, seed=3, verbose=0)
    assert again.overall == report.overall                 # the same coordinates


def test_max_params_above_the_size_checks_everything():
    report = _check(Rounded(1e-300), max_params=10 ** 6)
    assert report.checked == report.n_params
    with pytest.raises(ValueError, match="max_params must be an integer >= 1"):
        _check(Rounded(1e-300), max_params=0)


def test_progress_and_estimate_on_stderr(monkeypatch, capsys):
    import fastmlp.tools.gradcheck as gradcheck
    monkeypatch.setattr(gradcheck, "LONG_CHECK_S", 0.0)
    monkeypatch.setattr(gradcheck._Progress, "PROGRESS_EVERY_S", 0.0)
    model = Sequential([Dense(3, "tanh"), Dense(2)], input_dim=2, backend="numpy", seed=0)
    gradient_check(model, [[0.0, 1.0], [1.0, 0.0]], [0, 1], verbose=1)
    err = capsys.readouterr().err                        # capsys: no terminal, no bar
    assert "gradient check: 17 coordinates x 2 cost evaluations, about 0 s" in err
    assert "gradient check: 17/17 coordinates" in err
    gradient_check(model, [[0.0, 1.0], [1.0, 0.0]], [0, 1])    # "auto": not a terminal
    assert capsys.readouterr() == ("", "")
