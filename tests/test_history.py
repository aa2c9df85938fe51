"""History, validation metrics, callbacks, early stopping, progress and interrupts (SciPy path)."""

import itertools
import warnings

import numpy as np
import pytest

from miniml import MiniMLError, MiniMLModel, MiniMLParam
from miniml.callbacks import Callback, EarlyStopping, LambdaCallback
from miniml.loss import LNormRegularization, mean_squared_error_loss
from miniml.metrics import Accuracy, LogLoss, mean_absolute_error, r2_score
from miniml.optim import ScipyOptimizer
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
