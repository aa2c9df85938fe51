"""`MLP`: a multilayer perceptron of `Linear` layers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.loss import LossFunction, RegLossFunction, squared_error_loss
from miniml.model import MiniMLModel, MiniMLModelList, PredictMode
from miniml.nn._checks import check_axis_size, check_rank, check_rate, positive_int
from miniml.nn._routing import split_keys
from miniml.nn.activations import ActivationFunction, relu
from miniml.nn.dropout import inverted_dropout
from miniml.nn.linear import L2, Linear

__all__ = ["MLP"]


class MLP(MiniMLModel):
    r"""Multilayer perceptron.

    With layer sizes :math:`(d_0, d_1, \dots, d_L)`:

    .. math::

        h_0 = X, \qquad
        h_l = \mathrm{drop}_p\big(f(h_{l-1} W_l + b_l)\big) \quad (l < L), \qquad
        \hat{y} = h_{L-1} W_L + b_L

    where :math:`f` is ``activation`` and :math:`\mathrm{drop}_p` is inverted dropout
    (`miniml.nn.Dropout`) in training mode and the identity at inference. The output
    layer has no activation.

    Input: ``(N, ..., d_0)``. Output: ``(N, ..., d_L)``.

    Parameters: ``layers.{l}.W`` of shape :math:`(d_l, d_{l+1})` and ``layers.{l}.b``
    (`Linear` layers, counted from 0).

    Args:
        layer_sizes: :math:`(d_0, \dots, d_L)`, input size first, at least two entries.
        activation: the hidden activation (a `miniml.nn.activations` function,
            ``LeakyReLU(...)`` or a ``jax.nn`` function).
        dropout: drop probability after every hidden activation; 0 disables it.
        loss: the data loss; ``None`` for an MLP used inside another model.
        reg_loss: regularizer of every weight matrix (``None`` for none).
        dtype: float32 or float64 (default float64).
        apply_bias_reg: also regularize the biases.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: ActivationFunction = relu,
        dropout: float = 0.0,
        loss: LossFunction | None = squared_error_loss,
        reg_loss: RegLossFunction | None = L2,
        dtype: Any = None,
        apply_bias_reg: bool = False,
    ) -> None:
        if isinstance(layer_sizes, str) or not isinstance(layer_sizes, Sequence):
            raise MiniMLError(f"MLP: layer_sizes must be a list of ints, got {layer_sizes!r}.")
        sizes = [positive_int(s, "each layer size", "MLP") for s in layer_sizes]
        if len(sizes) < 2:
            raise MiniMLError(
                f"MLP: layer_sizes needs at least two entries (input and output sizes), "
                f"got {list(layer_sizes)!r}."
            )
        if not callable(activation):
            raise MiniMLError(
                f"MLP: activation must be a callable such as miniml.nn.relu, got {activation!r}."
            )
        self.layer_sizes = tuple(sizes)
        self.activation = activation
        self.dropout = check_rate(dropout, "dropout", "MLP")
        self.layers = MiniMLModelList(
            Linear(n_in, n_out, None, reg_loss, dtype, apply_bias_reg)
            for n_in, n_out in itertools.pairwise(sizes)
        )
        super().__init__(loss=loss)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        layout = f"(N, ..., {self.layer_sizes[0]})"
        check_rank(self, X, 2, layout)
        check_axis_size(self, X, -1, self.layer_sizes[0], layout)
        n_layers = len(self.layers)
        keys = split_keys(rng_key, n_layers)
        h = X
        for index, layer in enumerate(self.layers):
            h = layer._predict_kernel(h, buffer, mode=mode)
            if index < n_layers - 1:
                h = self.activation(h)
                h = inverted_dropout(h, self.dropout, keys[index], mode, "MLP")
        return h
