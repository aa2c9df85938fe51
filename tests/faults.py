"""Fault injection: a model whose objective turns NaN after a number of evaluations."""

import jax
import jax.numpy as jnp
import numpy as np

from miniml import MiniMLModel, MiniMLParam, PredictMode


class NaNAfter(MiniMLModel):
    """``X @ w`` whose predictions become NaN once the forward pass ran ``k`` times.

    The counter lives on the host and is reached through `jax.pure_callback`, so it
    counts real evaluations of compiled code on every optimizer path.
    """

    def __init__(self, n_in, k):
        self.w = MiniMLParam((n_in, 1))
        self.k = k
        self.calls = 0
        super().__init__()

    def _factor(self, _):
        self.calls += 1
        return np.asarray(1.0 if self.calls <= self.k else np.nan, np.float64)

    def _predict_kernel(self, X, buffer, rng_key=None, mode=PredictMode.INFERENCE):
        pred = X @ self.w(buffer)
        if mode != PredictMode.TRAIN:
            return pred
        token = jax.lax.stop_gradient(buffer[0])
        factor = jax.pure_callback(self._factor, jax.ShapeDtypeStruct((), jnp.float64), token)
        return pred * factor
