"""MiniMLParam: shapes, dtypes, scales and reading values from a flat buffer."""

import jax.numpy as jnp
import numpy as np
import pytest

from miniml import MiniMLError, MiniMLModel, MiniMLParam, MiniMLParamList
from miniml.loss import LNormRegularization


def test_shape_size_dtype_defaults():
    p = MiniMLParam((3, 4))
    assert p.shape == (3, 4)
    assert p.size == 12
    assert p.dtype == np.float64
    assert MiniMLParam(5).shape == (5,)
    assert MiniMLParam((2,), dtype=jnp.float32).dtype == np.float32


@pytest.mark.parametrize("shape", [(-1,), (2.5,), ("a",)])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(MiniMLError, match="shape"):
        MiniMLParam(shape)


@pytest.mark.parametrize("dtype", [np.int32, np.complex128, "float16"])
def test_unsupported_dtypes_are_rejected(dtype):
    with pytest.raises(MiniMLError, match="float32 or float64"):
        MiniMLParam((2,), dtype=dtype)


def test_scale_setters_coerce_and_validate():
    p = MiniMLParam((2,), reg_scale=2, rnd_scale=3)
    assert p.reg_scale == 2.0 and isinstance(p.reg_scale, float)
    p.reg_scale = "0.5"
    assert p.reg_scale == 0.5
    for bad in (-1.0, float("nan"), float("inf"), "x"):
        with pytest.raises(MiniMLError):
            p.reg_scale = bad
        with pytest.raises(MiniMLError):
            p.rnd_scale = bad


def test_call_reads_its_slice_of_a_buffer():
    class Two(MiniMLModel):
        def __init__(self):
            self.a = MiniMLParam((2,))
            self.b = MiniMLParam((2, 3))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    m = Two()
    buffer = jnp.arange(8.0)
    np.testing.assert_array_equal(m.a(buffer), [0.0, 1.0])
    np.testing.assert_array_equal(m.b(buffer), np.arange(2.0, 8.0).reshape(2, 3))
    with pytest.raises(MiniMLError, match="not bound"):
        _ = m.a.value
    m.bind()
    m.set_buffer(buffer)
    np.testing.assert_array_equal(m.b.value, np.arange(2.0, 8.0).reshape(2, 3))


def test_regularization_loss_includes_reg_scale():
    class One(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((3,), reg_loss=LNormRegularization(2), reg_scale=0.1)
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    m = One()
    m.bind()
    m.set_buffer(jnp.array([1.0, 2.0, 3.0]))
    assert float(m.w.regularization_loss()) == pytest.approx(0.1 * 14.0, rel=1e-15)
    assert float(m.regularization_loss()) == pytest.approx(1.4, rel=1e-15)


def test_param_list_rejects_non_params():
    with pytest.raises(MiniMLError, match="MiniMLParam"):
        MiniMLParamList([MiniMLParam(1), 3.0])
