"""Work run in child processes by tests/api/test_processes.py: importable by module name,
so multiprocessing's spawn and forkserver children can unpickle it.

Every function is deterministic in its arguments: a child's result must equal the
parent's bit for bit (thread count and process do not change the bits, docs/conventions.md).
"""
from __future__ import annotations

import numpy as np

import fastmlp
from fastmlp import BatchNorm, Dense, Dropout, Maxout, Normalization, Sequential

N_IN = 512            # 512 x 256 weights: the optimizer's flat update (32 Ki elements per
N_HIDDEN = 256        # thread) and the GEMMs of a 256-row batch go parallel up to 4 threads
N_CLASSES = 10
N_ROWS = 1024
BATCH = 256


def data(seed: int = 0):
    """(X, y): N_ROWS float32 rows of N_IN features, integer labels 0..N_CLASSES-1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_ROWS, N_IN)).astype(np.float32)
    return X, rng.integers(0, N_CLASSES, size=N_ROWS)


def dense_model(seed: int) -> Sequential:
    return Sequential([Dense(N_HIDDEN, "relu"), Dense(N_CLASSES)], input_dim=N_IN, seed=seed)


def mixed_model(seed: int) -> Sequential:
    """Every built-in layer kind the fused trainer and predictor handle besides Dense."""
    return Sequential([Normalization(), Dense(N_HIDDEN, "relu"), BatchNorm(), Dropout(0.2),
                       Maxout(64, pieces=3), Dense(N_CLASSES)], input_dim=N_IN, seed=seed)


MODELS = {"dense": dense_model, "mixed": mixed_model}


def train(kind: str, seed: int, epochs: int = 1) -> Sequential:
    """A model of `kind` trained on data(seed) with Adam."""
    X, y = data(seed)
    model = MODELS[kind](seed)
    model.fit(X, y, epochs=epochs, batch_size=BATCH, optimizer="adam", learning_rate=1e-3)
    return model


def train_and_predict(args):
    """(weights, predict_proba of the first 64 rows) of train(kind, seed); args is the
    tuple (kind, seed) so Pool.map can pass it."""
    kind, seed = args
    model = train(kind, seed)
    X, _ = data(seed)
    return model.get_weights(), model.predict_proba(X[:64])


def child_report(args):
    """train_and_predict plus what the child saw of the runtime."""
    weights, proba = train_and_predict(args)
    info = fastmlp.backend_info()
    return {"weights": weights, "proba": proba, "threads": info["threads"],
            "serial_after_fork": info["serial_after_fork"]}
