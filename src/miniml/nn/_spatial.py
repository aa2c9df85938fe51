"""Layout and padding rules shared by `Conv`, `MaxPool` and `AvgPool`.

Data layout: ``data_format="channels_last"`` (the default, as in Keras and JAX) means
inputs of shape ``(N, *spatial, C)``; ``"channels_first"`` (PyTorch's layout) means
``(N, C, *spatial)``.

Padding:

* ``"valid"``: none; a window must fit entirely inside the input.
* ``"same"``: the output has :math:`\\lceil n / s \\rceil` positions along an axis of
  size :math:`n` with stride :math:`s` (TensorFlow/JAX rule); the total padding
  :math:`\\max((\\lceil n/s\\rceil - 1)s + d(k-1) + 1 - n, 0)` is split with the extra
  element at the end. For stride 1 this is PyTorch's ``padding="same"``.
* an int :math:`p`: :math:`p` zeros at both ends of every spatial axis;
* a sequence with one entry per spatial axis: an int, or a ``(low, high)`` pair.

The output size along an axis is
:math:`\\lfloor (n + p_{lo} + p_{hi} - d(k-1) - 1) / s \\rfloor + 1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from miniml.errors import MiniMLError
from miniml.nn._checks import check_choice, check_rank, layer_name

__all__ = ["DATA_FORMATS", "Padding", "check_spatial_input", "parse_padding", "resolve_padding"]

DATA_FORMATS = ("channels_last", "channels_first")
Padding = str | int | Sequence[int | tuple[int, int]]


def parse_padding(padding: Any, n_dim: int, where: str) -> str | tuple[tuple[int, int], ...]:
    """Return ``"valid"``, ``"same"`` or one ``(low, high)`` pair per spatial axis."""
    if isinstance(padding, str):
        return check_choice(padding.lower(), ("valid", "same"), "padding", where)
    if isinstance(padding, int | np.integer) and not isinstance(padding, bool):
        entries: list[Any] = [int(padding)] * n_dim
    elif isinstance(padding, Sequence):
        entries = list(padding)
    else:
        raise MiniMLError(
            f"{where}: padding must be 'valid', 'same', an int or a sequence of {n_dim} "
            f"ints or (low, high) pairs, got {padding!r}."
        )
    if len(entries) != n_dim:
        raise MiniMLError(
            f"{where}: padding needs one entry per spatial axis ({n_dim}), got {padding!r}."
        )
    pairs = []
    for entry in entries:
        pair = (entry, entry) if isinstance(entry, int | np.integer) else tuple(entry)
        ok = len(pair) == 2 and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0 for v in pair
        )
        if not ok:
            raise MiniMLError(
                f"{where}: each padding entry must be an int >= 0 or a (low, high) pair of "
                f"ints >= 0, got {entry!r} in {padding!r}."
            )
        pairs.append((int(pair[0]), int(pair[1])))
    return tuple(pairs)


def check_data_format(value: Any, where: str) -> str:
    """``"channels_last"`` or ``"channels_first"``."""
    return check_choice(value, DATA_FORMATS, "data_format", where)


def layout_of(n_dim: int, channels: str, data_format: str) -> str:
    """``"(N, W, C)"``-style layout text for messages."""
    spatial = ", ".join(
        ("L",) if n_dim == 1 else ("H", "W") if n_dim == 2 else ("D1", "...", f"D{n_dim}")
    )
    if data_format == "channels_last":
        return f"(N, {spatial}, {channels})"
    return f"(N, {channels}, {spatial})"


def spatial_axes(n_dim: int, data_format: str) -> tuple[int, ...]:
    """Positions of the spatial axes in the input."""
    first = 1 if data_format == "channels_last" else 2
    return tuple(range(first, first + n_dim))


def channel_axis(data_format: str) -> int:
    return -1 if data_format == "channels_last" else 1


def check_spatial_input(
    layer: Any, X: Any, n_dim: int, channels: int | None, data_format: str
) -> None:
    """Rank ``n_dim + 2`` and, if given, ``channels`` on the channel axis."""
    layout = layout_of(n_dim, "C" if channels is None else str(channels), data_format)
    check_rank(layer, X, (n_dim + 2,), layout)
    axis = channel_axis(data_format)
    if channels is not None and X.shape[axis] != channels:
        other = "channels_first" if data_format == "channels_last" else "channels_last"
        raise MiniMLError(
            f"{layer_name(layer)}: expected X of shape {layout} ({data_format}) with "
            f"{channels} channels, got X of shape {tuple(X.shape)}. If your data is "
            f"{other}, transpose it or build the layer with data_format={other!r}."
        )


def resolve_padding(
    layer: Any,
    padding: str | tuple[tuple[int, int], ...],
    spatial_shape: tuple[int, ...],
    window: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """Explicit ``(low, high)`` pads; raise if some output axis would be empty."""
    extent = tuple(d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True))
    if padding == "valid":
        pads = tuple((0, 0) for _ in spatial_shape)
    elif padding == "same":
        pads = tuple(jax.lax.padtype_to_pads(spatial_shape, extent, stride, "SAME"))
    else:
        pads = padding  # type: ignore[assignment]
    for n, (lo, hi), e in zip(spatial_shape, pads, extent, strict=True):
        if n + lo + hi < e:
            raise MiniMLError(
                f"{layer_name(layer)}: the input's spatial shape {spatial_shape} is too small: "
                f"a window spans {extent} (kernel/pool size {window} with dilation "
                f"{dilation}) but the padded input is only "
                f"{tuple(m + a + b for m, (a, b) in zip(spatial_shape, pads, strict=True))}. "
                "Use larger inputs, padding='same', or a smaller window."
            )
    return tuple((int(lo), int(hi)) for lo, hi in pads)
