"""The optimizer protocol: what an optimizer receives (`Problem`) and returns.

To write a custom optimizer, subclass `MiniMLOptimizer` and implement
``minimize(problem) -> OptimizerResult``. The problem is a pure function of one flat
parameter vector; an optimizer never touches the model::

    class GradientDescent(MiniMLOptimizer):
        def __init__(self, learning_rate=1e-3, steps=100):
            self.learning_rate, self.steps = learning_rate, steps

        def minimize(self, problem):
            x = problem.x0.copy()
            for _ in range(self.steps):
                f, g = problem.fun_and_grad(x)
                x -= self.learning_rate * g
            return OptimizerResult(x=x, fun=problem.fun(x), success=True,
                                   message="done", n_iterations=self.steps)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from miniml.objective import Hyper, Objective

__all__ = [
    "FitOptions",
    "FitResult",
    "MiniMLOptimResult",
    "MiniMLOptimizer",
    "OptimizerResult",
    "Problem",
    "TrainableSlice",
]


@dataclass(frozen=True)
class FitOptions:
    """Options of `MiniMLModel.fit` that concern how an optimizer walks the data.

    Attributes:
        epochs: passes over the data (stochastic optimizers); None means the
            optimizer's default.
        batch_size: samples per step (stochastic optimizers); None means full batch.
        shuffle: reshuffle the samples every epoch.
        seed: seeds shuffling and the forward pass's random keys.
    """

    epochs: int | None = None
    batch_size: int | None = None
    shuffle: bool = True
    seed: int = 0


@dataclass(frozen=True)
class TrainableSlice:
    """Where one trainable parameter sits inside the problem's flat vector."""

    name: str
    shape: tuple[int, ...]
    start: int

    @property
    def stop(self) -> int:
        return self.start + math.prod(self.shape)


class _Evaluation(NamedTuple):
    """The last value-and-gradient evaluation of a `Problem`, at host point ``x``."""

    x: np.ndarray
    value: float
    grad: np.ndarray
    theta: Any  # x on the device, in the parameters' dtype


class Problem:
    """A minimization problem over a flat float vector, as optimizers see it.

    The host-level methods (`fun`, `fun_and_grad`, `hessp`, `hess`) take and return
    float64 numpy arrays, ready for SciPy. `objective` and `args` give compiled
    optimizers the pure JAX functions: ``objective.value_and_grad(theta, *args)``.
    Evaluation counts are kept in `n_fun`, `n_grad`, `n_hessp` and `n_hess`.

    Attributes:
        x0: the starting point (trainable parameters, the model's dtype).
        args: ``(base, data, hyper)``: the frozen-parameter buffer (or None), the data
            ``(X, y)`` and the `Hyper` values.
        layout: where each trainable parameter sits in the vector.
        n_samples: number of samples in ``data``.
        options: the `FitOptions` of the fit (epochs, batch_size, shuffle, seed).
        loss_reduction: ``"sum"``, ``"mean"`` or None (undeclared) for the data loss.
    """

    def __init__(
        self,
        objective: Objective,
        x0: np.ndarray,
        base: Any,
        data: Any,
        hyper: Hyper,
        layout: list[TrainableSlice],
        n_samples: int,
        options: FitOptions | None = None,
        loss_reduction: str | None = None,
    ) -> None:
        self.objective = objective
        self.x0 = np.asarray(x0)
        self.dtype = self.x0.dtype
        self.args = (base, data, hyper)
        self.layout = layout
        self.n_samples = n_samples
        self.options = options or FitOptions()
        # "sum", "mean", or None when the model's loss does not declare its reduction.
        self.loss_reduction = loss_reduction
        # Set by the fit driver: records history, validation and callbacks.
        self.monitor: Any = None
        # Set by the fit driver: the model being fitted (optimizers built on a model's
        # parameters check that it is this one).
        self.model: Any = None
        self.last_evaluation: _Evaluation | None = None
        self.n_fun = self.n_grad = self.n_hessp = self.n_hess = 0

    @property
    def size(self) -> int:
        """Number of trainable scalars."""
        return int(self.x0.size)

    def report_iteration(
        self,
        x: Any,
        fun: float,
        grad_norm: float | None = None,
        learning_rate: float | None = None,
        n_iterations: int | None = None,
        step_losses: Any = None,
    ) -> bool:
        """Tell the fit that one iteration (SciPy path) or epoch (stochastic path) ended.

        Every optimizer calls this once per iteration or epoch, on the host, with the
        accepted point ``x`` and its objective ``fun``. The fit records history, runs
        validation and callbacks here. Returns True when the fit must stop (a callback
        or early stopping asked for it); the optimizer then returns at once with
        ``x`` as its result. ``x`` may be None where `wants_iterates` is False, except
        at the last iteration an optimizer reports.
        """
        if self.monitor is None:
            return False
        return bool(
            self.monitor(
                x=x,
                fun=fun,
                grad_norm=grad_norm,
                learning_rate=learning_rate,
                n_iterations=n_iterations,
                step_losses=step_losses,
                counts=(self.n_fun, self.n_grad, self.n_hessp + self.n_hess),
            )
        )

    @property
    def wants_iterates(self) -> bool:
        """Whether the fit reads the iterate of every reported iteration (callbacks and
        validation do). When it does not, an optimizer may report ``x=None`` for all but
        the last iteration of a run (the compiled `LBFGS` then keeps no iterate history)."""
        return self.monitor is not None and self.monitor.wants_iterates

    def _theta(self, x: np.ndarray) -> Any:
        return jnp.asarray(x, self.dtype)

    def fun(self, x: np.ndarray) -> float:
        """The objective's value at ``x``."""
        self.n_fun += 1
        # numpy in, not jnp.asarray: the jitted call's C++ fast path moves a numpy
        # vector to the device in a few µs; jnp.asarray costs ~100 µs per call.
        return float(self.objective.value(np.asarray(x, self.dtype), *self.args))

    def fun_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient at ``x`` from one fused evaluation."""
        self.n_fun += 1
        self.n_grad += 1
        packed, theta = self.objective.value_and_grad_packed(np.asarray(x, self.dtype), *self.args)
        packed = np.asarray(packed, np.float64)
        value, grad = float(packed[0]), packed[1:]
        self.last_evaluation = _Evaluation(np.array(x, copy=True), value, grad, theta)
        return value, grad

    def _last_evaluated_at(self, x: np.ndarray) -> bool:
        last = self.last_evaluation
        # (a == b).all() is np.array_equal without its ~5 µs of Python, once per iteration.
        return last is not None and last[0].shape == np.shape(x) and bool((last[0] == x).all())

    def value_at(self, x: np.ndarray) -> float:
        """The objective at ``x``, reusing the last evaluation when it was there."""
        if self._last_evaluated_at(x):
            return self.last_evaluation.value  # type: ignore[union-attr]
        return self.fun(x)

    def grad_norm_at(self, x: np.ndarray) -> float | None:
        """The gradient norm at ``x`` if the last evaluation was there, else None."""
        if not self._last_evaluated_at(x):
            return None
        grad = self.last_evaluation.grad  # type: ignore[union-attr]
        return math.sqrt(grad @ grad)  # what np.linalg.norm computes for a vector

    def on_device_at(self, x: np.ndarray) -> Any:
        """``x`` as the device array of the parameters' dtype that the last evaluation
        made of it, or None if the last evaluation was elsewhere.

        A SciPy fit usually ends on its last evaluated point; reusing that array spares
        the fit a host-to-device copy, which costs 0.1-0.3 ms after SciPy's own work (as
        much as a few evaluations of a small model).
        """
        if not self._last_evaluated_at(x):
            return None
        return self.last_evaluation.theta  # type: ignore[union-attr]

    def hessp(self, x: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Hessian-vector product at ``x`` (forward-over-reverse)."""
        self.n_hessp += 1
        theta, vector = np.asarray(x, self.dtype), np.asarray(vector, self.dtype)
        out = self.objective.hvp(theta, vector, *self.args)
        return np.asarray(out, np.float64)

    def hess(self, x: np.ndarray) -> np.ndarray:
        """Dense Hessian at ``x``; costs ``size`` Hessian-vector products."""
        self.n_hess += 1
        hessian = self.objective.hessian(np.asarray(x, self.dtype), *self.args)
        return np.asarray(hessian, np.float64)


@dataclass
class OptimizerResult:
    """What `MiniMLOptimizer.minimize` returns, in the problem's vector space.

    ``x`` is a numpy array, or a jax array when the optimizer's result is already on
    the device (the compiled `LBFGS`).
    """

    x: Any
    fun: float
    success: bool
    message: str
    n_iterations: int = 0
    n_function_evaluations: int = 0
    n_jacobian_evaluations: int = 0
    n_hessian_evaluations: int = 0
    status: int | None = None


class MiniMLOptimizer(ABC):
    """Base class of every optimizer accepted by `MiniMLModel.fit`.

    Attributes:
        stochastic: True for optimizers that walk mini-batches and use ``epochs`` and
            ``batch_size``; in a staged fit those options go only to such stages.
    """

    stochastic: bool = False

    @abstractmethod
    def minimize(self, problem: Problem) -> OptimizerResult:
        """Minimize ``problem`` starting from ``problem.x0``."""

    @property
    def name(self) -> str:
        """A short label for tables and histories."""
        return type(self).__name__


@dataclass
class FitResult:
    """The outcome of `MiniMLModel.fit`.

    Attributes:
        success: whether the optimizer reported convergence.
        message: the optimizer's explanation.
        objective_value: the final total objective (loss + penalties).
        n_iterations: optimizer iterations.
        n_function_evaluations: objective evaluations.
        n_jacobian_evaluations: gradient evaluations.
        n_hessian_evaluations: Hessian or Hessian-vector product evaluations.
        x_opt: the model's whole parameter buffer after the fit.
        status: the optimizer's status code, if it has one.
        optimizer: the optimizer's label (stages joined by " -> ").
        history: the `History` of the fit, one record per iteration or epoch.
        stages: the labels of the stages that ran.
        stop_reason: why a callback (e.g. `EarlyStopping`) stopped the fit, or None.
        interrupted: whether a KeyboardInterrupt ended the fit.
    """

    success: bool
    message: str
    objective_value: float
    n_iterations: int
    n_function_evaluations: int
    n_jacobian_evaluations: int
    n_hessian_evaluations: int
    x_opt: Any
    status: int | None = None
    optimizer: str = ""
    history: Any = field(default=None, repr=False)
    stages: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    interrupted: bool = False

    @property
    def loss(self) -> float:
        """The final objective value (same as `objective_value`)."""
        return self.objective_value


MiniMLOptimResult = FitResult
"""MiniML's name for the fit result."""
