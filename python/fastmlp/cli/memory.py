"""Whether a network will fit in memory before it is built: ``train`` checks the widths
it is asked for against the memory the machine has free, so that ``--hidden 100000000``
is refused at once with the figures rather than killed by the kernel minutes later."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from .._memory import format_bytes
from ..optim.optimizers import OPTIMIZERS

# Arrays a training step keeps per layer and batch row: the pre-activation, the
# activation and the gradient flowing back.
ARRAYS_PER_UNIT_IN_A_STEP = 3


@dataclass(frozen=True)
class TrainingMemory:
    """The bytes a training run needs: the model (parameters, their gradients
    and the optimizer's state arrays) and one training batch (each layer's arrays for
    ``batch_size`` rows)."""

    n_params: int
    model_bytes: int
    batch_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.batch_bytes


def count_dense_params(widths: Sequence[int]) -> int:
    """Weights and biases of Dense layers between ``widths`` (input, hidden..., output)."""
    return sum(n_in * n_out + n_out for n_in, n_out in zip(widths[:-1], widths[1:]))


def training_memory(widths: Sequence[int], *, batch_size: int, itemsize: int,
                    optimizer: str) -> TrainingMemory:
    """An estimate of what training a Dense network of ``widths`` (input, hidden...,
    output) needs, with numbers of ``itemsize`` bytes and the optimizer named
    ``optimizer`` (its state: none for sgd, one array for momentum, nesterov, adagrad and
    rmsprop, two for adam and adamw)."""
    kind = OPTIMIZERS[optimizer]
    copies = 2 + int(kind.uses_m) + int(kind.uses_v)         # parameters, gradients, state
    n_params = count_dense_params(widths)
    batch_values = batch_size * (widths[0] + ARRAYS_PER_UNIT_IN_A_STEP * sum(widths[1:]))
    return TrainingMemory(n_params, copies * n_params * itemsize, batch_values * itemsize)


def unaffordable(need: TrainingMemory, available: Optional[int]) -> Optional[str]:
    """Why ``need`` will not fit in ``available`` bytes, or None when it fits (or when
    the free memory is unknown)."""
    if available is None or need.total_bytes <= available:
        return None
    return (f"the model's {need.n_params:,} parameters need {format_bytes(need.model_bytes)} "
            f"(parameters, gradients and optimizer state) and a training batch "
            f"{format_bytes(need.batch_bytes)}, {format_bytes(need.total_bytes)} in all, but this "
            f"machine has {format_bytes(available)} of memory available")
