"""Exceptions shared by the training loop and the optimizers (a leaf module: it imports
nothing from fastmlp, so every other module can import it without cycles)."""
from __future__ import annotations


class DivergenceError(FloatingPointError, ValueError):
    """Training produced a non-finite loss or gradient. Raised before that step's update,
    so the model keeps the last finite weights (and the optimizer its state)."""
