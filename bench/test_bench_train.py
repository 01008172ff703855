"""Training throughput (samples/s, one epoch per round after a warm-up epoch).

Configs (benchlib.CONFIGS), all ReLU, softmax cross-entropy, Adam(1e-3), synthetic
float32 data: A 784-256-128-10 batch 128 and B the same with batch 1024 (60,000 rows),
C 64-32-10 batch 32 (60,000 rows; per-call overhead rules), D 1024-1024-1024-10 batch 256
(16,384 rows; GEMM rules). Implementations: fastmlp native and NumPy backends, and when
installed PyTorch eager on the CPU and scikit-learn's MLPClassifier, on 1 and 2 threads.
Each benchmark then checks that training reduced the loss.

Under --benchmark-disable the data is a few batches (benchlib.SMOKE_ROWS). The peak
memory of a training run is measured in a fresh process (report.py's worker), tested here.
"""
import pytest

import benchlib as bl


@pytest.mark.parametrize("threads", bl.THREADS, ids=lambda n: f"{n}t")
@pytest.mark.parametrize("config", sorted(bl.CONFIGS))
@pytest.mark.parametrize("impl", bl.IMPLS)
def test_train_epoch(benchmark, smoke, require, impl, config, threads):
    require(impl)
    cfg = bl.CONFIGS[config]
    rows = bl.SMOKE_ROWS[config] if smoke else cfg.rows
    X, y = bl.cached_synthetic(rows, cfg.dims[0])
    X_eval, y_eval = X[:2048], y[:2048]
    benchmark.group = f"train {cfg.label} {threads}t"
    with bl.threads(impl, threads):
        trainer = bl.make_trainer(impl, cfg, X, y)
        before = trainer.loss(X_eval, y_eval)
        benchmark.pedantic(trainer.epoch, rounds=3, warmup_rounds=1, iterations=1)
        after = trainer.loss(X_eval, y_eval)
    median = bl.median_seconds(benchmark)
    if median:
        benchmark.extra_info["samples_per_s"] = rows / median
        benchmark.extra_info["flops_per_sample"] = cfg.flops_per_sample
    assert after < before, f"{impl} {cfg.label}: loss {before:.4f} -> {after:.4f}"


@pytest.mark.parametrize("impl", ["native", "numpy"])
def test_peak_memory_worker(smoke, report_worker, impl):
    """report.py's memory measurement: config C trained in a fresh process, peak RSS
    from getrusage. Checks the worker runs and reports sane numbers."""
    result = report_worker({"kind": "memory", "impl": impl, "config": "C", "threads": 1,
                            "rows": bl.SMOKE_ROWS["C"] if smoke else bl.CONFIGS["C"].rows,
                            "epochs": 2})
    assert 0 < result["rss_before_mib"] <= result["peak_rss_mib"]
    assert result["loss_after"] < result["loss_before"]


@pytest.mark.parametrize("impl", ["native", "numpy"])
def test_steady_state_worker(smoke, report_worker, impl):
    """report.py's steady-state measurement: every epoch of config A on data with a
    near-zero border, timed; the loss falls."""
    epochs = 2 if smoke else 10
    result = report_worker({"kind": "steady", "impl": impl, "threads": 1, "epochs": epochs,
                            "rows": bl.SMOKE_ROWS["A"] if smoke else bl.CONFIGS["A"].rows})
    assert len(result["epoch_seconds"]) == epochs and min(result["epoch_seconds"]) > 0
    assert result["ok"]
