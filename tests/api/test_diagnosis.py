"""diagnose / diagnose_errors / DiagnosisReport (docs/conventions.md)."""
import dataclasses

import numpy as np
import pytest

from fastmlp import Dense, Sequential
from fastmlp.tools.diagnosis import (BIAS_REMEDIES, VARIANCE_REMEDIES, DiagnosisReport, diagnose,
                               diagnose_errors)


@pytest.mark.parametrize("train, dev, bias, variance, verdict", [
    (0.01, 0.11, 0.01, 0.10, "high variance"),
    (0.15, 0.16, 0.15, 0.01, "high bias"),
    (0.15, 0.30, 0.15, 0.15, "high bias and high variance"),
    (0.005, 0.01, 0.005, 0.005, "neither"),
])
def test_the_notes_four_examples(train, dev, bias, variance, verdict):
    report = diagnose_errors(train, dev)
    assert report.verdict == verdict
    assert report.avoidable_bias == pytest.approx(bias, abs=1e-15)
    assert report.variance == pytest.approx(variance, abs=1e-15)
    assert (report.train_error, report.dev_error, report.baseline_error) == (train, dev, 0.0)
    assert report.high_bias == ("bias" in verdict)
    assert report.high_variance == ("variance" in verdict)


def test_remedies_name_what_the_notes_advise():
    bias = diagnose_errors(0.15, 0.16).remedies
    variance = diagnose_errors(0.01, 0.11).remedies
    both = diagnose_errors(0.15, 0.30).remedies
    assert any("bigger network" in r and "layers" in r for r in bias)
    assert any("train longer" in r and "optimizer" in r for r in bias)
    assert any("more training data" in r for r in variance)
    assert any("L2" in r and "ropout" in r for r in variance)
    assert all(any("architecture" in r for r in remedies) for remedies in (bias, variance))
    assert set(both) == set(bias) | set(variance) and len(both) == len(set(both))
    assert diagnose_errors(0.005, 0.01).remedies == ()
    assert bias == BIAS_REMEDIES and variance == VARIANCE_REMEDIES


def test_baseline_moves_the_bias_verdict():
    """Train 8 % / dev 10 %: with humans at 1 % the avoidable bias is 7 % (high); with
    humans at 7.5 % it is 0.5 % and nothing is high."""
    assert diagnose_errors(0.08, 0.10, baseline_error=0.01).verdict == "high bias"
    report = diagnose_errors(0.08, 0.10, baseline_error=0.075)
    assert report.verdict == "neither"
    assert report.avoidable_bias == pytest.approx(0.005, abs=1e-15)


def test_negative_gaps_are_reported_and_never_high():
    below_baseline = diagnose_errors(0.02, 0.04, baseline_error=0.10)
    assert below_baseline.avoidable_bias == pytest.approx(-0.08, abs=1e-15)
    assert below_baseline.verdict == "neither"
    assert "train error below the baseline" in str(below_baseline)
    dev_better = diagnose_errors(0.30, 0.10)
    assert dev_better.variance == pytest.approx(-0.20, abs=1e-15)
    assert dev_better.verdict == "high bias"
    assert "dev error below the train error" in str(dev_better)


def test_a_gap_must_be_strictly_above_the_threshold():
    assert diagnose_errors(0.25, 0.5, threshold=0.25).verdict == "neither"     # exact in binary
    assert diagnose_errors(0.25, 0.5, threshold=0.2).verdict == "high bias and high variance"
    assert diagnose_errors(0.0, 0.001, threshold=0.0).verdict == "high variance"
    assert diagnose_errors(0.0, 0.0, threshold=0.0).verdict == "neither"


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((-0.01, 0.1), {}, ValueError, r"train_error must be in \[0, 1\]; got -0\.01"),
    ((0.1, 1.01), {}, ValueError, r"dev_error must be in \[0, 1\]; got 1\.01"),
    ((0.1, float("nan")), {}, ValueError, r"dev_error must be in \[0, 1\]; got nan"),
    ((0.1, 0.2), dict(baseline_error=float("inf")), ValueError, r"baseline_error must be in"),
    ((True, 0.2), {}, TypeError, r"train_error must be a number in \[0, 1\]; got True of type "
                                 r"bool"),
    ((0.1, "0.2"), {}, TypeError, r"dev_error must be a number in \[0, 1\]; got '0\.2'"),
    ((0.1, 0.2), dict(threshold=-0.05), ValueError, r"threshold must be in \[0, 1\]; got -0\.05"),
    ((0.1, 0.2), dict(threshold=1.5), ValueError, r"threshold must be in \[0, 1\]; got 1\.5"),
    ((0.1, 0.2), dict(threshold=None), TypeError, r"threshold must be a number"),
])
def test_invalid_errors_and_threshold(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        diagnose_errors(*args, **kwargs)


def test_report_is_frozen_and_prints_every_figure():
    report = diagnose_errors(0.15, 0.30, baseline_error=0.02)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.verdict = "neither"
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "diagnosis: high bias and high variance (a gap is high above 5.00%)"
    for label, value in (("baseline error", "2.00%"), ("train error", "15.00%"),
                         ("dev error", "30.00%"), ("avoidable bias", "13.00%"),
                         ("variance", "15.00%")):
        assert any(line.split()[:len(label.split())] == label.split() and value in line
                   for line in lines), (label, text)
    assert all(f"  - {remedy}" in lines for remedy in report.remedies)
    assert "nothing to fix" in str(diagnose_errors(0.005, 0.01))


def test_from_errors_is_the_same_report():
    assert DiagnosisReport.from_errors(0.15, 0.16) == diagnose_errors(0.15, 0.16)


# --- diagnose: a model evaluated on train and dev -----------------------------------------

def data(n, seed, regression=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) if regression else (X[:, 0] > X[:, 1]).astype(int)
    return X, y


def classifier():
    return Sequential([Dense(8, "relu"), Dense(2)], input_dim=4, backend="numpy",
                      dtype="float64", seed=0)


def test_classification_error_is_one_minus_accuracy():
    model = classifier()
    train, dev = data(80, 1), data(40, 2)
    model.fit(*train, epochs=3, learning_rate=0.1)
    report = diagnose(model, train, dev, baseline_error=0.01, threshold=0.1)
    for (X, y), error in ((train, report.train_error), (dev, report.dev_error)):
        assert error == pytest.approx(np.mean(model.predict(X) != y), abs=1e-12)
    assert report == diagnose_errors(report.train_error, report.dev_error, 0.01, 0.1)


def test_an_unfitted_regressor_is_evaluated_and_may_exceed_one():
    """Error = 1 - R^2 = SSE / SST; an untrained network can be worse than the mean
    (above 1), which diagnose reports as it is."""
    model = Sequential([Dense(8, "tanh"), Dense(1)], input_dim=4, loss="mse",
                       backend="numpy", dtype="float64", seed=0)
    train, dev = data(60, 3, regression=True), data(30, 4, regression=True)
    report = diagnose(model, train, dev)
    for (X, y), error in ((train, report.train_error), (dev, report.dev_error)):
        residual = y - model.predict(X).ravel()
        assert error == pytest.approx(np.sum(residual**2) / np.sum((y - y.mean())**2),
                                      rel=1e-12)
    assert report.train_error > 1 and report.high_bias          # accepted, not rejected


def test_diagnose_checks_its_arguments():
    model = classifier()
    with pytest.raises(TypeError, match=r"train must be a pair \(X, y\); got ndarray"):
        diagnose(model, np.zeros((4, 4)), data(4, 0))
    with pytest.raises(TypeError, match=r"dev must be a pair \(X, y\); got tuple"):
        diagnose(model, data(4, 0), (np.zeros((4, 4)),))
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        diagnose(model, data(4, 0), data(4, 1), threshold=2)
