"""The PyTorch-style training loop: ``backward``, ``step()``, ``zero_grad()``.

The lecture's ``training_loop`` works with MiniML models and optimizers::

    opt = SGD(model.parameters(), lr=1e-5)
    for i in range(30):
        loss = model.backward(X, y)   # the objective on (X, y); stores its gradient
        opt.step()                    # one update of the optimizer's parameters
        opt.zero_grad()               # clear the stored gradient
        losses.append(loss.item())

This is the flexible-but-slower path: each call is one host round trip (and
``backward`` checks its data every call), so a step costs far more than a step of
``model.fit(X, y, optimizer=SGD(lr=...), epochs=..., batch_size=...)``, which runs a
whole epoch as one compiled `jax.lax.scan`. Use it when the loop itself must be yours.

Semantics, as in PyTorch:

* ``model.backward(X, y, reg_lambda)`` computes the fit's objective on exactly the
  data given (``loss + reg_lambda * penalty``, no mini-batch scaling), in training
  mode, and **adds** its gradient to the stored one. The k-th call on a model uses
  the random key ``fold_in(key(0), k)``.
* ``opt.step()`` updates only the optimizer's parameters (any subset of one model's
  parameters, e.g. ``[model.W]``). A step whose new parameters or optimizer state are
  not finite (e.g. Adam's second moment overflowing, which would freeze a parameter
  for good) is skipped with a `NonFiniteWarning`, as ``fit`` undoes such an epoch:
  non-finite values never reach the model or the optimizer state.
* ``opt.zero_grad()`` clears the stored gradient of the optimizer's parameters. A
  ``step()`` without a gradient for its parameters (no ``backward`` since their
  ``zero_grad``) raises, also when another optimizer's parameters still hold one;
  ``torch.optim`` leaves parameters whose gradient is None unchanged.
* The optimizer state (momentum, moments) lives in the optimizer object; changing a
  hyper-parameter attribute (``opt.lr = 1e-4``) takes effect at the next step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml.data import as_data, signature_of
from miniml.errors import MiniMLError, NonFiniteWarning
from miniml.objective import Hyper, objective_for
from miniml.param import MiniMLParam

if TYPE_CHECKING:
    from miniml.model import MiniMLModel
    from miniml.optim.base import TrainableSlice
    from miniml.optim.minibatch import UpdateProgram
    from miniml.optim.stochastic import StochasticOptimizer

__all__ = ["ManualLoop", "ParameterSet", "backward", "parameters", "stored_gradients"]

_GRAD = "_miniml_grad"
_CALLS = "_miniml_backward_calls"
_CLEARED = "_miniml_grad_cleared"
"""Names of the parameters whose stored gradient ``zero_grad`` cleared since the last
``backward`` (the stored gradient holds zeros there while other parameters keep theirs)."""


def parameters(model: MiniMLModel) -> list[MiniMLParam]:
    """The model's parameters (children's included) in buffer order, for an optimizer."""
    model._require_initialized("parameters")
    return [param for _, param in model._layout]


class ParameterSet:
    """The parameters one PyTorch-style optimizer updates: a subset of one root model."""

    def __init__(self, params: list[MiniMLParam]) -> None:
        self.params = params

    @classmethod
    def from_params(cls, params: Any, owner: str) -> ParameterSet:
        if isinstance(params, MiniMLParam):
            params = [params]
        if not isinstance(params, Iterable) or isinstance(params, str | bytes):
            raise MiniMLError(
                f"{owner}: params must be model.parameters() or a list of MiniMLParam, "
                f"got {params!r}."
            )
        items = list(params)
        if not items:
            raise MiniMLError(f"{owner}: params is empty; pass model.parameters().")
        for i, item in enumerate(items):
            if not isinstance(item, MiniMLParam):
                raise MiniMLError(
                    f"{owner}: params[{i}] is a {type(item).__name__}, expected a MiniMLParam; "
                    "pass model.parameters() or a list of a model's MiniMLParam attributes."
                )
            if item._root is None:
                raise MiniMLError(
                    f"{owner}: params[{i}] is not part of a model yet; create the model (its "
                    "__init__ must call super().__init__()) before the optimizer."
                )
        if len({id(p) for p in items}) != len(items):
            raise MiniMLError(f"{owner}: params lists the same parameter twice.")
        roots = {id(p._root.root) for p in items if p._root is not None}
        if len(roots) > 1:
            raise MiniMLError(
                f"{owner}: params belong to {len(roots)} different models; one optimizer "
                "updates the parameters of one model."
            )
        return cls(items)

    @property
    def root(self) -> MiniMLModel:
        return self.params[0]._root.root  # type: ignore[union-attr]

    def names(self) -> list[str]:
        by_id = {id(p): name for name, p in self.root._layout}
        return [by_id[id(p)] for p in self.params]

    def index(self) -> np.ndarray | None:
        """Buffer positions of the parameters (sorted), or None for the whole buffer."""
        root = self.root
        if len(self.params) == len(root._layout):
            return None
        chosen = {id(p) for p in self.params}
        return np.concatenate(
            [np.arange(p.offset, p.offset + p.size) for _, p in root._layout if id(p) in chosen]
        )

    def check_matches(self, layout: list[TrainableSlice], model: Any, owner: str) -> None:
        """In `fit`, the given params must be exactly the fit's trainable parameters of
        the fitted ``model`` (None when the caller does not know it)."""
        if model is not None and model is not self.root:
            raise MiniMLError(
                f"{owner}.fit: the optimizer was created with the params of a "
                f"{type(self.root).__name__} (id {id(self.root):#x}), but this fit trains a "
                f"{type(model).__name__} (id {id(model):#x}); create the optimizer from "
                "this model's parameters (model.parameters()), or without params."
            )
        mine, trainable = sorted(self.names()), sorted(s.name for s in layout)
        if mine != trainable:
            raise MiniMLError(
                f"{owner}.fit: the optimizer was created with params {mine}, but this fit "
                f"trains {trainable}. In fit, choose trainable parameters with _pre_fit or "
                "create the optimizer without params."
            )


def stored_gradients(model: MiniMLModel) -> dict[str, jax.Array] | None:
    """The gradient stored by ``backward`` per parameter name, or None after zero_grad."""
    root = model.root
    grad = vars(root).get(_GRAD)
    if grad is None:
        return None
    return {name: p(grad) for name, p in model._layout}


def backward(model: MiniMLModel, X: Any, y: Any, reg_lambda: float = 1.0) -> jax.Array:
    """The objective on ``(X, y)``; adds its gradient to the model's stored gradient."""
    where = f"{type(model).__name__}.backward"
    model._require_initialized("backward")
    if model.root is not model:
        raise MiniMLError(
            f"{where}: this model is part of a {type(model.root).__name__}; call backward on "
            "the outermost model."
        )
    if model.loss_function is None:
        raise MiniMLError(
            f"{where}: the model has no loss (it was declared with loss=None); pass one to "
            "super().__init__(loss=...)."
        )
    model._require_bound("backward")
    if isinstance(reg_lambda, bool) or not isinstance(reg_lambda, int | float | np.number):
        raise MiniMLError(f"{where}: reg_lambda must be a number >= 0, got {reg_lambda!r}.")
    if not math.isfinite(float(reg_lambda)) or reg_lambda < 0:
        raise MiniMLError(f"{where}: reg_lambda must be finite and >= 0, got {reg_lambda!r}.")
    dtype = model.dtype
    X_data, n_x = as_data(X, "X", where, dtype)
    y_data, n_y = as_data(y, "y", where, dtype)
    if n_x != n_y:
        raise MiniMLError(
            f"{where}: X has {n_x} samples but y has {n_y}; X and y must have the same "
            "first dimension."
        )
    objective = objective_for(model, frozenset(), ())
    checked = ("backward_checked", signature_of(X_data), signature_of(y_data))
    if checked not in objective.cache:
        from miniml._fit_checks import check_prediction_shape

        check_prediction_shape(model, X_data, y_data, (), where)
        objective.cache[checked] = True
    calls = vars(model).get(_CALLS, 0)
    setattr(model, _CALLS, calls + 1)
    # numpy values: the jitted objective takes them as they are, without a device round trip.
    values: dict[str, Any] = {
        "reg_lambda": np.asarray(reg_lambda, dtype),
        "active_reg_lambda": np.asarray(1.0, dtype),
        "reg_scales": model._reg_scales(),
        "data_scale": np.asarray(1.0, dtype),
    }
    hyper = Hyper(rng_key=jax.random.fold_in(jax.random.key(0), calls), **values)
    loss, grad = objective.value_and_grad(
        model.get_buffer(copy=False), None, (X_data, y_data), hyper
    )
    previous = vars(model).get(_GRAD)
    setattr(model, _GRAD, grad if previous is None else previous + grad)
    setattr(model, _CLEARED, frozenset())  # every parameter holds a gradient again
    return loss


class ManualLoop:
    """``step`` and ``zero_grad`` of one optimizer over one `ParameterSet`."""

    def __init__(self, optimizer: StochasticOptimizer, params: ParameterSet) -> None:
        self.optimizer = optimizer
        self.params = params
        self.opt_state: Any = None
        self._owner: tuple[Any, ...] | None = None

    def step(self) -> None:
        owner = type(self.optimizer).__name__
        root = self.params.root
        root._require_bound(f"{owner}.step")
        grad = vars(root).get(_GRAD)
        if grad is None or vars(root).get(_CLEARED, frozenset()).issuperset(self.params.names()):
            raise MiniMLError(
                f"{owner}.step: there is no stored gradient; call model.backward(X, y) "
                "before opt.step() (zero_grad() clears it)."
            )
        index = self.params.index()
        program, values = self.optimizer._program(), self.optimizer._values(root.dtype)
        buffer = root.get_buffer(copy=False)
        owner_key = (program.structure, None if index is None else index.tobytes(), id(root))
        if self.opt_state is None or self._owner != owner_key:
            theta = buffer if index is None else buffer[index]
            self.opt_state = program.make(values).init(theta)
            self._owner = owner_key
        cache = objective_for(root, frozenset(), ()).cache
        key = ("manual_step", *owner_key[:2])
        apply = cache.get(key)
        if apply is None:
            apply = jax.jit(_step_function(program, index))
            cache[key] = apply
        new_buffer, new_state, finite = apply(buffer, grad, self.opt_state, values)
        if not bool(finite):
            warnings.warn(
                f"{owner}.step: the update gave non-finite parameters or optimizer state "
                "(the gradient or the learning rate is too large, or the loss is not "
                "finite); the step was skipped and the model and the optimizer keep their "
                "values.",
                NonFiniteWarning,
                stacklevel=3,
            )
            return
        self.opt_state = new_state
        root.set_buffer(new_buffer)

    def zero_grad(self) -> None:
        root = self.params.root
        grad = vars(root).get(_GRAD)
        if grad is None:
            return
        index = self.params.index()
        cleared = vars(root).get(_CLEARED, frozenset()).union(self.params.names())
        if index is None or len(cleared) == len(root._layout):
            setattr(root, _GRAD, None)
            setattr(root, _CLEARED, frozenset())
        else:
            setattr(root, _GRAD, grad.at[index].set(0.0))
            setattr(root, _CLEARED, cleared)


def _step_function(program: UpdateProgram, index: np.ndarray | None) -> Any:
    def apply(buffer: Any, grad: Any, state: Any, values: Any) -> tuple[Any, Any, Any]:
        theta = buffer if index is None else buffer[index]
        g = grad if index is None else grad[index]
        updates, new_state = program.make(values).update(g, state, theta)
        new_theta = theta + updates
        finite = jnp.all(jnp.isfinite(new_theta))
        for leaf in jax.tree_util.tree_leaves(new_state):
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                finite = finite & jnp.all(jnp.isfinite(leaf))
        new_buffer = new_theta if index is None else buffer.at[index].set(new_theta)
        return new_buffer, new_state, finite

    return apply
