"""Data-parallel fits on 4 forced host devices equal single-device fits.

Runs in a subprocess because the device count is fixed when jax starts.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import jax
    from sklearn.datasets import make_regression
    from miniml.loss import BinaryCrossEntropyLogLoss
    from miniml.optim import ScipyOptimizer
    from tests.models import LinearModel

    assert len(jax.devices()) == 4
    out = {}

    # P1: the lecture regression (n = 10 000, d = 21), sum of squares.
    X, y = make_regression(n_samples=10000, n_features=20, n_informative=4, bias=3,
                           noise=1, random_state=1234)
    X = np.c_[np.ones(len(y)), X]
    for devices in (None, 2, 4):
        model = LinearModel(21, 1, bias=False)
        model.bind()
        res = model.fit(X, y[:, None], reg_lambda=0.0, devices=devices)
        coef = np.asarray(model.W.value).ravel().tolist()
        out[f"p1_{devices}"] = [res.loss, res.n_iterations, coef]

    # P3-shaped logistic regression (n = 20 003, not a multiple of 4), with chunks.
    rng = np.random.default_rng(0)
    Xl = rng.normal(size=(20003, 30))
    yl = (Xl @ rng.normal(size=30) + rng.normal(size=20003) > 0).astype(float)[:, None]
    for devices, chunk in ((None, None), (4, None), (4, 3000)):
        model = LinearModel(30, 1, loss=BinaryCrossEntropyLogLoss())
        model.bind()
        res = model.fit(Xl, yl, reg_lambda=0.5, devices=devices, chunk_size=chunk,
                        optimizer=ScipyOptimizer("L-BFGS-B"))
        out[f"p3_{devices}_{chunk}"] = [res.loss, res.n_iterations,
                                       np.asarray(model.get_buffer()).tolist()]

    # The compiled L-BFGS and mini-batch Adam on the same shards.
    from miniml import MiniMLError
    from miniml.optim import LBFGS, SGD, Adam

    for devices in (None, 4):
        model = LinearModel(21, 1, bias=False)
        model.bind()
        res = model.fit(X, y[:, None], reg_lambda=0.0, devices=devices,
                        optimizer=LBFGS(gtol=1e-8))
        out[f"lbfgs_p1_{devices}"] = [res.loss, res.n_iterations,
                                      np.asarray(model.get_buffer()).tolist()]
    for devices, chunk in ((None, None), (4, 3000)):
        model = LinearModel(30, 1, loss=BinaryCrossEntropyLogLoss())
        model.bind()
        res = model.fit(Xl, yl, reg_lambda=0.5, devices=devices, chunk_size=chunk,
                        optimizer=LBFGS())
        out[f"lbfgs_p3_{devices}"] = [res.loss, res.n_iterations,
                                      np.asarray(model.get_buffer()).tolist()]
    for devices in (None, 4):
        model = LinearModel(21, 1, bias=False)
        model.bind()
        res = model.fit(X, y[:, None], reg_lambda=0.1, devices=devices,
                        optimizer=Adam(lr=0.05), epochs=3, batch_size=500, seed=3)
        out[f"adam_{devices}"] = [res.loss, res.n_iterations,
                                  np.asarray(model.get_buffer()).tolist()]
    try:
        model.fit(X[:9999], y[:9999, None], optimizer=Adam(), batch_size=100, devices=4)
    except MiniMLError as err:
        out["adam_indivisible"] = str(err)

    # Batched fits with their members laid out over the devices (K padded to a multiple).
    import miniml

    compiles = {"n": 0}
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.__setitem__("n", compiles["n"] + 1)
        if event == "/jax/core/compile/backend_compile_duration" else None)

    def member_fields(result):
        return [result.x_opt.tolist(), result.objective_value.tolist(),
                result.n_iterations.tolist(), result.n_function_evaluations.tolist(),
                [h.tolist() for h in result.loss_history], result.messages]

    K = 10
    Xs = rng.normal(size=(K, 60, 3))
    ys = Xs @ rng.normal(size=(K, 3, 1)) + 0.1 * rng.normal(size=(K, 60, 1))
    lambdas = np.logspace(-2, 1, K)
    ridge = LinearModel(3, 1, bias=False)
    ridge.bind()
    for devices in (None, 4, 3):
        result = miniml.fit_batched(ridge, Xs, ys, reg_lambda=lambdas,
                                    optimizer=LBFGS(gtol=1e-10, ftol=0.0), devices=devices)
        out[f"batched_ridge_{devices}"] = member_fields(result)
    compiles["n"] = 0
    miniml.fit_batched(ridge, Xs + 1.0, ys, reg_lambda=lambdas,
                       optimizer=LBFGS(gtol=1e-10, ftol=0.0), devices=4)
    out["batched_second_call_compiles"] = compiles["n"]
    out["batched_ridge_data"] = [Xs.tolist(), ys.tolist(), lambdas.tolist()]

    folds = rng.uniform(size=(7, len(yl[:3001]))) < 0.8  # unequal counts: masked sums
    logistic = LinearModel(30, 1, loss=BinaryCrossEntropyLogLoss())
    logistic.bind()
    for devices in (None, 4):
        result = miniml.fit_batched(logistic, Xl[:3001], yl[:3001], rows=folds,
                                    reg_lambda=np.logspace(-2, 0, 7), devices=devices)
        out[f"batched_folds_{devices}"] = member_fields(result)
    for devices in (None, 2):
        result = miniml.fit_batched(ridge, Xs, ys, reg_lambda=lambdas, optimizer=Adam(lr=0.1),
                                    learning_rate=np.linspace(0.01, 0.1, K), seeds=range(K),
                                    epochs=4, batch_size=15, devices=devices)
        out[f"batched_adam_{devices}"] = member_fields(result)
    for devices in (None, 4):  # one learning rate for all, 5 members: padded to 8
        result = miniml.fit_batched(ridge, Xs[0], ys[0], shared=True, seeds=range(5),
                                    optimizer=SGD(lr=0.01), learning_rate=0.02, epochs=3,
                                    batch_size=12, devices=devices)
        out[f"batched_sgd_{devices}"] = member_fields(result)
    for devices in (None, 4):
        cv = miniml.cross_validate_path(logistic, Xl[:3001], yl[:3001], np.logspace(-2, 0, 3),
                                        n_folds=3, devices=devices)
        out[f"batched_cv_{devices}"] = [cv.scores.tolist(), float(cv.best_reg_lambda)]
    try:
        miniml.fit_batched(ridge, Xs, ys, devices=5)
    except MiniMLError as err:
        out["batched_too_many"] = str(err)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def results():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIML_")}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("devices", ["2", "4"])
def test_sharded_least_squares_equals_single_device(results, devices):
    loss, iterations, coef = results["p1_None"]
    sharded = results[f"p1_{devices}"]
    assert sharded[1] == iterations
    assert sharded[0] == pytest.approx(loss, rel=1e-10)
    np.testing.assert_allclose(sharded[2], coef, rtol=1e-10)
    assert loss == pytest.approx(10105.859508383426, rel=1e-8)


@pytest.mark.parametrize("key", ["p3_4_None", "p3_4_3000"])
def test_sharded_logistic_regression_equals_single_device(results, key):
    loss, iterations, buffer = results["p3_None_None"]
    sharded = results[key]
    assert sharded[1] == iterations
    assert sharded[0] == pytest.approx(loss, rel=1e-10)
    np.testing.assert_allclose(sharded[2], buffer, rtol=1e-10)


@pytest.mark.parametrize("problem", ["lbfgs_p1", "lbfgs_p3", "adam"])
def test_sharded_lbfgs_and_minibatch_equal_single_device(results, problem):
    """The compiled L-BFGS (P1; P3 chunked, 20 003 rows) and mini-batch Adam (P1)."""
    loss, iterations, buffer = results[f"{problem}_None"]
    sharded = results[f"{problem}_4"]
    assert sharded[1] == iterations
    assert sharded[0] == pytest.approx(loss, rel=1e-10)
    np.testing.assert_allclose(sharded[2], buffer, rtol=1e-10)


def test_minibatch_on_devices_needs_evenly_split_samples(results):
    message = results["adam_indivisible"]
    assert "needs a number of samples divisible by 4, got 9999" in message
    assert "drop 3 sample(s)" in message


@pytest.mark.parametrize("key", ["batched_ridge_4", "batched_ridge_3", "batched_folds_4",
                                 "batched_adam_2", "batched_sgd_4"])  # fmt: skip
def test_batched_members_over_devices_equal_the_single_device_batch(results, key):
    """Stacked ridge fits over 4 and 3 devices (10 members: padded to 12), masked
    cross-validation folds of unequal sizes and per-member Adam learning rates: every
    member's parameters, objective, counts, history and message as on one device."""
    single = results[key.rsplit("_", 1)[0] + "_None"]
    sharded = results[key]
    np.testing.assert_allclose(sharded[0], single[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sharded[1], single[1], rtol=1e-12)
    assert sharded[2:4] == single[2:4]
    for ours, theirs in zip(sharded[4], single[4], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert sharded[5] == single[5]


def test_cross_validation_over_devices_equals_one_device(results):
    scores, best = results["batched_cv_None"]
    np.testing.assert_allclose(results["batched_cv_4"][0], scores, rtol=1e-12)
    assert results["batched_cv_4"][1] == best


def test_batched_ridge_over_devices_matches_the_closed_forms(results):
    X, y, lambdas = (np.asarray(a) for a in results["batched_ridge_data"])
    d = X.shape[2]
    exact = np.stack([np.linalg.solve(X[k].T @ X[k] + lambdas[k] * np.eye(d), X[k].T @ y[k])
                      .ravel() for k in range(len(X))])  # fmt: skip
    np.testing.assert_allclose(results["batched_ridge_4"][0], exact, rtol=1e-8)


def test_second_batched_call_over_devices_compiles_nothing(results):
    assert results["batched_second_call_compiles"] == 0


def test_batched_fit_on_too_many_devices_is_a_clear_error(results):
    message = results["batched_too_many"]
    assert message.startswith("miniml.fit_batched: devices=5 but 4 device(s) are available")


def test_batched_fit_over_devices_runs_in_one_process(monkeypatch):
    import jax

    import miniml
    from miniml import MiniMLError
    from tests.models import LinearModel

    model = LinearModel(2, 1)
    model.bind()
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(MiniMLError, match="fit_batched: a batched fit with devices= runs in one"):
        miniml.fit_batched(model, np.ones((3, 4, 2)), np.ones((3, 4, 1)), devices=1)


def test_too_many_devices_is_a_clear_error():
    from miniml import MiniMLError
    from tests.models import LinearModel

    model = LinearModel(2, 1)
    model.bind()
    with pytest.raises(MiniMLError, match="xla_force_host_platform_device_count"):
        model.fit(np.ones((4, 2)), np.ones((4, 1)), devices=64)


WORKER = textwrap.dedent(
    """
    import json
    import sys

    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[2]}",
                               num_processes=2, process_id=int(sys.argv[1]))
    import numpy as np
    from sklearn.datasets import make_regression
    from tests.models import LinearModel

    X, y = make_regression(n_samples=10000, n_features=20, n_informative=4, bias=3,
                           noise=1, random_state=1234)
    X = np.c_[np.ones(len(y)), X]
    rows = slice(0, 5000) if jax.process_index() == 0 else slice(5000, 10000)
    model = LinearModel(21, 1, bias=False)
    model.bind()
    res = model.fit(X[rows], y[rows, None], reg_lambda=0.0, devices=len(jax.devices()))
    print(json.dumps([res.loss, res.n_iterations,
                      np.asarray(model.W.value).ravel().tolist()]))
    """
)


def test_two_processes_with_jax_distributed_equal_one_process(results):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIML_", "XLA_FLAGS"))}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(rank), port], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(2)
    ]  # fmt: skip
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    loss, iterations, coef = results["p1_None"]
    for distributed in outputs:
        assert distributed[1] == iterations
        assert distributed[0] == pytest.approx(loss, rel=1e-10)
        np.testing.assert_allclose(distributed[2], coef, rtol=1e-10)


@pytest.mark.parametrize(
    "devices, text",
    [
        ([0, 1], "devices must be jax devices (jax.devices()), got 0 at position 0"),
        ("twice", "lists device"),
        (0, "devices must be >= 1, got 0"),
        (-2, "devices must be >= 1, got -2"),
    ],
)
def test_bad_device_lists_are_clear_errors(devices, text):
    """Device indices instead of devices, or one device twice, were an AttributeError
    and a bare AssertionError from deep inside jax's Mesh."""
    import jax

    from miniml import MiniMLError
    from tests.models import LinearModel

    if devices == "twice":
        devices = [jax.devices()[0], jax.devices()[0]]
    model = LinearModel(2, 1)
    model.bind()
    with pytest.raises(MiniMLError, match=r"LinearModel\.fit: ") as err:
        model.fit(np.ones((4, 2)), np.ones((4, 1)), devices=devices)
    assert text in str(err.value)
    assert "e.g." in str(err.value)
