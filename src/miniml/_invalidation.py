"""When assigning an attribute of a built model must drop its compiled functions.

Compiled functions hold the attributes they read while tracing (a scale, a mean set by
``_pre_fit``, the loss) as constants, so changing one must drop them; storing the same
value again must not, or every fit would recompile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["invalidates_compiled"]

_BOOKKEEPING = frozenset({"_buffer", "_compiled", "_pending_child_buffers"})
"""Attributes MiniML itself sets on a model after construction; compiled code never
reads them as constants (the buffer is an argument)."""

_MISSING = object()
_COMPARED_ELEMENTS = 1_000_000
"""Arrays up to this size are compared by value when reassigned (a ``_pre_fit`` that
stores the same mean again keeps the compiled functions); larger ones count as changed."""


def invalidates_compiled(attributes: Mapping[str, Any], name: str, value: Any) -> bool:
    """Whether setting ``name`` to ``value`` may change what compiled code saw.

    ``attributes`` are the model's ``vars`` before the assignment.
    """
    return (
        name not in _BOOKKEEPING
        and not name.startswith("_miniml_")
        and not _same_value(attributes.get(name, _MISSING), value)
    )


def _same_value(old: Any, new: Any) -> bool:
    """Whether assigning ``new`` over ``old`` leaves what compiled code saw unchanged."""
    if old is new:
        return True
    if old is _MISSING:
        return False
    arrays = (np.ndarray, jax.Array, np.generic)
    try:
        if isinstance(old, arrays) or isinstance(new, arrays):
            if not (isinstance(old, arrays) and isinstance(new, arrays)):
                return False
            if old.shape != new.shape or old.dtype != new.dtype or old.size > _COMPARED_ELEMENTS:
                return False
            return bool(np.array_equal(np.asarray(old), np.asarray(new)))
        return type(old) is type(new) and bool(old == new)
    except Exception:  # no usable == (or a device array the host cannot read): changed
        return False
