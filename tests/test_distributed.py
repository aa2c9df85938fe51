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
    from miniml.optim import LBFGS, Adam

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
