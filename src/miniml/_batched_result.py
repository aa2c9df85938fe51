"""What a batched fit returns: the members' raw runs and the `BatchedFitResult` built
from them.

`MemberRuns` is what the vmapped loops of `miniml._batched_run` hand back (numpy, one
entry per member); `lbfgs_result` and `stochastic_result` turn it into the public
`BatchedFitResult`, with each member's success, status and stop message and the
warnings of a batch. `BatchedFitResult` is re-exported by `miniml.batched` and
`miniml`, its documented homes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from miniml._batched_inputs import WHERE
from miniml.data import as_data, describe, describe_signature, signature_of
from miniml.errors import ConvergenceWarning, MiniMLError, NonFiniteWarning
from miniml.history import History
from miniml.optim import _lockstep
from miniml.optim._lbfgs_loop import _NONFINITE
from miniml.optim.lbfgs import _OUTCOMES
from miniml.predict import compiled_predict

if TYPE_CHECKING:
    from miniml.model import MiniMLModel
    from miniml.optim.lbfgs import LBFGS
    from miniml.optim.stochastic import StochasticOptimizer

__all__ = ["BatchedFitResult", "MemberRuns", "lbfgs_result", "stochastic_result"]


@dataclass
class MemberRuns:
    """What a batched run returns, one entry per member (numpy)."""

    x: np.ndarray  # (K, size)
    value: np.ndarray  # (K,)  objective at x (L-BFGS) or mean loss of the last epoch
    n_iterations: np.ndarray  # (K,) iterations (L-BFGS) or accepted steps (stochastic)
    n_evaluations: np.ndarray  # (K,) value-and-gradient evaluations
    status: np.ndarray  # (K,) L-BFGS status codes; stochastic: 0 ok, 1 rejected steps
    # Per member, per iteration or epoch: lists (stochastic) or numpy arrays (L-BFGS).
    loss: list[Any] = field(default_factory=list)
    grad_norm: list[Any] = field(default_factory=list)
    evaluations: list[Any] = field(default_factory=list)
    learning_rate: list[Any] = field(default_factory=list)
    converged: np.ndarray | None = None  # (K,) stochastic: the tolerance was reached

    def first(self, n: int) -> MemberRuns:
        """The first ``n`` members' runs (dropping the padding of a sharded batch)."""
        if n == len(self.x):
            return self
        kept: dict[str, Any] = {}
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            kept[name] = None if value is None else value[:n]
        return replace(self, **kept)


@dataclass
class BatchedFitResult:
    """The outcome of `fit_batched`: one entry per member, stacked.

    Attributes:
        x_opt: ``(K, model.size)`` fitted parameter buffers.
        objective_value: ``(K,)`` final objective of each member (loss + penalty on its
            own data; for stochastic optimizers the exact full-data objective).
        n_iterations: ``(K,)`` L-BFGS iterations, or accepted steps (stochastic).
        n_function_evaluations: ``(K,)`` objective evaluations of the member, counted as
            its single fit counts them: L-BFGS value-and-gradient evaluations;
            stochastic: one per step (accepted or rejected) plus the evaluation of the
            exact objective at the end.
        success: ``(K,)`` whether each member converged (L-BFGS) or ran without
            rejected steps and reached its tolerance if it had one (stochastic).
        status: ``(K,)`` L-BFGS status codes (0 converged, 1 limit, 2 line search,
            3 non-finite); stochastic: 0 or 1 (rejected steps or missed tolerance).
        messages: each member's stop message.
        loss_history: each member's objective per iteration (L-BFGS) or mean step loss
            per epoch (stochastic).
        grad_norm_history: each member's gradient 2-norm per iteration (L-BFGS), or of
            the mean accepted batch gradient per epoch (stochastic; NaN where the
            optimizer reports none).
        evaluation_history: each member's value-and-gradient evaluations so far after
            each iteration (L-BFGS: the one at the start included) or epoch (stochastic:
            the steps so far, without the final evaluation, as a single fit's history).
        learning_rate_history: each member's learning rate per epoch (stochastic
            optimizers that report one; None for L-BFGS).
        reg_lambda: ``(K,)`` the members' ``reg_lambda``.
        optimizer: the optimizer's label.
    """

    x_opt: np.ndarray
    objective_value: np.ndarray
    n_iterations: np.ndarray
    n_function_evaluations: np.ndarray
    success: np.ndarray
    status: np.ndarray
    messages: list[str]
    loss_history: list[np.ndarray]
    grad_norm_history: list[np.ndarray] | None
    evaluation_history: list[np.ndarray] | None
    reg_lambda: np.ndarray
    optimizer: str
    learning_rate_history: list[np.ndarray] | None = None
    _model: Any = field(repr=False, default=None)
    _signature: Any = field(repr=False, default=None)
    _static: tuple = field(repr=False, default=())
    _lockstep: bool = field(repr=False, default=False)
    _groups: int = field(repr=False, default=1)

    @property
    def n_members(self) -> int:
        """K, the number of members."""
        return int(self.x_opt.shape[0])

    def __len__(self) -> int:
        return self.n_members

    @property
    def lockstep_evaluations(self) -> int | None:
        """Batched value-and-gradient evaluations of an L-BFGS batch (None otherwise).

        The members advance in lockstep: one evaluation at the start, then in every
        iteration one per round of the zoom line search, for as many rounds as the
        member that needs the most, so ``1 + sum_i max_k steps_k(i)``. Compare with
        ``n_function_evaluations``, what each member needs on its own. A batch run in
        `groups` runs this lockstep in each group, over the group's members (the last
        group's padding being copies of member 0); this is then the largest count of a
        group. None also when the batch ran optax's own line search (see
        `miniml.PerformanceWarning`): its rounds cost two evaluations, and stopped
        members search too.
        """
        if not self._lockstep or not self.evaluation_history:
            return None
        longest = max(len(counts) for counts in self.evaluation_history)
        steps = np.zeros((len(self.evaluation_history), longest), int)
        for k, counts in enumerate(self.evaluation_history):
            steps[k, : len(counts)] = np.diff(counts, prepend=1)
        size = -(-len(steps) // self.groups)
        members = np.arange(size * self.groups)
        members[members >= len(steps)] = 0  # the padding
        rounds = steps[members].reshape(self.groups, size, longest).max(axis=1).sum(axis=1)
        return 1 + int(rounds.max())

    @property
    def groups(self) -> int:
        """How many groups of members the L-BFGS batch fitted one after the other (equal
        groups of consecutive members; 1 unless its data exceeded
        `miniml._batched_run.GROUP_BYTES` on a CPU)."""
        return self._groups

    def _index(self, i: Any, where: str) -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise MiniMLError(f"BatchedFitResult.{where}: i must be an int, got {i!r}.")
        if not -self.n_members <= i < self.n_members:
            raise MiniMLError(
                f"BatchedFitResult.{where}: member {i} does not exist; the batch has "
                f"{self.n_members} members (0 to {self.n_members - 1})."
            )
        return int(i) % self.n_members

    def member(self, i: int) -> MiniMLModel:
        """Member ``i`` as an ordinary fitted model: a clone holding its parameters."""
        k = self._index(i, "member")
        model = self._model.clone()
        model.bind()
        model.set_buffer(jnp.asarray(self.x_opt[k], model.dtype))
        model._miniml_input_signature = self._signature
        return model

    def history(self, i: int) -> History:
        """Member ``i``'s per-iteration (or per-epoch) records as a `History`."""
        k = self._index(i, "history")
        history = History()
        grads = None if self.grad_norm_history is None else self.grad_norm_history[k]
        counts = None if self.evaluation_history is None else self.evaluation_history[k]
        rates = None if self.learning_rate_history is None else self.learning_rate_history[k]

        def number(values: Any, row: int) -> float | None:
            return None if values is None or np.isnan(values[row]) else float(values[row])

        for row, loss in enumerate(self.loss_history[k]):
            history.append({
                "stage": self.optimizer, "iteration": row + 1, "loss": float(loss),
                "grad": number(grads, row),
                "fg_evals": None if counts is None else int(counts[row]),
                "hessp_evals": 0, "learning_rate": number(rates, row), "time": None,
            })  # fmt: skip
        return history

    def predict(self, X: Any) -> Any:
        """Every member's prediction on the same ``X``, stacked: ``(K, n, ...)``."""
        model = self._model
        where = "BatchedFitResult.predict"
        data, _ = as_data(X, "X", where, model.dtype)
        if self._signature is not None and signature_of(data) != self._signature:
            raise MiniMLError(
                f"{where}: the members were fitted on X like "
                f"{describe_signature(self._signature)} (shapes "
                f"after the sample axis must match), but got X like {describe(data)}."
            )
        key = ("batched_predict", self._static)
        fn = model._compiled.get(key)
        if fn is None:
            single = compiled_predict(model, self._static)
            fn = model._compiled[key] = jax.jit(jax.vmap(single, in_axes=(0, None, None)))
        return fn(jnp.asarray(self.x_opt, model.dtype), data, {})


def _warn(success: np.ndarray, messages: list[str], category: type[Warning], what: str) -> None:
    failed = np.flatnonzero(~success)
    if failed.size:
        first = int(failed[0])
        warnings.warn(
            f"{WHERE}: {failed.size} of {success.size} member(s) {what} (e.g. member "
            f"{first}: {messages[first]}); see result.success and result.messages.",
            category,
            stacklevel=4,
        )


def lbfgs_result(
    runs: MemberRuns, lambdas: np.ndarray, opt: LBFGS, groups: int = 1
) -> BatchedFitResult:
    """The result of an L-BFGS batch: the loop's own counts, statuses and messages."""
    statuses = runs.status.tolist()
    success = np.array([_OUTCOMES[s][0] for s in statuses])
    messages = [_OUTCOMES[s][2] for s in statuses]
    nonfinite = runs.status == _NONFINITE
    _warn(~nonfinite, messages, NonFiniteWarning, "hit a non-finite objective or gradient")
    _warn(success | nonfinite, messages, ConvergenceWarning, "did not converge")
    return BatchedFitResult(
        x_opt=runs.x, objective_value=runs.value, n_iterations=runs.n_iterations,
        n_function_evaluations=runs.n_evaluations, success=success,
        status=np.array([_OUTCOMES[s][1] for s in statuses]), messages=messages,
        loss_history=runs.loss, grad_norm_history=runs.grad_norm,
        evaluation_history=runs.evaluations,
        reg_lambda=np.asarray(lambdas), optimizer=opt.name,
        _lockstep=_lockstep.lockstep_unavailable() is None, _groups=groups,
    )  # fmt: skip


def stochastic_result(
    runs: MemberRuns, exact: np.ndarray, lambdas: np.ndarray, opt: StochasticOptimizer
) -> BatchedFitResult:
    """The result of a stochastic batch whose members' exact final objectives are ``exact``.

    Each member's ``n_function_evaluations`` counts its steps' evaluations (accepted and
    rejected) plus the one of ``exact``, as a single stochastic fit counts its steps and
    its final full objective (`StochasticOptimizer._result`); its evaluation history,
    like a single fit's, counts the steps only.
    """
    tol, _ = opt._tolerance()
    converged = runs.converged if runs.converged is not None else np.zeros(len(exact), bool)
    rejected = runs.status > 0
    missed = (tol > 0) & ~converged
    messages = []
    for k in range(len(exact)):
        text = f"{len(runs.loss[k])} epoch(s), {runs.n_iterations[k]} step(s)"
        if converged[k]:
            text += f"; converged: the tolerance tol={tol} was reached"
        if missed[k]:
            text += f"; the tolerance tol={tol} was not reached"
        if rejected[k]:
            text += "; some steps were rejected because of non-finite values"
        messages.append(text + ".")
    finite = np.isfinite(exact) & ~rejected
    _warn(finite, messages, NonFiniteWarning, "had non-finite steps or objective")
    _warn(~missed | ~finite, messages, ConvergenceWarning, "did not reach the tolerance")
    return BatchedFitResult(
        x_opt=runs.x, objective_value=exact, n_iterations=runs.n_iterations,
        n_function_evaluations=runs.n_evaluations + 1, success=finite & ~missed,
        status=(~(finite & ~missed)).astype(int), messages=messages,
        loss_history=[np.asarray(v) for v in runs.loss],
        grad_norm_history=[np.asarray(v, float) for v in runs.grad_norm],
        evaluation_history=[np.asarray(v, int) for v in runs.evaluations],
        learning_rate_history=[np.asarray(v, float) for v in runs.learning_rate],
        reg_lambda=np.asarray(lambdas), optimizer=opt.name,
    )  # fmt: skip
