"""`RBFLayer`: a radial basis function network layer."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.loss import LossFunction, squared_error_loss
from miniml.model import MiniMLModel, MiniMLModelList, PredictMode
from miniml.nn._checks import check_axis_size, check_choice, check_rank, positive_int
from miniml.nn.ortho import CayleyMatrix
from miniml.nn.rbf import (
    LOG_RBF,
    PolyharmonicRBF,
    RBFunction,
    bump_rbf,
    gaussian_rbf,
    linear_rbf,
    r_tanh_rbf,
)
from miniml.param import MiniMLParam

__all__ = ["PROJECTIONS", "RBFLayer"]

PROJECTIONS = ("none", "scaling", "ortho", "full")


def _ones(key: JXArray, shape: tuple[int, ...], dtype: Any) -> JXArray:
    return jnp.ones(shape, dtype)


def _identities(key: JXArray, shape: tuple[int, ...], dtype: Any) -> JXArray:
    return jnp.broadcast_to(jnp.eye(shape[-1], dtype=dtype), shape)


def _as_cayley(model: MiniMLModel) -> CayleyMatrix:
    assert isinstance(model, CayleyMatrix)  # RBFLayer only puts CayleyMatrix layers there
    return model


class RBFLayer(MiniMLModel):
    r"""Radial basis function network :math:`\hat{y} = H W`.

    For sample :math:`x` and center :math:`c_j` (``j < n_centers``):

    .. math::

        z_j = P_j (x - c_j), \qquad r_j = \lVert z_j \rVert_2, \qquad
        h_j = \phi(r_j), \qquad
        H_j = \begin{cases} h_j / \sum_k h_k & \text{normalize=True} \\
                            h_j & \text{normalize=False} \end{cases}

    and :math:`\hat{y} = \sum_j H_j W_j`. With ``normalize=True`` every row of the
    basis :math:`H` sums to 1 (a normalized RBF network: the output is a weighted
    average of the rows of :math:`W`); it is computed as a softmax of
    :math:`\log \phi` (see `miniml.nn.rbf.LOG_RBF`), so it never divides by an
    underflowed zero, and it needs a strictly positive :math:`\phi`.

    The projection :math:`P_j` (``projection``):

    * ``"none"``: :math:`P_j = I`;
    * ``"scaling"``: :math:`P_j = \mathrm{diag}(s_j)` (parameter ``scales``, ones);
    * ``"ortho"``: :math:`P_j = \mathrm{diag}(s_j) Q_j^\top` with an orthogonal
      `CayleyMatrix` :math:`Q_j` (``rotations.{j}.A``, starting at the identity);
    * ``"full"``: a general matrix (``projections``, ``(n_centers, n_in, n_in)``,
      identities).

    Input: ``(N, n_in)``. Output: ``(N, n_out)``. Parameters: ``centers``
    ``(n_centers, n_in)`` (standard normal), the projection's, and ``W``
    ``(n_centers, n_out)`` (normal, std :math:`1/\sqrt{n_{centers}}`). `basis` returns
    :math:`H`.

    Args:
        n_in: input features.
        n_out: outputs.
        n_centers: number of centers (basis functions).
        rbf: :math:`\phi`, a function of `miniml.nn.rbf` or ``PolyharmonicRBF(k)``.
        projection: ``"none"``, ``"scaling"`` (default), ``"ortho"`` or ``"full"``.
        loss: the data loss (None inside other models).
        normalize: normalize the basis (see above).
        dtype: float32 or float64 (default float64).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_centers: int,
        rbf: RBFunction = gaussian_rbf,
        projection: str = "scaling",
        loss: LossFunction | None = squared_error_loss,
        normalize: bool = False,
        dtype: Any = None,
    ) -> None:
        where = "RBFLayer"
        self.n_in = positive_int(n_in, "n_in", where)
        self.n_out = positive_int(n_out, "n_out", where)
        self.n_centers = positive_int(n_centers, "n_centers", where)
        if not callable(rbf):
            raise MiniMLError(f"{where}: rbf must be a callable phi(r), got {rbf!r}.")
        self.projection = check_choice(projection, PROJECTIONS, "projection", where)
        if not isinstance(normalize, bool):
            raise MiniMLError(f"{where}: normalize must be True or False, got {normalize!r}.")
        not_positive = rbf in (linear_rbf, r_tanh_rbf, bump_rbf) or isinstance(rbf, PolyharmonicRBF)
        if normalize and not_positive:
            raise MiniMLError(
                f"{where}: normalize=True divides by the sum of the basis values, which needs "
                f"a strictly positive rbf, but {getattr(rbf, '__name__', rbf)!r} can be zero. "
                "Use gaussian_rbf, inverse_quadratic_rbf, inverse_multiquadric_rbf or "
                "multiquadric_rbf, or normalize=False."
            )
        self.rbf = rbf
        self.normalize = normalize
        C, D = self.n_centers, self.n_in
        self.centers = MiniMLParam((C, D), dtype=dtype)
        if self.projection in ("scaling", "ortho"):
            self.scales = MiniMLParam((C, D), dtype=dtype, init=_ones)
        if self.projection == "ortho":
            self.rotations = MiniMLModelList(
                CayleyMatrix(D, dtype=dtype, rnd_scale=0.0) for _ in range(C)
            )
        if self.projection == "full":
            self.projections = MiniMLParam((C, D, D), dtype=dtype, init=_identities)
        self.W = MiniMLParam((C, self.n_out), dtype=dtype, rnd_scale=1 / math.sqrt(C))
        super().__init__(loss=loss)

    def _projected(self, diff: JXArray, buffer: JXArray) -> JXArray:
        """:math:`z_j = P_j (x - c_j)` for ``diff`` of shape ``(N, n_centers, n_in)``."""
        if self.projection == "none":
            return diff
        if self.projection == "scaling":
            return diff * self.scales(buffer)
        if self.projection == "ortho":
            rotations = jnp.stack([_as_cayley(r).matrix(buffer) for r in self.rotations])
            # (x - c_j) Q_j as a row vector is Q_j^T (x - c_j) as a column vector.
            return jnp.einsum("nji,jik->njk", diff, rotations) * self.scales(buffer)
        return jnp.einsum("jki,nji->njk", self.projections(buffer), diff)

    def basis(self, X: Any, buffer: JXArray | None = None) -> JXArray:
        """The basis :math:`H`, shape ``(N, n_centers)`` (normalized if ``normalize``)."""
        if buffer is None:
            buffer = self.get_buffer(copy=False)
        layout = f"(N, {self.n_in})"
        check_rank(self, X, (2,), layout)
        check_axis_size(self, X, -1, self.n_in, layout)
        z = self._projected(X[:, None, :] - self.centers(buffer)[None], buffer)
        squared = jnp.sum(jnp.square(z), axis=-1)
        positive = squared > 0
        # sqrt has an infinite derivative at 0; r is differentiable away from it.
        r = jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)
        if not self.normalize:
            return self.rbf(r)
        log_phi = next((f for rbf, f in LOG_RBF.items() if rbf is self.rbf), None)
        if log_phi is not None:
            return jax.nn.softmax(log_phi(r), axis=-1)
        h = self.rbf(r)
        return h / jnp.sum(h, axis=-1, keepdims=True)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        return self.basis(X, buffer) @ self.W(buffer)
