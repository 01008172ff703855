"""Inference latency of config A (784-256-128-10 ReLU): predict_proba on 1 and 10,000
rows, 1 and 2 threads, for fastmlp's native and NumPy backends and, when installed,
PyTorch eager (no_grad), scikit-learn's MLPClassifier and onnxruntime running fastmlp's
ONNX export (model.to_onnx), all holding the same weights.
Each benchmark then checks the probabilities against a float64 numpy forward pass.
"""
import pytest

import benchlib as bl

CFG = bl.CONFIGS[bl.INFERENCE_CONFIG]


@pytest.mark.parametrize("threads", bl.THREADS, ids=lambda n: f"{n}t")
@pytest.mark.parametrize("rows", bl.INFERENCE_ROWS, ids=lambda n: f"{n}rows")
@pytest.mark.parametrize("impl", bl.INFER_IMPLS)
def test_predict_proba(benchmark, require, impl, rows, threads):
    require(impl)
    X, _ = bl.cached_synthetic(max(bl.INFERENCE_ROWS), CFG.dims[0])
    weights = bl.inference_weights(CFG)
    Xr = X[:rows]
    benchmark.group = f"inference {CFG.label} {rows} rows {threads}t"
    with bl.threads(impl, threads):
        predictor = bl.make_predictor(impl, CFG, weights, threads)
        benchmark(predictor.predict_proba, Xr)
        proba = predictor.predict_proba(Xr)
    median = bl.median_seconds(benchmark)
    if median:
        benchmark.extra_info["latency_us"] = median * 1e6
    assert bl.check_proba(proba, bl.reference_proba(weights, Xr)) < 1e-4


@pytest.mark.parametrize("impl", ["native", "onnxruntime"])
def test_inference_worker(require, report_worker, impl):
    """report.py's inference measurement in a fresh process, on 2 threads (onnxruntime:
    intra-op threads): each row count timed and its probabilities checked against the
    float64 reference."""
    require(impl)
    result = report_worker({"kind": "infer", "impl": impl, "threads": 2, "rows": [1, 300],
                            "timing": dict(min_time=0.001, samples=3, max_total=0.2)})
    assert [row["rows"] for row in result["infer"]] == [1, 300]
    for row in result["infer"]:
        assert row["ok"] and row["error"] < 1e-4 and row["seconds"] > 0, row
