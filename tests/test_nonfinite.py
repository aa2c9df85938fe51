"""No fit leaves a model with non-finite parameters (SciPy path)."""

import numpy as np
import pytest

from miniml import NonFiniteWarning
from miniml.optim import ScipyOptimizer
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
