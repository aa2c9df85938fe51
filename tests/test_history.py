"""History, validation metrics, callbacks, early stopping, progress, staged fits and
interrupts, on the SciPy, compiled L-BFGS and stochastic paths."""

import itertools
import warnings

import numpy as np
import pytest

from miniml import MiniMLError, MiniMLModel, MiniMLParam
from miniml.callbacks import Callback, EarlyStopping, LambdaCallback
from miniml.errors import ConvergenceWarning
from miniml.history import BASE_COLUMNS
from miniml.loss import LNormRegularization, mean_squared_error_loss
from miniml.metrics import Accuracy, LogLoss, mean_absolute_error, mean_squared_error, r2_score
from miniml.optim import LBFGS, SGD, Adam, ScipyOptimizer
from tests.models import LinearModel, TinyMLP


class KormosRegression(MiniMLModel):
    """Keras Dense(1, use_bias=False, kernel_regularizer=L2(1e-3)) with MSE, as in Kormos."""

    def __init__(self, rank):
        self.kernel = MiniMLParam((rank, 1), reg_loss=LNormRegularization(2))
        super().__init__(loss=mean_squared_error_loss)

    def _predict_kernel(self, X, buffer):
        return X @ self.kernel(buffer)


def kormos_data():
    rank = 50
    np.random.seed(1)
    w = np.random.normal(size=rank)
    X = np.random.normal(size=(1000, rank))
    y = np.expand_dims(X.dot(w), axis=1)
    Xval = np.random.normal(size=(1000, rank))
    yval = np.expand_dims(Xval.dot(w), axis=1)
    return X, y, Xval, yval


def test_kormos_readme_history():
    X, y, Xval, yval = kormos_data()
    model = KormosRegression(50)
    model.bind()
    model.set_buffer(np.ones(50))  # kernel_initializer="ones"
    res = model.fit(
        X, y, reg_lambda=1e-3, validation_data=(Xval, yval), metrics=["mean_absolute_error"],
        optimizer=ScipyOptimizer("L-BFGS-B", options={"maxcor": 3}),
    )  # fmt: skip
    history = res.history
    loss = history.column("loss")
    assert round(loss[-1], 6) == 0.046990
    assert res.loss == pytest.approx(0.0469896579, rel=1e-8)
    assert len(history) == res.n_iterations
    fg = history.column("fg_evals")
    assert all(b > a for a, b in itertools.pairwise(fg))
    assert fg[-1] <= res.n_function_evaluations
    assert history.column("hessp_evals") == [0] * len(history)
    assert all(g is not None and g >= 0 for g in history.column("grad"))
    # the loss column is the objective at each accepted iterate
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(loss))
    assert set(history.columns) >= {"val_loss", "val_mean_absolute_error"}
    val_mae = history.column("val_mean_absolute_error")[-1]
    expected_mae = np.mean(np.abs(np.asarray(model.predict(Xval)) - yval))
    assert val_mae == pytest.approx(expected_mae, rel=1e-12)
    frame = history.to_pandas()
    assert list(frame.columns[:8]) == ["stage", "iteration", "loss", "grad", "fg_evals",
                                       "hessp_evals", "learning_rate", "time"]  # fmt: skip
    assert frame["loss"].iloc[-1] == loss[-1]


def test_newton_cg_counts_hessian_vector_products():
    X, y, _, _ = kormos_data()
    model = KormosRegression(50)
    model.bind()
    model.set_buffer(np.ones(50))
    res = model.fit(X, y, reg_lambda=1e-3, optimizer="Newton-CG")
    hv = res.history.column("hessp_evals")
    assert hv[-1] > 0 and hv == sorted(hv)
    assert res.n_hessian_evaluations >= hv[-1]
    assert res.history.column("grad")[-1] < 1e-4


def test_validation_freq_skips_evaluations():
    X, y, Xval, yval = kormos_data()
    model = KormosRegression(50)
    model.bind()
    res = model.fit(X, y, reg_lambda=1e-3, validation_data=(Xval, yval), validation_freq=3)
    val = res.history.column("val_loss")
    assert [v is not None for v in val] == [(i + 1) % 3 == 0 for i in range(len(val))]


def test_builtin_metrics_match_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 2))
    p = y + 0.3 * rng.normal(size=(40, 2))
    assert float(r2_score(y, p)) == pytest.approx(skm.r2_score(y, p), rel=1e-12)
    assert float(mean_absolute_error(y, p)) == pytest.approx(skm.mean_absolute_error(y, p))
    labels = rng.integers(0, 3, size=40)
    logits = rng.normal(size=(40, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(Accuracy()(labels, probs)) == pytest.approx(
        skm.accuracy_score(labels, probs.argmax(1))
    )
    assert float(Accuracy()(np.eye(3)[labels], logits)) == pytest.approx(
        skm.accuracy_score(labels, logits.argmax(1))
    )
    assert float(LogLoss()(labels, probs)) == pytest.approx(skm.log_loss(labels, probs), rel=1e-12)
    assert float(LogLoss(from_logits=True)(labels, logits)) == pytest.approx(
        skm.log_loss(labels, probs), rel=1e-12
    )
    binary = rng.integers(0, 2, size=(40, 1)).astype(float)
    p1 = rng.uniform(0.05, 0.95, size=(40, 1))
    assert float(LogLoss()(binary, p1)) == pytest.approx(skm.log_loss(binary, p1), rel=1e-12)
    assert float(Accuracy()(binary, p1)) == pytest.approx(skm.accuracy_score(binary, p1 > 0.5))
    # (n,) targets against (n, 1) predictions pair element by element, not as (n, n)
    column = p[:, :1]
    for metric, reference in ((mean_squared_error, skm.mean_squared_error),
                              (mean_absolute_error, skm.mean_absolute_error),
                              (r2_score, skm.r2_score)):  # fmt: skip
        assert float(metric(y[:, 0], column)) == pytest.approx(
            reference(y[:, 0], column[:, 0]), rel=1e-12
        )
    with pytest.raises(MiniMLError, match=r"mean_squared_error: y_true has shape \(40, 2\)"):
        mean_squared_error(y, column)
    # Degenerate inputs as scikit-learn scores them: constant targets, certain predictions
    constant = np.ones((5, 2))
    for guess in (constant, constant + np.eye(5, 2)):
        assert float(r2_score(constant, guess)) == skm.r2_score(constant, guess)
    certain = np.array([[0.0, 1.0], [1.0, 0.0]])
    for labels_ in ([1, 0], [0, 1]):
        assert float(LogLoss()(np.array(labels_), certain)) == pytest.approx(
            skm.log_loss(labels_, certain), rel=1e-12
        )
        assert float(LogLoss()(np.array(labels_)[:, None], certain[:, 1:])) == pytest.approx(
            skm.log_loss(labels_, certain[:, 1]), rel=1e-12
        )
    # 1-D labels and 1-D scores (a model returning (n,) logits): one label per sample
    flat, scores = binary.ravel(), rng.normal(size=40)
    assert float(Accuracy(threshold=0.0)(flat, scores)) == pytest.approx(
        skm.accuracy_score(flat, scores > 0.0)
    )


def test_bad_metrics_are_rejected_before_fitting():
    X, y, Xval, yval = kormos_data()
    model = KormosRegression(50)
    model.bind()
    with pytest.raises(MiniMLError, match="unknown metric 'f1'"):
        model.fit(X, y, validation_data=(Xval, yval), metrics=["f1"])
    with pytest.raises(MiniMLError, match="must return a scalar"):
        model.fit(X, y, validation_data=(Xval, yval), metrics=[lambda_named(lambda t, p: t - p)])
    with pytest.raises(MiniMLError, match="JAX functions"):
        model.fit(X, y, validation_data=(Xval, yval),
                  metrics=[lambda_named(lambda t, p: float(np.mean(np.asarray(t))))])  # fmt: skip
    with pytest.raises(MiniMLError, match="validation_data"):
        model.fit(X, y, metrics=["mse"])


def lambda_named(function, name="custom"):
    function.__name__ = name
    return function


def _noisy_overparameterized():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 30))
    w = np.zeros((30, 1))
    w[:3] = 1.0
    y = X @ w + 1.0 * rng.normal(size=(40, 1))
    Xv = rng.normal(size=(200, 30))
    yv = Xv @ w + 1.0 * rng.normal(size=(200, 1))
    return X, y, Xv, yv


def test_early_stopping_restores_best_validation_parameters_scipy_path():
    X, y, Xv, yv = _noisy_overparameterized()
    model = TinyMLP(30, 20, 1)
    model.randomize(seed=0)
    stopper = EarlyStopping(monitor="val_loss", patience=5)
    opt = ScipyOptimizer("L-BFGS-B", options={"maxiter": 2000})
    res = model.fit(X, y, reg_lambda=0.0, validation_data=(Xv, yv), callbacks=[stopper],
                    optimizer=opt)  # fmt: skip
    history = res.history
    assert len(history) < 2000
    assert res.stop_reason is not None and "EarlyStopping" in res.stop_reason
    assert not res.success
    val = [v for v in history.column("val_loss") if v is not None]
    final_val = float(np.sum((np.asarray(model.predict(Xv)) - yv) ** 2))
    assert final_val == pytest.approx(min(val), rel=1e-12)
    assert min(val) < val[-1]
    assert "restored the best val_loss" in res.message


def test_early_stopping_needs_its_column():
    X, y, _, _ = kormos_data()
    model = KormosRegression(50)
    model.bind()
    with pytest.raises(MiniMLError, match="validation_data"):
        model.fit(X, y, callbacks=[EarlyStopping()])


def test_callbacks_see_every_iteration_and_can_stop():
    X, y, _, _ = kormos_data()
    model = KormosRegression(50)
    model.bind()
    seen = []

    class Recorder(Callback):
        def on_fit_begin(self, state):
            seen.append("begin")

        def on_iteration_end(self, state, record):
            seen.append(record["iteration"])
            return record["iteration"] >= 3

        def on_fit_end(self, state):
            seen.append("end")

    res = model.fit(X, y, reg_lambda=1e-3, callbacks=[Recorder()])
    assert seen == ["begin", 1, 2, 3, "end"]
    assert len(res.history) == 3
    assert not res.success
    np.testing.assert_array_equal(
        np.asarray(model.get_buffer()), np.asarray(res.x_opt)
    )  # the model holds the iterate at the stop


def test_keyboard_interrupt_keeps_last_recorded_parameters():
    X, y, _, _ = kormos_data()
    model = KormosRegression(50)
    model.bind()
    model.set_buffer(np.ones(50))
    buffers = []

    def interrupt(state, record):
        buffers.append(np.asarray(state.buffer))
        if record["iteration"] == 4:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted by KeyboardInterrupt"):
        res = model.fit(
            X, y, reg_lambda=1e-3, callbacks=[LambdaCallback(on_iteration_end=interrupt)]
        )
    assert res.interrupted and not res.success
    final = np.asarray(model.get_buffer())
    assert np.all(np.isfinite(final))
    np.testing.assert_array_equal(final, buffers[-1])
    assert len(res.history) == 4
    assert res.loss == pytest.approx(res.history.column("loss")[-1], rel=1e-12)
    assert res.n_iterations == 4 and res.stages == ["L-BFGS-B"]
    assert res.n_function_evaluations == res.history.column("fg_evals")[-1]


def test_keyboard_interrupt_in_a_later_stage_counts_that_stage():
    X, y, _, _ = kormos_data()
    model = KormosRegression(50)
    model.bind()
    model.set_buffer(np.ones(50))

    def interrupt(state, record):
        if record["stage"] == "L-BFGS-B" and record["iteration"] == 3:
            raise KeyboardInterrupt

    stages = [Adam(lr=1e-2), ScipyOptimizer("L-BFGS-B")]
    with pytest.warns(UserWarning, match="interrupted by KeyboardInterrupt"):
        res = model.fit(X, y, reg_lambda=1e-3, optimizer=stages, epochs=5,
                        callbacks=[LambdaCallback(on_iteration_end=interrupt)])  # fmt: skip
    assert res.interrupted and not res.success
    assert res.stages == ["Adam", "L-BFGS-B"] and res.optimizer == "Adam -> L-BFGS-B"
    assert res.history.column("stage") == ["Adam"] * 5 + ["L-BFGS-B"] * 3
    assert res.n_iterations == len(res.history) == 8
    # The interrupted stage counts the evaluations its history rows show; Adam's stage
    # counts what the same Adam fit alone counts.
    model.set_buffer(np.ones(50))
    adam_alone = model.fit(X, y, reg_lambda=1e-3, optimizer=Adam(lr=1e-2), epochs=5)
    fg = res.history.column("fg_evals")
    assert res.n_function_evaluations == adam_alone.n_function_evaluations + fg[-1] - fg[4]
    assert "L-BFGS-B: interrupted after 3 recorded iterations" in res.message


def test_history_plot_writes_png(tmp_path):
    X, y, Xval, yval = kormos_data()
    model = KormosRegression(50)
    model.bind()
    res = model.fit(X, y, reg_lambda=1e-3, validation_data=(Xval, yval))
    path = tmp_path / "loss.png"
    res.history.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000


def test_progress_bar_can_be_forced_on(capsys):
    X, y, _, _ = kormos_data()
    model = KormosRegression(50)
    model.bind()
    model.fit(X, y, reg_lambda=1e-3, verbose=1)
    err = capsys.readouterr().err
    assert "L-BFGS-B" in err and "loss=" in err
    model.fit(X, y, reg_lambda=1e-3, verbose=0)
    assert capsys.readouterr().err == ""


def test_staged_scipy_methods_share_one_history():
    X, y, _, _ = kormos_data()
    model = KormosRegression(50)
    model.bind()
    model.set_buffer(np.ones(50))
    stages = [ScipyOptimizer("CG", options={"maxiter": 3}), "L-BFGS-B"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 3-iteration CG stage stops early on purpose
        res = model.fit(X, y, reg_lambda=1e-3, optimizer=stages)
    assert res.stages == ["CG", "L-BFGS-B"]
    assert res.history.stages() == ["CG", "L-BFGS-B"]
    assert res.history.column("stage")[:3] == ["CG"] * 3
    assert res.loss == pytest.approx(0.0469896579, rel=1e-8)
    assert res.success
    fg = res.history.column("fg_evals")
    assert fg == sorted(fg)


def test_stage_hook_can_freeze_parameters():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    y = X @ np.array([[1.0], [2.0]]) + 3.0
    model = LinearModel(2, 1)
    model.bind()
    snapshots = []

    def freeze_bias(model, index, previous):
        snapshots.append(np.asarray(model.b.value).copy())
        return {"b"}

    model.fit(X, y, reg_lambda=0.0, optimizer=[ScipyOptimizer("L-BFGS-B"), "BFGS"],
              stage_hook=freeze_bias)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(model.b.value), snapshots[0])


# ------------------------------------------------ the same on every optimizer path
def _linear_reference(X, y, reg_lambda):
    """``X @ W + b`` with sum of squares + reg_lambda * ‖W‖², transcribed in numpy."""
    n_in = X.shape[1]

    def split(buffer):
        buffer = np.asarray(buffer, np.float64)
        return buffer[:n_in].reshape(n_in, 1), buffer[n_in:]

    def objective(buffer, X=X, y=y):
        W, b = split(buffer)
        return float(np.sum((X @ W + b - y) ** 2) + reg_lambda * np.sum(W**2))

    def grad_norm(buffer):
        W, b = split(buffer)
        residual = X @ W + b - y
        grad = np.concatenate([(2 * X.T @ residual + 2 * reg_lambda * W).ravel(),
                               2 * residual.sum(0)])  # fmt: skip
        return float(np.linalg.norm(grad))

    def mae(buffer, X, y):
        W, b = split(buffer)
        return float(np.mean(np.abs(X @ W + b - y)))

    return objective, grad_norm, mae


def _linear_data(n=40, seed=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.7 + 0.3 * rng.normal(size=(n, 1))
    return X, y, rng.normal(size=(25, 3)), rng.normal(size=(25, 1))


@pytest.fixture(scope="module")
def linear():
    """One model for the tests below: compiled programs are cached on a model, so
    sharing it compiles each path once. Every test sets its own starting point."""
    return LinearModel(3, 1)


PATHS = {
    "scipy": (lambda: ScipyOptimizer("L-BFGS-B"), {}),
    "lbfgs": (lambda: LBFGS(segment_length=3), {}),
    "adam-full-batch": (lambda: Adam(lr=0.05), {"epochs": 6}),
    "adam-minibatch": (lambda: Adam(lr=0.05), {"epochs": 6, "batch_size": 10}),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_callbacks_and_history_records_are_the_same_on_every_path(linear, path):
    """Every path gives the same record columns, filled with the values they name."""
    make, options = PATHS[path]
    X, y, Xv, yv = _linear_data()
    reg_lambda = 0.5
    objective, grad_norm, mae = _linear_reference(X, y, reg_lambda)
    model = linear
    model.randomize(seed=1)
    starts = [np.asarray(model.get_buffer()).copy()]
    events, records = [], []

    class Recorder(Callback):
        def on_fit_begin(self, state):
            events.append("begin")
            assert state.columns == [*BASE_COLUMNS, "val_loss", "val_mean_absolute_error"]

        def on_iteration_end(self, state, record):
            events.append("iteration")
            records.append((dict(record), np.asarray(state.buffer).copy()))

        def on_fit_end(self, state):
            events.append("end")

    optimizer = make()
    res = model.fit(
        X, y, reg_lambda=reg_lambda, optimizer=optimizer, callbacks=[Recorder()],
        validation_data=(Xv, yv), metrics=["mean_absolute_error"], verbose=0, **options,
    )  # fmt: skip
    assert events == ["begin"] + ["iteration"] * len(records) + ["end"]
    assert len(records) == len(res.history) >= 3
    assert [r for r, _ in records] == list(res.history)
    fg = [r["fg_evals"] for r, _ in records]
    assert all(b > a > 0 for a, b in itertools.pairwise(fg))
    times = [r["time"] for r, _ in records]
    assert all(b >= a >= 0 for a, b in itertools.pairwise(times))
    stochastic = path.startswith("adam")
    for index, (record, buffer) in enumerate(records):
        starts.append(buffer)
        assert set(record) == {*BASE_COLUMNS, "val_loss", "val_mean_absolute_error"}
        assert record["stage"] == optimizer.name and record["iteration"] == index + 1
        assert record["hessp_evals"] == 0
        assert record["learning_rate"] == (0.05 if stochastic else None)
        # validation: the objective's formula and the metric on X_val at the recorded point
        assert record["val_loss"] == pytest.approx(objective(buffer, Xv, yv), rel=1e-10)
        assert record["val_mean_absolute_error"] == pytest.approx(mae(buffer, Xv, yv), rel=1e-10)
        if not stochastic:  # loss and gradient norm at the accepted iterate
            assert record["loss"] == pytest.approx(objective(buffer), rel=1e-10)
            assert record["grad"] == pytest.approx(grad_norm(buffer), rel=1e-8)
        elif "batch_size" not in options:  # full batch: at the point the step started from
            assert record["loss"] == pytest.approx(objective(starts[index]), rel=1e-10)
            assert record["grad"] == pytest.approx(grad_norm(starts[index]), rel=1e-10)
        else:
            steps = res.history.step_losses[(optimizer.name, index + 1)]
            assert record["loss"] == pytest.approx(np.mean(steps), rel=1e-12)
            assert record["grad"] > 0
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), records[-1][1])


def test_stochastic_grad_column_is_the_norm_of_the_mean_batch_gradient(linear):
    """With a zero learning rate every batch gradient is taken at the same point, so the
    mean over one epoch's disjoint batches is the full gradient, whatever the batch size."""
    X, y, _, _ = _linear_data()
    objective, grad_norm, _ = _linear_reference(X, y, 0.5)
    model = linear
    model.randomize(seed=2)
    start = np.asarray(model.get_buffer()).copy()
    res = model.fit(X, y, reg_lambda=0.5, optimizer=SGD(lr=0.0), epochs=2, batch_size=10,
                    shuffle=False)  # fmt: skip
    assert res.history.column("grad") == pytest.approx([grad_norm(start)] * 2, rel=1e-10)
    assert res.history.column("loss") == pytest.approx([objective(start)] * 2, rel=1e-10)


# ------------------------------------------ early stopping on the stochastic path
def test_early_stopping_restores_best_validation_parameters_stochastic_path():
    X, y, Xv, yv = _noisy_overparameterized()
    model = TinyMLP(30, 20, 1)
    model.randomize(seed=0)
    stopper = EarlyStopping(monitor="val_loss", patience=5)
    res = model.fit(X, y, reg_lambda=0.0, validation_data=(Xv, yv), callbacks=[stopper],
                    optimizer=Adam(lr=1e-2), epochs=1000, batch_size=10)  # fmt: skip
    history = res.history
    assert len(history) < 1000
    assert res.stop_reason is not None and "EarlyStopping" in res.stop_reason
    assert not res.success
    val = history.column("val_loss")
    final_val = float(np.sum((np.asarray(model.predict(Xv)) - yv) ** 2))
    assert final_val == pytest.approx(min(val), rel=1e-12)
    best = int(np.argmin(val))
    assert best == len(val) - 1 - stopper.patience and min(val) < val[-1]
    assert f"restored the best val_loss from Adam iteration {best + 1}" in res.message


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_restores_the_best_point_when_the_fit_ends_on_its_own(restore_best):
    # The stopper never triggers (patience > epochs): Keras 3 semantics still restore.
    X, y, Xv, yv = _noisy_overparameterized()
    model = TinyMLP(30, 20, 1)
    model.randomize(seed=0)
    stopper = EarlyStopping(monitor="val_loss", patience=1000, restore_best=restore_best)
    res = model.fit(X, y, reg_lambda=0.0, validation_data=(Xv, yv), callbacks=[stopper],
                    optimizer=Adam(lr=1e-2), epochs=300, batch_size=10)  # fmt: skip
    val = res.history.column("val_loss")
    assert len(val) == 300 and res.stop_reason is None
    assert min(val) < val[-1]  # the run overfits, so the best point is not the last
    final_val = float(np.sum((np.asarray(model.predict(Xv)) - yv) ** 2))
    expected = min(val) if restore_best else val[-1]
    assert final_val == pytest.approx(expected, rel=1e-12)
    assert ("restored the best val_loss" in res.message) is restore_best


# ------------------------------------------------- Ctrl-C on the compiled paths
@pytest.mark.parametrize(
    "path",
    [
        pytest.param((lambda: Adam(lr=0.05), {"epochs": 50, "batch_size": 10}), id="adam"),
        pytest.param((lambda: LBFGS(gtol=1e-12, ftol=0.0, segment_length=3), {}), id="lbfgs"),
    ],
)
def test_keyboard_interrupt_keeps_last_recorded_parameters_on_compiled_paths(linear, path):
    make, options = path
    X, y, _, _ = _linear_data()
    objective, _, _ = _linear_reference(X, y, 1e-3)
    model = linear
    model.randomize(seed=0)
    buffers = []

    def interrupt(state, record):
        buffers.append(np.asarray(state.buffer).copy())
        if record["iteration"] == 4:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted by KeyboardInterrupt"):
        res = model.fit(
            X, y, reg_lambda=1e-3, optimizer=make(),
            callbacks=[LambdaCallback(on_iteration_end=interrupt)], **options,
        )  # fmt: skip
    assert res.interrupted and not res.success and "KeyboardInterrupt" in res.message
    final = np.asarray(model.get_buffer())
    assert np.all(np.isfinite(final))
    np.testing.assert_array_equal(final, buffers[-1])
    assert len(res.history) == len(buffers) == 4
    assert res.loss == pytest.approx(objective(final), rel=1e-12)
    assert res.n_iterations == 4 and len(res.stages) == 1


# ------------------------------------------------------------- Adam -> L-BFGS-B
def test_staged_adam_then_lbfgs_beats_either_alone_with_the_same_budget():
    """Adam -> L-BFGS-B on an MLP started next to the saddle at zero.

    Budget: 100 iterations in all (one Adam epoch, a full batch, counts as one), so
    Adam alone runs 100 epochs and L-BFGS-B alone gets ``maxiter=100``. There
    L-BFGS-B alone stops at once (the gradient passes its ``gtol`` test at the saddle),
    Adam alone leaves the saddle (its steps are normalized per coordinate) but is still
    far from a minimum after 100 steps, and the staged fit leaves with Adam and lets
    L-BFGS-B converge. (Started elsewhere, L-BFGS-B alone is often the best of the three
    on a problem this small.)
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = np.sin(2 * X[:, :1]) * np.cos(X[:, 1:])
    y -= y.mean()
    model = TinyMLP(2, 8, 1)
    model.randomize(seed=0)
    start = 1e-8 * np.asarray(model.get_buffer())
    adam_epochs, lbfgs_iterations = 30, 70
    total = adam_epochs + lbfgs_iterations

    def fit(optimizer, **options):
        model.set_buffer(start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # fixed budgets, on purpose
            return model.fit(X, y, reg_lambda=1e-4, optimizer=optimizer, verbose=0, **options)

    staged = fit([Adam(lr=0.01), ScipyOptimizer("L-BFGS-B", {"maxiter": lbfgs_iterations})],
                 epochs=adam_epochs)  # fmt: skip
    adam_alone = fit(Adam(lr=0.01), epochs=total)
    lbfgs_alone = fit(ScipyOptimizer("L-BFGS-B", {"maxiter": total}))
    assert staged.stages == staged.history.stages() == ["Adam", "L-BFGS-B"]
    stages = staged.history.column("stage")
    assert stages[:adam_epochs] == ["Adam"] * adam_epochs
    assert set(stages[adam_epochs:]) == {"L-BFGS-B"}
    assert len(staged.history) <= total == len(adam_alone.history)
    assert lbfgs_alone.n_iterations <= total
    assert staged.loss < adam_alone.loss / 3
    assert staged.loss < lbfgs_alone.loss / 3
    # the L-BFGS-B stage starts where Adam stopped
    lbfgs_records = [r for r in staged.history if r["stage"] == "L-BFGS-B"]
    assert lbfgs_records[0]["fg_evals"] > staged.history[adam_epochs - 1]["fg_evals"]


def _metric(function, name="custom"):
    function.__name__ = name
    return function


BAD_METRICS = {
    "not-callable": (42, "metrics must be a metric name, a callable"),
    "not-callable-in-list": ([42], "a metric must be a name or a callable"),
    "unknown-name": ("f1", "unknown metric 'f1'; built-in metrics are"),
    "wrong-arity": (
        _metric(lambda y_pred: y_pred.sum()),
        "evaluating validation_data or a metric failed: TypeError",
    ),
    "not-scalar": (_metric(lambda t, p: t - p), "must return a scalar, but returns shape (40, 1)"),
    "numpy-not-jax": (_metric(lambda t, p: float(np.mean(np.asarray(t)))), "JAX functions"),
    "duplicate-name": (
        ["mse", _metric(lambda t, p: (t - p).sum(), "mse")],
        "two metrics are named 'mse'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_METRICS))
def test_bad_metric_callables_are_rejected_before_fitting(case):
    metric, fragment = BAD_METRICS[case]
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    model = LinearModel(3, 1)
    model.randomize(seed=0)
    before = np.asarray(model.get_buffer()).copy()
    with pytest.raises(MiniMLError) as info:
        model.fit(X, y, validation_data=(X, y), metrics=metric)
    assert str(info.value).startswith("LinearModel.fit: ") and fragment in str(info.value)
    np.testing.assert_array_equal(np.asarray(model.get_buffer()), before)
