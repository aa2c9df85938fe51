"""`Linear`: the affine layer ``X @ W + b``."""

from __future__ import annotations

import math
from typing import Any

from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.loss import LNormRegularization, LossFunction, RegLossFunction, squared_error_loss
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import check_axis_size, check_rank, positive_int
from miniml.param import MiniMLParam

__all__ = ["Linear"]

L2 = LNormRegularization(2)
"""The default weight penalty of the layers: :math:`\\sum_i w_i^2` (not halved)."""


class Linear(MiniMLModel):
    r"""Affine layer :math:`\hat{y} = X W + b`.

    Input: ``X`` of shape ``(N, ..., n_in)`` (at least 2 axes; the map acts on the last
    axis). Output: shape ``(N, ..., n_out)``.

    Parameters: ``W`` of shape ``(n_in, n_out)``, initialized (by `randomize`) as
    normal values with standard deviation :math:`1/\sqrt{n_{in}}` (LeCun normal), and
    ``b`` of shape ``(n_out,)``, initialized to zeros.

    Args:
        n_in: number of input features.
        n_out: number of output features.
        loss: the data loss when the layer is fitted on its own; ``None`` for a layer
            used only inside other models.
        reg_loss: regularizer of ``W`` (default: the plain squared L2 norm
            ``LNormRegularization(2)``); ``None`` for no penalty.
        dtype: float32 or float64 (default float64).
        apply_bias_reg: also apply ``reg_loss`` to ``b``.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        loss: LossFunction | None = squared_error_loss,
        reg_loss: RegLossFunction | None = L2,
        dtype: Any = None,
        apply_bias_reg: bool = False,
    ) -> None:
        self.n_in = positive_int(n_in, "n_in", "Linear")
        self.n_out = positive_int(n_out, "n_out", "Linear")
        if apply_bias_reg and reg_loss is None:
            raise MiniMLError(
                "Linear: apply_bias_reg=True needs a reg_loss to apply to the bias, but "
                "reg_loss is None. Pass a reg_loss or drop apply_bias_reg."
            )
        self.W = MiniMLParam(
            (self.n_in, self.n_out), dtype=dtype, reg_loss=reg_loss, rnd_scale=1 / math.sqrt(n_in)
        )
        bias_reg = reg_loss if apply_bias_reg else None
        self.b = MiniMLParam((self.n_out,), dtype=dtype, reg_loss=bias_reg, rnd_scale=0.0)
        super().__init__(loss=loss)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        layout = f"(N, ..., {self.n_in})"
        check_rank(self, X, 2, layout)
        hint = "For a single feature, reshape X with X.reshape(-1, 1)." if self.n_in == 1 else ""
        check_axis_size(self, X, -1, self.n_in, layout, hint=hint)
        return X @ self.W(buffer) + self.b(buffer)
