"""Exceptions shared by the training loop and the optimizers (a leaf module: it imports
nothing from fastmlp, so every other module can import it without cycles)."""
from __future__ import annotations


class DivergenceError(FloatingPointError, ValueError):
    """Training produced a non-finite loss or gradient. Raised before that step's update,
    so the model keeps the last finite weights (and the optimizer its state)."""


def diverged_loss(epoch: int, step: int, n_batches: int, mean_loss: float,
                  rate: float) -> DivergenceError:
    """fit's error for a step whose loss is not finite (both training paths)."""
    return DivergenceError(
        f"training diverged at epoch {epoch}, step {step} of {n_batches}: the mean loss "
        f"became {mean_loss} with learning rate {rate:g}; lower the learning rate (e.g. "
        f"{rate / 10:g}). The weights are those before this step.")


def diverged_at(epoch: int, step: int, n_batches: int, cause: Exception) -> DivergenceError:
    """fit's error for a step the optimizer refused (a non-finite gradient)."""
    return DivergenceError(f"training diverged at epoch {epoch}, step {step} of {n_batches}: "
                           f"{cause}")
