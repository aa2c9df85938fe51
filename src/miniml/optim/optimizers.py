r"""The PyTorch-style optimizers of the seed: SGD, AdaGrad, RMSProp, Adam, AdamW, NAdam.

Each class takes ``params`` first (``model.parameters()`` for the ``step()`` /
``zero_grad()`` loop of `miniml.optim.torch_style`, or None to pass it to
``model.fit``) and the seed's hyper-parameter names and defaults. A learning rate
may be a float or a schedule (any callable step → learning rate, e.g. from
`miniml.optim.schedules`).

Notation: :math:`\theta_t` parameters after step :math:`t`, :math:`g_t` the gradient
of the objective at :math:`\theta_{t-1}`, :math:`\alpha` the learning rate. Weight
decay :math:`\lambda` is coupled (L2) in SGD, AdaGrad, RMSProp, Adam and NAdam, as in
the seed and in ``torch.optim``: the rules use :math:`\tilde g_t = g_t +
\lambda\theta_{t-1}`. AdamW decouples it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from miniml.errors import MiniMLError
from miniml.optim import _rules
from miniml.optim._rules import (
    check_argument_name,
    check_flag,
    check_learning_rate,
    check_nonnegative,
    check_unit_interval,
)
from miniml.optim.minibatch import UpdateProgram, schedule_count
from miniml.optim.stochastic import StochasticOptimizer

__all__ = ["SGD", "AdaGrad", "Adam", "AdamW", "NAdam", "RMSProp", "RuleOptimizer"]


class RuleOptimizer(StochasticOptimizer):
    """An optimizer whose update rule is an optax factory of `miniml.optim._rules`.

    Subclasses set ``_rule`` and implement `_rule_arguments`, which checks the
    hyper-parameter attributes (every call, so ``opt.lr = 1e-4`` is checked too) and
    maps them to the factory's argument names. Floats are traced values of the compiled
    program; bools and schedules (callables) are part of its structure. The rule's
    initial state must not depend on the values (optax's accumulators start at zero).
    """

    _rule: Callable[..., optax.GradientTransformation]

    def __new__(cls, *args: Any, **kwargs: Any) -> RuleOptimizer:
        # Runs before __init__, whose TypeError for a torch.optim name (betas=, alpha=,
        # amsgrad=) would not say what MiniML calls it or that it is not offered.
        for name, value in kwargs.items():
            check_argument_name(cls, name, value)
        return super().__new__(cls)

    def _rule_arguments(self) -> dict[str, Any]:
        raise NotImplementedError

    def transformation(self) -> optax.GradientTransformation:
        return type(self)._rule(**self._rule_arguments())

    def _values(self, dtype: Any) -> dict[str, Any]:
        return {k: np.asarray(v, dtype) for k, v in self._rule_arguments().items()
                if _is_value(v)}  # fmt: skip

    def _program(self) -> UpdateProgram:
        arguments = self._rule_arguments()
        # Bools and schedules: check_learning_rate has made sure a schedule hashes.
        static = {k: v for k, v in arguments.items() if not _is_value(v)}
        rule = type(self)._rule
        names = tuple(sorted(k for k in arguments if k not in static))
        structure = (type(self), tuple(sorted(static.items())), names)

        def make(values: dict[str, Any]) -> optax.GradientTransformation:
            return rule(**static, **values)

        schedule = static.get("learning_rate")
        if schedule is None:
            return UpdateProgram(structure, make, lambda values, state: values["learning_rate"])

        def scheduled(values: dict[str, Any], state: Any) -> Any:
            return schedule(jnp.maximum(schedule_count(state) - 1, 0))

        return UpdateProgram(structure, make, scheduled)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._public_arguments().items())
        return f"{type(self).__name__}({args})"

    def _public_arguments(self) -> dict[str, Any]:
        return {}


def _is_value(argument: Any) -> bool:
    """A traced value: a float (bools and schedules are structure)."""
    return isinstance(argument, float)


class SGD(RuleOptimizer):
    r"""Stochastic gradient descent with the seed's momentum and weight decay.

    .. math::
        \tilde g_t &= g_t + \lambda\theta_{t-1} \\
        \mu = 0:\quad \theta_t &= \theta_{t-1} - \alpha\tilde g_t
            = (1 - \alpha\lambda)\theta_{t-1} - \alpha g_t \\
        \mu > 0:\quad v_t &= \mu v_{t-1} + (1 - \mu)\tilde g_t,\quad v_0 = 0,\qquad
            \theta_t = \theta_{t-1} - \alpha v_t \\
        \text{nesterov}:\quad \theta_t &= \theta_{t-1}
            - \alpha\left(\mu v_t + (1 - \mu)\tilde g_t\right)

    Symbols: :math:`\alpha` ``lr``, :math:`\mu` ``momentum``, :math:`\lambda` ``wd``.
    Built from optax blocks: ``add_decayed_weights(λ)``, ``scale(1 − μ)``,
    ``trace(μ, nesterov)``, ``scale_by_learning_rate(α)``.

    Conventions: MiniML follows the seed's momentum *with* the :math:`(1-\mu)` factor
    (an exponential moving average). ``torch.optim.SGD`` and ``optax.sgd`` accumulate
    :math:`v_t = \mu v_{t-1} + g_t` instead (torch's ``dampening=μ`` gives the
    :math:`(1-\mu)` factor except on the first step), so their effective step is about
    :math:`1/(1-\mu)` times larger. Without momentum all three agree.

    Args:
        params: ``model.parameters()`` for ``step()``/``zero_grad()``; None for ``fit``.
        lr: learning rate α (float >= 0 or schedule).
        momentum: μ in [0, 1).
        wd: weight decay λ >= 0 (L2, added to the gradient).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        keep_state: keep the momentum between fits (see `StochasticOptimizer`).
    """

    _rule = staticmethod(_rules.sgd_rule)

    def __init__(
        self,
        params: Any = None,
        lr: Any = 0.01,
        momentum: float = 0.0,
        wd: float = 0.0,
        nesterov: bool = False,
        *,
        keep_state: bool = False,
    ) -> None:
        self.lr, self.momentum, self.wd, self.nesterov = lr, momentum, wd, nesterov
        self._rule_arguments()
        super().__init__(params, keep_state)

    def _rule_arguments(self) -> dict[str, Any]:
        owner = "SGD"
        momentum = check_unit_interval(self.momentum, owner, "momentum")
        nesterov = check_flag(self.nesterov, owner, "nesterov")
        if nesterov and momentum == 0.0:
            raise MiniMLError(
                "SGD: nesterov=True needs momentum > 0 (with momentum=0 it would change "
                "nothing); pass e.g. momentum=0.9."
            )
        return {
            "learning_rate": check_learning_rate(self.lr, owner, "lr"),
            "momentum": momentum,
            "weight_decay": check_nonnegative(self.wd, owner, "wd"),
            "nesterov": nesterov,
        }

    def _public_arguments(self) -> dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "wd": self.wd, "nesterov": self.nesterov}


class AdaGrad(RuleOptimizer):
    r"""AdaGrad: per-parameter steps shrinking with the sum of squared gradients.

    .. math::
        G_t = G_{t-1} + \tilde g_t^2,\quad G_0 = 0,\qquad
        \theta_t = \theta_{t-1} - \frac{\alpha}{\sqrt{G_t + \epsilon}}\,\tilde g_t

    with :math:`\tilde g_t = g_t + \lambda\theta_{t-1}`. Symbols: :math:`\alpha` ``lr``,
    :math:`\epsilon` ``eps``, :math:`\lambda` ``wd``. Built from
    ``optax.scale_by_rss(initial_accumulator_value=0, eps=ε)``.

    Conventions: MiniML follows the seed (ε inside the root, :math:`G_0 = 0`), which is
    ``optax.adagrad(initial_accumulator_value=0.0, eps=ε)``; ``torch.optim.Adagrad``
    adds ε outside the root (the two agree for ε = 0) and optax's default
    :math:`G_0` is 0.1.

    Args:
        params: ``model.parameters()`` for ``step()``/``zero_grad()``; None for ``fit``.
        lr: learning rate α (float >= 0 or schedule).
        wd: weight decay λ >= 0 (L2).
        eps: ε >= 0.
        keep_state: keep :math:`G` between fits.
    """

    _rule = staticmethod(_rules.adagrad_rule)

    def __init__(
        self, params: Any = None, lr: Any = 0.001, wd: float = 0.0, eps: float = 1e-07,
        *, keep_state: bool = False,
    ) -> None:  # fmt: skip
        self.lr, self.wd, self.eps = lr, wd, eps
        self._rule_arguments()
        super().__init__(params, keep_state)

    def _rule_arguments(self) -> dict[str, Any]:
        return {
            "learning_rate": check_learning_rate(self.lr, "AdaGrad", "lr"),
            "weight_decay": check_nonnegative(self.wd, "AdaGrad", "wd"),
            "eps": check_nonnegative(self.eps, "AdaGrad", "eps"),
        }

    def _public_arguments(self) -> dict[str, Any]:
        return {"lr": self.lr, "wd": self.wd, "eps": self.eps}


class RMSProp(RuleOptimizer):
    r"""RMSProp: steps scaled by a running mean of squared gradients.

    .. math::
        c_t = \rho c_{t-1} + (1 - \rho)\tilde g_t^2,\quad c_0 = 0,\qquad
        \theta_t = \theta_{t-1} - \frac{\alpha}{\sqrt{c_t + \epsilon}}\,\tilde g_t

    with :math:`\tilde g_t = g_t + \lambda\theta_{t-1}`. Symbols: :math:`\alpha` ``lr``,
    :math:`\rho` ``rho``, :math:`\epsilon` ``eps``, :math:`\lambda` ``wd``. Built from
    ``optax.scale_by_rms(decay=ρ, eps=ε, eps_in_sqrt=True)``.

    Conventions: identical to ``optax.rmsprop(decay=ρ, eps=ε)``;
    ``torch.optim.RMSprop(alpha=ρ)`` adds ε outside the root (equal for ε = 0).

    Args:
        params: ``model.parameters()`` for ``step()``/``zero_grad()``; None for ``fit``.
        lr: learning rate α (float >= 0 or schedule).
        wd: weight decay λ >= 0 (L2).
        eps: ε >= 0.
        rho: decay ρ in [0, 1).
        keep_state: keep :math:`c` between fits.
    """

    _rule = staticmethod(_rules.rmsprop_rule)

    def __init__(
        self, params: Any = None, lr: Any = 0.001, wd: float = 0.0, eps: float = 1e-07,
        rho: float = 0.9, *, keep_state: bool = False,
    ) -> None:  # fmt: skip
        self.lr, self.wd, self.eps, self.rho = lr, wd, eps, rho
        self._rule_arguments()
        super().__init__(params, keep_state)

    def _rule_arguments(self) -> dict[str, Any]:
        return {
            "learning_rate": check_learning_rate(self.lr, "RMSProp", "lr"),
            "weight_decay": check_nonnegative(self.wd, "RMSProp", "wd"),
            "eps": check_nonnegative(self.eps, "RMSProp", "eps"),
            "rho": check_unit_interval(self.rho, "RMSProp", "rho"),
        }

    def _public_arguments(self) -> dict[str, Any]:
        return {"lr": self.lr, "wd": self.wd, "eps": self.eps, "rho": self.rho}


class _AdamFamily(RuleOptimizer):
    """Shared arguments of Adam, AdamW and NAdam."""

    def __init__(
        self, params: Any, lr: Any, beta1: float, beta2: float, eps: float,
        weight_decay: float, keep_state: bool,
    ) -> None:  # fmt: skip
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.eps, self.weight_decay = eps, weight_decay
        self._rule_arguments()
        super().__init__(params, keep_state)

    def _rule_arguments(self) -> dict[str, Any]:
        owner = type(self).__name__
        return {
            "learning_rate": check_learning_rate(self.lr, owner, "lr"),
            "b1": check_unit_interval(self.beta1, owner, "beta1"),
            "b2": check_unit_interval(self.beta2, owner, "beta2"),
            "eps": check_nonnegative(self.eps, owner, "eps"),
            "weight_decay": check_nonnegative(self.weight_decay, owner, "weight_decay"),
        }

    def _public_arguments(self) -> dict[str, Any]:
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}  # fmt: skip


class Adam(_AdamFamily):
    r"""Adam (Kingma & Ba) with bias correction by the step count.

    .. math::
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\tilde g_t, &
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\tilde g_t^2, \\
        \hat m_t &= m_t / (1 - \beta_1^t), &
        \hat v_t &= v_t / (1 - \beta_2^t), \\
        \theta_t &= \theta_{t-1} - \alpha\,\hat m_t / (\sqrt{\hat v_t} + \epsilon)

    with :math:`m_0 = v_0 = 0` and :math:`\tilde g_t = g_t + \lambda\theta_{t-1}`.
    Symbols: :math:`\alpha` ``lr``, :math:`\beta_1` ``beta1``, :math:`\beta_2`
    ``beta2``, :math:`\epsilon` ``eps``, :math:`\lambda` ``weight_decay``. Built from
    ``optax.scale_by_adam``.

    Conventions: without decay it is ``optax.adam`` and ``torch.optim.Adam``; the
    coupled decay is ``torch.optim.Adam(weight_decay=λ)`` (optax has none in adam). For
    decoupled decay use `AdamW`. The default ``lr=1e-5`` is the seed's.

    Args:
        params: ``model.parameters()`` for ``step()``/``zero_grad()``; None for ``fit``.
        lr: learning rate α (float >= 0 or schedule).
        beta1: β₁ in [0, 1).
        beta2: β₂ in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0 (L2, added to the gradient).
        keep_state: keep the moments and step count between fits.
    """

    _rule = staticmethod(_rules.adam_rule)

    def __init__(
        self, params: Any = None, lr: Any = 1e-05, beta1: float = 0.9, beta2: float = 0.999,
        eps: float = 1e-08, weight_decay: float = 0.0, *, keep_state: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(params, lr, beta1, beta2, eps, weight_decay, keep_state)


class AdamW(_AdamFamily):
    r"""AdamW: Adam with decoupled weight decay, multiplied by the learning rate.

    .. math::
        \theta_t = \theta_{t-1} - \alpha\left(\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        + \lambda\theta_{t-1}\right)

    with the moments of `Adam` computed from the raw gradient :math:`g_t`. Symbols as
    in `Adam`. Built from ``scale_by_adam``, ``add_decayed_weights(λ)``,
    ``scale_by_learning_rate(α)``.

    Conventions: the decay is multiplied by α, as in ``torch.optim.AdamW`` and
    ``optax.adamw`` (Loshchilov & Hutter multiply it only by a schedule factor; that
    form is MiniML's `AdamWOptimizer`). Defaults are torch's (``lr=1e-3``,
    ``weight_decay=1e-2``).

    Args:
        params: ``model.parameters()`` for ``step()``/``zero_grad()``; None for ``fit``.
        lr: learning rate α (float >= 0 or schedule).
        beta1: β₁ in [0, 1).
        beta2: β₂ in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0 (decoupled).
        keep_state: keep the moments and step count between fits.
    """

    _rule = staticmethod(_rules.adamw_rule)

    def __init__(
        self, params: Any = None, lr: Any = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
        eps: float = 1e-08, weight_decay: float = 1e-2, *, keep_state: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(params, lr, beta1, beta2, eps, weight_decay, keep_state)


class NAdam(_AdamFamily):
    r"""NAdam: Adam with a Nesterov first moment (Dozat 2016, as ``optax.nadam``).

    .. math::
        \hat m_t = \frac{\beta_1 m_t}{1 - \beta_1^{t+1}}
                 + \frac{(1 - \beta_1)\tilde g_t}{1 - \beta_1^t},\qquad
        \theta_t = \theta_{t-1} - \alpha\,\hat m_t / (\sqrt{\hat v_t} + \epsilon)

    with :math:`m_t, v_t, \hat v_t, \tilde g_t` as in `Adam`. Symbols as in `Adam`.
    Built from ``optax.scale_by_adam(nesterov=True)``.

    Conventions: equal to ``optax.nadam``. ``torch.optim.NAdam`` also multiplies
    :math:`\beta_1` by a momentum-decay schedule
    :math:`1 - \tfrac12 0.96^{t\psi}` (ψ = 0.004) and therefore differs. Default
    ``lr=2e-3`` is torch's.

    Args:
        params: ``model.parameters()`` for ``step()``/``zero_grad()``; None for ``fit``.
        lr: learning rate α (float >= 0 or schedule).
        beta1: β₁ in [0, 1).
        beta2: β₂ in [0, 1).
        eps: ε >= 0.
        weight_decay: λ >= 0 (L2, added to the gradient).
        keep_state: keep the moments and step count between fits.
    """

    _rule = staticmethod(_rules.nadam_rule)

    def __init__(
        self, params: Any = None, lr: Any = 2e-3, beta1: float = 0.9, beta2: float = 0.999,
        eps: float = 1e-08, weight_decay: float = 0.0, *, keep_state: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(params, lr, beta1, beta2, eps, weight_decay, keep_state)
