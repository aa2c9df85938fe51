"""`CayleyMatrix`: an orthogonal matrix parameterized by the Cayley transform."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import check_axis_size, check_rank, positive_int, real_number
from miniml.param import MiniMLParam

__all__ = ["CayleyMatrix"]


class CayleyMatrix(MiniMLModel):
    r"""An orthogonal ``dim x dim`` matrix :math:`Q` and the layer :math:`y = X Q`.

    With the skew-symmetric :math:`A` whose strict upper triangle holds the parameter
    ``A`` (row-major order, ``dim * (dim - 1) / 2`` values) and :math:`A^\top = -A`:

    .. math:: Q = (I - A)(I + A)^{-1} = (I + A)^{-1}(I - A)

    :math:`I + A` is always invertible (the eigenvalues of :math:`A` are imaginary),
    and :math:`Q^\top Q = I` for every parameter value, so an unconstrained optimizer
    moves only over orthogonal matrices. The transform reaches every rotation
    (:math:`\det Q = 1`) without the eigenvalue :math:`-1`; reflections are out of
    reach. ``A = 0`` gives :math:`Q = I`.

    Input: ``(N, ..., dim)``. Output: the same shape. `matrix` returns :math:`Q`.

    Args:
        dim: the matrix size.
        dtype: float32 or float64 (default float64).
        rnd_scale: standard deviation of the normal values `randomize` draws for ``A``
            (0 starts at the identity).
    """

    def __init__(self, dim: int, dtype: Any = None, rnd_scale: float = 1.0) -> None:
        self.dim = positive_int(dim, "dim", "CayleyMatrix")
        scale = real_number(rnd_scale, "rnd_scale", "CayleyMatrix")
        self.A = MiniMLParam((self.dim * (self.dim - 1) // 2,), dtype=dtype, rnd_scale=scale)
        super().__init__(loss=None)

    def matrix(self, buffer: JXArray | None = None) -> JXArray:
        """:math:`Q` from the parameters in ``buffer`` (default: the bound buffer)."""
        values = self.A.value if buffer is None else self.A(buffer)
        rows, cols = np.triu_indices(self.dim, k=1)
        upper = jnp.zeros((self.dim, self.dim), values.dtype).at[rows, cols].set(values)
        skew = upper - upper.T
        eye = jnp.eye(self.dim, dtype=values.dtype)
        return jnp.linalg.solve(eye + skew, eye - skew)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        layout = f"(N, ..., {self.dim})"
        check_rank(self, X, 2, layout)
        check_axis_size(self, X, -1, self.dim, layout)
        return X @ self.matrix(buffer)
