"""`LayerNorm`: normalization over the trailing axes of each sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.loss import LossFunction, squared_error_loss
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import check_rank, layer_name, positive_int, real_number
from miniml.param import MiniMLParam

__all__ = ["LayerNorm"]


def _ones(key: JXArray, shape: tuple[int, ...], dtype: Any) -> JXArray:
    return jnp.ones(shape, dtype)


def _zeros(key: JXArray, shape: tuple[int, ...], dtype: Any) -> JXArray:
    return jnp.zeros(shape, dtype)


class LayerNorm(MiniMLModel):
    r"""Layer normalization over the last ``len(normalized_shape)`` axes.

    .. math::

        y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta

    where :math:`\mu` and :math:`\sigma^2` are the mean and the biased variance
    (divided by the number of elements) over the normalized axes of each sample, as in
    PyTorch's ``LayerNorm``.

    Input: ``(N, ..., *normalized_shape)``. Output: the same shape. Parameters:
    ``gamma`` (initialized to ones) and ``beta`` (zeros), both of shape
    ``normalized_shape``; neither is regularized.

    Args:
        normalized_shape: the trailing shape to normalize over (an int for one axis).
        eps: :math:`\epsilon > 0`, added to the variance.
        loss: the data loss when the layer is fitted on its own (None inside models).
        dtype: float32 or float64 (default float64).
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        loss: LossFunction | None = squared_error_loss,
        dtype: Any = None,
    ) -> None:
        where = "LayerNorm"
        if isinstance(normalized_shape, Sequence) and not isinstance(normalized_shape, str):
            dims = tuple(normalized_shape)
        else:
            dims = (normalized_shape,)
        if not dims:
            raise MiniMLError(f"{where}: normalized_shape must not be empty.")
        self.normalized_shape = tuple(positive_int(d, "normalized_shape", where) for d in dims)
        self.eps = real_number(eps, "eps", where)
        if self.eps <= 0:
            raise MiniMLError(f"{where}: eps must be > 0, got {eps!r}.")
        self.gamma = MiniMLParam(self.normalized_shape, dtype=dtype, init=_ones)
        self.beta = MiniMLParam(self.normalized_shape, dtype=dtype, init=_zeros)
        super().__init__(loss=loss)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        k = len(self.normalized_shape)
        trailing = ", ".join(str(d) for d in self.normalized_shape)
        layout = f"(N, ..., {trailing})"
        check_rank(self, X, k + 1, layout)
        if tuple(X.shape[-k:]) != self.normalized_shape:
            raise MiniMLError(
                f"{layer_name(self)}: expected X of shape {layout} (trailing axes "
                f"{self.normalized_shape}), got X of shape {tuple(X.shape)}."
            )
        axes = tuple(range(-k, 0))
        mean = jnp.mean(X, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(X - mean), axis=axes, keepdims=True)
        normalized = (X - mean) * jax.lax.rsqrt(var + self.eps)
        return normalized * self.gamma(buffer) + self.beta(buffer)
