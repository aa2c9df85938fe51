"""`ScipyOptimizer`: every method of `scipy.optimize.minimize`, fed exact derivatives.

Each method gets exactly the derivatives it uses (the table `METHODS`): the value and
gradient come from one fused evaluation (``jac=True``), Hessian-vector products are
forward-over-reverse, and a dense Hessian is built only for the methods that need one
(dogleg, trust-exact).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize

from miniml.errors import ConvergenceWarning, MiniMLError, NonFiniteWarning
from miniml.optim.base import MiniMLOptimizer, OptimizerResult, Problem

__all__ = ["METHODS", "ScipyOptimizer"]


@dataclass(frozen=True)
class MethodNeeds:
    """What one SciPy method consumes."""

    gradient: bool = False
    hessp: bool = False
    hess: bool = False
    bounds: bool = False


METHODS: dict[str, MethodNeeds] = {
    "nelder-mead": MethodNeeds(bounds=True),
    "powell": MethodNeeds(bounds=True),
    "cobyla": MethodNeeds(bounds=True),
    "cobyqa": MethodNeeds(bounds=True),
    "cg": MethodNeeds(gradient=True),
    "bfgs": MethodNeeds(gradient=True),
    "l-bfgs-b": MethodNeeds(gradient=True, bounds=True),
    "tnc": MethodNeeds(gradient=True, bounds=True),
    "slsqp": MethodNeeds(gradient=True, bounds=True),
    "newton-cg": MethodNeeds(gradient=True, hessp=True),
    "trust-ncg": MethodNeeds(gradient=True, hessp=True),
    "trust-krylov": MethodNeeds(gradient=True, hessp=True),
    "trust-constr": MethodNeeds(gradient=True, hessp=True, bounds=True),
    "dogleg": MethodNeeds(gradient=True, hess=True),
    "trust-exact": MethodNeeds(gradient=True, hess=True),
}
"""Derivatives and bounds support of each method (lower-case names)."""

BoundsSpec = Any
"""A `scipy.optimize.Bounds`, a sequence of ``(low, high)`` pairs, or a dict by name."""


class ScipyOptimizer(MiniMLOptimizer):
    """Minimize with `scipy.optimize.minimize`.

    Args:
        method: any method name of `scipy.optimize.minimize` (case-insensitive);
            default ``"L-BFGS-B"``.
        options: the method's ``options`` dict (e.g. ``{"maxiter": 100}``).
        tol: SciPy's ``tol``.
        bounds: for the methods that accept bounds: a `scipy.optimize.Bounds` or a
            sequence of ``(low, high)`` pairs over the trainable vector, or a dict
            ``{parameter name: (low, high)}`` with scalars or arrays of the
            parameter's shape (``None`` for no bound); unnamed parameters are free.
    """

    def __init__(
        self,
        method: str = "L-BFGS-B",
        options: dict[str, Any] | None = None,
        tol: float | None = None,
        bounds: BoundsSpec | None = None,
    ) -> None:
        if not isinstance(method, str) or method.lower() not in METHODS:
            raise MiniMLError(
                f"ScipyOptimizer: unknown method {method!r}; choose one of "
                f"{sorted(METHODS)} (case-insensitive)."
            )
        if options is not None and not isinstance(options, Mapping):
            raise MiniMLError(f"ScipyOptimizer: options must be a dict, got {options!r}.")
        if tol is not None and (not math.isfinite(float(tol)) or float(tol) <= 0):
            raise MiniMLError(f"ScipyOptimizer: tol must be a positive number, got {tol!r}.")
        self.method = method
        self.needs = METHODS[method.lower()]
        if bounds is not None and not self.needs.bounds:
            supported = sorted(m for m, n in METHODS.items() if n.bounds)
            raise MiniMLError(
                f"ScipyOptimizer: method {method!r} does not accept bounds; use one of {supported}."
            )
        self.options = dict(options or {})
        self.tol = tol
        self.bounds = bounds

    @property
    def name(self) -> str:
        return self.method

    def __repr__(self) -> str:
        return f"ScipyOptimizer(method={self.method!r}, options={self.options!r}, tol={self.tol!r})"

    def _scipy_bounds(self, problem: Problem) -> scipy.optimize.Bounds | None:
        if self.bounds is None:
            return None
        if isinstance(self.bounds, scipy.optimize.Bounds):
            return self.bounds
        if not isinstance(self.bounds, Mapping):
            pairs = list(self.bounds)
            if len(pairs) != problem.size:
                raise MiniMLError(
                    f"ScipyOptimizer: got {len(pairs)} (low, high) pairs for {problem.size} "
                    "trainable parameters; give one pair per scalar or a dict by name."
                )
            low, high = zip(*pairs, strict=True)
            return scipy.optimize.Bounds(_fill(low, -np.inf), _fill(high, np.inf))
        lower = np.full(problem.size, -np.inf)
        upper = np.full(problem.size, np.inf)
        by_name = {s.name: s for s in problem.layout}
        for name, (low, high) in self.bounds.items():
            if name not in by_name:
                raise MiniMLError(
                    f"ScipyOptimizer: bounds name {name!r} is not a trainable parameter; "
                    f"trainable parameters are {list(by_name)}."
                )
            part = by_name[name]
            for target, value in ((lower, low), (upper, high)):
                if value is not None:
                    target[part.start : part.stop] = np.broadcast_to(
                        np.asarray(value, float), part.shape
                    ).ravel()
        return scipy.optimize.Bounds(lower, upper)

    def minimize(self, problem: Problem) -> OptimizerResult:
        for option in ("epochs", "batch_size"):
            if getattr(problem.options, option) is not None:
                raise MiniMLError(
                    f"ScipyOptimizer: fit(..., {option}=...) applies to stochastic "
                    "optimizers; SciPy methods always use the full data. Use "
                    "options={'maxiter': ...} to limit iterations."
                )
        needs = self.needs
        accepted = _AcceptedIterates(problem)
        kwargs: dict[str, Any] = {
            "method": self.method,
            "options": self.options,
            "tol": self.tol,
            "callback": accepted.record,
        }
        if needs.gradient:
            fun: Any = problem.fun_and_grad
            kwargs["jac"] = True
        else:
            fun = problem.fun
        if needs.hessp:
            kwargs["hessp"] = problem.hessp
        if needs.hess:
            kwargs["hess"] = problem.hess
        bounds = self._scipy_bounds(problem)
        if bounds is not None:
            kwargs["bounds"] = bounds
        x0 = np.asarray(problem.x0, np.float64)
        res = scipy.optimize.minimize(fun, x0, **kwargs)
        return accepted.finish(res, self.method)


def _fill(values: Sequence[float | None], default: float) -> np.ndarray:
    return np.array([default if v is None else float(v) for v in values])


class _AcceptedIterates:
    """Remembers the last accepted iterate with a finite objective.

    SciPy calls `record` once per iteration; if a method ends on a non-finite point,
    `finish` falls back to the last finite accepted iterate (or the start).
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.x = np.asarray(problem.x0, np.float64).copy()
        self.fun: float | None = None
        self.count = 0
        self.stopped = False

    def record(self, intermediate_result: Any) -> None:
        # Most methods pass an OptimizeResult; TNC, COBYLA and trust-krylov pass x only.
        if isinstance(intermediate_result, scipy.optimize.OptimizeResult):
            x = np.asarray(intermediate_result.x, np.float64)
            fun = float(getattr(intermediate_result, "fun", np.nan))
        else:
            x = np.asarray(intermediate_result, np.float64)
            fun = self.problem.value_at(x)
        self.count += 1
        if not (math.isfinite(fun) and np.isfinite(x).all()):
            return
        self.x, self.fun = x.copy(), fun
        stop = self.problem.report_iteration(
            x=self.x, fun=fun, grad_norm=self.problem.grad_norm_at(x), n_iterations=self.count
        )
        if stop:
            self.stopped = True
            raise StopIteration

    def finish(self, res: scipy.optimize.OptimizeResult, method: str) -> OptimizerResult:
        problem = self.problem
        x = np.asarray(res.x, np.float64)
        fun = float(res.fun) if np.ndim(res.fun) == 0 else float(np.asarray(res.fun).item())
        success, message = bool(res.success), str(res.message)
        if not (math.isfinite(fun) and np.isfinite(x).all()):
            x = self.x
            fun = self.fun if self.fun is not None else problem.fun(x)
            success = False
            message = (
                f"{method} reached a point where the objective is not finite; the model "
                f"keeps the last finite iterate (objective {fun:.6g}). SciPy said: {message}"
            )
            warnings.warn(message, NonFiniteWarning, stacklevel=4)
        elif self.stopped:
            x, fun = self.x, float(self.fun if self.fun is not None else fun)
            success, message = False, "Stopped by a callback."
        elif not success:
            warnings.warn(f"{method} did not converge: {message}", ConvergenceWarning, stacklevel=4)
        n_hess = int(getattr(res, "nhev", 0) or (problem.n_hessp + problem.n_hess))
        return OptimizerResult(
            x=x,
            fun=fun,
            success=success,
            message=message,
            n_iterations=int(getattr(res, "nit", self.count) or 0),
            n_function_evaluations=int(getattr(res, "nfev", problem.n_fun)),
            n_jacobian_evaluations=int(getattr(res, "njev", problem.n_grad) or 0),
            n_hessian_evaluations=n_hess,
            status=int(res.status) if getattr(res, "status", None) is not None else None,
        )
