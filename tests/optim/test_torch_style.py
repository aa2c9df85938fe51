"""The PyTorch-style loop: ``model.backward``, ``opt.step()``, ``opt.zero_grad()``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_regression

from miniml import MiniMLModel, MiniMLParam
from miniml.errors import MiniMLError, NonFiniteWarning
from miniml.optim import SGD, Adam, RMSProp
from miniml.optim.torch_style import stored_gradients
from tests.models import LinearModel


class LinearRegression(MiniMLModel):
    def __init__(self, k: int) -> None:
        self.beta = MiniMLParam((k,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X @ self.beta(buffer)


def training_loop(model, X, y, optimizer, n=100):
    """The lecture's loop, with MiniML's backward in place of loss.backward()."""
    losses = []
    for _ in range(n):
        loss = model.backward(X, y)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def lecture_data():
    X, y = make_regression(n_samples=10000, n_features=20, n_informative=4, bias=3, noise=1,
                           random_state=1234)  # fmt: skip
    return np.c_[np.ones(len(y)), X], y


def test_lecture_training_loop_matches_numpy_and_torch(lecture_data):
    torch = pytest.importorskip("torch")
    X, y = lecture_data
    model = LinearRegression(X.shape[1])
    model.bind()
    losses = training_loop(model, X, y, SGD(model.parameters(), lr=1e-5), n=30)

    beta, numpy_losses = np.zeros(X.shape[1]), []
    for _ in range(30):
        residual = y - X @ beta
        numpy_losses.append(residual @ residual)
        beta = beta + 1e-5 * 2.0 * X.T @ residual
    np.testing.assert_allclose(np.asarray(model.beta.value), beta, rtol=1e-10)
    np.testing.assert_allclose(losses, numpy_losses, rtol=1e-10)

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    bt = torch.nn.Parameter(torch.zeros(X.shape[1], dtype=torch.float64))
    opt = torch.optim.SGD([bt], lr=1e-5)
    for _ in range(30):
        loss = (Xt @ bt - yt).pow(2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    np.testing.assert_allclose(np.asarray(model.beta.value), bt.detach().numpy(), rtol=1e-10)
    assert losses[-1] == pytest.approx(10244.764879521514, rel=1e-10)  # the lecture's value


def test_manual_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    W0, b0 = np.asarray(model.W.value), np.asarray(model.b.value)
    training_loop(model, X, y, Adam(model.parameters(), lr=0.05, weight_decay=0.01), n=15)

    W = torch.nn.Parameter(torch.tensor(W0))
    b = torch.nn.Parameter(torch.tensor(b0))
    opt = torch.optim.Adam([W, b], lr=0.05, weight_decay=0.01)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(15):
        # MiniML's objective: sum of squares plus reg_lambda=1 times ||W||^2.
        loss = (Xt @ W + b - yt).pow(2).sum() + W.pow(2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    np.testing.assert_allclose(np.asarray(model.W.value), W.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(model.b.value), b.detach().numpy(), rtol=1e-10)


def test_backward_accumulates_and_zero_grad_clears():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    W, b = np.asarray(model.W.value), np.asarray(model.b.value)
    loss = model.backward(X, y, reg_lambda=0.5)
    residual = y - X @ W - b
    assert float(loss) == pytest.approx(np.sum(residual**2) + 0.5 * np.sum(W**2), rel=1e-12)
    once = stored_gradients(model)
    np.testing.assert_allclose(once["W"], -2 * X.T @ residual + 2 * 0.5 * W, rtol=1e-12)
    model.backward(X, y, reg_lambda=0.5)
    np.testing.assert_allclose(stored_gradients(model)["W"], 2 * once["W"], rtol=1e-12)
    optimizer = SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    assert stored_gradients(model) is None
    with pytest.raises(MiniMLError, match=r"call model\.backward"):
        optimizer.step()


def test_an_optimizer_over_some_parameters_updates_only_those():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    b_before = np.asarray(model.b.value)
    W_before = np.asarray(model.W.value)
    only_W = RMSProp([model.W], lr=0.01)
    for _ in range(3):
        model.backward(X, y)
        only_W.step()
        only_W.zero_grad()
    assert not np.allclose(np.asarray(model.W.value), W_before)
    np.testing.assert_array_equal(np.asarray(model.b.value), b_before)


def test_changing_lr_between_steps_takes_effect():
    X, y = np.ones((4, 1)), np.zeros(4)
    model = LinearRegression(1)
    model.bind()
    model.set_params({"beta": np.ones(1)})
    optimizer = SGD(model.parameters(), lr=0.01)
    model.backward(X, y)  # gradient 2 * 4 * 1 = 8
    optimizer.step()
    optimizer.zero_grad()
    assert float(model.beta.value[0]) == pytest.approx(1 - 0.08)
    optimizer.lr = 0.001
    model.backward(X, y)
    optimizer.step()
    assert float(model.beta.value[0]) == pytest.approx(0.92 - 0.001 * 8 * 0.92)


def test_a_non_finite_step_is_skipped_with_a_warning():
    X, y = np.ones((4, 1)), np.zeros(4)
    model = LinearRegression(1)
    model.bind()
    model.set_params({"beta": np.ones(1)})
    optimizer = SGD(model.parameters(), lr=1e308)
    model.backward(X, y)
    with pytest.warns(NonFiniteWarning, match="step was skipped"):
        optimizer.step()
    assert float(model.beta.value[0]) == 1.0


def test_misuse_gets_clear_errors():
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    with pytest.raises(MiniMLError, match=r"SGD.step: this optimizer was created without params"):
        SGD(lr=0.1).step()
    with pytest.raises(MiniMLError, match="params\\[0\\] is a str"):
        SGD(["W"])
    with pytest.raises(MiniMLError, match="belong to 2 different models"):
        other = LinearModel(3, 1)
        SGD([model.W, other.W])
    with pytest.raises(MiniMLError, match="X has 5 samples but y has 4"):
        model.backward(np.ones((5, 3)), np.ones((4, 1)))
    with pytest.raises(MiniMLError, match="created with params \\['W'\\], but this fit trains"):
        model.fit(np.ones((5, 3)), np.ones((5, 1)), optimizer=SGD([model.W], lr=0.1))


def test_fit_refuses_an_optimizer_built_on_another_model():
    # Same class, same parameter names: comparing names alone let B train silently.
    A, B = LinearModel(3, 1), LinearModel(3, 1)
    A.randomize(seed=0)
    B.randomize(seed=1)
    before = np.asarray(B.get_buffer()).copy()
    with pytest.raises(MiniMLError, match=r"SGD\.fit: the optimizer was created with the params "
                       r"of a LinearModel .* but this fit trains a LinearModel"):  # fmt: skip
        B.fit(np.ones((5, 3)), np.ones((5, 1)), optimizer=SGD(A.parameters(), lr=0.1), epochs=1)
    np.testing.assert_array_equal(np.asarray(B.get_buffer()), before)


def test_an_optimizer_with_all_params_can_also_fit():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 1))
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    result = model.fit(X, y, optimizer=SGD(model.parameters(), lr=1e-3), epochs=2)
    assert result.success and len(result.history) == 2


def test_step_after_zero_grad_of_a_parameter_subset_leaves_it_as_torch_does():
    """zero_grad of an optimizer over [W] clears W's gradient while b keeps its own; a
    step() then has no gradient for W: torch leaves W unchanged (its grad is None),
    MiniML refuses the step, as it does when zero_grad cleared everything."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    W0 = np.asarray(model.W.value)
    only_W = SGD([model.W], lr=0.01, momentum=0.9)
    model.backward(X, y, reg_lambda=0.0)
    only_W.step()
    only_W.zero_grad()
    with pytest.raises(MiniMLError, match=r"SGD\.step: there is no stored gradient"):
        only_W.step()

    W = torch.nn.Parameter(torch.tensor(W0))
    b = torch.nn.Parameter(torch.tensor(np.asarray(model.b.value)))
    # MiniML's momentum (1 - mu) EMA is torch's momentum with the lr scaled by (1 - mu).
    opt = torch.optim.SGD([W], lr=0.01 * (1 - 0.9), momentum=0.9)
    ((torch.from_numpy(X) @ W + b - torch.from_numpy(y)) ** 2).sum().backward()
    opt.step()
    opt.zero_grad()
    opt.step()  # W.grad is None: no change
    np.testing.assert_allclose(np.asarray(model.W.value), W.detach().numpy(), rtol=1e-12)


def test_two_subset_optimizers_need_a_new_backward_after_both_zero_grads():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    model = LinearModel(3, 2)
    model.randomize(seed=0)
    opt_W, opt_b = Adam([model.W], lr=0.1), Adam([model.b], lr=0.1)
    model.backward(X, y)
    opt_W.step()
    opt_b.step()
    opt_W.zero_grad()
    opt_b.zero_grad()
    assert stored_gradients(model) is None
    buffer = np.asarray(model.get_buffer())
    for opt in (opt_W, opt_b):
        with pytest.raises(MiniMLError, match=r"Adam\.step: there is no stored gradient"):
            opt.step()
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), buffer)
    model.backward(X, y)  # a new gradient for every parameter
    opt_b.step()


def test_a_step_that_overflows_the_optimizer_state_is_skipped():
    """Adam's second moment g**2 overflows for g ~ 1e200 while the parameters stay
    finite; keeping that state would freeze the parameter for good (torch does). The
    step is skipped like a non-finite one, so later steps are torch's Adam on the
    remaining gradients."""
    torch = pytest.importorskip("torch")
    X, y = np.ones((2, 1)), np.zeros(2)
    model = LinearRegression(1)
    model.bind()
    model.set_params({"beta": np.ones(1)})
    optimizer = Adam(model.parameters(), lr=0.1)
    model.backward(1e100 * X, y)  # gradient 4e200: finite, its square is not
    with pytest.warns(NonFiniteWarning, match="step was skipped"):
        optimizer.step()
    optimizer.zero_grad()
    training_loop(model, X, y, optimizer, n=3)

    beta = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = torch.optim.Adam([beta], lr=0.1)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(3):
        ((Xt @ beta - yt) ** 2).sum().backward()
        opt.step()
        opt.zero_grad()
    assert float(model.beta.value[0]) != 1.0
    np.testing.assert_allclose(np.asarray(model.beta.value), beta.detach().numpy(), rtol=1e-12)
