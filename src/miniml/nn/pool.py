"""`MaxPool` and `AvgPool`: window reductions over the spatial axes, per channel."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.model import MiniMLModel, PredictMode
from miniml.nn._checks import check_floating, int_tuple, layer_name, positive_int
from miniml.nn._spatial import (
    Padding,
    check_data_format,
    check_spatial_input,
    parse_padding,
    resolve_padding,
    spatial_axes,
)

__all__ = ["AvgPool", "MaxPool"]


class _Pool(MiniMLModel):
    """Shared argument handling; subclasses reduce the padded windows."""

    def _setup(
        self,
        n_dim: int,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        data_format: str,
    ) -> None:
        where = type(self).__name__
        self.n_dim = positive_int(n_dim, "n_dim", where)
        self.kernel_size = int_tuple(kernel_size, self.n_dim, "kernel_size", where)
        self.stride = (
            self.kernel_size if stride is None else int_tuple(stride, self.n_dim, "stride", where)
        )
        self.dilation = int_tuple(dilation, self.n_dim, "dilation", where)
        self.padding = parse_padding(padding, self.n_dim, where)
        self.data_format = check_data_format(data_format, where)

    def _windows(self, X: Any) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], list]:
        """Window, strides, dilation and padding over all input axes."""
        check_spatial_input(self, X, self.n_dim, None, self.data_format)
        check_floating(self, X)
        axes = spatial_axes(self.n_dim, self.data_format)
        spatial_shape = tuple(X.shape[a] for a in axes)
        pads = resolve_padding(
            self, self.padding, spatial_shape, self.kernel_size, self.stride, self.dilation
        )
        self._check_every_window_holds_input(spatial_shape, pads)
        window, strides, dilation = [1] * X.ndim, [1] * X.ndim, [1] * X.ndim
        padding = [(0, 0)] * X.ndim
        for i, axis in enumerate(axes):
            window[axis], strides[axis] = self.kernel_size[i], self.stride[i]
            dilation[axis], padding[axis] = self.dilation[i], pads[i]
        return tuple(window), tuple(strides), tuple(dilation), padding

    def _check_every_window_holds_input(
        self, spatial_shape: tuple[int, ...], pads: tuple[tuple[int, int], ...]
    ) -> None:
        """A dilated window over a short padded axis can miss every input element (its
        max would be -inf). Checked once per traced shape."""
        sizes = zip(spatial_shape, pads, self.kernel_size, self.stride, self.dilation, strict=True)
        for axis, (n, (lo, hi), k, s, d) in enumerate(sizes):
            n_out = (n + lo + hi - d * (k - 1) - 1) // s + 1
            taps = s * np.arange(n_out)[:, None] + d * np.arange(k)[None, :] - lo
            holds_input = ((taps >= 0) & (taps < n)).any(axis=1)
            if not holds_input.all():
                position = int(np.argmin(holds_input))
                raise MiniMLError(
                    f"{layer_name(self)}: on spatial axis {axis} (size {n}, padding "
                    f"{(lo, hi)}, kernel {k}, stride {s}, dilation {d}) the window of output "
                    f"position {position} covers only padding. Use less padding or dilation, "
                    "or a longer input."
                )


class MaxPool(_Pool):
    r"""Max pooling: :math:`y_{n,\mathbf{i},c} = \max_{\mathbf{k}} \tilde{X}_{n,\,
    s \odot \mathbf{i} + d \odot \mathbf{k},\, c}` over the window
    :math:`0 \le \mathbf{k} <` ``kernel_size``.

    Padding positions hold :math:`-\infty` (they never win), as in PyTorch. Input:
    ``(N, *spatial, C)`` (``channels_last``) or ``(N, C, *spatial)``
    (``channels_first``). Output: the same layout with pooled spatial sizes (see
    `miniml.nn._spatial`). No parameters.

    Args:
        n_dim: the number of spatial axes.
        kernel_size: the window, an int or one int per spatial axis.
        stride: the step (default: ``kernel_size``, non-overlapping windows).
        padding: ``"valid"``, ``"same"``, an int or per axis an int or ``(low, high)``;
            explicit pads may be at most half the dilated window (as in PyTorch), so
            that every window holds an input element.
        dilation: spacing of the window's taps.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
    """

    def __init__(
        self,
        n_dim: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: Padding = "valid",
        dilation: int | tuple[int, ...] = 1,
        data_format: str = "channels_last",
    ) -> None:
        self._setup(n_dim, kernel_size, stride, padding, dilation, data_format)
        if not isinstance(self.padding, str):
            for (lo, hi), k, d in zip(self.padding, self.kernel_size, self.dilation, strict=True):
                if max(lo, hi) > (d * (k - 1) + 1) // 2:
                    raise MiniMLError(
                        f"MaxPool: padding {padding!r} is more than half the dilated window "
                        f"{d * (k - 1) + 1}; such windows could hold only padding."
                    )
        super().__init__(loss=None)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        window, strides, dilation, padding = self._windows(X)
        # A concrete (numpy) identity lets JAX pick its differentiable max-pool primitive.
        init = np.array(-np.inf, X.dtype)
        return jax.lax.reduce_window(
            X, init, jax.lax.max, window, strides, padding, window_dilation=dilation
        )


class AvgPool(_Pool):
    r"""Average pooling over windows of ``kernel_size``.

    .. math::

        y_{n,\mathbf{i},c} = \frac{1}{m_{\mathbf{i}}} \sum_{\mathbf{k}}
            \tilde{X}_{n,\, s \odot \mathbf{i} + \mathbf{k},\, c}

    where :math:`\tilde{X}` is the zero-padded input and :math:`m_{\mathbf{i}}` the
    window size ``prod(kernel_size)`` (``count_include_pad=True``, PyTorch's default)
    or the number of non-padding elements in the window (``False``). Layouts as in
    `MaxPool`. No parameters.

    Args:
        n_dim: the number of spatial axes.
        kernel_size: the window, an int or one int per spatial axis.
        stride: the step (default: ``kernel_size``).
        padding: ``"valid"``, ``"same"``, an int or per axis an int or ``(low, high)``.
        count_include_pad: count padding zeros in the divisor.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
    """

    def __init__(
        self,
        n_dim: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: Padding = "valid",
        count_include_pad: bool = True,
        data_format: str = "channels_last",
    ) -> None:
        self._setup(n_dim, kernel_size, stride, padding, 1, data_format)
        if not isinstance(count_include_pad, bool):
            raise MiniMLError(
                f"AvgPool: count_include_pad must be True or False, got {count_include_pad!r}."
            )
        self.count_include_pad = count_include_pad
        super().__init__(loss=None)

    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> JXArray:
        window, strides, _, padding = self._windows(X)
        zero = np.array(0, X.dtype)  # concrete, see MaxPool
        total = jax.lax.reduce_window(X, zero, jax.lax.add, window, strides, padding)
        if self.count_include_pad:
            return total / math.prod(self.kernel_size)
        ones = jnp.ones(X.shape, X.dtype)
        count = jax.lax.reduce_window(ones, zero, jax.lax.add, window, strides, padding)
        return total / count
