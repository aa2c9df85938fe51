"""Position encodings for sequences: learned (`PositionalEmbedding`) and rotary
(`RotaryPositionalEmbedding`)."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import (
    check_axis_size,
    check_floating,
    check_rank,
    layer_name,
    positive_int,
    real_number,
)
from miniml.param import MiniMLParam

__all__ = ["PositionalEmbedding", "RotaryPositionalEmbedding"]


class PositionalEmbedding(MiniMLModel):
    r"""Add a learned vector per position: :math:`y_{n,t} = x_{n,t} + P_t`.

    Input: ``(N, L, dim)`` with :math:`L \le` ``max_length``. Output: the same shape.
    Parameter: ``embeddings`` of shape ``(max_length, dim)``, initialized as normal
    values with standard deviation :math:`1/\sqrt{dim}`; rows :math:`t \ge L` are unused.

    Args:
        max_length: the longest sequence the layer accepts.
        dim: the feature size.
        dtype: float32 or float64 (default float64).
    """

    def __init__(self, max_length: int, dim: int, dtype: Any = None) -> None:
        self.max_length = positive_int(max_length, "max_length", "PositionalEmbedding")
        self.dim = positive_int(dim, "dim", "PositionalEmbedding")
        self.embeddings = MiniMLParam(
            (self.max_length, self.dim), dtype=dtype, rnd_scale=1 / math.sqrt(self.dim)
        )
        super().__init__(loss=None)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        layout = f"(N, L, {self.dim})"
        check_rank(self, X, (3,), layout)
        check_axis_size(self, X, -1, self.dim, layout)
        length = X.shape[1]
        if length > self.max_length:
            raise MiniMLError(
                f"{layer_name(self)}: expected sequences of length L <= {self.max_length}, got "
                f"X of shape {tuple(X.shape)} (L = {length}). Build the layer with a larger "
                "max_length or shorten the sequences."
            )
        return X + self.embeddings(buffer)[:length]


class RotaryPositionalEmbedding(MiniMLModel):
    r"""Rotary position embedding (RoPE, Su et al. 2021), "half-split" pairing.

    The features are split into halves :math:`(x^{(1)}, x^{(2)})` of size
    :math:`d/2`; pair :math:`i` at position :math:`t` is rotated by the angle
    :math:`t\,\theta_i` with :math:`\theta_i = b^{-2i/d}`:

    .. math::

        y^{(1)}_{t,i} = x^{(1)}_{t,i} \cos t\theta_i - x^{(2)}_{t,i} \sin t\theta_i,
        \qquad
        y^{(2)}_{t,i} = x^{(1)}_{t,i} \sin t\theta_i + x^{(2)}_{t,i} \cos t\theta_i

    for :math:`t = 0, \dots, L-1`. Rotations preserve norms, and the dot product of two
    rotated vectors depends only on their relative position. No parameters.

    Input: ``(N, L, dim)`` with even ``dim``. Output: the same shape.

    Args:
        dim: the (even) feature size.
        base: the frequency base :math:`b` (10000 in the paper).
    """

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        self.dim = positive_int(dim, "dim", "RotaryPositionalEmbedding")
        if self.dim % 2:
            raise MiniMLError(
                f"RotaryPositionalEmbedding: dim must be even (features are rotated in "
                f"pairs), got {dim}."
            )
        self.base = real_number(base, "base", "RotaryPositionalEmbedding")
        if self.base <= 1:
            raise MiniMLError(f"RotaryPositionalEmbedding: base must be > 1, got {base!r}.")
        super().__init__(loss=None)

    def angles(self, length: int) -> np.ndarray:
        r"""The angles :math:`t\,\theta_i`, shape ``(length, dim // 2)``, in float64."""
        half = self.dim // 2
        theta = self.base ** (-2.0 * np.arange(half) / self.dim)
        return np.arange(length)[:, None] * theta[None, :]

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        layout = f"(N, L, {self.dim})"
        check_rank(self, X, (3,), layout)
        check_axis_size(self, X, -1, self.dim, layout)
        check_floating(self, X)
        angles = self.angles(X.shape[1])
        cos = jnp.asarray(np.cos(angles), X.dtype)
        sin = jnp.asarray(np.sin(angles), X.dtype)
        first, second = jnp.split(X, 2, axis=-1)
        return jnp.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)
