"""CI smoke test of an installed fastmlp: a tiny Sequential fit + predict on the native backend.

Usage: python smoke.py EXPECTED_ISA [EXPECTED_DIR]

Fails (AssertionError, rc 1) unless the active ISA is EXPECTED_ISA, fastmlp is imported from
below EXPECTED_DIR (when given), the fit learns a linearly separable problem (training
accuracy >= 0.95, the loss falls), and predict_proba gives probability rows that sum to 1
and agree with predict.
"""
from __future__ import annotations

import sys

import numpy as np

import fastmlp
import fastmlp_ci_plugin


def fit_and_predict() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 8)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = fastmlp.Sequential([fastmlp.Dense(16, activation="relu"), fastmlp.Dense(2)],
                               input_dim=8, loss="softmax_cross_entropy", backend="native", seed=0)
    loss = model.fit(X, y, epochs=40, batch_size=32, learning_rate=0.1).history["loss"]
    accuracy = model.score(X, y)
    proba = model.predict_proba(X[:16])
    assert loss[-1] < loss[0], f"the loss did not fall: {loss}"
    assert accuracy >= 0.95, f"training accuracy {accuracy} < 0.95 on a separable problem"
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5), proba.sum(axis=1)
    assert np.array_equal(proba.argmax(axis=1), model.predict(X[:16]))
    print(f"smoke fit: loss {loss[0]:.4f} -> {loss[-1]:.4f}, training accuracy {accuracy:.3f}")


def main(expected_isa: str, expected_dir: str | None = None) -> None:
    if expected_dir is not None:
        print("fastmlp imported from", fastmlp_ci_plugin.imported_from(expected_dir))
    info = fastmlp.backend_info()
    assert info["isa"] == expected_isa, f"active ISA {info['isa']!r}, expected {expected_isa!r}: {info}"
    print(f"backend_info: isa={info['isa']} usable={info['usable_isas']} openmp={info['openmp']}")
    fit_and_predict()


if __name__ == "__main__":
    main(*sys.argv[1:])
