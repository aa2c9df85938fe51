r"""Element-wise activation functions and the `Activation` layer.

Every function maps an array to an array of the same shape, element by element. They
are module-level functions (and `LeakyReLU` a small class) so that a model that holds
one can be saved and loaded. `Activation` wraps any of them, or any ``jax.nn``
function, as a parameter-free layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import check_array, real_number

__all__ = [
    "Activation",
    "ActivationFunction",
    "LeakyReLU",
    "gelu",
    "relu",
    "sigmoid",
    "silu",
    "softplus",
    "tanh",
]

ActivationFunction = Callable[[JXArray], JXArray]


def relu(x: JXArray) -> JXArray:
    r"""Rectified linear unit :math:`\max(x, 0)` (derivative 0 at :math:`x = 0`)."""
    return jax.nn.relu(x)


def sigmoid(x: JXArray) -> JXArray:
    r"""Logistic sigmoid :math:`\sigma(x) = 1 / (1 + e^{-x})`."""
    return jax.nn.sigmoid(x)


def tanh(x: JXArray) -> JXArray:
    r"""Hyperbolic tangent :math:`\tanh(x)`."""
    return jnp.tanh(x)


def gelu(x: JXArray) -> JXArray:
    r"""Exact Gaussian error linear unit
    :math:`x \Phi(x) = \tfrac{x}{2}(1 + \mathrm{erf}(x/\sqrt 2))`.

    This is PyTorch's default ``GELU()`` (not the tanh approximation).
    """
    return jax.nn.gelu(x, approximate=False)


def silu(x: JXArray) -> JXArray:
    r"""Sigmoid linear unit (swish) :math:`x \sigma(x)`."""
    return jax.nn.silu(x)


def softplus(x: JXArray) -> JXArray:
    r"""Softplus :math:`\log(1 + e^{x})`, computed without overflow."""
    return jax.nn.softplus(x)


class LeakyReLU:
    r"""Leaky rectifier :math:`x` for :math:`x > 0`, :math:`\alpha x` otherwise.

    Args:
        alpha: the slope for negative inputs (PyTorch's ``negative_slope``).
    """

    def __init__(self, alpha: float = 0.01) -> None:
        self.alpha = real_number(alpha, "alpha", "LeakyReLU")

    def __call__(self, x: JXArray) -> JXArray:
        return jnp.where(x > 0, x, self.alpha * x)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LeakyReLU) and other.alpha == self.alpha

    def __hash__(self) -> int:
        return hash(("LeakyReLU", self.alpha))

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"


class Activation(MiniMLModel):
    r"""A parameter-free layer :math:`y = f(X)` applied element by element.

    Input: any array. Output: an array of the same shape.

    Args:
        f: the activation, e.g. `relu`, ``LeakyReLU(0.1)`` or ``jax.nn.elu``. To save a
            model that holds it, use a function of `miniml.nn.activations` or ``jax.nn``
            (or a module-level function of the model's own module).
    """

    def __init__(self, f: ActivationFunction) -> None:
        if not callable(f):
            raise MiniMLError(
                f"Activation: f must be a callable f(x) -> array such as miniml.nn.relu, got {f!r}."
            )
        self.f = f
        super().__init__(loss=None)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        check_array(self, X)
        return self.f(X)
