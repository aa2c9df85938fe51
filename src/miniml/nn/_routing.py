"""How composite layers call their children: random keys, keyword arguments, activity.

* Random keys: a composite splits its key into one subkey per child (``None`` stays
  ``None``), so two dropout layers never share a mask.
* Keyword arguments of the forward pass (e.g. ``attn_mask`` for `MultiHeadAttention`)
  go to every child whose ``_predict_kernel`` declares them; an argument that no child
  declares is an error, never silently dropped.
* Activity losses returned by children (`PredictKernelOutput`) are added up and passed
  on.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.model import MiniMLModel, PredictKernelOutput, PredictMode, split_kernel_output
from miniml.nn._checks import layer_name

__all__ = ["accepted_kwargs", "finish", "run_child", "split_keys"]

_STANDARD = {"self", "X", "buffer", "rng_key", "mode"}


def accepted_kwargs(model: MiniMLModel) -> frozenset[str] | None:
    """Extra keyword names ``model``'s forward pass accepts; ``None`` means any."""
    own = getattr(model, "_nn_kwarg_names", None)
    if callable(own):
        return own()
    signature = inspect.signature(type(model)._predict_kernel)
    names = set()
    for name, param in signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if name not in _STANDARD and param.kind is not inspect.Parameter.VAR_POSITIONAL:
            names.add(name)
    return frozenset(names)


def union_kwargs(models: Iterable[MiniMLModel]) -> frozenset[str] | None:
    """The keyword names accepted by any of ``models`` (``None``: any name)."""
    names: set[str] = set()
    for model in models:
        accepted = accepted_kwargs(model)
        if accepted is None:
            return None
        names |= accepted
    return frozenset(names)


def split_keys(rng_key: JXArray | None, n: int) -> list[JXArray | None]:
    """``n`` independent subkeys of ``rng_key`` (or ``n`` times ``None``)."""
    if rng_key is None:
        return [None] * n
    return list(jax.random.split(rng_key, n))


def run_child(
    child: MiniMLModel,
    X: Any,
    buffer: JXArray,
    rng_key: JXArray | None,
    mode: PredictMode,
    kwargs: dict[str, Any],
    used: set[str],
) -> tuple[Any, JXArray | None]:
    """Call ``child`` with the keyword arguments it declares; return output and activity."""
    accepted = accepted_kwargs(child)
    passed = (
        dict(kwargs) if accepted is None else {k: v for k, v in kwargs.items() if k in accepted}
    )
    used.update(passed)
    out = child._predict_kernel(X, buffer, rng_key=rng_key, mode=mode, **passed)
    return split_kernel_output(out)


def finish(
    layer: MiniMLModel, y: Any, activities: list[JXArray], kwargs: dict[str, Any], used: set[str]
) -> Any:
    """Check that every keyword argument reached a child; attach the summed activity."""
    unused = sorted(set(kwargs) - used)
    if unused:
        raise MiniMLError(
            f"{layer_name(layer)}: keyword argument(s) {unused} of the forward pass are "
            "accepted by none of its layers. Check the spelling, or remove them."
        )
    if not activities:
        return y
    total = activities[0]
    for activity in activities[1:]:
        total = total + activity
    return PredictKernelOutput(y_pred=y, activity_loss=jnp.asarray(total))
