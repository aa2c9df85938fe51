"""`MiniMLParam`: the declaration of one parameter tensor of a model.

A parameter does not own memory. Its model lays all parameters out in one flat
buffer (exactly SciPy's ``x``); the parameter knows its offset and shape and reads
its value from whichever buffer it is given, which keeps the forward pass pure.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml._config import X64_ENV_VAR, x64_enabled
from miniml.errors import MiniMLError
from miniml.loss import RegLossFunction

if TYPE_CHECKING:
    from miniml.model import MiniMLModel

__all__ = [
    "MiniMLParam",
    "MiniMLParamList",
    "default_dtype",
    "resolve_dtype",
    "split_parameter_views",
]

InitFunction = Callable[[JXArray, tuple[int, ...], Any], JXArray]

_SUPPORTED_DTYPES = ("float32", "float64")


def default_dtype() -> np.dtype:
    """float64 while JAX's 64-bit mode is on (the default after ``import miniml``)."""
    return np.dtype(np.float64) if x64_enabled() else np.dtype(np.float32)


def resolve_dtype(dtype: Any, where: str) -> np.dtype:
    """Turn a dtype-like into a supported numpy dtype, or raise a clear error."""
    if dtype is None:
        return default_dtype()
    try:
        resolved = np.dtype(dtype)
    except TypeError as err:
        raise MiniMLError(f"{where}: dtype must be float32 or float64, got {dtype!r}.") from err
    if resolved.name not in _SUPPORTED_DTYPES:
        raise MiniMLError(
            f"{where}: parameters must be float32 or float64, got {resolved.name}. "
            "SciPy and the optimizers work on real floating-point parameters."
        )
    if resolved == np.float64 and not x64_enabled():
        raise MiniMLError(
            f"{where}: a float64 parameter needs JAX's 64-bit mode, which is off "
            f"(the environment variable {X64_ENV_VAR} is set, or jax_enable_x64 was "
            "turned off). Unset it, or declare the parameter with dtype=jnp.float32; "
            "MiniML never downcasts silently."
        )
    return resolved


def _check_scale(value: Any, name: str) -> float:
    try:
        scale = float(value)
    except (TypeError, ValueError) as err:
        raise MiniMLError(f"MiniMLParam: {name} must be a real number, got {value!r}.") from err
    if not math.isfinite(scale) or scale < 0:
        raise MiniMLError(f"MiniMLParam: {name} must be finite and non-negative, got {value!r}.")
    return scale


class MiniMLParam:
    """A parameter tensor declared in a model's ``__init__``.

    Args:
        shape: the tensor's shape (an int is read as a 1-tuple).
        dtype: float32 or float64; defaults to float64 (float32 when JAX's 64-bit mode
            is off). All parameters of one model share a dtype.
        reg_loss: a regularizer ``reg(w) -> scalar`` (e.g. ``LNormRegularization(2)``)
            or None.
        reg_scale: a factor on this parameter's penalty, on top of ``reg_lambda``.
        rnd_scale: standard deviation of the normal values `MiniMLModel.randomize`
            draws for this parameter.
        init: optional ``init(key, shape, dtype) -> array`` that `randomize` uses
            instead of the scaled normal draw (e.g. ones for a layer-norm gain).

    Calling ``param(buffer)`` returns its value from a flat buffer; ``param.value``
    reads the bound model's buffer.
    """

    def __init__(
        self,
        shape: int | Iterable[int],
        dtype: Any = None,
        reg_loss: RegLossFunction | None = None,
        reg_scale: float = 1.0,
        rnd_scale: float = 1.0,
        init: InitFunction | None = None,
    ) -> None:
        dims = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
        if not all(isinstance(d, int | np.integer) and d >= 0 for d in dims):
            raise MiniMLError(
                f"MiniMLParam: shape must be a tuple of non-negative ints, got {shape!r}."
            )
        if reg_loss is not None and not callable(reg_loss):
            raise MiniMLError(
                f"MiniMLParam: reg_loss must be a callable reg(w) -> scalar or None, "
                f"got {reg_loss!r}."
            )
        if init is not None and not callable(init):
            raise MiniMLError(
                f"MiniMLParam: init must be a callable init(key, shape, dtype) or None, "
                f"got {init!r}."
            )
        self._shape = tuple(int(d) for d in dims)
        self._dtype = resolve_dtype(dtype, "MiniMLParam")
        self._size = math.prod(self._shape)
        self._reg_loss = reg_loss
        self._reg_scale = _check_scale(reg_scale, "reg_scale")
        self._rnd_scale = _check_scale(rnd_scale, "rnd_scale")
        self._init = init
        self._offset: int | None = None
        self._root: MiniMLModel | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape."""
        return self._shape

    @property
    def size(self) -> int:
        """The number of scalars in the tensor."""
        return self._size

    @property
    def dtype(self) -> np.dtype:
        """The tensor's dtype (float32 or float64)."""
        return self._dtype

    @property
    def dtype_name(self) -> str:
        """The dtype's name, e.g. ``"float64"``."""
        return self._dtype.name

    @property
    def reg_loss(self) -> RegLossFunction | None:
        """The regularizer, or None."""
        return self._reg_loss

    @property
    def reg_scale(self) -> float:
        """Factor on this parameter's penalty (finite, non-negative)."""
        return self._reg_scale

    @reg_scale.setter
    def reg_scale(self, value: float) -> None:
        self._reg_scale = _check_scale(value, "reg_scale")

    @property
    def rnd_scale(self) -> float:
        """Standard deviation used by `MiniMLModel.randomize` (finite, non-negative)."""
        return self._rnd_scale

    @rnd_scale.setter
    def rnd_scale(self, value: float) -> None:
        self._rnd_scale = _check_scale(value, "rnd_scale")

    @property
    def offset(self) -> int:
        """Index of the parameter's first scalar in its root model's buffer."""
        if self._offset is None:
            raise MiniMLError(
                "MiniMLParam.offset: this parameter belongs to no model yet; declare it "
                "in a model's __init__ before calling super().__init__()."
            )
        return self._offset

    @property
    def bound(self) -> bool:
        """Whether the parameter's model has a buffer."""
        return self._root is not None and self._root.bound

    def __call__(self, buffer: JXArray) -> JXArray:
        """Return this parameter's value, shaped, from the flat ``buffer``."""
        views = _SPLIT_VIEWS.get()
        if views is not None and buffer is views[0]:
            piece = views[1].get((self.offset, self._size))
            if piece is not None:
                return piece.reshape(self._shape)
        start = self.offset
        return buffer[start : start + self._size].reshape(self._shape)

    @property
    def value(self) -> JXArray:
        """The parameter's current value in its bound model."""
        if self._root is None or not self._root.bound:
            raise MiniMLError(
                "MiniMLParam.value: the parameter's model is not bound; call "
                "model.bind() or model.randomize() first."
            )
        return self(self._root.get_buffer(copy=False))

    def regularization_loss(self, buffer: JXArray | None = None) -> JXArray:
        """``reg_scale * reg_loss(value)`` read from ``buffer`` (default: bound one)."""
        if self._reg_loss is None:
            return jnp.zeros((), self._dtype)
        value = self.value if buffer is None else self(buffer)
        return self._reg_scale * self._reg_loss(value)

    def draw(self, key: JXArray) -> JXArray:
        """A random initial value: ``init`` if given, else normal times ``rnd_scale``."""
        if self._init is not None:
            drawn = jnp.asarray(self._init(key, self._shape, self._dtype), self._dtype)
            if drawn.shape != self._shape:
                raise MiniMLError(
                    f"MiniMLParam.draw: init returned shape {drawn.shape}, expected {self._shape}."
                )
            return drawn
        return self._rnd_scale * jax.random.normal(key, self._shape, self._dtype)

    def __repr__(self) -> str:
        return f"MiniMLParam(shape={self._shape}, dtype={self._dtype.name})"


class MiniMLParamList:
    """An ordered container of parameters; elements are named ``<attr>.<index>``."""

    def __init__(self, contents: Iterable[MiniMLParam]) -> None:
        items = list(contents)
        for i, item in enumerate(items):
            if not isinstance(item, MiniMLParam):
                raise MiniMLError(
                    f"MiniMLParamList: element {i} is a {type(item).__name__}, expected "
                    "a MiniMLParam. Put models in a MiniMLModelList."
                )
        self._contents = items

    @property
    def contents(self) -> list[MiniMLParam]:
        """The parameters, in order."""
        return list(self._contents)

    def __getitem__(self, index: int) -> MiniMLParam:
        return self._contents[index]

    def __len__(self) -> int:
        return len(self._contents)

    def __iter__(self) -> Iterator[MiniMLParam]:
        return iter(self._contents)

    def __repr__(self) -> str:
        return f"MiniMLParamList({self._contents!r})"


_SPLIT_VIEWS: contextvars.ContextVar[tuple[Any, dict[tuple[int, int], Any]] | None] = (
    contextvars.ContextVar("miniml_split_parameter_views", default=None)
)


@contextlib.contextmanager
def split_parameter_views(buffer: JXArray, model: MiniMLModel) -> Iterator[None]:
    """Inside the block, ``model``'s parameters read from ``buffer`` take pieces of one
    `jnp.split` of it.

    Autodiff transposes one slice per parameter into a padded full-size gradient, and
    XLA's CPU backend sums those pads in a slow fused kernel (about 10 % of a small
    MLP's training step); the transpose of one split is a plain concatenation. Values
    are identical. Only reads of this very ``buffer`` object are served from the split
    (a kernel that computes a new buffer falls back to slicing). ``model`` is the root
    model, whose layout tiles the buffer in order of offset.
    """
    params = [param for _, param in model._layout]
    pieces = jnp.split(buffer, [p.offset for p in params][1:]) if params else []
    table = {(p.offset, p.size): piece for p, piece in zip(params, pieces, strict=True)}
    token = _SPLIT_VIEWS.set((buffer, table))
    try:
        yield
    finally:
        _SPLIT_VIEWS.reset(token)
