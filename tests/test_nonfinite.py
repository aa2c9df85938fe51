"""No fit leaves a model with non-finite parameters (SciPy, compiled L-BFGS, stochastic)."""

import numpy as np
import pytest

from miniml import NonFiniteWarning
from miniml.callbacks import LambdaCallback
from miniml.optim import LBFGS, Adam, ScipyOptimizer
from tests.faults import NaNAfter

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 5))
Y = X @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(200, 1))


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "CG", "Newton-CG", "Nelder-Mead"])
def test_scipy_path_keeps_last_finite_parameters(method):
    model = NaNAfter(5, k=4)
    model.randomize(seed=0)
    start = np.asarray(model.get_buffer())
    with pytest.warns(NonFiniteWarning, match="not finite"):
        res = model.fit(X, Y, optimizer=ScipyOptimizer(method, {"maxiter": 50}))
    final = np.asarray(model.get_buffer())
    assert np.all(np.isfinite(final))
    assert not res.success
    assert np.isfinite(res.loss)
    recorded = res.history.column("loss")
    if recorded:  # the model holds the last accepted iterate, and its loss is finite
        assert res.loss == pytest.approx(recorded[-1], rel=1e-12)
    else:
        np.testing.assert_array_equal(final, start)


def test_compiled_lbfgs_keeps_last_finite_parameters():
    """NaNAfter's host callback runs inside the compiled loop, so the fault hits in the
    middle of the device-side iterations."""
    model = NaNAfter(5, k=6)
    model.randomize(seed=0)
    buffers = []
    record = LambdaCallback(on_iteration_end=lambda s, r: buffers.append(np.asarray(s.buffer)))
    with pytest.warns(NonFiniteWarning, match=r"LBFGS: .*not finite.*in iteration \d+"):
        res = model.fit(X, Y, optimizer=LBFGS(maxiter=50), callbacks=[record])
    assert model.calls > model.k  # the fault did fire
    final = np.asarray(model.get_buffer())
    assert np.all(np.isfinite(final))
    assert not res.success and res.status == 3
    assert 0 < len(res.history) < 50
    np.testing.assert_array_equal(final, buffers[-1])
    assert res.loss == res.history.column("loss")[-1]
    assert np.isfinite(res.loss)


@pytest.mark.parametrize("batch_size", [None, 50], ids=["full-batch", "minibatch"])
def test_stochastic_path_keeps_last_finite_parameters(batch_size):
    """Steps whose batch objective is NaN are rejected; an epoch without an accepted
    step ends the fit, and the model keeps the parameters of the last reported epoch."""
    model = NaNAfter(5, k=6)
    model.randomize(seed=0)
    buffers = []
    record = LambdaCallback(on_iteration_end=lambda s, r: buffers.append(np.asarray(s.buffer)))
    rejected = r"Adam: \d+ step\(s\) were rejected.*the first in epoch \d+ at step \d+"
    # NaNAfter stays NaN for good, so the objective at the final point is NaN too
    final_point = "Adam: the objective at the last point is not finite"
    with (
        pytest.warns(NonFiniteWarning, match=final_point),
        pytest.warns(NonFiniteWarning, match=rejected),
    ):
        res = model.fit(X, Y, optimizer=Adam(lr=0.05), epochs=20, batch_size=batch_size,
                        callbacks=[record])  # fmt: skip
    assert model.calls > model.k
    final = np.asarray(model.get_buffer())
    assert np.all(np.isfinite(final))
    assert not res.success
    assert 0 < len(res.history) < 20
    np.testing.assert_array_equal(final, buffers[-1])
    assert all(np.isfinite(v) for v in res.history.column("loss"))
