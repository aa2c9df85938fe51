"""`ScipyOptimizer`: every method of `scipy.optimize.minimize`, fed exact derivatives.

Each method gets exactly the derivatives it uses (the table `METHODS`): the value and
gradient come from one fused evaluation (``jac=True``), Hessian-vector products are
forward-over-reverse, and a dense Hessian is built only for the methods that need one
(dogleg, trust-exact).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
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
            sequence of ``(low, high)`` pairs over the trainable vector (parameters
            fixed by ``_pre_fit`` or a stage hook are not in it), or a dict
            ``{parameter name: (low, high)}`` with scalars or arrays of the
            parameter's shape (``None`` for no bound); unnamed parameters are free.
            ``low == high`` fixes an entry; NaN bounds and ``low > high`` are errors.
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
        """The bounds over this fit's trainable vector, checked; a new `Bounds` per fit.

        Raises:
            MiniMLError: bounds of the wrong size or shape, or with a NaN or an empty
                range (low > high), naming the parameter and entry concerned.
        """
        if self.bounds is None:
            return None
        keep_feasible: Any = False
        if isinstance(self.bounds, scipy.optimize.Bounds):
            lower = _bound_vector(self.bounds.lb, "bounds.lb", problem, float)
            upper = _bound_vector(self.bounds.ub, "bounds.ub", problem, float)
            keep_feasible = _bound_vector(
                self.bounds.keep_feasible, "bounds.keep_feasible", problem, bool
            )
        elif isinstance(self.bounds, Mapping):
            lower, upper = _bounds_by_name(self.bounds, problem)
        else:
            lower, upper = _bounds_from_pairs(self.bounds, problem)
        _check_bound_values(lower, upper, problem)
        return scipy.optimize.Bounds(lower, upper, keep_feasible=keep_feasible)

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
            # TNC passes x only; see `_AcceptedIterates.record_point`.
            "callback": accepted.record_point if self.method.lower() == "tnc" else accepted.record,
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
        try:
            res = scipy.optimize.minimize(fun, x0, **kwargs)
        except StopIteration:
            # SciPy ends the other methods itself when the callback raises StopIteration;
            # TNC's compiled wrapper (SciPy 1.17) aborts its run and re-raises it instead.
            if not accepted.stopped:
                raise
            res = accepted.stopped_result()
        return accepted.finish(res, self.method)


def _trainable(problem: Problem) -> str:
    """The trainable parameters as the error messages show them: ``W (3, 1), b (1,)``."""
    return ", ".join(f"{part.name} {part.shape}" for part in problem.layout)


def _entry(problem: Problem, index: int) -> str:
    """The parameter entry at position ``index`` of the trainable vector, e.g. ``W[2, 0]``."""
    for part in problem.layout:
        if part.start <= index < part.stop:
            if not part.shape:
                return repr(part.name)
            position = np.unravel_index(index - part.start, part.shape)
            return f"{part.name}[{', '.join(str(int(i)) for i in position)}]"
    return f"entry {index}"  # unreachable: the layout covers the vector


def _bound_vector(value: Any, what: str, problem: Problem, dtype: type) -> np.ndarray:
    """One side of a `scipy.optimize.Bounds`, a scalar or one value per trainable scalar."""
    array: np.ndarray = np.asarray(value, dtype)
    if array.size not in (1, problem.size):
        raise MiniMLError(
            f"ScipyOptimizer: {what} has {array.size} values but this fit trains "
            f"{problem.size} scalars ({_trainable(problem)}); parameters fixed by _pre_fit "
            "or a stage hook are not part of the trained vector. Give one value per "
            "trained scalar (or a scalar), or a dict {name: (low, high)} by parameter name."
        )
    return np.broadcast_to(array.reshape(-1), (problem.size,)).copy()


def _bounds_from_pairs(pairs: Any, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """A sequence of ``(low, high)`` pairs, one per trainable scalar (None: no bound)."""
    try:
        pairs = list(pairs)
    except TypeError:
        pairs = None
    if pairs is None or len(pairs) != problem.size:
        got = f"{len(pairs)} (low, high) pairs" if pairs is not None else repr(pairs)
        raise MiniMLError(
            f"ScipyOptimizer: bounds got {got} for {problem.size} trained scalars "
            f"({_trainable(problem)}); give one pair per trained scalar, or a dict "
            "{name: (low, high)} by parameter name."
        )
    lower = np.full(problem.size, -np.inf)
    upper = np.full(problem.size, np.inf)
    for index, pair in enumerate(pairs):
        try:
            low, high = pair
            lower[index] = -np.inf if low is None else float(low)
            upper[index] = np.inf if high is None else float(high)
        except (TypeError, ValueError) as err:
            raise MiniMLError(
                f"ScipyOptimizer: bounds[{index}] (for {_entry(problem, index)}) is "
                f"{pair!r}; each entry must be a (low, high) pair of numbers, with None "
                "for no bound."
            ) from err
    return lower, upper


def _bounds_by_name(bounds: Mapping[str, Any], problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """A dict ``{parameter name: (low, high)}``; unnamed parameters stay free."""
    lower = np.full(problem.size, -np.inf)
    upper = np.full(problem.size, np.inf)
    by_name = {part.name: part for part in problem.layout}
    for name, pair in bounds.items():
        if name not in by_name:
            raise MiniMLError(
                f"ScipyOptimizer: bounds name {name!r} is not a trainable parameter; "
                f"trainable parameters are {list(by_name)}."
            )
        part = by_name[name]
        try:
            low, high = pair
        except (TypeError, ValueError) as err:
            raise MiniMLError(
                f"ScipyOptimizer: bounds[{name!r}] is {pair!r}; give a (low, high) pair of "
                f"numbers or arrays of shape {part.shape}, with None for no bound."
            ) from err
        for side, target, value in (("low", lower, low), ("high", upper, high)):
            if value is not None:
                target[part.start : part.stop] = _named_side(name, side, value, part.shape)
    return lower, upper


def _named_side(name: str, side: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """One side of a dict entry, as the parameter's entries in vector order."""
    fix = f"give a number, None, or an array of shape {shape} (or one that broadcasts to it)."
    try:
        array = np.asarray(value, float)
    except (TypeError, ValueError) as err:
        raise MiniMLError(f"ScipyOptimizer: bounds[{name!r}] {side} is {value!r}; {fix}") from err
    try:
        return np.broadcast_to(array, shape).ravel()
    except ValueError as err:
        raise MiniMLError(
            f"ScipyOptimizer: bounds[{name!r}] {side} has shape {array.shape} but parameter "
            f"{name!r} has shape {shape}; {fix}"
        ) from err


def _check_bound_values(lower: np.ndarray, upper: np.ndarray, problem: Problem) -> None:
    """Refuse NaN bounds and empty ranges; SciPy would take NaN silently."""
    for bad, problem_text, fix in (
        (
            np.isnan(lower) | np.isnan(upper),
            "NaN is not a bound",
            "use None or -np.inf / np.inf for no bound",
        ),
        (
            (lower > upper) | (lower == np.inf) | (upper == -np.inf),
            "no finite value lies in that range",
            "give low <= high (low == high fixes the entry), with low < inf and high > -inf",
        ),
    ):
        where = np.flatnonzero(bad)
        if where.size:
            index = int(where[0])
            more = f" (and {where.size - 1} more entries)" if where.size > 1 else ""
            raise MiniMLError(
                f"ScipyOptimizer: the bounds of {_entry(problem, index)} are "
                f"(low={lower[index]}, high={upper[index]}){more}; {problem_text}. Fix: "
                f"{fix}."
            )


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

    def stopped_result(self) -> scipy.optimize.OptimizeResult:
        """What SciPy returns for a callback's StopIteration, for the methods that re-raise it."""
        problem = self.problem
        fun = self.fun if self.fun is not None else problem.fun(self.x)
        return scipy.optimize.OptimizeResult(
            x=self.x,
            fun=fun,
            success=False,
            status=99,  # SciPy's status for "`callback` raised `StopIteration`."
            message="`callback` raised `StopIteration`.",
            nit=self.count,
            nfev=problem.n_fun,
            njev=problem.n_grad,
        )

    def record_point(self, xk: np.ndarray) -> None:
        """`record` for TNC, which calls back with ``x`` only.

        Its parameter is not named ``intermediate_result``: when bounds fix entries
        (low == high), SciPy 1.17 drops them from TNC's problem and would wrap such a
        callback in a patch that reads ``.x`` from the bare vector TNC passes.
        """
        self.record(xk)

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
        # After a callback's stop: the iterations reported to the history, as for the
        # other methods. SciPy's own ``nit`` then is 0 for COBYQA (SciPy 1.17), and
        # Nelder-Mead's counts from 1, one more than the iterations it called back for.
        n_iterations = self.count if self.stopped else int(getattr(res, "nit", self.count) or 0)
        return OptimizerResult(
            x=x,
            fun=fun,
            success=success,
            message=message,
            n_iterations=n_iterations,
            n_function_evaluations=int(getattr(res, "nfev", problem.n_fun)),
            n_jacobian_evaluations=int(getattr(res, "njev", problem.n_grad) or 0),
            n_hessian_evaluations=n_hess,
            status=int(res.status) if getattr(res, "status", None) is not None else None,
        )
