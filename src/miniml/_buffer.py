"""Writing the parameter values of a model: the flat buffer held by its root.

One buffer serves a whole tree of models, on the root; a child's parameters are a
slice of it. These functions do the work of `MiniMLModel`'s ``bind``, ``randomize``,
``set_buffer`` and ``set_params`` once the methods have checked the model is ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml.data import to_device
from miniml.errors import MiniMLError

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = ["allocate", "draw_values", "replace_buffer", "write_params"]


def allocate(root: MiniMLModel) -> None:
    """Give an unbound root a buffer of zeros, with the values its children brought."""
    buffer = np.zeros(root._size, root._dtype)  # host-built: no eager compiles
    for start, values in root._pending_child_buffers:
        buffer[start : start + values.shape[0]] = np.asarray(values)
    # True until values are drawn or set: fit warns if zeros cannot train.
    root._miniml_zero_start = not root._pending_child_buffers
    root._pending_child_buffers = []
    root._buffer = to_device(buffer)


def draw_values(model: MiniMLModel, seed: int | None, where: str) -> None:
    """Bind ``model``'s root if needed and draw new values for ``model``'s parameters.

    A parameter's draw depends only on ``seed`` and its position in the root's
    buffer, never on what was drawn before it.
    """
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    elif isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise MiniMLError(f"{where}: seed must be a non-negative int or None, got {seed!r}.")
    root = model.root
    root.bind()
    own_ids = {id(p) for _, p in model._layout}
    # Plain normal draws come from numpy on the host: jax.random would compile one
    # kernel per shape, seconds on a cold process for a small network.
    host = np.array(root._buffer)
    for index, (_, param) in enumerate(root._layout):
        if id(param) not in own_ids:
            continue
        if param._init is None:
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), index]))
            drawn = rng.standard_normal(param.size) * param.rnd_scale
        else:
            key = jax.random.fold_in(jax.random.key(int(seed)), index)
            drawn = np.asarray(param.draw(key)).reshape(-1)
        host[param.offset : param.offset + param.size] = drawn
    root._buffer = to_device(host)
    root._miniml_zero_start = False


def replace_buffer(root: MiniMLModel, buffer: Any, where: str) -> None:
    """Make ``buffer`` the root's buffer, cast to the model's dtype where that is safe."""
    values = to_device(buffer)
    if values.shape != (root._size,):
        raise MiniMLError(
            f"{where}: expected a flat buffer of shape ({root._size},), got {values.shape}."
        )
    if values.dtype != root._dtype:
        if not jnp.can_cast(values.dtype, root._dtype, casting="safe"):
            raise MiniMLError(
                f"{where}: buffer dtype {values.dtype} cannot be converted to the "
                f"model's {root._dtype.name} without losing precision."
            )
        values = values.astype(root._dtype)
    root._buffer = values
    root._miniml_zero_start = False


def write_params(model: MiniMLModel, params: dict[str, Any], where: str) -> None:
    """Write some of ``model``'s parameters, by dotted name, into its root's buffer."""
    known = model.params
    root = model.root
    host = np.array(root._buffer)
    for name, value in params.items():
        if name not in known:
            raise MiniMLError(
                f"{where}: no parameter named {name!r}; the model's parameters are {list(known)}."
            )
        param = known[name]
        array = jnp.asarray(value)
        if array.shape != param.shape:
            raise MiniMLError(
                f"{where}: parameter {name!r} has shape {param.shape}, got a value of "
                f"shape {array.shape}."
            )
        if not jnp.can_cast(array.dtype, param.dtype, casting="same_kind"):
            raise MiniMLError(
                f"{where}: parameter {name!r} is {param.dtype.name}, got a value of "
                f"dtype {array.dtype}."
            )
        host[param.offset : param.offset + param.size] = np.asarray(array).reshape(-1)
    root._buffer = to_device(host)
    root._miniml_zero_start = False
