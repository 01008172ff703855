#!/usr/bin/env python
"""bfloat16 against float32 training, the accuracy evidence: mean test accuracy over 5 seeds
and the mean loss curves, on digits (the demo's data) and on the synthetic A task.

    python bench/bf16_accuracy.py                         # prints the table
    python bench/bf16_accuracy.py --plot docs/bfloat16_curves.png
    python bench/bf16_accuracy.py --quick                 # a smoke run

- digits: 64-256-128-10 relu, SGD 0.05, batch 32, 20 epochs, 1,400 training rows and the
  other 397 to test (a fixed shuffle);
- A: 784-256-128-10 relu (benchlib's config A), Adam 1e-3, batch 128, 10 epochs, benchlib's
  synthetic data, 16,384 rows to train and 4,096 others to test.

Each seed trains both precisions from the same initial weights; the curves are the means
over the seeds of each epoch's training loss and test loss.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

import fastmlp  # noqa: E402

PRECISIONS = (None, "bfloat16")
SEEDS = range(5)


def digits_task(quick: bool):
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    fit = dict(epochs=3 if quick else 20, batch_size=32, learning_rate=0.05)
    return "digits", (64, 256, 128, 10), (X[:1400], y[:1400]), (X[1400:], y[1400:]), fit


def a_task(quick: bool):
    cfg = bl.CONFIGS["A"]
    train, test = (512, 256) if quick else (16_384, 4_096)
    X, y = bl.synthetic(train + test, cfg.dims[0])
    X = X.astype(np.float32)
    fit = dict(epochs=2 if quick else 10, batch_size=cfg.batch, optimizer="adam",
               learning_rate=bl.LEARNING_RATE)
    return "synthetic A", cfg.dims, (X[:train], y[:train]), (X[train:], y[train:]), fit


def run(task, seeds):
    """{precision: (accuracies, mean training loss curve, mean test loss curve)}."""
    name, dims, (X, y), (X_test, y_test), fit = task
    out = {}
    for precision in PRECISIONS:
        accuracies, losses, test_losses = [], [], []
        for seed in seeds:
            layers = [fastmlp.Dense(w, activation="relu") for w in dims[1:-1]] + [fastmlp.Dense(dims[-1])]
            model = fastmlp.Sequential(layers, input_dim=dims[0], seed=seed, precision=precision)
            history = model.fit(X, y, validation_data=(X_test, y_test), verbose=0, **fit)
            accuracies.append(model.score(X_test, y_test))
            losses.append(history.history["loss"])
            test_losses.append(history.history["val_loss"])
        out[precision] = (np.array(accuracies), np.mean(losses, axis=0), np.mean(test_losses, axis=0))
    return name, out


def table(results) -> str:
    lines = ["| task | float32 mean test accuracy | bfloat16 | difference (points) | per seed, float32 / bfloat16 |",
             "|---|---|---|---|---|"]
    for name, out in results:
        f32, b16 = out[None][0], out["bfloat16"][0]
        seeds = ", ".join(f"{a:.4f} / {b:.4f}" for a, b in zip(f32, b16))
        lines.append(f"| {name} | {f32.mean():.4f} | {b16.mean():.4f} | "
                     f"{100 * (b16.mean() - f32.mean()):+.2f} | {seeds} |")
    return "\n".join(lines)


def plot(results, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4))
    for ax, (name, out) in zip(np.atleast_1d(axes), results):
        # float32 wide and pale, bfloat16 thin and dashed on top: where they overlap, both show
        for precision, style in ((None, dict(linewidth=5, alpha=0.35)),
                                 ("bfloat16", dict(linewidth=1.3, linestyle="--"))):
            _, loss, test_loss = out[precision]
            label = precision or "float32"
            epochs = np.arange(1, len(loss) + 1)
            ax.plot(epochs, loss, color="tab:blue", label=f"{label} training loss", **style)
            ax.plot(epochs, test_loss, color="tab:orange", label=f"{label} test loss", **style)
        ax.set(title=f"{name}: mean of {len(SEEDS)} seeds", xlabel="epoch", ylabel="cross-entropy",
               yscale="log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rows and epochs, 2 seeds")
    parser.add_argument("--plot", type=pathlib.Path, help="write the loss curves as a PNG")
    args = parser.parse_args(argv)
    seeds = range(2) if args.quick else SEEDS
    with fastmlp.threads(1):
        results = [run(task(args.quick), seeds) for task in (digits_task, a_task)]
    text = table(results)
    print(text)
    if args.plot:
        plot(results, args.plot)
    return text


if __name__ == "__main__":
    sys.exit(main() and 0)
