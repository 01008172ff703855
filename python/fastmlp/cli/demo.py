"""``fastmlp demo``: train a ReLU network on scikit-learn's bundled handwritten digits (no
download) with each backend, and report accuracy and speed."""
from __future__ import annotations

import sys
import time

import numpy as np

from ..backends import get_backend
from ..nn.stacks import mlp_layers
from ..model.sequential import Sequential
from .tabular import standardize

DEMO_SEED = 0
DEMO_EPOCHS = 20
DEMO_BATCH = 32
DEMO_LEARNING_RATE = 0.05
DEMO_HIDDEN = (512, 256, 128)


def _stratified_split(y: np.ndarray, rng: np.random.Generator):
    """Row indices of a 60/20/20 train/dev/test split, stratified by class.

    Not :func:`fastmlp.data.split_indices`: that one sizes the parts over all the rows
    (1079/359/359 here, against 1078/360/359 rounded per class) and draws other random
    numbers, so it picks other rows, and the demo's figures in the README come from
    this split."""
    parts = ([], [], [])
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        cut = np.round(np.array([0.6, 0.8]) * len(rows)).astype(int)
        for part, chunk in zip(parts, np.split(rows, cut)):
            part.append(chunk)
    return [rng.permutation(np.concatenate(part)) for part in parts]


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    return load_digits(return_X_y=True)


def _train_once(backend: str, data, epochs: int, seed: int) -> None:
    (X_train, y_train), dev, _ = data
    layers = mlp_layers(DEMO_HIDDEN, 10, activation="relu")
    model = Sequential(layers, input_dim=X_train.shape[1], backend=backend, seed=seed)
    print(f"\n== backend {backend}: {X_train.shape[1]}-"
          f"{'-'.join(map(str, DEMO_HIDDEN))}-10 ReLU network, {model.n_params:,} parameters, "
          f"SGD lr {DEMO_LEARNING_RATE}, batch {DEMO_BATCH}, {epochs} epochs", flush=True)
    started = time.perf_counter()
    model.fit(X_train, y_train, epochs=epochs, batch_size=DEMO_BATCH,
              learning_rate=DEMO_LEARNING_RATE, validation_data=dev, verbose=1)
    seconds = time.perf_counter() - started
    scores = [model.score(X, y) for X, y in data]
    print("accuracy  train {:.4f}  dev {:.4f}  test {:.4f}".format(*scores))
    print(f"training  {seconds:.2f} s, {epochs * len(X_train) / seconds:,.0f} samples/s "
          "(including the per-epoch dev evaluation)")


def run(backend: str, epochs: int, seed: int) -> int:
    """Run the digits demo; returns the exit status."""
    names = ["native", "numpy"] if backend == "both" else [backend]
    try:
        for name in names:
            get_backend(name)
    except ImportError as exc:
        print(f"fastmlp demo: {exc}", file=sys.stderr)
        return 1
    digits = _load_digits()
    if digits is None:
        print('fastmlp demo needs scikit-learn for its bundled digits data set: '
              'pip install "fastmlp[demo]"', file=sys.stderr)
        return 1
    X, y = digits
    train, dev, test = _stratified_split(y, np.random.default_rng(seed))
    X_train, X_dev, X_test = standardize(X[train], X[dev], X[test])
    data = ((X_train, y[train]), (X_dev, y[dev]), (X_test, y[test]))
    print(f"digits: {len(X)} images of 8x8 pixels, 10 classes; train/dev/test "
          f"{len(train)}/{len(dev)}/{len(test)} (stratified, seed {seed})")
    for name in names:
        _train_once(name, data, epochs, seed)
    return 0

