"""bench/stream_report.py's measurements at tiny sizes (a smoke test: the numbers are not
checked against targets, only for sense): the streamed and in-memory fits both train,
the cold epochs run after eviction, the peak RssAnon is measured, the big file is
deleted, the label-sorted task is learned above chance, and the tables render."""
import os

import numpy as np

import stream_report as sr


def _quiet(_text):
    pass


def test_throughput_warm_and_cold(tmp_path):
    X_path, y_path = sr.write_task(str(tmp_path), "t", 1024, 784)
    X, y = np.load(X_path), np.load(y_path)
    assert X.shape == (1024, 784) and X.dtype == np.float32 and y.dtype == np.int64
    assert len(np.unique(y)) == sr.N_CLASSES
    results = sr.throughput(X_path, y_path, threads=(1,), rounds=2, cold_rounds=1, log=_quiet)
    r = results[1]
    assert len(r["streamed"]) == len(r["in_memory"]) == 2 and len(r["cold"]) == 1
    for run in r["streamed"] + r["in_memory"] + r["cold"]:
        assert run["samples_per_s"] > 0 and np.isfinite(run["loss"])
    assert r["streamed"][-1]["loss"] < r["warmup"][0]["loss"]          # both kinds trained
    assert r["in_memory"][-1]["loss"] < r["warmup"][0]["loss"]
    assert r["evaluate"]["accuracy"] > 0.3                               # chance: ~0.1
    speeds = sr.read_speeds(X_path)
    assert all(v[0] > 0 for v in speeds.values())
    head = "_test_"
    table = sr.render_throughput(results, 1024, 784 * 4, head)
    assert "| 1 | " in table and "x |" in table
    assert "| 1 | " in sr.render_cold(results, speeds, 1024, 784 * 4 + 8, head)


def test_peak_memory_in_process(tmp_path):
    X_path, y_path = sr.write_task(str(tmp_path), "m", 2048, 784, seed=1)
    r = sr.peak_memory(X_path, y_path, threads=1, batch=256)
    assert r["rows"] == 2048 and r["samples"] >= 2
    assert 0 < r["baseline"] <= r["peak"] and r["peak_epoch"] > 0
    assert r["epoch_seconds"] > 0 and np.isfinite(r["loss"])


def test_big_file_worker_deletes_the_file(tmp_path):
    r = sr.big_file_memory(str(tmp_path), 0.004, threads=1, log=_quiet)
    assert r["rows"] == int(0.004e9) // (784 * 4)
    assert 0 < r["baseline"] <= r["peak"] and r["peak"] < (1 << 30) + r["model_bytes"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith("big_")]
    assert "| peak RssAnon, epoch |" in sr.render_memory(r, "_test_")


def test_parity_on_a_sorted_file(tmp_path):
    r = sr.parity(str(tmp_path), rows=4000, test_rows=1000, buffers=(256, 4000), seeds=1,
                  epochs=3, chunk_rows=256, log=_quiet)
    acc = r["accuracy"]
    assert set(acc) == {"in memory", "256", "4000"}
    assert acc["in memory"][0] > r["majority"] + 0.1
    assert acc["4000"][0] > r["majority"] + 0.1        # one block: the whole file shuffled
    assert not os.listdir(tmp_path)                    # its files removed
    assert "| streamed | 4,000 |" in sr.render_parity(r, "_test_")
    assert sr.smallest_within({"buffers": [1, 2], "accuracy": {
        "in memory": [0.9], "1": [0.8], "2": [0.897]}}) == 2


def test_main_quick_tiny(tmp_path):
    out = tmp_path / "report.md"
    sr.main(["--quick", "--dir", str(tmp_path), "--output", str(out), "--threads", "1",
             "--data-mb", "1", "--big-gb", "0.002", "--parity-rows", "2000", "--parity-test",
             "500", "--seeds", "1", "--buffers", "512,2000", "--parity-epochs", "1"])
    text = out.read_text()
    for title in ("Throughput, warm page cache", "Cold page cache", "Memory on a big file",
                  "Accuracy on a label-sorted file"):
        assert f"**{title}**" in text
    assert os.listdir(tmp_path) == ["report.md"]       # the data directory removed
