"""bfloat16 compute on any backend (docs/bfloat16.md): :class:`BFloat16Products` runs a
backend's products (the Dense forward, the weight and input gradients) with their float32
operands rounded to bfloat16 and float32 sums, and everything else (activations, losses,
softmax, batch-norm statistics, the optimizer's update) as the backend does in float32.
A model with ``precision="bfloat16"`` trains on one; its parameters (the master weights)
and the optimizer's state stay float32."""
from __future__ import annotations

import numpy as np

PRECISIONS = (None, "bfloat16")   # None: the products in the model's dtype


def check_precision(precision):
    """``precision`` as a model takes it: None or "bfloat16"."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be None (the products in the model's dtype) or "
                         f"'bfloat16'; got {precision!r}")
    return precision


def model_arithmetic(dtype, backend, precision):
    """A model's (dtype, backend) for ``precision``: with "bfloat16", float32 (the master
    weights, whatever ``dtype`` asked for) and the backend wrapped in BFloat16Products."""
    if precision == "bfloat16":
        return np.dtype(np.float32), BFloat16Products(backend)
    return dtype, backend


def dense_rows_for_bfloat16(bf16: bool) -> None:
    """The sparse-row products have no bfloat16 form: refuse them under bf16."""
    if bf16:
        raise ValueError("bfloat16 products take dense rows: convert sparse X with X.toarray(), "
                         "or train this model with precision=None")


class BFloat16Products:
    """``backend`` with bf16=True on its products; every other attribute is the backend's
    own (its name, kernels, fused trainer and predictor factories)."""

    bf16 = True

    def __init__(self, backend):
        self.inner = backend

    def __getattr__(self, name: str):
        if name == "inner":   # not set yet: an instance being unpickled
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"BFloat16Products({self.inner!r})"

    def gemm(self, a, b, c, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bf16=True):
        self.inner.gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, bf16=bf16)

    def gemm_bias_act(self, x, w, bias, z, a, activation, param, bf16=True):
        self.inner.gemm_bias_act(x, w, bias, z, a, activation, param, bf16)

    def weight_grad(self, dz, x, dw, bf16=True):
        self.inner.weight_grad(dz, x, dw, bf16)
