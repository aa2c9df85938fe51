"""`Conv`: convolution over any number of spatial axes (1-D, 2-D, 3-D, ...)."""

from __future__ import annotations

import math
from typing import Any

import jax
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.loss import LossFunction, RegLossFunction, squared_error_loss
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import int_tuple, positive_int
from miniml.nn._spatial import (
    Padding,
    channel_axis,
    check_data_format,
    check_spatial_input,
    parse_padding,
    resolve_padding,
    spatial_axes,
)
from miniml.nn.linear import L2
from miniml.param import MiniMLParam

__all__ = ["Conv"]


class Conv(MiniMLModel):
    r"""Convolution (cross-correlation, as in PyTorch and Keras) over ``n_dim`` axes.

    With ``data_format="channels_last"``, input :math:`X` of shape
    ``(N, *spatial, in_channels)`` and kernel :math:`W` of shape
    ``(*kernel_size, in_channels // groups, out_channels)``:

    .. math::

        \hat{y}_{n,\mathbf{i},o} = b_o + \sum_{c=0}^{C_g - 1} \sum_{\mathbf{k}}
            W_{\mathbf{k},c,o}\, \tilde{X}_{n,\, s \odot \mathbf{i} + d \odot \mathbf{k},\,
            g(o) C_g + c}

    where :math:`\tilde{X}` is the zero-padded input, :math:`s` the stride, :math:`d`
    the dilation, :math:`C_g` = ``in_channels // groups`` and :math:`g(o)` =
    ``o // (out_channels // groups)`` the group of output channel :math:`o` (groups are
    contiguous blocks of channels, as in PyTorch). Output: ``(N, *out_spatial,
    out_channels)``; see `miniml.nn._spatial` for padding and output sizes. With
    ``data_format="channels_first"`` the channel axis comes right after ``N`` in input
    and output (PyTorch layout); the kernel layout stays the same.

    Parameters: ``W``, initialized as normal values with standard deviation
    :math:`1/\sqrt{\text{fan-in}}`, fan-in = ``in_channels // groups * prod(kernel_size)``;
    ``b`` of shape ``(out_channels,)`` (zeros), only with ``bias=True``. A PyTorch
    weight of shape ``(out, in // groups, *kernel)`` maps to ``W`` by moving its first
    two axes to the end (``np.moveaxis(w, (0, 1), (-1, -2))``).

    Args:
        n_dim: the number of spatial axes (1 for sequences, 2 for images, ...).
        in_channels: input channels; divisible by ``groups``.
        out_channels: output channels; divisible by ``groups``.
        kernel_size: an int or one int per spatial axis.
        stride: an int or one int per spatial axis.
        padding: ``"valid"``, ``"same"``, an int, or per axis an int or ``(low, high)``.
        dilation: an int or one int per spatial axis (spacing of kernel taps).
        groups: split the channels into this many independent groups.
        bias: add a learned bias per output channel.
        loss: the data loss when the layer is fitted on its own (None inside models).
        reg_loss: regularizer of ``W`` (default squared L2); ``None`` for none.
        dtype: float32 or float64 (default float64).
        apply_bias_reg: also regularize ``b``.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
    """

    def __init__(
        self,
        n_dim: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: Padding = "valid",
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        loss: LossFunction | None = squared_error_loss,
        reg_loss: RegLossFunction | None = L2,
        dtype: Any = None,
        apply_bias_reg: bool = False,
        data_format: str = "channels_last",
    ) -> None:
        where = "Conv"
        self.n_dim = positive_int(n_dim, "n_dim", where)
        self.in_channels = positive_int(in_channels, "in_channels", where)
        self.out_channels = positive_int(out_channels, "out_channels", where)
        self.groups = positive_int(groups, "groups", where)
        if in_channels % groups or out_channels % groups:
            raise MiniMLError(
                f"{where}: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"both be divisible by groups ({groups})."
            )
        self.kernel_size = int_tuple(kernel_size, self.n_dim, "kernel_size", where)
        self.stride = int_tuple(stride, self.n_dim, "stride", where)
        self.dilation = int_tuple(dilation, self.n_dim, "dilation", where)
        self.padding = parse_padding(padding, self.n_dim, where)
        self.data_format = check_data_format(data_format, where)
        if not isinstance(bias, bool):
            raise MiniMLError(f"{where}: bias must be True or False, got {bias!r}.")
        if apply_bias_reg and (reg_loss is None or not bias):
            raise MiniMLError(
                f"{where}: apply_bias_reg=True needs bias=True and a reg_loss; got "
                f"bias={bias}, reg_loss={reg_loss!r}."
            )
        fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
        self.W = MiniMLParam(
            (*self.kernel_size, self.in_channels // self.groups, self.out_channels),
            dtype=dtype,
            reg_loss=reg_loss,
            rnd_scale=1 / math.sqrt(fan_in),
        )
        self.bias = bias
        if bias:
            bias_reg = reg_loss if apply_bias_reg else None
            self.b = MiniMLParam(
                (self.out_channels,), dtype=dtype, reg_loss=bias_reg, rnd_scale=0.0
            )
        super().__init__(loss=loss)

    def _dimension_numbers(self) -> jax.lax.ConvDimensionNumbers:
        n = self.n_dim
        spatial = spatial_axes(n, self.data_format)
        feature = n + 1 if self.data_format == "channels_last" else 1
        lhs = (0, feature, *spatial)
        # kernel (*kernel_size, in // groups, out): out axis, in axis, spatial axes
        rhs = (n + 1, n, *range(n))
        return jax.lax.ConvDimensionNumbers(lhs, rhs, lhs)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        check_spatial_input(self, X, self.n_dim, self.in_channels, self.data_format)
        spatial_shape = tuple(X.shape[a] for a in spatial_axes(self.n_dim, self.data_format))
        pads = resolve_padding(
            self, self.padding, spatial_shape, self.kernel_size, self.stride, self.dilation
        )
        W = self.W(buffer)
        y = jax.lax.conv_general_dilated(
            X.astype(W.dtype),
            W,
            window_strides=self.stride,
            padding=pads,
            rhs_dilation=self.dilation,
            dimension_numbers=self._dimension_numbers(),
            feature_group_count=self.groups,
            precision=jax.lax.Precision.HIGHEST,
        )
        if self.bias:
            shape = [1] * y.ndim
            shape[channel_axis(self.data_format)] = self.out_channels
            y = y + self.b(buffer).reshape(shape)
        return y
