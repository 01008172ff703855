"""A model or a batch that will not fit in memory is refused before allocation, with a
message that says how much it needs and how much there is."""
import re
import time

import numpy as np
import pytest

import fastmlp._memory as memory
from fastmlp import Dense, MultiTask, Sequential
from fastmlp._memory import available_memory, format_bytes

X = np.random.default_rng(0).normal(size=(64, 10))
Y = (X[:, 0] > 0).astype(int)


def _limit(monkeypatch, n_bytes):
    """The machine has ``n_bytes`` available, and every need is checked (small ones too)."""
    monkeypatch.setattr(memory, "available_memory", lambda: n_bytes)
    monkeypatch.setattr(memory, "UNCHECKED_BYTES", 0)


def test_a_huge_model_fails_fast():
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"a model of 1,001,000,000,000 float32 parameters "
                       r"\(per layer: \[1001000000000\]\), with its gradients and an "
                       r"optimizer's state \(2 more copies for Adam\), needs 16 TB of memory, "
                       r"[\d.]+ [kMGT]?B available; check input_dim and the layers' units"):
        Sequential([Dense(10 ** 9)], input_dim=1000, loss="mse")
    assert time.perf_counter() - started < 5


def test_construction_names_the_sizes(monkeypatch):
    _limit(monkeypatch, 1000)
    # 10 * 11 + 2 * 11 = 132 parameters, 4 float64 copies: 4,224 bytes
    with pytest.raises(ValueError, match=re.escape("needs 4.22 kB of memory, 1 kB available")):
        Sequential([Dense(10), Dense(2)], input_dim=10, dtype="float64")
    with pytest.raises(ValueError, match="needs .* of memory, 1 kB available"):
        MultiTask([Dense(10)], {"a": [Dense(2)]}, {"a": "mse"}, input_dim=10)


def test_fit_refuses_a_batch_too_large(monkeypatch):
    model = Sequential([Dense(1000, "relu"), Dense(2)], input_dim=10, backend="numpy", seed=0)
    before = model.get_weights()
    # the step's workspaces: 64 rows x (10 + 1000 + 2) widths x 4 arrays x 4 bytes = 1.04 MB;
    # Adam's state: 2 x 13,002 parameters x 4 bytes = 104 kB
    _limit(monkeypatch, 500_000)
    with pytest.raises(ValueError, match=re.escape(
            "training with batch_size 64 (1.04 MB of step workspaces: 64 rows x 1,012 layer "
            "widths x 4 arrays in float32; 104 kB of Adam state) needs 1.14 MB of memory, "
            "500 kB available; use a smaller batch_size or fewer units")):
        model.fit(X, Y, epochs=1, batch_size=64, optimizer="adam")
    assert model.optimizer is None and model.training_step == 0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.fit(X, Y, epochs=1, batch_size=16, optimizer="sgd", verbose=0)   # 259 kB fits


def test_multitask_fit_checks_too(monkeypatch):
    model = MultiTask([Dense(1000, "relu")], {"a": [Dense(2)]}, {"a": "softmax_cross_entropy"},
                      input_dim=10, backend="numpy", seed=0)
    _limit(monkeypatch, 100_000)
    with pytest.raises(ValueError, match="training with batch_size 32 .* 100 kB available"):
        model.fit(X, {"a": Y}, epochs=1)


def test_needs_below_the_floor_do_not_read_the_memory(monkeypatch):
    def unread():
        raise AssertionError("available_memory read for a small need")
    monkeypatch.setattr(memory, "available_memory", unread)
    memory.check_memory(memory.UNCHECKED_BYTES - 1, "x", "y")
    Sequential([Dense(2)], input_dim=3).fit(X[:, :3], Y, epochs=1, verbose=0)
    with pytest.raises(AssertionError, match="available_memory read"):
        memory.check_memory(memory.UNCHECKED_BYTES, "x", "y")


def test_unknown_memory_skips_the_check(monkeypatch):
    _limit(monkeypatch, None)
    Sequential([Dense(2)], input_dim=3).fit(X[:, :3], Y, epochs=1, verbose=0)


def test_available_memory_and_format():
    assert available_memory() > 0
    assert [format_bytes(n) for n in (12, 4224, 3.2e9, 16e12, 1.6e15)] == [
        "12 B", "4.22 kB", "3.2 GB", "16 TB", "1,600 TB"]
