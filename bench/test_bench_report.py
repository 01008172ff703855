"""bench/report.py's tables and options without measuring anything: the scaling table
and the inference table rebuilt from a small made-up JSON (``--from-json``), and the
``--threads`` option's parsing."""
import json

import pytest

import benchlib as bl
import report
import report_tables

THREADS = [1, 2, 4]
TRAIN = {"native": 1000.0, "numpy": 500.0, "torch": 800.0}          # samples/s at 1 thread
TRAIN_SPEEDUP = {1: 1.0, 2: 1.8, 4: 3.0}
GEMM = {"native": 100.0, "numpy": 110.0}                            # GFLOP/s at 1 thread
GEMM_SPEEDUP = {1: 1.0, 2: 2.0, 4: 2.5}
INFER = {"native": 1e-3, "numpy": 2e-3, "torch": 4e-3, "onnxruntime": 1.5e-3}   # seconds
IMPLS = ["native", "numpy", "torch", "onnxruntime"]


def _fake_saved(cpus: int) -> dict:
    """What report.py --json writes, for a made-up run on THREADS with ``cpus`` CPUs."""
    square = report_tables._square_1024()
    raw = {"threads": THREADS, "steady": {}, "rows": {name: 100 for name in bl.CONFIGS},
           "memory": {"native": dict(peak_rss_mib=70.0, rss_before_mib=60.0, data_mib=1.0,
                                     rows=100, ok=True)},
           "train": {f"{name}|{n}|{impl}": [dict(samples_per_s=v * TRAIN_SPEEDUP[n], ok=True,
                                                 others=0.0)]
                     for name in bl.CONFIGS for n in THREADS for impl, v in TRAIN.items()},
           "gemm": {f"{impl}|{n}": [{"gemm": [dict(case=square, dtype="float32", ok=True,
                                                   gflops=v * GEMM_SPEEDUP[n], others=0.0)]}]
                    for n in THREADS for impl, v in GEMM.items()},
           "infer": {f"{impl}|{n}": [{"infer": [dict(rows=rows, seconds=v, ok=True)
                                                for rows in bl.INFERENCE_ROWS]}]
                     for n in THREADS for impl, v in INFER.items()}}
    meta = dict(date="2026-01-01 00:00 UTC", mode="quick", rounds=1, cpu="Test CPU", cpus=cpus,
                load_before="0.0", load_after="0.0", minutes=1.0, min_seconds=0.5,
                command="python bench/report.py --quick --threads 1,2,4")
    return dict(meta=meta, info=dict(onnxruntime="9.9"), raw=raw, impls=IMPLS)


def _render(saved: dict) -> str:
    s = report_tables.summarize(saved["raw"], saved["impls"])
    return report_tables.render(s, saved["info"], saved["meta"], full=True)


def _table_after(text: str, title: str) -> list:
    """The rows of the Markdown table under the paragraph starting with ``title``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 2
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_scaling_table_speedups_and_oversubscription():
    text = _render(_fake_saved(cpus=2))
    table = _table_after(text, "**Scaling**")
    assert table[0] == "| config | implementation | 1t | 2t | 4t‡ |"
    label = bl.CONFIGS["A"].label
    assert f"| {label} | native | 1,000 | 1,800 (1.80×) | 3,000 (3.00×) |" in table
    assert f"| {label} | torch | 800 | 1,440 (1.80×) | 2,400 (3.00×) |" in table
    assert "| GEMM float32 1024³ (GFLOP/s) | numpy | 110 | 220 (2.00×) | 275 (2.50×) |" \
        in table
    # every training config and implementation (not onnxruntime), then the two GEMMs
    assert len(table) == 2 + len(bl.CONFIGS) * len(TRAIN) + len(bl.GEMM_IMPLS)
    assert not any("onnxruntime" in row for row in table)
    assert "‡ oversubscribed: the machine has 2 CPUs, fewer than 4 threads" in text
    assert "Test CPU, 2 logical CPUs" in text and ", onnxruntime 9.9" in text


def test_no_oversubscription_mark_with_enough_cpus():
    text = _render(_fake_saved(cpus=8))
    assert "‡" not in text
    assert _table_after(text, "**Scaling**")[0] == "| config | implementation | 1t | 2t | 4t |"


def test_from_json_rebuilds_the_tables(tmp_path, capsys):
    path, output = tmp_path / "run.json", tmp_path / "RESULTS.md"
    path.write_text(json.dumps(_fake_saved(cpus=2)), encoding="utf-8")
    assert report.main(["--from-json", str(path), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert text.startswith("# fastmlp benchmark results")
    assert text.endswith(_render(_fake_saved(cpus=2)))
    infer = _table_after(text, "**Inference latency**")
    head = ("| rows | threads | native | numpy | torch | onnxruntime | native vs numpy | "
            "native vs torch | native vs onnxruntime |")
    first = "| 1 | 1 | 1,000 µs | 2,000 µs | 4,000 µs | 1,500 µs | 2.00× | 4.00× | 1.50× |"
    assert [infer[0], infer[2]] == [head, first]
    assert "| 10,000 | 4‡ |" in infer[-1]
    train = _table_after(text, "**Training throughput**")
    assert "onnxruntime" not in train[0]
    assert len(train) == 2 + len(bl.CONFIGS) * len(THREADS)
    capsys.readouterr()


def test_threads_argument_parses_a_list():
    assert report.thread_counts("16,1,4,1") == [1, 4, 16]
    assert report.thread_counts("2") == [2]


@pytest.mark.parametrize("bad", ["", "0", "1,x", "-2", "1,,2", "1.5"])
def test_bad_threads_argument_is_an_error_naming_it(capsys, bad):
    with pytest.raises(SystemExit) as exc:
        report.main(["--threads", bad, "--from-json", "never-read.json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threads" in err and repr(bad) in err


BF16_TRAIN = {"fastmlp float32": 1000.0, "fastmlp bfloat16": 1500.0, "torch float32": 700.0,
              "torch bfloat16 autocast": 1200.0}
BF16_INFER = {"fastmlp float32": 40.0, "fastmlp bfloat16": 25.0}


def test_bf16_table_from_the_bf16_workers():
    """The bf16 workers' medians over rounds, a row per config and per inference row
    count and thread count, with the bfloat16 speed-ups over float32 and autocast."""
    saved = _fake_saved(cpus=8)
    run = {"train": {"A": BF16_TRAIN, "D": {k: v / 10 for k, v in BF16_TRAIN.items()}},
           "infer": {"1": BF16_INFER, "10000": {k: v * 100 for k, v in BF16_INFER.items()}}}
    slower = {"train": {c: {k: v / 2 for k, v in r.items()} for c, r in run["train"].items()},
              "infer": run["infer"]}
    saved["raw"]["bf16"] = {"1": [run, slower, run], "2": [{"error": "exit 1: boom"}]}
    text = _render(saved)
    table = _table_after(text, "**bfloat16**")
    assert table[0] == ("| | threads | fastmlp float32 | fastmlp bfloat16 | torch float32 | "
                        "torch bfloat16 autocast | fastmlp bfloat16 / fastmlp float32 | "
                        "fastmlp bfloat16 / torch bfloat16 autocast |")
    label = bl.CONFIGS["A"].label
    assert f"| {label} (samples/s) | 1 | 1,000 | 1,500 | 700 | 1,200 | 1.50× | 1.25× |" in table
    assert "| inference of A, 1 row (µs) | 1 | 40 | 25 |  |  | 1.60× |  |" in table
    assert "| inference of A, 10,000 rows (µs) | 1 | 4,000 | 2,500 |  |  | 1.60× |  |" in table
    assert len(table) == 2 + 4
    assert "bfloat16 2t: exit 1: boom" in text


def test_a_run_saved_before_the_bf16_workers_renders_without_them():
    assert "**bfloat16**" not in _render(_fake_saved(cpus=8))


def test_the_bf16_worker_measures():
    """A tiny bf16 worker in this process: positive rates for every column it names."""
    result = report.worker({"kind": "bf16", "threads": 1, "rows": {"A": 256}, "infer_rows": [1, 20]})
    assert set(result["train"]) == {"A"} and set(result["infer"]) == {"1", "20"}
    rates = result["train"]["A"]
    assert {"fastmlp float32", "fastmlp bfloat16"} <= set(rates)
    assert all(v > 0 for part in result.values() for r in part.values() for v in r.values())
