"""Small models shared by the tests."""

import jax.numpy as jnp

from miniml import MiniMLModel, MiniMLParam, PredictMode
from miniml.loss import LNormRegularization, squared_error_loss


class LinearModel(MiniMLModel):
    """``X @ W + b`` with an L2 penalty on W only."""

    def __init__(self, n_in, n_out, loss=squared_error_loss, bias=True):
        self.W = MiniMLParam((n_in, n_out), reg_loss=LNormRegularization(2))
        if bias:
            self.b = MiniMLParam((n_out,))
        self.has_bias = bias
        super().__init__(loss=loss)

    def _predict_kernel(self, X, buffer):
        out = X @ self.W(buffer)
        return out + self.b(buffer) if self.has_bias else out


class Rosenbrock(MiniMLModel):
    """Residuals of the n-dimensional Rosenbrock function; squared loss against zeros
    gives sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2. ``X`` is ignored."""

    def __init__(self, n=2):
        self.x = MiniMLParam((n,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        x = self.x(buffer)
        return jnp.concatenate([10.0 * (x[1:] - x[:-1] ** 2), 1.0 - x[:-1]])


class TinyMLP(MiniMLModel):
    """A one-hidden-layer tanh network, for derivative checks."""

    def __init__(self, n_in, n_hidden, n_out):
        self.W1 = MiniMLParam((n_in, n_hidden), reg_loss=LNormRegularization(2))
        self.b1 = MiniMLParam((n_hidden,))
        self.W2 = MiniMLParam((n_hidden, n_out), reg_loss=LNormRegularization(2))
        self.b2 = MiniMLParam((n_out,))
        super().__init__()

    def _predict_kernel(self, X, buffer, rng_key=None, mode=PredictMode.INFERENCE):
        h = jnp.tanh(X @ self.W1(buffer) + self.b1(buffer))
        return h @ self.W2(buffer) + self.b2(buffer)


class Lookup(MiniMLModel):
    """A table of 4 values indexed by integer inputs (which must stay integer)."""

    def __init__(self):
        self.table = MiniMLParam((4,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        assert X.dtype.kind == "i"
        return self.table(buffer)[X]
