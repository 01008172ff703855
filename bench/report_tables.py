"""The report's tables (bench/report.py): medians over rounds, the Markdown tables,
the header and the observations under them."""
from __future__ import annotations

import json
import os
from statistics import median
from typing import Dict, List


def _med(values):
    values = [v for v in values if v is not None]
    return median(values) if values else None


def _fmt(value, digits=3, suffix=""):
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value:,.0f}{suffix}"
    return f"{value:.{digits}g}{suffix}"


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _fmt_ratio(value):
    return "–" if value is None else f"{value:.2f}×"


DISTURBED = 0.25   # other processes' CPU use (in CPUs) above which a timing gets a dagger


def summarize(raw: dict, impls: List[str]) -> dict:
    """Medians over rounds, keyed for the tables, plus the cells whose timing was
    disturbed (other processes used more than DISTURBED CPUs in some round). The thread
    counts are the run's (raw["threads"]; runs saved before --threads used 1 and 2)."""
    import benchlib as bl
    thread_counts = raw.get("threads", list(bl.THREADS))
    problems: List[str] = []
    disturbed: set = set()

    def collect(section, key, value, others):
        cells.setdefault(key, []).append(value)
        if others is not None and others > DISTURBED:
            disturbed.add((section,) + key)

    gemm: Dict[tuple, float] = {}     # (impl, threads, dtype, case) -> GFLOP/s
    cells: Dict[tuple, list] = {}
    for key, runs in raw["gemm"].items():
        impl, n = key.split("|")
        for run in runs:
            if "error" in run:
                problems.append(f"GEMM {impl} {n}t: {run['error']}")
                continue
            for row in run["gemm"]:
                collect("gemm", (impl, int(n), row["dtype"], row["case"]), row["gflops"],
                        row.get("others"))
                if not row["ok"]:
                    problems.append(f"GEMM {impl} {n}t {row['dtype']} {row['case']}: relative "
                                    f"error {row['error']:.2e} above the tolerance")
    gemm = {k: median(v) for k, v in cells.items()}

    cells = {}
    for key, runs in raw["train"].items():
        name, n, impl = key.split("|")
        for run in runs:
            if "error" in run:
                problems.append(f"training {name} {impl} {n}t: {run['error']}")
                continue
            collect("train", (name, int(n), impl), run["samples_per_s"], run.get("others"))
            if not run["ok"]:
                problems.append(f"training {name} {impl} {n}t: loss did not fall "
                                f"({run['loss_before']:.4f} -> {run['loss_after']:.4f})")
    train = {k: median(v) for k, v in cells.items()}

    cells = {}
    for key, runs in raw["infer"].items():
        impl, n = key.split("|")
        for run in runs:
            if "error" in run:
                problems.append(f"inference {impl} {n}t: {run['error']}")
                continue
            for row in run["infer"]:
                collect("infer", (impl, int(n), row["rows"]), row["seconds"],
                        row.get("others"))
                if not row["ok"]:
                    problems.append(f"inference {impl} {n}t {row['rows']} rows: max "
                                    f"probability error {row['error']:.2e}")
    infer = {k: median(v) for k, v in cells.items()}

    steady = _steady(raw.get("steady", {}), problems)
    for impl, run in raw["memory"].items():
        if "error" in run:
            problems.append(f"memory {impl}: {run['error']}")
        elif not run["ok"]:
            problems.append(f"memory run {impl}: loss did not fall")
    square = _square_1024()
    blas_1024 = {n: gemm.get(("numpy", n, "float32", square)) for n in thread_counts}
    bf16 = _bf16(raw.get("bf16", {}), problems)
    return dict(gemm=gemm, train=train, infer=infer, memory=raw["memory"], steady=steady, bf16=bf16,
                problems=problems, threads=thread_counts,
                blas_1024=blas_1024, impls=impls, rows=raw["rows"], disturbed=disturbed,
                blas_disturbed={n: ("gemm", "numpy", n, "float32", square) in disturbed
                                for n in thread_counts})


def _square_1024() -> str:
    """The label of the float32 1024³ GEMM, the yardstick of efficiency and scaling."""
    import benchlib as bl
    return bl.GemmCase("square", 1024, 1024, 1024).label


def _steady(raw: dict, problems: List[str]) -> Dict[str, dict]:
    """Per implementation: its rows, epochs, the medians over rounds of epoch 2's and the
    last epoch's seconds and of their ratio; failures go to ``problems``."""
    steady: Dict[str, dict] = {}
    for impl, runs in raw.items():
        good = [run for run in runs if "error" not in run]
        problems += [f"steady state {impl}: {run['error']}" for run in runs if "error" in run]
        problems += [f"steady state {impl}: loss did not fall" for run in good if not run["ok"]]
        if good:
            epochs = [run["epoch_seconds"] for run in good]
            steady[impl] = dict(rows=good[0]["rows"], epochs=len(epochs[0]),
                                second=median(e[1] for e in epochs),
                                last=median(e[-1] for e in epochs),
                                ratio=median(e[-1] / e[1] for e in epochs))
    return steady


def _bf16(raw: dict, problems: List[str]) -> Dict[int, dict]:
    """{threads: {"train": {config: {column: samples/s}}, "infer": {rows: {column: us}}}},
    medians over rounds, from the bf16 workers (runs saved before them have none)."""
    out = {}
    for n, runs in raw.items():
        problems += [f"bfloat16 {n}t: {run['error']}" for run in runs if "error" in run]
        good = [run for run in runs if "error" not in run]
        if good:
            out[int(n)] = {part: {key: {column: _med([run[part][key][column] for run in good])
                                        for column in good[0][part][key]}
                                  for key in good[0][part]}
                           for part in ("train", "infer")}
    return out


def bf16_table(s: dict) -> List[str]:
    """Training samples/s and inference microseconds, float32 against bfloat16 (and torch
    float32 against its autocast), a row per config or row count and thread count. The
    ratios are speed-ups of each fastmlp bfloat16 column (> 1: it is faster); inference has
    no torch columns, so only its speed-ups over fastmlp float32."""
    import benchlib as bl
    first = next(iter(s["bf16"].values()))
    columns = list(next(iter(first["train"].values())))
    ratios = [(ours, base) for ours in columns if ours.startswith("fastmlp bfloat16")
              for base in ("fastmlp float32", "torch bfloat16 autocast") if base in columns]
    lines = ["| | threads | " + " | ".join(columns) + " | "
             + " | ".join(f"{ours} / {base}" for ours, base in ratios) + " |",
             "|---" * (2 + len(columns) + len(ratios)) + "|"]

    def row(label, n, values, speedup):
        return (f"| {label} | {n} | " + " | ".join(_fmt(values.get(c)) if c in values else ""
                                                   for c in columns)
                + " | " + " | ".join(_fmt_ratio(speedup(ours, base)) if base in values else ""
                                     for ours, base in ratios) + " |")

    for n, run in sorted(s["bf16"].items()):
        for name, rates in run["train"].items():
            lines.append(row(f"{bl.CONFIGS[name].label} (samples/s)", n, rates,
                             lambda ours, base: _ratio(rates[ours], rates[base])))
        for rows, us in run["infer"].items():
            lines.append(row(f"inference of A, {int(rows):,} row{'' if int(rows) == 1 else 's'} (µs)", n, us,
                             lambda ours, base: _ratio(us[base], us[ours])))
    return lines


def _mark(s: dict, *key) -> str:
    return "†" if key in s["disturbed"] else ""


def _over(s: dict, n: int) -> str:
    """The mark of a thread count above the machine's CPUs (s["cpus"], set by render)."""
    return "‡" if n > s["cpus"] else ""


def _oversubscribed_note(s: dict) -> List[str]:
    over = [n for n in s["threads"] if _over(s, n)]
    if not over:
        return []
    return [f"‡ oversubscribed: the machine has {s['cpus']} CPUs, fewer than "
            + ", ".join(f"{n}" for n in over) + " threads"]


def _trainers(s: dict) -> List[str]:
    """The run's implementations that train (onnxruntime only infers)."""
    import benchlib as bl
    return [i for i in s["impls"] if i in bl.IMPLS]


DAGGER_NOTE = ("† other processes used more than a quarter of a CPU on average while this "
               "was timed (from /proc/stat), in at least one round")


def train_table(s: dict) -> List[str]:
    import benchlib as bl
    impls = _trainers(s)
    others = [i for i in impls if i != "native"]
    head = (["config", "rows", "threads"] + [f"{i} samples/s" for i in impls]
            + [f"native/{i}" for i in others] + [f"eff. {i}" for i in impls])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(bl.CONFIGS):
        cfg = bl.CONFIGS[name]
        for n in s["threads"]:
            values = {i: s["train"].get((name, n, i)) for i in impls}
            peak = s["blas_1024"].get(n)
            effs = [None if values[i] is None or not peak else
                    values[i] * cfg.flops_per_sample / (peak * 1e9) for i in impls]
            cells = ([cfg.label, f"{s['rows'][name]:,}", f"{n}{_over(s, n)}"]
                     + [_fmt(values[i]) + _mark(s, "train", name, n, i) for i in impls]
                     + [_fmt_ratio(_ratio(values["native"], values[i])) for i in others]
                     + ["–" if e is None else f"{100 * e:.0f} %" for e in effs])
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def gemm_table(s: dict, dtype: str, cases=None) -> List[str]:
    import benchlib as bl
    head = ["product (M×K×N)"]
    for n in s["threads"]:
        t = f"{n}t{_over(s, n)}"
        head += [f"fastmlp {t}", f"numpy {t}", f"ratio {t}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases or bl.gemm_cases():
        cells = [case.label]
        for n in s["threads"]:
            ours = s["gemm"].get(("native", n, dtype, case.label))
            theirs = s["gemm"].get(("numpy", n, dtype, case.label))
            cells += [_fmt(ours) + _mark(s, "gemm", "native", n, dtype, case.label),
                      _fmt(theirs) + _mark(s, "gemm", "numpy", n, dtype, case.label),
                      _fmt_ratio(_ratio(ours, theirs))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def infer_table(s: dict) -> List[str]:
    import benchlib as bl
    impls = s["impls"]
    others = [i for i in impls if i != "native"]
    head = ["rows", "threads"] + [f"{i}" for i in impls] + [f"native vs {i}" for i in others]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rows in bl.INFERENCE_ROWS:
        for n in s["threads"]:
            t = {i: s["infer"].get((i, n, rows)) for i in impls}
            cells = ([f"{rows:,}", f"{n}{_over(s, n)}"]
                     + [_fmt(None if t[i] is None else t[i] * 1e6, suffix=" µs")
                        + _mark(s, "infer", i, n, rows) for i in impls]
                     + [_fmt_ratio(_ratio(t[i], t["native"])) for i in others])
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _scaling_cells(s: dict, values: Dict[int, float], marks: Dict[int, str]) -> List[str]:
    """One cell per thread count: the value and, past the first count, its speed-up
    over the first count's value."""
    base = values.get(s["threads"][0])
    cells = []
    for n in s["threads"]:
        value = values.get(n)
        cell = _fmt(value) + marks.get(n, "")
        if n != s["threads"][0] and value is not None:
            cell += f" ({_fmt_ratio(_ratio(value, base))})"
        cells.append(cell)
    return cells


def scaling_table(s: dict) -> List[str]:
    """Training samples/s of each config and the float32 1024³ GEMM's GFLOP/s, per thread
    count, each implementation beside the others, with the speed-up over the first count."""
    import benchlib as bl
    head = ["config", "implementation"] + [f"{n}t{_over(s, n)}" for n in s["threads"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(bl.CONFIGS):
        for impl in _trainers(s):
            values = {n: s["train"].get((name, n, impl)) for n in s["threads"]}
            marks = {n: _mark(s, "train", name, n, impl) for n in s["threads"]}
            cells = [bl.CONFIGS[name].label, impl] + _scaling_cells(s, values, marks)
            lines.append("| " + " | ".join(cells) + " |")
    square = _square_1024()
    for impl in bl.GEMM_IMPLS:
        values = {n: s["gemm"].get((impl, n, "float32", square)) for n in s["threads"]}
        marks = {n: _mark(s, "gemm", impl, n, "float32", square) for n in s["threads"]}
        cells = ["GEMM float32 1024³ (GFLOP/s)", impl] + _scaling_cells(s, values, marks)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_table(s: dict) -> List[str]:
    lines = ["| implementation | peak RSS | RSS before training | training adds | data |",
             "|---|---|---|---|---|"]
    for impl, run in s["memory"].items():
        if "error" in run:
            lines.append(f"| {impl} | failed | | | |")
            continue
        lines.append(f"| {impl} | {run['peak_rss_mib']:.0f} MiB | {run['rss_before_mib']:.0f} "
                     f"MiB | {run['peak_rss_mib'] - run['rss_before_mib']:.0f} MiB | "
                     f"{run['data_mib']:.0f} MiB |")
    return lines


def steady_table(s: dict) -> List[str]:
    lines = ["| implementation | rows | epoch 2 (s) | last epoch (s) | last / epoch 2 |",
             "|---|---|---|---|---|"]
    for impl, row in s["steady"].items():
        lines.append(f"| {impl} | {row['rows']:,} | {row['second']:.3f} | "
                     f"{row['last']:.3f} (epoch {row['epochs']}) | {row['ratio']:.2f} |")
    return lines


def _key_gemm_cases():
    import benchlib as bl
    keep = {"square", "fwd"}
    return [c for c in bl.gemm_cases()
            if c.op == "square" or (c.op in keep and c.m == 128)
            or c.layer.startswith("b128 784")]


def header(info: dict, meta: dict) -> List[str]:
    blas = info.get("numpy_blas") or [{}]
    b = blas[0]
    backend = info.get("backend_info", {})
    env_notes = [f"`{k}={os.environ[k]}`" for k in sorted(os.environ)
                 if k.startswith(("OMP_", "GOMP_", "OPENBLAS_", "FASTMLP_", "MKL_"))]
    return [
        f"- **When:** {meta['date']} ({meta['mode']} run, {meta['rounds']} round(s), "
        f"{meta['minutes']:.1f} min); command `{meta['command']}`",
        f"- **Machine:** {meta['cpu']}, {meta.get('cpus') or os.cpu_count()} logical CPUs; "
        f"load average {meta['load_before']} before, {meta['load_after']} after "
        "(shared machine: noisy)",
        f"- **Software:** Python {info.get('python')}, NumPy {info.get('numpy')}, fastmlp "
        f"{info.get('fastmlp')}, PyTorch {info.get('torch') or 'not installed'}, "
        f"scikit-learn {info.get('sklearn') or 'not installed'}"
        + (f", onnxruntime {info['onnxruntime']}" if info.get("onnxruntime") else ""),
        f"- **numpy's BLAS (threadpoolctl):** {b.get('internal_api')} {b.get('version')}, "
        f"kernel `{b.get('architecture')}`, {b.get('threading_layer')} threads "
        f"({os.path.basename(b.get('filepath', '?'))})",
        f"- **fastmlp.backend_info():** `{json.dumps(backend)}`",
        "- **Environment:** OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed for the fastmlp "
        "and numpy workers; torch and scikit-learn workers unchanged; set here: "
        + (", ".join(env_notes) if env_notes else "none of OMP_*, GOMP_*, OPENBLAS_*, "
           "FASTMLP_*, MKL_*"),
    ]


def render(s: dict, info: dict, meta: dict, *, full: bool) -> str:
    """The Markdown report; ``full`` adds every GEMM shape (the README gets key ones)."""
    s = dict(s, cpus=meta.get("cpus") or os.cpu_count())
    out = header(info, meta) + [""]
    out += ["**Training throughput** (samples/s, median of the epochs after one warm-up "
            "epoch: at least 3, more while they add up to under "
            f"{meta.get('min_seconds', '?')} s, at most 12; "
            "Adam 1e-3, softmax cross-entropy, synthetic float32 data). native/x: speed-up "
            "of the native backend. eff. = samples/s × training FLOPs per sample / "
            "numpy float32 GEMM GFLOP/s at 1024³ with the same threads in this run "
            f"({', '.join(f'{n}t: {_fmt(v)} GFLOP/s' for n, v in s['blas_1024'].items())}); "
            "FLOPs per sample = 6 Σ in·out − 2 in₁·out₁.", ""]
    out += train_table(s) + [""]
    out += ["**GEMM float32** (GFLOP/s; ratio = fastmlp / numpy.matmul"
            + ("" if full else "; key shapes, all of them in bench/RESULTS.md") + ")", ""]
    out += gemm_table(s, "float32", None if full else _key_gemm_cases()) + [""]
    if full:
        out += ["**GEMM float64** (GFLOP/s)", ""] + gemm_table(s, "float64") + [""]
    else:
        out += ["**GEMM float64** (GFLOP/s, square)", ""]
        out += gemm_table(s, "float64", [c for c in _key_gemm_cases() if c.op == "square"])
        out += [""]
    out += ["**Inference latency** of config A (predict_proba; onnxruntime runs fastmlp's "
            "ONNX export with intra-op threads = threads; native vs x: how many times "
            "faster native is)", ""] + infer_table(s) + [""]
    out += [f"**Scaling** (training samples/s and float32 1024³ GEMM GFLOP/s per thread "
            f"count, every column from this run; in brackets the speed-up over "
            f"{s['threads'][0]} thread{'s' if s['threads'][0] > 1 else ''})", ""]
    out += scaling_table(s) + [""]
    if s["steady"]:
        out += ["**Steady state** (config A, 1 thread, Adam, synthetic data whose first 40 % "
                "of columns are 0 in all but about one row in 50,000, as a digit image's "
                "border: the optimizer's state of their weights decays between two nonzero "
                "inputs; every epoch timed, medians over rounds). A ratio above 1 means "
                "epochs slow down as training goes on.", ""]
        out += steady_table(s) + [""]
    if s["bf16"]:
        out += ["**bfloat16** (`precision=\"bfloat16\"` against float32, and PyTorch float32 "
                "against `torch.autocast(\"cpu\", dtype=torch.bfloat16)`: bench/bf16_report.py's "
                "training samples/s (Adam, one epoch after a warm-up) and predict_proba "
                "microseconds of config A's network, its columns interleaved in one process "
                "per thread count; ratios > 1: the bfloat16 column faster)", ""]
        out += bf16_table(s) + [""]
    mem_rows = s["memory"].get("native", {}).get("rows")
    out += [f"**Peak memory** of training config C ({_fmt(mem_rows)} rows, 2 epochs, "
            "1 thread) in a fresh process (getrusage ru_maxrss)", ""]
    out += memory_table(s) + [""]
    if s["disturbed"]:
        out += [DAGGER_NOTE, ""]
    if _oversubscribed_note(s):
        out += _oversubscribed_note(s) + [""]
    notes = observations(s, meta)
    if notes:
        out += ["**Read with care** (found automatically in this run):", ""]
        out += [f"- {note}" for note in notes] + [""]
    if s["problems"]:
        out += ["**Problems in this run:**", ""] + [f"- {p}" for p in s["problems"]] + [""]
    return "\n".join(out)


def observations(s: dict, meta: dict) -> List[str]:
    """Signs of a noisy run, and the cells where fastmlp native is slower than the
    baseline it must beat (numpy.matmul for GEMM, the NumPy backend for the rest)."""
    import benchlib as bl
    notes = []
    n_timings = len(s["gemm"]) + len(s["train"]) + len(s["infer"])
    if s["disturbed"]:
        notes.append(f"{len(s['disturbed'])} of {n_timings} timings (†) ran while other "
                     "processes used the CPUs; multi-thread ones suffer most, since their "
                     "threads wait for each other")
    one, two = s["blas_1024"].get(1), s["blas_1024"].get(2)
    if one and two and two < 1.3 * one:
        notes.append(f"numpy.matmul float32 1024³ ran at {_fmt(two)} GFLOP/s on 2 threads "
                     f"against {_fmt(one)} on 1: the second core was not free, so 2-thread "
                     "efficiencies are not comparable with 1-thread ones")
    high = [f"{name} {impl} {n}t" for (name, n, impl), v in sorted(s["train"].items())
            if s["blas_1024"].get(n) and v * bl.CONFIGS[name].flops_per_sample
            > s["blas_1024"][n] * 1e9]
    if high:
        notes.append("efficiency above 100 % (" + ", ".join(high) + "): the GEMM reference "
                     "it divides by was slowed in this run, or the training epochs ran at a "
                     "quieter moment")
    slow = []
    for (name, n, impl), ours in sorted(s["train"].items()):
        theirs = s["train"].get((name, n, "numpy"))
        if impl == "native" and theirs and ours < 0.95 * theirs:
            slow.append(f"training {name} {n}t {ours / theirs:.2f}×")
    for (impl, n, rows), ours in sorted(s["infer"].items()):
        theirs = s["infer"].get(("numpy", n, rows))
        if impl == "native" and theirs and ours > theirs / 0.95:
            slow.append(f"inference {rows} rows {n}t {theirs / ours:.2f}×")
    for dtype in ("float32", "float64"):
        for n in s["threads"]:
            ratios = []
            for case in bl.gemm_cases():
                ours = s["gemm"].get(("native", n, dtype, case.label))
                theirs = s["gemm"].get(("numpy", n, dtype, case.label))
                if ours and theirs:
                    ratios.append((ours / theirs, case.label))
            behind = sorted(r for r in ratios if r[0] < 0.95)
            if behind:
                worst = ", ".join(f"{label} {r:.2f}×" for r, label in behind[:3])
                slow.append(f"GEMM {dtype} {n}t in {len(behind)} of {len(ratios)} products "
                            f"(worst: {worst})")
    if slow:
        notes.append("native slower than numpy (ratio < 0.95): " + "; ".join(slow))
    return notes
