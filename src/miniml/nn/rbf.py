r"""Radial basis functions :math:`\phi(r)` of a distance :math:`r \ge 0`, for `RBFLayer`.

Each function maps an array of distances to an array of the same shape. They are safe
to differentiate at :math:`r = 0` (where a data point sits on a center). The positive
ones (`gaussian_rbf`, `multiquadric_rbf`, `inverse_multiquadric_rbf`,
`inverse_quadratic_rbf`) can be normalized by `RBFLayer(normalize=True)`; `LOG_RBF`
holds their logarithms, used to normalize without underflow.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.errors import MiniMLError

__all__ = [
    "LOG_RBF",
    "PolyharmonicRBF",
    "RBFunction",
    "bump_rbf",
    "gaussian_rbf",
    "inverse_multiquadric_rbf",
    "inverse_quadratic_rbf",
    "linear_rbf",
    "multiquadric_rbf",
    "r_tanh_rbf",
]

RBFunction = Callable[[JXArray], JXArray]


def gaussian_rbf(r: JXArray) -> JXArray:
    r"""Gaussian :math:`\phi(r) = e^{-r^2/2}`."""
    return jnp.exp(-0.5 * jnp.square(r))


def multiquadric_rbf(r: JXArray) -> JXArray:
    r"""Multiquadric :math:`\phi(r) = \sqrt{1 + r^2}`."""
    return jnp.sqrt(1 + jnp.square(r))


def inverse_multiquadric_rbf(r: JXArray) -> JXArray:
    r"""Inverse multiquadric :math:`\phi(r) = 1 / \sqrt{1 + r^2}`."""
    return 1 / jnp.sqrt(1 + jnp.square(r))


def inverse_quadratic_rbf(r: JXArray) -> JXArray:
    r"""Inverse quadratic :math:`\phi(r) = 1 / (1 + r^2)`."""
    return 1 / (1 + jnp.square(r))


def linear_rbf(r: JXArray) -> JXArray:
    r"""Linear :math:`\phi(r) = r`."""
    return r


def r_tanh_rbf(r: JXArray) -> JXArray:
    r""":math:`\phi(r) = r \tanh(r)`."""
    return r * jnp.tanh(r)


def bump_rbf(r: JXArray) -> JXArray:
    r"""Compactly supported bump :math:`\phi(r) = e^{1 - 1/(1 - r^2)}` for
    :math:`|r| < 1`, else 0 (smooth everywhere, :math:`\phi(0) = 1`)."""
    inside = jnp.abs(r) < 1
    r2 = jnp.where(inside, jnp.square(r), 0.0)
    return jnp.where(inside, jnp.exp(1 - 1 / (1 - r2)), 0.0)


class PolyharmonicRBF:
    r"""Polyharmonic spline of degree :math:`k \ge 1`.

    .. math::

        \phi(r) = r^k \ (k \text{ odd}), \qquad
        \phi(r) = r^k \log r \ (k \text{ even}, \text{ with } \phi(0) = 0)

    Args:
        degree: :math:`k`.
    """

    def __init__(self, degree: int) -> None:
        if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or degree < 1:
            raise MiniMLError(f"PolyharmonicRBF: degree must be an int >= 1, got {degree!r}.")
        self.degree = int(degree)

    def __call__(self, r: JXArray) -> JXArray:
        power = jnp.power(r, self.degree)
        if self.degree % 2:
            return power
        positive = r > 0
        safe = jnp.where(positive, r, 1.0)
        return jnp.where(positive, power * jnp.log(safe), 0.0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolyharmonicRBF) and other.degree == self.degree

    def __hash__(self) -> int:
        return hash(("PolyharmonicRBF", self.degree))

    def __repr__(self) -> str:
        return f"PolyharmonicRBF(degree={self.degree})"


def _log_gaussian(r: JXArray) -> JXArray:
    return -0.5 * jnp.square(r)


def _log_multiquadric(r: JXArray) -> JXArray:
    return 0.5 * jnp.log1p(jnp.square(r))


def _log_inverse_multiquadric(r: JXArray) -> JXArray:
    return -0.5 * jnp.log1p(jnp.square(r))


def _log_inverse_quadratic(r: JXArray) -> JXArray:
    return -jnp.log1p(jnp.square(r))


LOG_RBF: dict[Callable[..., JXArray], Callable[[JXArray], JXArray]] = {
    gaussian_rbf: _log_gaussian,
    multiquadric_rbf: _log_multiquadric,
    inverse_multiquadric_rbf: _log_inverse_multiquadric,
    inverse_quadratic_rbf: _log_inverse_quadratic,
}
""":math:`\\log \\phi(r)` of the strictly positive radial basis functions."""
