"""Every stochastic optimizer's update rule against a numpy transcription of its
docstring, against optax, and against torch where torch implements the same rule."""

from __future__ import annotations

import re

import numpy as np
import optax
import pytest

from miniml.errors import MiniMLError
from miniml.optim import (
    SGD,
    AdaGrad,
    Adam,
    AdamOptimizer,
    AdamW,
    AdamWOptimizer,
    NAdam,
    RMSProp,
    cosine_decay_schedule,
)
from tests.models import LinearModel

N_STEPS, SIZE = 20, 7


def _gradients(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(size=SIZE)
    return theta0, [rng.normal(size=SIZE) * rng.uniform(0.1, 3.0) for _ in range(N_STEPS)]


def _run_miniml(optimizer, theta0, grads) -> np.ndarray:
    """Apply the optimizer's transformation to a fixed sequence of gradients."""
    tx = optimizer.transformation()
    theta = np.array(theta0)
    state = tx.init(theta)
    for g in grads:
        updates, state = tx.update(g, state, theta)
        theta = np.asarray(optax.apply_updates(theta, updates))
    return theta


# ----------------------------------------------------- numpy transcriptions
def np_sgd(theta, grads, lr, momentum=0.0, wd=0.0, nesterov=False):
    v = np.zeros_like(theta)
    for g in grads:
        g = g + wd * theta
        if momentum == 0.0:
            theta = theta - lr * g
            continue
        v = momentum * v + (1 - momentum) * g
        step = momentum * v + (1 - momentum) * g if nesterov else v
        theta = theta - lr * step
    return theta


def np_adagrad(theta, grads, lr, wd, eps):
    G = np.zeros_like(theta)
    for g in grads:
        g = g + wd * theta
        G = G + g**2
        theta = theta - lr * g / np.sqrt(G + eps)
    return theta


def np_rmsprop(theta, grads, lr, wd, eps, rho):
    c = np.zeros_like(theta)
    for g in grads:
        g = g + wd * theta
        c = rho * c + (1 - rho) * g**2
        theta = theta - lr * g / np.sqrt(c + eps)
    return theta


def np_adam(theta, grads, lr, b1, b2, eps, wd=0.0, mode="l2"):
    """mode: "l2" (Adam), "adamw" (decay × lr), "paper" (decay not × lr), "nadam"."""
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if mode in ("l2", "nadam"):
            g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        if mode == "nadam":
            m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        else:
            m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        step = m_hat / (np.sqrt(v_hat) + eps)
        if mode == "adamw":
            theta = theta - lr * (step + wd * theta)
        elif mode == "paper":
            theta = theta - (lr * step + wd * theta)
        else:
            theta = theta - lr * step
    return theta


CASES = {
    "sgd": (SGD(lr=0.05), lambda t, g: np_sgd(t, g, 0.05)),
    "sgd_wd": (SGD(lr=0.05, wd=0.3), lambda t, g: np_sgd(t, g, 0.05, wd=0.3)),
    "sgd_momentum": (
        SGD(lr=0.05, momentum=0.9, wd=0.1),
        lambda t, g: np_sgd(t, g, 0.05, 0.9, 0.1),
    ),
    "sgd_nesterov": (
        SGD(lr=0.05, momentum=0.8, nesterov=True),
        lambda t, g: np_sgd(t, g, 0.05, 0.8, nesterov=True),
    ),
    "adagrad": (AdaGrad(lr=0.1, wd=0.05, eps=1e-3), lambda t, g: np_adagrad(t, g, 0.1, 0.05, 1e-3)),
    "rmsprop": (
        RMSProp(lr=0.01, wd=0.05, eps=1e-4, rho=0.8),
        lambda t, g: np_rmsprop(t, g, 0.01, 0.05, 1e-4, 0.8),
    ),
    "adam": (
        Adam(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.1),
        lambda t, g: np_adam(t, g, 0.01, 0.8, 0.95, 1e-3, 0.1),
    ),
    "adamw": (
        AdamW(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.1),
        lambda t, g: np_adam(t, g, 0.01, 0.8, 0.95, 1e-3, 0.1, mode="adamw"),
    ),
    "nadam": (
        NAdam(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.1),
        lambda t, g: np_adam(t, g, 0.01, 0.8, 0.95, 1e-3, 0.1, mode="nadam"),
    ),
    "miniml_adam": (
        AdamOptimizer(alpha=0.01, beta_1=0.8, beta_2=0.95, eps=1e-3, weight_decay=0.1),
        lambda t, g: np_adam(t, g, 0.01, 0.8, 0.95, 1e-3, 0.1),
    ),
    "miniml_adamw": (
        AdamWOptimizer(alpha=0.01, beta_1=0.8, beta_2=0.95, eps=1e-3, weight_decay=0.1),
        lambda t, g: np_adam(t, g, 0.01, 0.8, 0.95, 1e-3, 0.1, mode="paper"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rule_matches_numpy_transcription(case):
    optimizer, reference = CASES[case]
    theta0, grads = _gradients(seed=len(case))
    expected = reference(theta0, grads)
    assert not np.allclose(expected, theta0)  # the rule moved the parameters
    np.testing.assert_allclose(_run_miniml(optimizer, theta0, grads), expected, rtol=1e-10)


def test_defaults_are_the_seeds():
    assert (SGD().lr, SGD().momentum, SGD().wd, SGD().nesterov) == (0.01, 0.0, 0.0, False)
    assert (AdaGrad().lr, AdaGrad().wd, AdaGrad().eps) == (0.001, 0.0, 1e-07)
    rms = RMSProp()
    assert (rms.lr, rms.wd, rms.eps, rms.rho) == (0.001, 0.0, 1e-07, 0.9)
    adam = Adam()
    assert (adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay) == (
        1e-05, 0.9, 0.999, 1e-08, 0.0)  # fmt: skip
    miniml_adam = AdamOptimizer()
    assert (miniml_adam.alpha, miniml_adam.beta_1, miniml_adam.beta_2, miniml_adam.eps) == (
        1e-3, 0.9, 0.999, 1e-8)  # fmt: skip


# ------------------------------------------------------------------ optax
OPTAX_CASES = {
    "sgd_wd": (
        SGD(lr=0.05, wd=0.3),
        optax.chain(optax.add_decayed_weights(0.3), optax.sgd(0.05)),
    ),
    "sgd_momentum_is_an_ema": (
        SGD(lr=0.05, momentum=0.9),
        optax.chain(optax.ema(0.9, debias=False), optax.scale(-0.05)),
    ),
    "adagrad": (
        AdaGrad(lr=0.1, eps=1e-3),
        optax.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-3),
    ),
    "rmsprop": (RMSProp(lr=0.01, eps=1e-4, rho=0.8), optax.rmsprop(0.01, decay=0.8, eps=1e-4)),
    "adam": (Adam(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3), optax.adam(0.01, 0.8, 0.95, 1e-3)),
    "adamw": (
        AdamW(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.1),
        optax.adamw(0.01, 0.8, 0.95, 1e-3, weight_decay=0.1),
    ),
    "nadam": (NAdam(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3), optax.nadam(0.01, 0.8, 0.95, 1e-3)),
    "adam_schedule": (
        Adam(lr=cosine_decay_schedule(0.05, 15)),
        optax.adam(optax.cosine_decay_schedule(0.05, 15), 0.9, 0.999, 1e-8),
    ),
}


@pytest.mark.parametrize("case", list(OPTAX_CASES))
def test_rule_matches_optax(case):
    optimizer, tx = OPTAX_CASES[case]
    theta0, grads = _gradients(seed=3)
    theta, state = np.array(theta0), tx.init(theta0)
    for g in grads:
        updates, state = tx.update(g, state, theta)
        theta = np.asarray(optax.apply_updates(theta, updates))
    np.testing.assert_allclose(_run_miniml(optimizer, theta0, grads), theta, rtol=1e-10)


def test_sgd_momentum_differs_from_optax_trace_convention():
    """MiniML keeps the seed's (1 − μ) factor; optax.sgd(momentum=μ) does not."""
    theta0, grads = _gradients(seed=4)
    theta, tx = np.array(theta0), optax.sgd(0.05, momentum=0.9)
    state = tx.init(theta)
    for g in grads:
        updates, state = tx.update(g, state, theta)
        theta = np.asarray(optax.apply_updates(theta, updates))
    assert not np.allclose(_run_miniml(SGD(lr=0.05, momentum=0.9), theta0, grads), theta)


# ------------------------------------------------------------------ torch
def _run_torch(make, theta0, grads) -> np.ndarray:
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    optimizer = make(torch, [param])
    for g in grads:
        param.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        if hasattr(optimizer, "scheduler"):
            optimizer.scheduler.step()
    return param.detach().numpy()


def _with_scheduler(optimizer, make_scheduler):
    """A torch optimizer with an lr_scheduler stepped after every optimizer step."""
    optimizer.scheduler = make_scheduler(optimizer)
    return optimizer


TORCH_CASES = {
    "sgd_wd": (SGD(lr=0.05, wd=0.3), lambda t, p: t.optim.SGD(p, lr=0.05, weight_decay=0.3)),
    # torch's momentum buffer has no (1 − μ) factor; by linearity MiniML's EMA momentum
    # is exactly torch's momentum (dampening 0) with the learning rate scaled by 1 − μ,
    # Nesterov and L2 decay included.
    "sgd_momentum_is_torch_with_lr_times_1_minus_mu": (
        SGD(lr=0.05, momentum=0.9, wd=0.1),
        lambda t, p: t.optim.SGD(p, lr=0.05 * (1 - 0.9), momentum=0.9, weight_decay=0.1),
    ),
    "sgd_nesterov_is_torch_with_lr_times_1_minus_mu": (
        SGD(lr=0.05, momentum=0.8, wd=0.2, nesterov=True),
        lambda t, p: t.optim.SGD(
            p, lr=0.05 * (1 - 0.8), momentum=0.8, weight_decay=0.2, nesterov=True
        ),
    ),
    # A schedule's step t is torch's learning rate after t scheduler.step() calls
    # (CosineAnnealingLR holds the cosine closed form while t <= T_max).
    "adam_cosine_schedule_is_torch_cosine_annealing": (
        Adam(lr=cosine_decay_schedule(0.05, 25, alpha=0.1)),
        lambda t, p: _with_scheduler(
            t.optim.Adam(p, lr=0.05),
            lambda o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=25, eta_min=0.005),
        ),
    ),
    # torch puts eps outside the square root: equal rules for eps = 0.
    "adagrad_eps0": (
        AdaGrad(lr=0.1, wd=0.05, eps=0.0),
        lambda t, p: t.optim.Adagrad(p, lr=0.1, weight_decay=0.05, eps=0.0),
    ),
    "rmsprop_eps0": (
        RMSProp(lr=0.01, wd=0.05, eps=0.0, rho=0.8),
        lambda t, p: t.optim.RMSprop(p, lr=0.01, alpha=0.8, eps=0.0, weight_decay=0.05),
    ),
    "adam_l2": (
        Adam(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.1),
        lambda t, p: t.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1),
    ),
    "miniml_adam": (
        AdamOptimizer(alpha=0.01, beta_1=0.8, beta_2=0.95, eps=1e-3, weight_decay=0.1),
        lambda t, p: t.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1),
    ),
    "adamw": (
        AdamW(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.1),
        lambda t, p: t.optim.AdamW(p, lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_rule_matches_torch(case):
    optimizer, make = TORCH_CASES[case]
    theta0, grads = _gradients(seed=5)
    expected = _run_torch(make, theta0, grads)
    np.testing.assert_allclose(_run_miniml(optimizer, theta0, grads), expected, rtol=1e-10)


# ----------------------------------------------------------- bad arguments
BAD_HYPERPARAMETERS = {
    "negative-lr": (lambda: SGD(lr=-0.1), "SGD: lr must be >= 0, got -0.1"),
    "nan-lr": (lambda: SGD(lr=float("nan")), "SGD: lr must be a finite number"),
    "string-lr": (lambda: SGD(lr="fast"), "SGD: lr must be a finite number"),
    "momentum-1": (lambda: SGD(momentum=1.0), "SGD: momentum must lie in [0, 1), got 1.0"),
    "negative-momentum": (lambda: SGD(momentum=-0.5), "SGD: momentum must lie in [0, 1)"),
    "nesterov-without-momentum": (lambda: SGD(nesterov=True), "SGD: nesterov=True needs"),
    "negative-wd": (lambda: SGD(wd=-1e-3), "SGD: wd must be >= 0, got -0.001"),
    "negative-eps": (lambda: AdaGrad(eps=-1e-7), "AdaGrad: eps must be >= 0"),
    "rho-above-1": (lambda: RMSProp(rho=1.5), "RMSProp: rho must lie in [0, 1), got 1.5"),
    "beta1-1": (lambda: Adam(beta1=1.0), "Adam: beta1 must lie in [0, 1), got 1.0"),
    "negative-beta2": (lambda: Adam(beta2=-0.1), "Adam: beta2 must lie in [0, 1), got -0.1"),
    "adamw-negative-eps": (lambda: AdamW(eps=-1.0), "AdamW: eps must be >= 0"),
    "nadam-negative-lr": (lambda: NAdam(lr=-1.0), "NAdam: lr must be >= 0"),
    "miniml-negative-alpha": (lambda: AdamOptimizer(alpha=-1e-3), "AdamOptimizer: alpha must be"),
    "miniml-beta1": (lambda: AdamOptimizer(beta_1=1.2), "AdamOptimizer: beta_1 must lie in"),
    "miniml-maxiter-0": (
        lambda: AdamOptimizer(maxiter=0),
        "AdamOptimizer: maxiter must be a positive int",
    ),
    "miniml-negative-tol": (lambda: AdamWOptimizer(tol=-1.0), "AdamWOptimizer: tol must be >= 0"),
    "negative-schedule": (lambda: Adam(lr=lambda step: -1.0), "returns -1.0 at step 0"),
    "schedule-signature": (lambda: Adam(lr=lambda: 1.0), "calling it with step 0 failed"),
    "keep-state-not-bool": (lambda: SGD(keep_state="yes"), "SGD: keep_state must be True or"),
}


@pytest.mark.parametrize("case", list(BAD_HYPERPARAMETERS))
def test_bad_hyperparameters_are_rejected_at_construction(case):
    make, fragment = BAD_HYPERPARAMETERS[case]
    with pytest.raises(MiniMLError) as info:
        make()
    message = str(info.value)
    assert fragment in message  # who complained, what was expected (and received)
    assert re.search(r"\bPass\b|\bpass\b", message), message  # and how to fix it


TORCH_ARGUMENTS = {
    "adam-betas": (
        lambda: Adam(betas=(0.9, 0.99)),
        "Adam: got betas=(0.9, 0.99), torch.optim's name; MiniML's Adam calls it beta1 and "
        "beta2: pass e.g. beta1=0.9, beta2=0.999",
    ),
    "sgd-weight-decay": (lambda: SGD(weight_decay=1e-4), "SGD calls it wd: pass e.g. wd=1e-4"),
    "rmsprop-alpha": (lambda: RMSProp(alpha=0.99), "RMSProp calls it rho: pass e.g. rho=0.9"),
    "adam-amsgrad": (
        lambda: Adam(amsgrad=True),
        "Adam: got an unknown argument amsgrad=True; Adam takes params, lr, beta1, beta2, eps, "
        "weight_decay, keep_state",
    ),
    "sgd-dampening": (lambda: SGD(dampening=0.1), "SGD: got an unknown argument dampening=0.1"),
    "adagrad-lr-decay": (lambda: AdaGrad(lr_decay=0.1), "AdaGrad: got an unknown argument lr_"),
    "rmsprop-momentum": (lambda: RMSProp(momentum=0.9), "RMSProp: got an unknown argument mom"),
    "misspelled": (lambda: AdamW(lrr=0.1), "AdamW: got an unknown argument lrr=0.1; AdamW takes"),
}


@pytest.mark.parametrize("case", list(TORCH_ARGUMENTS))
def test_torch_argument_names_say_what_miniml_calls_them(case):
    # Python's own TypeError named neither MiniML's spelling nor that the option is absent.
    make, fragment = TORCH_ARGUMENTS[case]
    with pytest.raises(MiniMLError) as info:
        make()
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("make", "attribute", "value", "fragment"),
    [
        (lambda: Adam(lr=1e-3), "lr", -1e-3, "Adam: lr must be >= 0"),
        (lambda: Adam(lr=1e-3), "beta2", 1.0, "Adam: beta2 must lie in [0, 1)"),
        (AdamOptimizer, "maxiter", 0, "AdamOptimizer: maxiter must be a positive int, got 0"),
        (AdamWOptimizer, "maxiter", 2.5, "AdamWOptimizer: maxiter must be a positive int"),
        (AdamOptimizer, "tol", -1.0, "AdamOptimizer: tol must be >= 0"),
        (AdamWOptimizer, "tol", float("nan"), "AdamWOptimizer: tol must be"),
    ],
    ids=["lr", "beta2", "adam-maxiter", "adamw-maxiter", "adam-tol", "adamw-tol-nan"],
)
def test_hyperparameters_changed_after_construction_are_checked_by_fit(
    make, attribute, value, fragment
):
    optimizer = make()
    setattr(optimizer, attribute, value)
    model = LinearModel(2, 1)
    model.bind()
    X, y = np.ones((4, 2)), np.ones((4, 1))
    with pytest.raises(MiniMLError, match=re.escape(fragment)):
        model.fit(X, y, optimizer=optimizer, epochs=1)
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), np.zeros(3))
