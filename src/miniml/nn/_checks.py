"""Argument and input checks shared by the layers of `miniml.nn`.

Constructor arguments are checked when a layer is built. Inputs are checked when the
forward pass is traced: shapes and dtypes are static under `jax.jit`, so a wrong rank or
size raises a `MiniMLError` from `fit`/`predict` before anything runs, and the message
names the layer, what it expected, what it received and how to fix it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from miniml.errors import MiniMLError

__all__ = [
    "check_array",
    "check_axis_size",
    "check_choice",
    "check_floating",
    "check_rank",
    "check_rate",
    "int_tuple",
    "layer_name",
    "positive_int",
    "real_number",
]


def layer_name(layer: Any) -> str:
    """``"Linear(3, 2)"``: the class and its (short) constructor arguments, for messages."""
    cls = type(layer).__name__
    args, kwargs = getattr(layer, "_miniml_init_args", ((), {}))
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    text = f"{cls}({', '.join(parts)})"
    return text if len(text) <= 80 else cls


def positive_int(value: Any, name: str, where: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise MiniMLError(f"{where}: {name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def real_number(value: Any, name: str, where: str) -> float:
    """``value`` as a finite float, or a clear error."""
    if isinstance(value, bool):
        raise MiniMLError(f"{where}: {name} must be a real number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise MiniMLError(f"{where}: {name} must be a real number, got {value!r}.") from err
    if not math.isfinite(number):
        raise MiniMLError(f"{where}: {name} must be finite, got {value!r}.")
    return number


def check_rate(value: Any, name: str, where: str) -> float:
    """A dropout probability in ``[0, 1)``."""
    rate = real_number(value, name, where)
    if not 0.0 <= rate < 1.0:
        raise MiniMLError(
            f"{where}: {name} is the probability of zeroing a unit and must lie in [0, 1), "
            f"got {value!r}."
        )
    return rate


def check_choice(value: Any, choices: Sequence[str], name: str, where: str) -> str:
    """One of ``choices``, or a clear error."""
    if not isinstance(value, str) or value not in choices:
        raise MiniMLError(f"{where}: {name} must be one of {list(choices)}, got {value!r}.")
    return value


def int_tuple(value: Any, n: int, name: str, where: str, minimum: int = 1) -> tuple[int, ...]:
    """An int (repeated ``n`` times) or a sequence of ``n`` ints, each ``>= minimum``."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        values: tuple[Any, ...] = (value,) * n
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
    else:
        raise MiniMLError(
            f"{where}: {name} must be an int or a sequence of {n} ints, got {value!r}."
        )
    if len(values) != n:
        raise MiniMLError(
            f"{where}: {name} must be an int or a sequence of {n} ints (one per spatial "
            f"axis), got {value!r} with {len(values)} entries."
        )
    return tuple(positive_int(v, name, where, minimum) for v in values)


def check_array(layer: Any, X: Any, what: str = "X") -> None:
    """The input must be a single array (not a tuple or dict of arrays)."""
    if not hasattr(X, "shape") or not hasattr(X, "ndim"):
        raise MiniMLError(
            f"{layer_name(layer)}: expected {what} to be one array, got a "
            f"{type(X).__name__}. Pass a single array, or select one with a layer that "
            "takes it apart first."
        )


def check_rank(
    layer: Any, X: Any, ranks: Sequence[int] | int, layout: str, what: str = "X"
) -> None:
    """``X.ndim`` must be one of ``ranks`` (a single int ``k`` means "at least ``k``")."""
    check_array(layer, X, what)
    if isinstance(ranks, int):
        ok = X.ndim >= ranks
        expected = f"at least {ranks} axes"
    else:
        ok = X.ndim in ranks
        expected = " or ".join(str(r) for r in ranks) + " axes"
    if not ok:
        raise MiniMLError(
            f"{layer_name(layer)}: expected {what} of shape {layout} ({expected}), got "
            f"{what} of shape {tuple(X.shape)} ({X.ndim} axes). The first axis indexes "
            "samples; reshape the input to the documented layout."
        )


def check_axis_size(
    layer: Any, X: Any, axis: int, size: int, layout: str, what: str = "X", hint: str = ""
) -> None:
    """``X.shape[axis]`` must equal ``size``."""
    if X.shape[axis] != size:
        raise MiniMLError(
            f"{layer_name(layer)}: expected {what} of shape {layout} with size {size} on "
            f"axis {axis}, got {what} of shape {tuple(X.shape)}.{hint and ' ' + hint}"
        )


def check_floating(layer: Any, X: Any, what: str = "X") -> None:
    """The input must hold floating-point numbers."""
    if not jnp.issubdtype(X.dtype, jnp.floating):
        raise MiniMLError(
            f"{layer_name(layer)}: expected floating-point {what}, got dtype {X.dtype}. "
            f"Convert it with {what}.astype(float)."
        )
