r"""MiniML's own Adam optimizers: `AdamOptimizer` and `AdamWOptimizer`.

They keep MiniML's names (``alpha``, ``beta_1``, ``beta_2``, ``eps``,
``weight_decay``, ``tol``, ``maxiter``) and run on the same compiled mini-batch driver
as the PyTorch-style classes: with ``fit(..., batch_size=None)`` (the default) every
iteration is one full-batch step, as in MiniML.

Stopping, as in MiniML: after every step the run checks :math:`\lVert m_t\rVert_2 <`
``tol`` (the norm of Adam's first moment, which vanishes at a stationary point) and
stops there with ``success=True``. ``maxiter`` caps the number of steps. Differences
from the public ``miniml-jax`` package: with the default ``tol=0.0`` (no tolerance)
a run that completes its steps reports ``success=True`` (miniml-jax reports False),
and a positive ``tol`` that is not reached gives ``success=False`` with a
`ConvergenceWarning`. ``ortho_grad`` of miniml-jax is not offered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from miniml.optim import _rules
from miniml.optim._rules import (
    check_learning_rate,
    check_nonnegative,
    check_positive_int,
    check_unit_interval,
)
from miniml.optim.minibatch import first_moment_norm
from miniml.optim.optimizers import RuleOptimizer

__all__ = ["AdamOptimizer", "AdamWOptimizer"]


class _MiniMLAdam(RuleOptimizer):
    """Arguments, stopping rule and epoch budget shared by MiniML's two Adam classes."""

    def __init__(
        self, alpha: Any, beta_1: float, beta_2: float, eps: float, weight_decay: float,
        tol: float, maxiter: int, keep_state: bool,
    ) -> None:  # fmt: skip
        owner = type(self).__name__
        self.alpha, self.beta_1, self.beta_2 = alpha, beta_1, beta_2
        self.eps, self.weight_decay = eps, weight_decay
        self.tol = check_nonnegative(tol, owner, "tol")
        self.maxiter = check_positive_int(maxiter, owner, "maxiter")
        self._rule_arguments()
        super().__init__(None, keep_state)

    def _rule_arguments(self) -> dict[str, Any]:
        owner = type(self).__name__
        return {
            "learning_rate": check_learning_rate(self.alpha, owner, "alpha"),
            "b1": check_unit_interval(self.beta_1, owner, "beta_1"),
            "b2": check_unit_interval(self.beta_2, owner, "beta_2"),
            "eps": check_nonnegative(self.eps, owner, "eps"),
            "weight_decay": check_nonnegative(self.weight_decay, owner, "weight_decay"),
        }

    # Checked again at every fit, like the rule's arguments: a value set after
    # construction (opt.maxiter = 0) must not train nothing and report success.
    def _epoch_budget(self, options: Any, n_batches: int) -> tuple[int, int | None]:
        maxiter = check_positive_int(self.maxiter, type(self).__name__, "maxiter")
        epochs = options.epochs or math.ceil(maxiter / n_batches)
        return epochs, maxiter

    def _tolerance(self) -> tuple[float, Callable[[Any], Any] | None]:
        tol = check_nonnegative(self.tol, type(self).__name__, "tol")
        return (tol, first_moment_norm) if tol > 0 else (0.0, None)

    def _public_arguments(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "eps": self.eps, "weight_decay": self.weight_decay, "tol": self.tol,
                "maxiter": self.maxiter}  # fmt: skip


class AdamOptimizer(_MiniMLAdam):
    r"""MiniML's Adam: the `Adam` rule with MiniML's argument names and stopping rule.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\tilde g_t, &
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\tilde g_t^2, \\
        \theta_t &= \theta_{t-1} - \alpha\,\frac{m_t/(1 - \beta_1^t)}
                    {\sqrt{v_t/(1 - \beta_2^t)} + \epsilon}

    with :math:`\tilde g_t = g_t + \lambda\theta_{t-1}` (coupled weight decay, as
    MiniML; it duplicates ``reg_lambda`` with an L2 regularizer, so use one of them).

    Args:
        alpha: learning rate α (float >= 0 or schedule).
        beta_1: β₁ in [0, 1).
        beta_2: β₂ in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0 (L2, added to the gradient).
        tol: stop when :math:`\lVert m_t\rVert_2 <` ``tol``; 0 disables the test.
        maxiter: at most this many steps. In ``fit``, ``epochs=None`` runs
            ``ceil(maxiter / steps per epoch)`` epochs (``maxiter`` epochs with full
            batches); with ``epochs`` given the run ends at whichever limit comes first.
        keep_state: keep the moments and step count between fits.
    """

    _rule = staticmethod(_rules.adam_rule)

    def __init__(
        self, alpha: Any = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
        eps: float = 1e-8, weight_decay: float = 0.0, tol: float = 0.0,
        maxiter: int = 1000, *, keep_state: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(alpha, beta_1, beta_2, eps, weight_decay, tol, maxiter, keep_state)


class AdamWOptimizer(_MiniMLAdam):
    r"""MiniML's AdamW: decoupled weight decay as Loshchilov & Hutter write it.

    .. math::
        \theta_t = \theta_{t-1} - \left(\alpha\,\frac{\hat m_t}{\sqrt{\hat v_t}
                   + \epsilon} + \lambda\theta_{t-1}\right)

    with the moments of the raw gradient. The decay is **not** multiplied by the
    learning rate (the paper with schedule multiplier 1, and MiniML's implementation);
    torch and optax multiply it by α, which is MiniML's PyTorch-style `AdamW`.

    Args:
        alpha: learning rate α (float >= 0 or schedule).
        beta_1: β₁ in [0, 1).
        beta_2: β₂ in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0 (decoupled, per step).
        tol: stop when :math:`\lVert m_t\rVert_2 <` ``tol``; 0 disables the test.
        maxiter: at most this many steps (see `AdamOptimizer`).
        keep_state: keep the moments and step count between fits.
    """

    _rule = staticmethod(_rules.paper_adamw_rule)

    def __init__(
        self, alpha: Any = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
        eps: float = 1e-8, weight_decay: float = 0.0, tol: float = 0.0,
        maxiter: int = 1000, *, keep_state: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(alpha, beta_1, beta_2, eps, weight_decay, tol, maxiter, keep_state)
