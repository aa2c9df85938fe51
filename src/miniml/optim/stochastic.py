"""`StochasticOptimizer`: the base of every optax-backed optimizer, and `OptaxOptimizer`.

A stochastic optimizer is an optax `GradientTransformation` plus what MiniML needs
around it: hyper-parameter checks, the compiled mini-batch driver
(`miniml.optim.minibatch`) used by `MiniMLModel.fit`, warm restarts on request, and
the PyTorch-style ``step()`` / ``zero_grad()`` loop (`miniml.optim.torch_style`).

Numeric hyper-parameters (learning rate, momentum, β, ε, weight decay) are traced
arguments of the compiled epochs: the rule is built inside the trace from them (an
`UpdateProgram`), so a new value compiles nothing. Schedules and static options (e.g.
``nesterov``) are part of the compiled program.

Optimizer state is fresh in every `fit` unless the optimizer was built with
``keep_state=True``; it then continues from the state of its previous fit, and a fit
of a different problem (another model, another trainable set, another size) is
refused instead of silently reusing the state.
"""

from __future__ import annotations

import math
import warnings
import weakref
from abc import abstractmethod
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import optax

from miniml.errors import ConvergenceWarning, MiniMLError, NonFiniteWarning
from miniml.optim._rules import check_flag
from miniml.optim.base import MiniMLOptimizer, OptimizerResult, Problem
from miniml.optim.driver import RunOutcome, run_epochs
from miniml.optim.minibatch import BatchPlan, UpdateProgram, find_learning_rate, plan_batches
from miniml.optim.torch_style import ManualLoop, ParameterSet

__all__ = ["OptaxOptimizer", "Optimizer", "StochasticOptimizer"]


@dataclass
class _KeptState:
    """Optimizer state kept for a warm restart, with what it belongs to."""

    objective: weakref.ref
    size: int
    dtype: np.dtype
    structure: Hashable
    opt_state: Any
    epochs_done: int


class StochasticOptimizer(MiniMLOptimizer):
    """Base class of the optax-backed optimizers accepted by `MiniMLModel.fit`.

    Subclasses implement `transformation` and `_program`. In `fit`, ``epochs=None``
    runs `default_epochs` epochs (1, Keras' default, unless a subclass says otherwise)
    and ``batch_size=None`` takes full batches (one step per epoch).

    Args:
        params: the parameters for the PyTorch-style loop (``model.parameters()`` or a
            list of `MiniMLParam`); None for optimizers passed to `fit`. When given
            and the optimizer is passed to `fit`, they must be exactly the fit's
            trainable parameters.
        keep_state: keep the optimizer state between fits (warm restart). Only fits of
            the same problem (same model, trainable parameters and size) may continue
            it; call `reset_state` to start over.
    """

    stochastic = True
    default_epochs: int = 1

    def __init__(self, params: Any = None, keep_state: bool = False) -> None:
        owner = type(self).__name__
        self.keep_state = check_flag(keep_state, owner, "keep_state")
        self._params = None if params is None else ParameterSet.from_params(params, owner)
        self._kept: _KeptState | None = None
        self._manual: ManualLoop | None = None

    # ------------------------------------------------------------ for subclasses
    @abstractmethod
    def transformation(self) -> optax.GradientTransformation:
        """The optax transformation of this optimizer's update rule, with its values."""

    @abstractmethod
    def _program(self) -> UpdateProgram:
        """The rule as compiled code uses it: built from traced values (see `_values`)."""

    def _values(self, dtype: Any) -> dict[str, Any]:
        """The traced numeric hyper-parameters, as scalars of ``dtype``."""
        return {}

    def _epoch_budget(self, options: Any, n_batches: int) -> tuple[int, int | None]:
        """``(epochs, max_steps)`` for a fit; ``max_steps=None`` means no step limit."""
        return (options.epochs or self.default_epochs), None

    def _tolerance(self) -> tuple[float, Callable[[Any], Any] | None]:
        """``(tol, measure)``: the run converges when ``measure(state) < tol``."""
        return 0.0, None

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> Any:
        """The optax state kept from the last fit (``keep_state=True``), else None."""
        return None if self._kept is None else self._kept.opt_state

    def reset_state(self) -> None:
        """Forget the kept fit state and the PyTorch-style loop's state."""
        self._kept = None
        self._manual = None

    def _initial_state(
        self, problem: Problem, program: UpdateProgram, values: dict[str, Any]
    ) -> tuple[Any, int]:
        kept = self._kept if self.keep_state else None
        if kept is None:
            key = ("stochastic_init", program.structure)
            init = problem.objective.cache.get(key)
            if init is None:
                init = jax.jit(lambda theta, values: program.make(values).init(theta))
                problem.objective.cache[key] = init
            return init(problem.x0, values), 0
        same = (
            kept.objective() is problem.objective
            and kept.size == problem.size
            and kept.dtype == problem.dtype
            and kept.structure == program.structure
        )
        if not same:
            raise MiniMLError(
                f"{type(self).__name__}: keep_state=True holds the optimizer state of an "
                f"earlier fit of a different problem (size {kept.size}, {kept.dtype}) or with "
                f"different options, and this fit has size {problem.size}, {problem.dtype}. "
                "Optimizer state is never shared between unrelated fits: call "
                "optimizer.reset_state() first, or use a separate optimizer per model."
            )
        return kept.opt_state, kept.epochs_done

    # --------------------------------------------------------------- fit path
    def minimize(self, problem: Problem) -> OptimizerResult:
        """Run compiled mini-batch epochs on ``problem`` (see `miniml.optim.minibatch`)."""
        owner = type(self).__name__
        if self._params is not None:
            self._params.check_matches(problem.layout, problem.model, owner)
        program, values = self._program(), self._values(problem.dtype)
        opt_state, first_epoch = self._initial_state(problem, program, values)
        plan = plan_batches(problem.n_samples, problem.options.batch_size, problem.options.shuffle)
        epochs, max_steps = self._epoch_budget(problem.options, plan.n_batches)
        tol, measure = self._tolerance()
        outcome = run_epochs(
            problem, program, values, opt_state, epochs=epochs, first_epoch=first_epoch,
            max_steps=max_steps, tol=tol, tol_measure=measure, keep_states=self.keep_state,
            where=f"{owner}.fit",
        )  # fmt: skip
        if self.keep_state:
            self._kept = _KeptState(
                weakref.ref(problem.objective), problem.size, problem.dtype, program.structure,
                outcome.opt_state, first_epoch + outcome.epochs,
            )  # fmt: skip
        return self._result(problem, outcome, plan, epochs, max_steps, tol)

    def _result(
        self, problem: Problem, outcome: RunOutcome, plan: BatchPlan, epochs: int,
        max_steps: int | None, tol: float,
    ) -> OptimizerResult:  # fmt: skip
        """The exact objective at the final point, and how the run went."""
        owner = type(self).__name__
        batch_size, n_batches = plan.batch_size, plan.n_batches
        x, fun = outcome.theta, problem.fun(outcome.theta)
        parts = [f"{outcome.epochs} epoch(s), {outcome.steps} step(s) of batch size {batch_size}"]
        problems: list[tuple[str, type[Warning]]] = []
        if not math.isfinite(fun):
            fallback = problem.fun(outcome.prev_theta)
            if math.isfinite(fallback):
                x, fun = outcome.prev_theta, fallback
                note = "the model keeps the parameters of the epoch before"
            else:
                note = "no recent point had a finite objective"
            text = f"the objective at the last point is not finite; {note}"
            problems.append((text, NonFiniteWarning))
        if outcome.n_rejected:
            ended = ""
            if outcome.all_rejected:
                which = ("all" if outcome.rejected_at_end == outcome.n_rejected
                         else f"{outcome.rejected_at_end} of them")  # fmt: skip
                ended = (
                    f" ({which} in the last epoch, which had no accepted step and ended the fit)"
                )
            cause = (
                "an epoch ended with non-finite parameters or optimizer state and was undone"
                if outcome.undone
                else "the batch loss or its gradient was not finite"
            )
            where = ""
            if outcome.first_rejection is not None:
                epoch, step = outcome.first_rejection
                where = f", the first in epoch {epoch} at step {step} of {n_batches}"
            text = (
                f"{outcome.n_rejected} step(s) were rejected because {cause}{ended}{where}; "
                "lower the learning rate (or raise eps) or check the model"
            )
            problems.append((text, NonFiniteWarning))
        hit_maxiter = max_steps is not None and outcome.steps >= max_steps
        if outcome.stopped:
            parts.append("stopped by a callback")
        elif outcome.converged:
            parts.append(f"converged: the tolerance tol={tol} was reached")
        elif tol > 0 and not outcome.all_rejected:
            limit = f"maxiter={max_steps} step(s)" if hit_maxiter else f"{epochs} epoch(s)"
            text = f"the tolerance tol={tol} was not reached within {limit}"
            problems.append((text, ConvergenceWarning))
        elif hit_maxiter:
            parts.append(f"reached maxiter={max_steps} steps")
        for text, category in problems:
            parts.append(text)
            warnings.warn(f"{owner}: {text}.", category, stacklevel=4)
        return OptimizerResult(
            x=np.asarray(x),
            fun=float(fun),
            success=not (problems or outcome.stopped),
            message="; ".join(parts) + ".",
            n_iterations=outcome.steps,
            n_function_evaluations=problem.n_fun,
            n_jacobian_evaluations=problem.n_grad,
        )

    # ------------------------------------------------------- PyTorch-style path
    def step(self) -> None:
        """Apply one update to ``params`` from the gradients stored by ``model.backward``.

        The flexible-but-slower path of the lecture's ``training_loop``: one host round
        trip per step. Prefer ``model.fit(..., optimizer=...)``, which runs whole epochs
        compiled.
        """
        self._loop("step").step()

    def zero_grad(self) -> None:
        """Clear the stored gradients of ``params`` (the next ``backward`` starts at 0)."""
        self._loop("zero_grad").zero_grad()

    def _loop(self, method: str) -> ManualLoop:
        if self._params is None:
            raise MiniMLError(
                f"{type(self).__name__}.{method}: this optimizer was created without "
                f"params. Create it as {type(self).__name__}(model.parameters(), ...) to use "
                "step() and zero_grad(), or pass it to model.fit(..., optimizer=...)."
            )
        if self._manual is None:
            self._manual = ManualLoop(self, self._params)
        return self._manual


class OptaxOptimizer(StochasticOptimizer):
    """Any optax `GradientTransformation` as a MiniML optimizer.

    ``model.fit(..., optimizer=tx)`` wraps a raw transformation in this class. Its
    hyper-parameters are compiled into the epoch, which is cached by the transformation
    object: reuse the object to fit again without compiling (MiniML's own optimizers
    trace their values instead). Its learning rate is reported in the history when it
    was built with `optax.inject_hyperparams` with a ``learning_rate``. The
    transformation sees the trainable parameters as one flat vector.

    Args:
        transformation: the optax transformation; its updates are *added* to the
            parameters (``optax.apply_updates``), so it must include the sign, as
            ``optax.sgd`` and friends do.
        params: see `StochasticOptimizer`.
        keep_state: see `StochasticOptimizer`.
    """

    def __init__(self, transformation: Any, params: Any = None, keep_state: bool = False) -> None:
        if not isinstance(transformation, optax.GradientTransformation):
            raise MiniMLError(
                "OptaxOptimizer: expected an optax GradientTransformation (e.g. "
                f"optax.adam(1e-3)), got {transformation!r}."
            )
        self._tx = transformation
        super().__init__(params, keep_state)

    @property
    def name(self) -> str:
        return "optax"

    def transformation(self) -> optax.GradientTransformation:
        return self._tx

    def _program(self) -> UpdateProgram:
        tx = self._tx
        return UpdateProgram(("optax", tx), lambda values: tx, _injected_learning_rate)

    def __repr__(self) -> str:
        return f"OptaxOptimizer({self._tx!r})"


def _injected_learning_rate(values: dict[str, Any], state: Any) -> Any:
    return find_learning_rate(state)


Optimizer = StochasticOptimizer
"""The seed's name for the base class of the PyTorch-style optimizers (``SGD``,
``AdaGrad``, ``RMSProp``, ``Adam``, ...): it holds ``step()`` and ``zero_grad()`` and is
not meant to be instantiated directly."""
