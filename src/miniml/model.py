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

import jax.numpy as jnp
import numpy as np
from jax import Array as JXArray

from miniml._buffer import allocate, draw_values, replace_buffer, write_params
from miniml._invalidation import invalidates_compiled
from miniml._structure import (
    adopt_children,
    check_unique,
    clone_args,
    common_dtype,
    discover_members,
    flat_layout,
)
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
        members = discover_members(self, where)
        self._children = [(n, m) for n, m in members if isinstance(m, MiniMLModel)]
        layout = flat_layout(members)
        check_unique(layout, where)
        self._layout = layout
        self._dtype = common_dtype(layout, where)
        self._size = sum(p.size for _, p in layout)
        offset = 0
        for _, param in layout:
            param._offset, param._root = offset, self
            offset += param.size
        self._pending_child_buffers = adopt_children(self, where)
        self._compiled: dict[Any, Any] = {}
        self._miniml_initialized = True

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
        if getattr(self, "_miniml_initialized", False) and invalidates_compiled(
            vars(self), name, value
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
        if not root.bound:
            allocate(root)

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
        draw_values(self, seed, f"{type(self).__name__}.randomize")

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
        replace_buffer(self.root, buffer, f"{type(self).__name__}.set_buffer")

    def get_params(self) -> dict[str, JXArray]:
        """Copies of all parameter values by dotted name."""
        host = np.asarray(self.get_buffer(copy=False))
        return {
            name: jnp.asarray(host[p.offset : p.offset + p.size].reshape(p.shape))
            for name, p in self._layout
        }

    def set_params(self, params: dict[str, Any]) -> None:
        """Set some parameters by dotted name; shapes must match exactly."""
        self._require_bound("set_params")
        write_params(self, params, f"{type(self).__name__}.set_params")

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
        copy = type(self)(*clone_args(args), **clone_args(kwargs))
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
