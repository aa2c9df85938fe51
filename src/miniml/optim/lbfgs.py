"""`LBFGS`: the whole L-BFGS loop, line search included, compiled by XLA.

The solver chains optax's building blocks: `optax.scale_by_lbfgs` computes the
direction :math:`d_k = -H_k g_k` (two-loop recursion over the last ``memory_size``
pairs :math:`s_i = x_{i+1} - x_i`, :math:`y_i = g_{i+1} - g_i`), and
`optax.scale_by_zoom_linesearch` picks a step :math:`\\eta_k` that satisfies the
strong Wolfe conditions

.. math::
    f(x_k + \\eta_k d_k) \\le f(x_k) + c_1 \\eta_k g_k^\\top d_k, \\qquad
    |\\nabla f(x_k + \\eta_k d_k)^\\top d_k| \\le c_2 |g_k^\\top d_k|

(:math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`, with Hager and Zhang's approximate
decrease test near the minimum), so :math:`x_{k+1} = x_k + \\eta_k d_k`. The value and
gradient at the accepted step come from the line search's last evaluation (what
`optax.value_and_grad_from_state` reads), so every iteration costs exactly the line
search's evaluations.

Stopping rules are SciPy's L-BFGS-B rules (without bounds), checked after each
iteration: :math:`\\|g_{k+1}\\|_\\infty \\le` ``gtol``; or
:math:`(f_k - f_{k+1}) / \\max(|f_k|, |f_{k+1}|, 1) \\le` ``ftol``; or ``maxiter``
iterations; or ``maxfun`` value-and-gradient evaluations.

Segments and callbacks: the loop runs on the device in segments of
``segment_length`` iterations (one `jax.lax.while_loop` each). Every segment writes
the objective, the gradient norm and the evaluation count of each iteration into
fixed-size device buffers, and the iterate too when a callback or validation will read
it (`Problem.wants_iterates`); the host then replays them to the fit's history,
validation and callbacks, one `Problem.report_iteration` call per iteration.
A callback that asks to stop (e.g. `EarlyStopping`) ends the fit at the iteration it
saw, but the device may already have computed the rest of that segment.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import jax
import numpy as np
from jax import Array as JXArray

from miniml.errors import ConvergenceWarning, MiniMLError, NonFiniteWarning
from miniml.optim._lbfgs_loop import (
    _FTOL,
    _GTOL,
    _LINESEARCH,
    _MAXFUN,
    _MAXITER,
    _NONFINITE,
    _RUNNING,
    _compiled_loop,
    _Report,
    _Settings,
    _unpack_report,
)
from miniml.optim.base import MiniMLOptimizer, OptimizerResult, Problem

__all__ = ["LBFGS"]

# What the host reports for each of the loop's stop codes.
_OUTCOMES: dict[int, tuple[bool, int, str]] = {
    _GTOL: (True, 0, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"),
    _FTOL: (True, 0, "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"),
    _MAXITER: (False, 1, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"),
    _MAXFUN: (False, 1, "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"),
    _LINESEARCH: (
        False,
        2,
        "ABNORMAL: the line search found no step that decreases the objective; the "
        "result is the last accepted iterate",
    ),
    _NONFINITE: (
        False,
        3,
        "the objective or its gradient is not finite; the model keeps the last finite iterate",
    ),
}

_HISTORY_BUDGET = 2**22
"""Scalars of iterate history per segment (32 MiB in float64) when the segment
length is chosen automatically."""


class LBFGS(MiniMLOptimizer):
    """L-BFGS with a zoom (strong Wolfe) line search, the whole loop compiled by XLA.

    Built on `optax.lbfgs` and `optax.scale_by_zoom_linesearch` (see the module
    docstring for the update and the stopping rules). The compiled loop is cached on
    the model's objective, and ``maxiter``, ``maxfun``, ``gtol``, ``ftol`` and
    ``max_linesearch_steps`` are traced values, so fitting again, with new data of the
    same shapes or new values of these settings, compiles nothing.

    Args:
        maxiter: maximum number of iterations (SciPy's ``maxiter``).
        gtol: stop when :math:`\\|g\\|_\\infty \\le` ``gtol`` (SciPy's ``gtol``).
        ftol: stop when the relative reduction of the objective
            :math:`(f_k - f_{k+1}) / \\max(|f_k|, |f_{k+1}|, 1) \\le` ``ftol``
            (SciPy's ``ftol``; with 0 only an iteration without any decrease stops).
        memory_size: number of correction pairs kept (SciPy's ``maxcor``).
        maxfun: maximum number of value-and-gradient evaluations.
        max_linesearch_steps: maximum evaluations of one line search (SciPy's
            ``maxls``).
        segment_length: iterations per compiled segment; history, validation and
            callbacks run on the host between segments. None chooses
            ``min(128, max(1, 2**22 // n_parameters))`` so that the iterate buffer
            stays below 32 MiB (`miniml.fit_batched`: 32, see
            ``miniml._batched_run.SEGMENT_LENGTH``). It is part of the compiled
            program's shape: changing it compiles again.

    The result's ``status`` is 0 (converged), 1 (``maxiter`` or ``maxfun`` reached),
    2 (line search failure) or 3 (non-finite objective or gradient), as in SciPy's
    L-BFGS-B plus code 3. A non-finite objective or gradient stops the loop with
    ``success=False`` and a `NonFiniteWarning`, keeping the last finite iterate;
    stopping without convergence issues a `ConvergenceWarning`.
    """

    def __init__(
        self,
        maxiter: int = 15000,
        gtol: float = 1e-5,
        ftol: float = 2.2e-9,
        memory_size: int = 10,
        maxfun: int = 15000,
        max_linesearch_steps: int = 20,
        segment_length: int | None = None,
    ) -> None:
        self.maxiter = _positive_int(maxiter, "maxiter")
        self.maxfun = _positive_int(maxfun, "maxfun")
        self.memory_size = _positive_int(memory_size, "memory_size")
        self.max_linesearch_steps = _positive_int(max_linesearch_steps, "max_linesearch_steps")
        self.segment_length = (
            None if segment_length is None else _positive_int(segment_length, "segment_length")
        )
        self.gtol = _tolerance(gtol, "gtol")
        self.ftol = _tolerance(ftol, "ftol")

    def __repr__(self) -> str:
        return (
            f"LBFGS(maxiter={self.maxiter}, gtol={self.gtol!r}, ftol={self.ftol!r}, "
            f"memory_size={self.memory_size}, maxfun={self.maxfun}, "
            f"max_linesearch_steps={self.max_linesearch_steps}, "
            f"segment_length={self.segment_length})"
        )

    def settings(self, dtype: Any) -> _Settings:
        """The stopping rules as traced arguments of the compiled loop (no recompiles)."""
        return _device_settings(
            self.maxiter, self.maxfun, self.gtol, self.ftol, self.max_linesearch_steps,
            np.dtype(dtype),
        )  # fmt: skip

    def minimize(self, problem: Problem) -> OptimizerResult:
        for option in ("epochs", "batch_size"):
            if getattr(problem.options, option) is not None:
                raise MiniMLError(
                    f"LBFGS.minimize: fit(..., {option}=...) applies to stochastic "
                    "optimizers; LBFGS always uses the full data. Use LBFGS(maxiter=...) "
                    "to limit iterations."
                )
        dtype = problem.dtype
        if not np.issubdtype(dtype, np.floating):
            raise MiniMLError(
                f"LBFGS.minimize: parameters must be floating point, got dtype {dtype}."
            )
        length = self.segment_length or min(128, max(1, _HISTORY_BUDGET // max(problem.size, 1)))
        x0 = np.asarray(problem.x0, dtype)
        # The iterate of every iteration only when a callback or validation reads it.
        keep_iterates = problem.wants_iterates
        segment, template = _compiled_loop(problem, self.memory_size, length, keep_iterates)
        settings = self.settings(dtype)
        carry, fresh, reported = template, True, 0
        while True:
            # One dispatch and one device-to-host transfer per segment.
            carry, packed, x_device = segment(carry, x0, np.bool_(fresh), problem.args, settings)
            # np.asarray, not jax.device_get: on a CPU it shares the device buffers,
            # where device_get first copies them (0.1-0.15 ms of a 1.5 ms P2 fit).
            integers, values = (np.asarray(vector) for vector in packed)
            report = _unpack_report(integers, values, x0.shape, length, keep_iterates)
            fresh = False
            stopped_at = _replay(problem, report, reported)
            if stopped_at is not None:
                x, fun, evaluations, iteration = stopped_at
                problem.n_fun = problem.n_grad = evaluations
                return OptimizerResult(
                    x=x,
                    fun=fun,
                    success=False,
                    message="Stopped by a callback.",
                    n_iterations=iteration,
                    n_function_evaluations=evaluations,
                    n_jacobian_evaluations=evaluations,
                    status=None,
                )
            reported += int(report.history.n_rows)
            if int(report.status) != _RUNNING:
                return _finish(problem, report, x_device)

    @property
    def name(self) -> str:
        return "LBFGS"


@functools.lru_cache(maxsize=64)
def _device_settings(
    maxiter: int, maxfun: int, gtol: float, ftol: float, max_linesearch_steps: int, dtype: Any
) -> _Settings:
    # On the device once per set of values: as numpy scalars each segment call copies them.
    return jax.device_put(
        _Settings(
            maxiter=np.int32(maxiter),
            maxfun=np.int32(maxfun),
            gtol=np.asarray(gtol, dtype),
            ftol=np.asarray(ftol, dtype),
            max_linesearch_steps=np.int32(max_linesearch_steps),
        )
    )


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise MiniMLError(
            f"LBFGS: {name} must be a positive int, got {value!r}; e.g. LBFGS({name}=100)."
        )
    if value > np.iinfo(np.int32).max:
        raise MiniMLError(f"LBFGS: {name}={value} is too large; use at most 2**31 - 1.")
    return int(value)


def _tolerance(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise MiniMLError(f"LBFGS: {name} must be a number >= 0, got {value!r}.") from err
    if not math.isfinite(number) or number < 0:
        raise MiniMLError(
            f"LBFGS: {name} must be finite and >= 0, got {value!r}; e.g. LBFGS({name}=1e-6)."
        )
    return number


def _replay(problem: Problem, report: _Report, first: int) -> tuple[Any, float, int, int] | None:
    """Report a segment's iterations; ``(x, f, evaluations, iteration)`` if told to stop.

    ``first`` is the number of iterations reported by earlier segments. A segment that
    kept no iterates reports ``x=None`` for all rows but the last, whose iterate is the
    segment's final ``x`` (a rejected step ends the loop and leaves ``x`` as it was);
    only a callback can stop the fit, and with callbacks the iterates are kept.
    """
    history = report.history
    rows = int(history.n_rows)
    for row in range(rows):
        evaluations = int(history.n_evaluations[row])
        problem.n_fun = problem.n_grad = evaluations
        fun = float(history.value[row])
        iteration = first + row + 1
        last = row == rows - 1
        x = history.x[row] if history.x is not None else (report.x if last else None)
        stop = problem.report_iteration(
            x=x,
            fun=fun,
            grad_norm=float(history.grad_norm[row]),
            n_iterations=iteration,
        )
        if stop:
            return np.array(x), fun, evaluations, iteration
    return None


def _finish(problem: Problem, report: _Report, x: JXArray) -> OptimizerResult:
    """The result of a finished loop; ``x`` is the final iterate still on the device
    (equal to ``report.x``), so that writing it into the model copies nothing."""
    status = int(report.status)
    success, code, message = _OUTCOMES[status]
    fun = float(report.value)
    evaluations = int(report.n_evaluations)
    problem.n_fun = problem.n_grad = evaluations
    if status == _NONFINITE:
        iteration = int(report.n_iterations)
        at = (
            "at the starting point"
            if iteration == 0 and evaluations <= 1
            else f"in iteration {iteration + 1}, after {evaluations} evaluations"
        )
        message = f"{message} (it became non-finite {at}; objective {fun:.6g})."
        warnings.warn(f"LBFGS: {message}", NonFiniteWarning, stacklevel=4)
    elif not success:
        warnings.warn(f"LBFGS did not converge: {message}", ConvergenceWarning, stacklevel=4)
    return OptimizerResult(
        x=x,
        fun=fun,
        success=success,
        message=message,
        n_iterations=int(report.n_iterations),
        n_function_evaluations=evaluations,
        n_jacobian_evaluations=evaluations,
        status=code,
    )
