r"""`Dropout`: inverted dropout, active in training mode only.

In ``PredictMode.TRAIN`` every element is kept with probability :math:`1 - p` and
scaled by :math:`1 / (1 - p)`:

.. math:: y_i = \frac{m_i x_i}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p)

so that :math:`\mathbb{E}[y] = x`; in ``PredictMode.INFERENCE`` the layer is the
identity. The mask is drawn from the ``rng_key`` that `fit` passes to the forward pass:
on the SciPy path one key serves the whole fit (the objective must be deterministic for
line searches), so one mask is used throughout; stochastic optimizers draw a new key per
step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import check_array, check_rate

__all__ = ["Dropout", "inverted_dropout"]


def inverted_dropout(
    X: JXArray, rate: float, rng_key: JXArray | None, mode: PredictMode, where: str
) -> JXArray:
    """Apply inverted dropout with drop probability ``rate`` (see the module docstring)."""
    if mode != PredictMode.TRAIN or rate == 0.0:
        return X
    if rng_key is None:
        raise MiniMLError(
            f"{where}: dropout in training mode needs a random key, but rng_key is None. "
            "Pass rng_key=jax.random.key(seed) when calling the forward pass with "
            "mode=PredictMode.TRAIN (fit does this for you)."
        )
    keep = jax.random.bernoulli(rng_key, 1.0 - rate, jnp.shape(X))
    return jnp.where(keep, X / (1.0 - rate), jnp.zeros((), X.dtype))


class Dropout(MiniMLModel):
    """Inverted dropout with drop probability ``rate``; identity at inference.

    Input: any array. Output: the same shape.

    Args:
        rate: the probability :math:`p \\in [0, 1)` of zeroing an element.
    """

    def __init__(self, rate: float = 0.5) -> None:
        self.rate = check_rate(rate, "rate", "Dropout")
        super().__init__(loss=None)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        check_array(self, X)
        return inverted_dropout(X, self.rate, rng_key, mode, f"Dropout(rate={self.rate})")
