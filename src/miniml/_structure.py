"""How a `MiniMLModel` finds its parameters and child models.

``super().__init__()`` walks the attributes the subclass's ``__init__`` assigned, in
assignment order, and turns them into the model's layout: the dotted name and
`MiniMLParam` of every parameter, its own and its children's, in buffer order. The
functions here take that walk apart: discovery, the checks a layout must pass, and
the adoption of child models (with the values of children bound before adoption).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from jax import Array as JXArray

from miniml.errors import MiniMLError
from miniml.param import MiniMLParam, MiniMLParamList, default_dtype

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = [
    "adopt_children",
    "check_unique",
    "clone_args",
    "common_dtype",
    "discover_members",
    "flat_layout",
]


def discover_members(model: MiniMLModel, where: str) -> list[tuple[str, MiniMLParam | MiniMLModel]]:
    """Parameters and child models in attribute-assignment order."""
    # miniml.model imports this module, so its classes are only there by call time.
    from miniml.model import MiniMLModel, MiniMLModelList

    member_types = (MiniMLParam, MiniMLModel, MiniMLParamList, MiniMLModelList)
    members: list[tuple[str, MiniMLParam | MiniMLModel]] = []
    for name, value in list(vars(model).items()):
        if name.startswith("_miniml_"):
            continue
        if isinstance(value, MiniMLParam | MiniMLModel):
            members.append((name, value))
        elif isinstance(value, MiniMLParamList):
            members.extend((f"{name}.{i}", p) for i, p in enumerate(value))
        elif isinstance(value, MiniMLModelList):
            members.extend((f"{name}.{i}", m) for i, m in enumerate(value))
        elif _holds_members(value, member_types):
            raise MiniMLError(
                f"{where}: attribute {name!r} is a plain {type(value).__name__} that "
                "holds MiniMLParam or MiniMLModel objects; MiniML would not see them. "
                "Wrap parameters in MiniMLParamList([...]) and models in "
                "MiniMLModelList([...])."
            )
    return members


def _holds_members(value: Any, member_types: tuple[type, ...], depth: int = 0) -> bool:
    if depth > 3:
        return False
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(
            isinstance(v, member_types) or _holds_members(v, member_types, depth + 1) for v in value
        )
    return False


def flat_layout(
    members: list[tuple[str, MiniMLParam | MiniMLModel]],
) -> list[tuple[str, MiniMLParam]]:
    """Every parameter by dotted name, a child's in its place among the members."""
    layout: list[tuple[str, MiniMLParam]] = []
    for name, member in members:
        if isinstance(member, MiniMLParam):
            layout.append((name, member))
        else:
            layout.extend((f"{name}.{sub}", p) for sub, p in member._layout)
    return layout


def check_unique(layout: list[tuple[str, MiniMLParam]], where: str) -> None:
    seen: dict[int, str] = {}
    for name, param in layout:
        if id(param) in seen:
            raise MiniMLError(
                f"{where}: the same MiniMLParam object appears as {seen[id(param)]!r} "
                f"and {name!r}. Each parameter (and each child model) may appear once "
                "in a model; create separate objects to have separate parameters."
            )
        seen[id(param)] = name


def common_dtype(layout: list[tuple[str, MiniMLParam]], where: str) -> np.dtype:
    dtypes = {p.dtype for _, p in layout}
    if len(dtypes) > 1:
        listing = ", ".join(f"{n}: {p.dtype.name}" for n, p in layout)
        raise MiniMLError(
            f"{where}: all parameters of a model must share one dtype, found {listing}."
        )
    return dtypes.pop() if dtypes else default_dtype()


def adopt_children(parent: MiniMLModel, where: str) -> list[tuple[int, JXArray]]:
    """Make ``parent`` the parent of its children; return their values to keep.

    A child bound before it was put into ``parent`` gives up its buffer (and the ones
    its own children gave it) as ``(offset in parent's buffer, values)`` pairs, which
    ``bind`` copies into the new buffer.
    """
    offset_of = {id(p): p.offset for _, p in parent._layout}
    pending: list[tuple[int, JXArray]] = []
    for name, child in parent._children:
        if child._miniml_parent is not None and child._miniml_parent is not parent:
            raise MiniMLError(
                f"{where}: child model {name!r} ({type(child).__name__}) already belongs "
                f"to a {type(child._miniml_parent).__name__}. A model can be part of only one "
                "parent; build a new one for each place it is used."
            )
        child._miniml_parent = parent
        if "_buffer" in vars(child) and child._layout:
            start = offset_of[id(child._layout[0][1])]
            pending.append((start, child._buffer))
            del child._buffer
        pending.extend(
            (offset_of[id(child._layout[0][1])] + s, b)
            for s, b in child.__dict__.pop("_pending_child_buffers", [])
        )
    return pending


def clone_args(value: Any) -> Any:
    """Constructor arguments with every model replaced by a fresh clone."""
    from miniml.model import MiniMLModel, MiniMLModelList

    if isinstance(value, MiniMLModel):
        return value.clone()
    if isinstance(value, MiniMLModelList):
        return MiniMLModelList([m.clone() for m in value])
    if isinstance(value, list):
        return [clone_args(v) for v in value]
    if isinstance(value, tuple):
        return tuple(clone_args(v) for v in value)
    if isinstance(value, dict):
        return {k: clone_args(v) for k, v in value.items()}
    return value
