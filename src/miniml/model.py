"""`MiniMLModel`: a model declared as a Python class, fitted and used like an estimator.

Parameter layout
----------------
A model's parameters and child models are discovered, when ``super().__init__()``
runs, from the attributes set in ``__init__``, **in the order they were assigned**
(depth first into children and containers). That order defines the flat buffer:
renaming an attribute never moves a parameter. Parameter names are dotted attribute
paths: ``"W"``, ``"encoder.W"``, ``"layers.2.b"``. Saved files store parameters by
name, so loading checks names and shapes, not just the total size.
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml.data import to_device
from miniml.errors import MiniMLError
from miniml.kernel import (
    PredictKernelOutput,
    PredictMode,
    split_kernel_output,
    wrap_short_kernel,
)
from miniml.loss import LossFunction, squared_error_loss
from miniml.param import MiniMLParam, MiniMLParamList

if TYPE_CHECKING:
    from miniml.optim.base import FitResult, MiniMLOptimizer

__all__ = [
    "MiniMLModel",
    "MiniMLModelList",
    "PredictKernelOutput",
    "PredictMode",
    "split_kernel_output",
]


_BOOKKEEPING = frozenset({"_buffer", "_compiled", "_pending_child_buffers"})
"""Attributes MiniML itself sets on a model after construction; compiled code never
reads them as constants (the buffer is an argument)."""

_MISSING = object()
_COMPARED_ELEMENTS = 1_000_000
"""Arrays up to this size are compared by value when reassigned (a ``_pre_fit`` that
stores the same mean again keeps the compiled functions); larger ones count as changed."""


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


class MiniMLModel(ABC):
    """Base class of every MiniML model.

    Subclass it, declare `MiniMLParam` attributes and child models in ``__init__``,
    call ``super().__init__(loss=...)`` **last**, and implement
    ``_predict_kernel(self, X, buffer, rng_key=None, mode=PredictMode.INFERENCE)``
    (the short form ``_predict_kernel(self, X, buffer)`` works too). Read parameters
    with ``self.W(buffer)`` and call children as
    ``self.child._predict_kernel(X, buffer, rng_key=..., mode=mode)``.

    Args:
        loss: the data loss ``loss(y_true, y_pred) -> scalar``; defaults to
            `miniml.loss.squared_error_loss`. ``None`` declares a model without a loss
            (a layer meant to be used inside others); fitting it raises an error.
    """

    _size: int
    _dtype: np.dtype
    _layout: list[tuple[str, MiniMLParam]]
    _children: list[tuple[str, MiniMLModel]]
    _buffer: JXArray  # only on a root model, once bound
    _miniml_parent: MiniMLModel | None
    _miniml_init_args: tuple[tuple[Any, ...], dict[str, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        instance = super().__new__(cls)
        # The constructor arguments let `load` rebuild the model from a saved file.
        object.__setattr__(instance, "_miniml_init_args", (args, dict(kwargs)))
        object.__setattr__(instance, "_miniml_initialized", False)
        object.__setattr__(instance, "_miniml_parent", None)
        return instance

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kernel = cls.__dict__.get("_predict_kernel")
        if kernel is not None and not getattr(kernel, "__isabstractmethod__", False):
            cls._predict_kernel = wrap_short_kernel(kernel)  # type: ignore[method-assign]

    def __init__(self, loss: LossFunction | None = squared_error_loss) -> None:
        where = f"{type(self).__name__}.__init__"
        if loss is not None and not callable(loss):
            raise MiniMLError(
                f"{where}: loss must be a callable loss(y_true, y_pred) -> scalar or None, "
                f"got {loss!r}."
            )
        self._loss_f = loss
        members = self._discover_members(where)
        self._children = [(n, m) for n, m in members if isinstance(m, MiniMLModel)]
        layout: list[tuple[str, MiniMLParam]] = []
        for name, member in members:
            if isinstance(member, MiniMLParam):
                layout.append((name, member))
            else:
                layout.extend((f"{name}.{sub}", p) for sub, p in member._layout)
        self._check_unique(layout, where)
        self._layout = layout
        self._dtype = self._common_dtype(where)
        self._size = sum(p.size for _, p in layout)
        offset = 0
        for _, param in layout:
            param._offset, param._root = offset, self
            offset += param.size
        self._adopt_children(where)
        self._compiled: dict[Any, Any] = {}
        self._miniml_initialized = True

    # ----------------------------------------------------------------- structure
    def _discover_members(self, where: str) -> list[tuple[str, MiniMLParam | MiniMLModel]]:
        """Parameters and child models in attribute-assignment order."""
        members: list[tuple[str, MiniMLParam | MiniMLModel]] = []
        for name, value in list(vars(self).items()):
            if name.startswith("_miniml_"):
                continue
            if isinstance(value, MiniMLParam | MiniMLModel):
                members.append((name, value))
            elif isinstance(value, MiniMLParamList):
                members.extend((f"{name}.{i}", p) for i, p in enumerate(value))
            elif isinstance(value, MiniMLModelList):
                members.extend((f"{name}.{i}", m) for i, m in enumerate(value))
            elif _holds_members(value):
                raise MiniMLError(
                    f"{where}: attribute {name!r} is a plain {type(value).__name__} that "
                    "holds MiniMLParam or MiniMLModel objects; MiniML would not see them. "
                    "Wrap parameters in MiniMLParamList([...]) and models in "
                    "MiniMLModelList([...])."
                )
        return members

    @staticmethod
    def _check_unique(layout: list[tuple[str, MiniMLParam]], where: str) -> None:
        seen: dict[int, str] = {}
        for name, param in layout:
            if id(param) in seen:
                raise MiniMLError(
                    f"{where}: the same MiniMLParam object appears as {seen[id(param)]!r} "
                    f"and {name!r}. Each parameter (and each child model) may appear once "
                    "in a model; create separate objects to have separate parameters."
                )
            seen[id(param)] = name

    def _common_dtype(self, where: str) -> np.dtype:
        dtypes = {p.dtype for _, p in self._layout}
        if len(dtypes) > 1:
            listing = ", ".join(f"{n}: {p.dtype.name}" for n, p in self._layout)
            raise MiniMLError(
                f"{where}: all parameters of a model must share one dtype, found {listing}."
            )
        from miniml.param import default_dtype

        return dtypes.pop() if dtypes else default_dtype()

    def _adopt_children(self, where: str) -> None:
        offset_of = {id(p): p.offset for _, p in self._layout}
        self._pending_child_buffers: list[tuple[int, JXArray]] = []
        for name, child in self._children:
            if child._miniml_parent is not None and child._miniml_parent is not self:
                raise MiniMLError(
                    f"{where}: child model {name!r} ({type(child).__name__}) already belongs "
                    f"to a {type(child._miniml_parent).__name__}. A model can be part of only one "
                    "parent; build a new one for each place it is used."
                )
            child._miniml_parent = self
            if "_buffer" in vars(child) and child._layout:
                start = offset_of[id(child._layout[0][1])]
                self._pending_child_buffers.append((start, child._buffer))
                del child._buffer
            self._pending_child_buffers.extend(
                (offset_of[id(child._layout[0][1])] + s, b)
                for s, b in child.__dict__.pop("_pending_child_buffers", [])
            )

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            getattr(self, "_miniml_initialized", False)
            and not name.startswith("_miniml_")
            and isinstance(value, MiniMLParam | MiniMLModel | MiniMLParamList | MiniMLModelList)
        ):
            raise MiniMLError(
                f"{type(self).__name__}: cannot add {type(value).__name__} {name!r} after "
                "super().__init__() ran; declare every parameter and child model before "
                "calling super().__init__() at the end of __init__."
            )
        if (
            getattr(self, "_miniml_initialized", False)
            and name not in _BOOKKEEPING
            and not name.startswith("_miniml_")
            and not _same_value(vars(self).get(name, _MISSING), value)
        ):
            self._forget_compiled()
        object.__setattr__(self, name, value)

    def _forget_compiled(self) -> None:
        """Drop the compiled functions of this model and of the models containing it.

        They were traced with the attributes' values of the time (a scale, a mean set
        by ``_pre_fit``, the loss), which the compiled code holds as constants.
        """
        model: MiniMLModel | None = self
        while model is not None:
            if "_compiled" in vars(model):
                object.__setattr__(model, "_compiled", {})
            model = model._miniml_parent

    def _require_initialized(self, where: str) -> None:
        if not vars(self).get("_miniml_initialized", False):
            raise MiniMLError(
                f"{type(self).__name__}.{where}: the model was not initialized; call "
                "super().__init__() at the end of your model's __init__."
            )

    @property
    def root(self) -> MiniMLModel:
        """The outermost model this one is part of (itself if it has no parent)."""
        model = self
        while model._miniml_parent is not None:
            model = model._miniml_parent
        return model

    @property
    def size(self) -> int:
        """Total number of scalar parameters."""
        return self._size

    @property
    def dtype(self) -> np.dtype:
        """The parameters' dtype."""
        return self._dtype

    @property
    def dtype_name(self) -> str:
        """The parameters' dtype name."""
        return self._dtype.name

    @property
    def param_names(self) -> list[str]:
        """Dotted names of all parameters, in buffer order."""
        self._require_initialized("param_names")
        return [name for name, _ in self._layout]

    @property
    def params(self) -> dict[str, MiniMLParam]:
        """The `MiniMLParam` objects by dotted name, in buffer order."""
        return dict(self._layout)

    def named_children(self) -> Iterator[tuple[str, MiniMLModel]]:
        """Direct child models with their attribute names."""
        return iter(self._children)

    # ------------------------------------------------------------------- buffer
    @property
    def bound(self) -> bool:
        """Whether the model (its root) holds a parameter buffer."""
        return "_buffer" in vars(self.root)

    def bind(self) -> None:
        """Allocate the flat parameter buffer (zeros) if it does not exist yet.

        Values of children that were bound before they were put into this model are
        kept.
        """
        self._require_initialized("bind")
        root = self.root
        if root.bound:
            return
        buffer = np.zeros(root._size, root._dtype)  # host-built: no eager compiles
        for start, values in root._pending_child_buffers:
            buffer[start : start + values.shape[0]] = np.asarray(values)
        # True until values are drawn or set: fit warns if zeros cannot train.
        root._miniml_zero_start = not root._pending_child_buffers
        root._pending_child_buffers = []
        root._buffer = to_device(buffer)

    def unbind(self) -> None:
        """Drop the parameter buffer."""
        root = self.root
        if not root.bound:
            raise MiniMLError(f"{type(self).__name__}.unbind: the model is not bound.")
        del root._buffer

    def randomize(self, seed: int | None = None) -> None:
        """Bind if needed and draw new parameter values.

        A parameter without ``init`` gets standard normal values times its
        ``rnd_scale``, from numpy's generator seeded with ``(seed, position)``; one with
        ``init`` gets ``init(key, shape, dtype)`` with a JAX key folded from ``seed`` and
        its position. The same seed always gives the same values, on every machine.
        ``seed=None`` draws fresh entropy.
        """
        self._require_initialized("randomize")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        elif isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise MiniMLError(
                f"{type(self).__name__}.randomize: seed must be a non-negative int or None, "
                f"got {seed!r}."
            )
        root = self.root
        root.bind()
        own_ids = {id(p) for _, p in self._layout}
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

    def _require_bound(self, where: str) -> None:
        self._require_initialized(where)
        if not self.bound and self.root._size == 0:
            self.root.bind()  # nothing to draw: a parameter-free model is always ready
        if not self.bound:
            raise MiniMLError(
                f"{type(self).__name__}.{where}: the model has no parameter values yet; "
                "call model.randomize(seed=...) (or model.bind() for zeros) first."
            )

    def get_buffer(self, copy: bool = True) -> JXArray:
        """The flat parameter buffer of the root model (a copy unless ``copy=False``)."""
        self._require_bound("get_buffer")
        buffer = self.root._buffer
        return jnp.array(buffer, copy=True) if copy else buffer

    def set_buffer(self, buffer: Any) -> None:
        """Replace the whole flat parameter buffer (same size and dtype)."""
        self._require_initialized("set_buffer")
        root = self.root
        values = to_device(buffer)
        where = f"{type(self).__name__}.set_buffer"
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

    def get_params(self) -> dict[str, JXArray]:
        """Copies of all parameter values by dotted name."""
        host = np.asarray(self.get_buffer(copy=False))
        return {
            name: jnp.asarray(host[p.offset : p.offset + p.size].reshape(p.shape))
            for name, p in self._layout
        }

    def set_params(self, params: dict[str, Any]) -> None:
        """Set some parameters by dotted name; shapes must match exactly."""
        where = f"{type(self).__name__}.set_params"
        self._require_bound("set_params")
        known = self.params
        root = self.root
        host = np.array(root._buffer)
        for name, value in params.items():
            if name not in known:
                raise MiniMLError(
                    f"{where}: no parameter named {name!r}; the model's parameters are "
                    f"{list(known)}."
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

    # ------------------------------------------------------------ regularization
    def get_regularization_scales(self) -> dict[str, float]:
        """``reg_scale`` of every parameter that has a regularizer."""
        return {n: p.reg_scale for n, p in self._layout if p.reg_loss is not None}

    def set_regularization_scale(self, pattern: str, value: float) -> list[str]:
        """Set ``reg_scale`` of the parameters whose names match a glob pattern.

        Returns the names it changed; a pattern that matches nothing is an error.
        """
        matched = [n for n, _ in self._layout if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise MiniMLError(
                f"{type(self).__name__}.set_regularization_scale: pattern {pattern!r} "
                f"matches no parameter; the parameters are {self.param_names}."
            )
        for name in matched:
            self.params[name].reg_scale = value
        return matched

    def _reg_scales(self) -> np.ndarray:
        """Per-parameter scales in layout order, passed to compiled code as data."""
        return np.array([p.reg_scale for _, p in self._layout], dtype=self._dtype)

    def _regularization(self, buffer: JXArray, scales: JXArray) -> JXArray:
        total = jnp.zeros((), self._dtype)
        for index, (_, param) in enumerate(self._layout):
            if param.reg_loss is not None:
                total = total + scales[index] * param.reg_loss(param(buffer))
        return total

    def regularization_loss(self, buffer: JXArray | None = None) -> JXArray:
        r"""The penalty :math:`\sum_i s_i \mathcal{R}_i(w_i)` (without ``reg_lambda``)."""
        if buffer is None:
            buffer = self.get_buffer(copy=False)
        return self._regularization(buffer, jnp.asarray(self._reg_scales()))

    # ------------------------------------------------------------------- losses
    @property
    def loss_function(self) -> LossFunction | None:
        """The data loss callable, or None for a model without one."""
        return self._loss_f

    def loss(self, y_true: Any, y_pred: Any) -> JXArray:
        """The data loss ``loss(y_true, y_pred)`` (no regularization; note the order)."""
        if self._loss_f is None:
            raise MiniMLError(
                f"{type(self).__name__}.loss: this model was declared with loss=None. Pass "
                "a loss to super().__init__(loss=...) to compute or fit one."
            )
        return self._loss_f(jnp.asarray(y_true), jnp.asarray(y_pred))

    def total_loss(
        self,
        y_true: Any,
        y_pred: Any,
        reg_lambda: float = 1.0,
        buffer: JXArray | None = None,
        activity_loss: Any = None,
        active_reg_lambda: float = 1.0,
    ) -> JXArray:
        r"""``loss + reg_lambda * regularization_loss (+ active_reg_lambda * activity)``."""
        total = self.loss(y_true, y_pred) + reg_lambda * self.regularization_loss(buffer)
        if activity_loss is not None:
            total = total + active_reg_lambda * activity_loss
        return total

    # ------------------------------------------------------------- forward pass
    @abstractmethod
    def _predict_kernel(
        self,
        X: Any,
        buffer: JXArray,
        rng_key: JXArray | None = None,
        mode: PredictMode = PredictMode.INFERENCE,
    ) -> Any:
        """The forward pass: predictions for ``X`` with parameters read from ``buffer``."""

    def predict(self, X: Any, **kwargs: Any) -> JXArray:
        """Predictions for ``X`` in inference mode (compiled once per input shape).

        Array keyword arguments are traced; other keyword arguments are static and
        must be hashable.
        """
        from miniml.predict import predict_model

        return predict_model(self, X, kwargs)

    def __call__(self, X: Any, **kwargs: Any) -> JXArray:
        """Same as `predict`."""
        return self.predict(X, **kwargs)

    # ------------------------------------------------------------------ fitting
    def _pre_fit(self, X: Any, y: Any) -> set[str]:
        """Set some parameters from the data before fitting; return their names.

        The returned parameters stay fixed during the optimization. Override it;
        the default fixes nothing.
        """
        return set()

    def fit(
        self,
        X: Any,
        y: Any,
        reg_lambda: float = 1.0,
        optimizer: MiniMLOptimizer | None = None,
        **options: Any,
    ) -> FitResult:
        """Fit the parameters by minimizing the total loss on ``(X, y)``.

        Args:
            X: inputs: an array, or a tuple/dict of arrays with a common first axis.
            y: targets with the same number of samples.
            reg_lambda: the global regularization strength :math:`\\lambda`.
            optimizer: defaults to ``ScipyOptimizer("L-BFGS-B")``.
            **options: see `miniml.fitting.fit_model` (``active_reg_lambda``,
                ``predict_kwargs``, ``seed``, ...).

        Returns:
            A `FitResult`; the model holds the fitted parameters.
        """
        from miniml.fitting import FIT_OPTIONS, fit_model

        unknown = sorted(set(options) - FIT_OPTIONS)
        if unknown:
            raise MiniMLError(
                f"{type(self).__name__}.fit: unexpected keyword argument(s) {unknown}; the "
                f"options are {sorted(FIT_OPTIONS)}. Optimizer settings such as learning "
                "rates belong to the optimizer object."
            )
        return fit_model(self, X, y, reg_lambda=reg_lambda, optimizer=optimizer, **options)

    # -------------------------------------------------------------- persistence
    def save(self, path: str | Path, state_only: bool = False) -> None:
        """Save the model to a ``.npz`` file (safe format, atomic write)."""
        from miniml.io import save_model

        save_model(self, path, state_only=state_only)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a model saved with `save` (same class) and load its parameters."""
        from miniml.io import load_model

        return load_model(cls, path)

    def clone(self, with_params: bool = False) -> Self:
        """A new model built with the same constructor arguments.

        Child models passed to the constructor are cloned too, so the copy shares no
        parameter with the original. With ``with_params=True`` the copy gets a copy of
        this model's parameter values; otherwise it is unbound.
        """
        args, kwargs = self._miniml_init_args
        copy = type(self)(*_clone_args(args), **_clone_args(kwargs))
        if with_params:
            copy.bind()
            copy.set_buffer(self.get_buffer(copy=True))
        return copy

    def load_state(self, path: str | Path) -> None:
        """Load parameters saved by `save` into this (already built) model."""
        from miniml.io import load_state

        load_state(self, path)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle/copy state: everything but the compiled functions.

        Compiled functions close over this instance (its kernel and static attributes),
        so a copy must not reuse them; it compiles its own on first use.
        """
        state = dict(vars(self))
        if "_compiled" in state:
            state["_compiled"] = {}
        return state

    def __repr__(self) -> str:
        if not vars(self).get("_miniml_initialized", False):
            return f"{type(self).__name__}(<not initialized>)"
        return f"{type(self).__name__}(n_params={self._size}, dtype={self._dtype.name})"

    # ------------------------------------------------- PyTorch-style training loop
    def parameters(self) -> list[MiniMLParam]:
        """The parameters in buffer order, for ``SGD(model.parameters(), lr=...)``.

        See `miniml.optim.torch_style` for the ``backward`` / ``step`` / ``zero_grad`` loop.
        """
        from miniml.optim.torch_style import parameters

        return parameters(self)

    def backward(self, X: Any, y: Any, reg_lambda: float = 1.0) -> JXArray:
        """The objective on ``(X, y)``; adds its gradient to the stored one (as torch).

        The flexible-but-slower path; see `miniml.optim.torch_style`.
        """
        from miniml.optim.torch_style import backward

        return backward(self, X, y, reg_lambda)


class MiniMLModelList:
    """An ordered container of child models; elements are named ``<attr>.<index>``."""

    def __init__(self, models: Iterable[MiniMLModel]) -> None:
        items = list(models)
        for i, item in enumerate(items):
            if not isinstance(item, MiniMLModel):
                raise MiniMLError(
                    f"MiniMLModelList: element {i} is a {type(item).__name__}, expected a "
                    "MiniMLModel. Put parameters in a MiniMLParamList."
                )
        self._contents = items

    @property
    def contents(self) -> list[MiniMLModel]:
        """The models, in order."""
        return list(self._contents)

    def __getitem__(self, index: int) -> MiniMLModel:
        return self._contents[index]

    def __len__(self) -> int:
        return len(self._contents)

    def __iter__(self) -> Iterator[MiniMLModel]:
        return iter(self._contents)

    def __repr__(self) -> str:
        return f"MiniMLModelList({self._contents!r})"


_MEMBER_TYPES = (MiniMLParam, MiniMLModel, MiniMLParamList, MiniMLModelList)


def _holds_members(value: Any, depth: int = 0) -> bool:
    if depth > 3:
        return False
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(isinstance(v, _MEMBER_TYPES) or _holds_members(v, depth + 1) for v in value)
    return False


def _clone_args(value: Any) -> Any:
    """Constructor arguments with every model replaced by a fresh clone."""
    if isinstance(value, MiniMLModel):
        return value.clone()
    if isinstance(value, MiniMLModelList):
        return MiniMLModelList([m.clone() for m in value])
    if isinstance(value, list):
        return [_clone_args(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clone_args(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone_args(v) for k, v in value.items()}
    return value
