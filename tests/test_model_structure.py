"""Model structure: discovery, naming, layout order, containers and misuse errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from miniml import (
    MiniMLError,
    MiniMLModel,
    MiniMLModelList,
    MiniMLParam,
    MiniMLParamList,
    PredictKernelOutput,
    PredictMode,
)
from miniml.loss import LNormRegularization


class Affine(MiniMLModel):
    def __init__(self, n_in, n_out):
        self.W = MiniMLParam((n_in, n_out), reg_loss=LNormRegularization(2))
        self.b = MiniMLParam((n_out,))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return X @ self.W(buffer) + self.b(buffer)


class TwoLayer(MiniMLModel):
    def __init__(self):
        self.first = Affine(3, 4)
        self.scale = MiniMLParam((1,))
        self.blocks = MiniMLModelList([Affine(4, 4), Affine(4, 2)])
        self.extra = MiniMLParamList([MiniMLParam((2,)), MiniMLParam((1,))])
        super().__init__()

    def _predict_kernel(self, X, buffer, rng_key=None, mode=PredictMode.INFERENCE):
        h = jnp.tanh(self.first._predict_kernel(X, buffer, rng_key=rng_key, mode=mode))
        for block in self.blocks:
            h = jnp.tanh(block._predict_kernel(h, buffer, rng_key=rng_key, mode=mode))
        return h * self.scale(buffer) + self.extra[0](buffer)


def test_names_follow_assignment_order_depth_first():
    m = TwoLayer()
    assert m.param_names == [
        "first.W", "first.b", "scale",
        "blocks.0.W", "blocks.0.b", "blocks.1.W", "blocks.1.b",
        "extra.0", "extra.1",
    ]  # fmt: skip
    sizes = [12, 4, 1, 16, 4, 8, 2, 2, 1]
    assert m.size == sum(sizes)
    offsets = [p.offset for p in m.params.values()]
    assert offsets == list(np.cumsum([0, *sizes[:-1]]))


def test_layout_does_not_depend_on_attribute_names():
    class A(MiniMLModel):
        def __init__(self):
            self.zeta = MiniMLParam((2,))
            self.alpha = MiniMLParam((3,))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    class B(MiniMLModel):
        def __init__(self):
            self.first = MiniMLParam((2,))
            self.second = MiniMLParam((3,))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    a, b = A(), B()
    assert [p.shape for p in a.params.values()] == [p.shape for p in b.params.values()]
    assert a.zeta.offset == 0 and a.alpha.offset == 2


def test_plain_containers_of_params_are_rejected():
    class Bad(MiniMLModel):
        def __init__(self):
            self.layers = [Affine(2, 2), Affine(2, 1)]
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    with pytest.raises(MiniMLError, match="MiniMLModelList"):
        Bad()

    class BadDict(MiniMLModel):
        def __init__(self):
            self.weights = {"a": MiniMLParam((2,))}
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    with pytest.raises(MiniMLError, match="MiniMLParamList"):
        BadDict()


def test_same_child_twice_is_rejected():
    shared = Affine(2, 2)

    class Twice(MiniMLModel):
        def __init__(self):
            self.a = shared
            self.b = shared
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    with pytest.raises(MiniMLError, match="appears as"):
        Twice()


def test_child_of_another_model_is_rejected():
    child = Affine(2, 2)

    class Holder(MiniMLModel):
        def __init__(self, c):
            self.c = c
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    Holder(child)
    with pytest.raises(MiniMLError, match="already belongs"):
        Holder(child)


def test_params_after_super_init_are_rejected():
    m = Affine(2, 1)
    with pytest.raises(MiniMLError, match="after super"):
        m.extra = MiniMLParam((1,))


def test_missing_super_init_gives_clear_error():
    class Forgot(MiniMLModel):
        def __init__(self):
            self.a = MiniMLParam((1,))

        def _predict_kernel(self, X, buffer):
            return X

    with pytest.raises(MiniMLError, match=r"super\(\).__init__\(\)"):
        Forgot().randomize()


def test_mixed_dtypes_are_rejected():
    class Mixed(MiniMLModel):
        def __init__(self):
            self.a = MiniMLParam((1,), dtype=np.float32)
            self.b = MiniMLParam((1,), dtype=np.float64)
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    with pytest.raises(MiniMLError, match="one dtype"):
        Mixed()


def test_randomize_is_deterministic_and_scaled():
    class Scaled(MiniMLModel):
        def __init__(self):
            self.big = MiniMLParam((20000,), rnd_scale=3.0)
            self.small = MiniMLParam((20000,), rnd_scale=0.01)
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X

    m1, m2 = Scaled(), Scaled()
    m1.randomize(seed=7)
    m2.randomize(seed=7)
    np.testing.assert_array_equal(m1.get_buffer(), m2.get_buffer())
    m2.randomize(seed=8)
    assert not np.array_equal(m1.get_buffer(), m2.get_buffer())
    assert np.std(np.asarray(m1.big.value)) == pytest.approx(3.0, rel=0.03)
    assert np.std(np.asarray(m1.small.value)) == pytest.approx(0.01, rel=0.03)


def test_bind_gives_zeros_and_keeps_child_values():
    child = Affine(2, 1)
    child.randomize(seed=1)
    before = np.asarray(child.get_buffer())

    class Holder(MiniMLModel):
        def __init__(self, c):
            self.bias = MiniMLParam((1,))
            self.c = c
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return self.c._predict_kernel(X, buffer) + self.bias(buffer)

    h = Holder(child)
    h.bind()
    np.testing.assert_array_equal(np.asarray(h.get_buffer())[1:], before)
    assert float(h.bias.value[0]) == 0.0


def test_get_set_params_by_name():
    m = TwoLayer()
    m.randomize(seed=0)
    params = m.get_params()
    assert set(params) == set(m.param_names)
    m.set_params({"scale": jnp.array([2.5])})
    assert float(m.scale.value[0]) == 2.5
    with pytest.raises(MiniMLError, match="no parameter named"):
        m.set_params({"nope": jnp.zeros(1)})
    with pytest.raises(MiniMLError, match="shape"):
        m.set_params({"scale": jnp.zeros(2)})


def test_set_buffer_checks_shape_and_precision():
    m = Affine(2, 1)
    m.bind()
    with pytest.raises(MiniMLError, match="flat buffer"):
        m.set_buffer(np.zeros(4))
    m32 = Affine(2, 1)
    m32.bind()
    m32.set_buffer(np.zeros(3, np.float32))  # widening is exact
    assert m32.get_buffer().dtype == np.float64


def test_regularization_scales_by_glob():
    m = TwoLayer()
    assert m.get_regularization_scales() == {
        "first.W": 1.0, "blocks.0.W": 1.0, "blocks.1.W": 1.0,
    }  # fmt: skip
    changed = m.set_regularization_scale("blocks.*.W", 0.25)
    assert changed == ["blocks.0.W", "blocks.1.W"]
    assert m.get_regularization_scales()["blocks.1.W"] == 0.25
    with pytest.raises(MiniMLError, match="matches no parameter"):
        m.set_regularization_scale("missing*", 1.0)


def test_short_and_long_kernel_forms_both_work():
    class Short(MiniMLModel):
        def __init__(self):
            self.a = MiniMLParam((1,))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return X * self.a(buffer)

    m = Short()
    m.bind()
    m.set_buffer(jnp.array([2.0]))
    out = m._predict_kernel(jnp.ones(2), m.get_buffer(), rng_key=jax.random.key(0),
                            mode=PredictMode.TRAIN)  # fmt: skip
    np.testing.assert_array_equal(out, [2.0, 2.0])
    np.testing.assert_array_equal(m.predict(np.ones((2, 1))), [[2.0], [2.0]])


def test_predict_needs_values():
    with pytest.raises(MiniMLError, match="randomize"):
        Affine(2, 1).predict(np.ones((3, 2)))


def test_predict_does_not_recompile_when_values_change(count_compilations):
    m = Affine(3, 2)
    m.randomize(seed=0)
    X = np.ones((5, 3))
    m.predict(X)
    with count_compilations() as c:
        m.randomize(seed=1)
        m.predict(X)
        m.set_params({"b": jnp.ones(2)})
        m.predict(X + 1.0)
    assert c.n == 0


def test_a_model_fitted_on_floats_predicts_on_integer_inputs():
    m = Affine(3, 1)
    m.randomize(seed=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    m.fit(X, X.sum(axis=1, keepdims=True), reg_lambda=0.0)
    W, b = np.asarray(m.W.value), np.asarray(m.b.value)
    ints = [[1, 2, 3], [-4, 0, 7]]
    np.testing.assert_allclose(m.predict(ints), np.asarray(ints, float) @ W + b, rtol=1e-14)
    np.testing.assert_array_equal(m.predict(np.asarray(ints, np.int32)), m.predict(ints))


def test_a_model_fitted_on_integers_refuses_float_inputs_naming_the_dtypes():
    class Lookup(MiniMLModel):  # integer codes index a table: floats would be wrong
        def __init__(self):
            self.table = MiniMLParam((4, 1))
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return self.table(buffer)[X[:, 0]]

    m = Lookup()
    m.bind()
    codes = np.array([[0], [1], [2], [3], [1]])
    m.fit(codes, np.array([[1.0], [2.0], [3.0], [4.0], [2.0]]), reg_lambda=0.0)
    with pytest.raises(MiniMLError, match=r"a float64 input where the fit had int64.*np\.asarray"):
        m.predict(np.array([[0.0]]))
    np.testing.assert_allclose(m.predict(np.array([[2]], np.int64)), [[3.0]], rtol=1e-5)


def test_activity_regularization_enters_the_objective():
    class Sparse(MiniMLModel):
        def __init__(self):
            self.w = MiniMLParam((2, 1))
            super().__init__()

        def _predict_kernel(self, X, buffer, rng_key=None, mode=PredictMode.INFERENCE):
            y = X @ self.w(buffer)
            return PredictKernelOutput(y, jnp.sum(jnp.abs(y)))

    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[1.0], [1.0]])
    m = Sparse()
    m.bind()
    m.set_params({"w": np.full((2, 1), 2.0)})  # on the smooth side of |a|: exact optimum
    res = m.fit(X, y, reg_lambda=0.0, active_reg_lambda=0.5)
    # min (1-a)^2 + 0.5|a| per coordinate: a = 1 - 0.25
    np.testing.assert_allclose(np.asarray(m.w.value).ravel(), [0.75, 0.75], atol=1e-6)
    assert res.loss == pytest.approx(2 * (0.25**2 + 0.5 * 0.75), rel=1e-9)
    np.testing.assert_allclose(m.predict(X), [[0.75], [0.75]], atol=1e-6)


def test_clone_builds_an_independent_copy():
    class Holder(MiniMLModel):
        def __init__(self, child, scale=2.0):
            self.child = child
            self.scale = scale
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return self.scale * self.child._predict_kernel(X, buffer)

    model = Holder(Affine(2, 1), scale=3.0)
    model.randomize(seed=0)
    copy = model.clone(with_params=True)
    assert copy is not model and copy.child is not model.child
    np.testing.assert_array_equal(np.asarray(copy.get_buffer()), np.asarray(model.get_buffer()))
    copy.randomize(seed=5)
    assert not np.array_equal(np.asarray(copy.get_buffer()), np.asarray(model.get_buffer()))
    assert model.clone().bound is False
    X = np.ones((3, 2))
    np.testing.assert_allclose(model.predict(X), 3.0 * model.child.predict(X))


def test_models_pickle_and_copy_without_their_compiled_code():
    import copy
    import pickle

    from miniml.nn import MLP

    model = MLP([3, 4, 1])
    model.randomize(seed=0)
    X = np.arange(6.0).reshape(2, 3)
    expected = np.asarray(model.predict(X))
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert other._compiled == {}
        np.testing.assert_array_equal(np.asarray(other.get_buffer()), model.get_buffer())
        np.testing.assert_array_equal(other.predict(X), expected)
        other.randomize(seed=1)  # the copy owns its buffer
        assert not np.array_equal(other.get_buffer(), model.get_buffer())
    assert model._compiled, "the original keeps its compiled code"


def test_a_parameter_free_model_predicts_without_bind():
    from miniml.nn import MaxPool

    pool = MaxPool(2, 2)
    X = np.arange(16.0).reshape(1, 4, 4, 1)
    expected = X.reshape(1, 2, 2, 2, 2, 1).max(axis=(2, 4))
    np.testing.assert_array_equal(pool.predict(X), expected)


class WithEmptyParam(MiniMLModel):
    """A nested model with a zero-size parameter between two others."""

    def __init__(self):
        self.net = TwoLayer()
        self.empty = MiniMLParam((0,))
        self.shift = MiniMLParam((2,), reg_loss=LNormRegularization(2))
        super().__init__()

    def _predict_kernel(self, X, buffer):
        return self.net._predict_kernel(X, buffer) + self.shift(buffer) + self.empty(buffer).sum()


def test_split_parameter_views_give_the_same_values_and_gradients():
    """Inside `split_parameter_views` parameters read pieces of one split of the buffer
    (whose gradient is a concatenation instead of a sum of padded slices); values and
    gradients are exactly those of plain slicing, and a kernel that computes a new
    buffer falls back to slicing."""
    from miniml.param import split_parameter_views

    model = WithEmptyParam()
    model.randomize(seed=1)
    scales = jnp.asarray(model._reg_scales())
    X = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)))

    def plain(buffer, rescale=False):
        read = buffer * 1.0 if rescale else buffer
        out = model._predict_kernel(X, read)
        return jnp.sum(jnp.sin(out)) + model._regularization(read, scales)

    def viewed(buffer, rescale=False):
        with split_parameter_views(buffer, model):
            return plain(buffer, rescale)

    buffer = model.get_buffer()
    for rescale in (False, True):
        value, grad = jax.jit(jax.value_and_grad(plain), static_argnums=1)(buffer, rescale)
        v_value, v_grad = jax.jit(jax.value_and_grad(viewed), static_argnums=1)(buffer, rescale)
        assert value == v_value
        np.testing.assert_array_equal(grad, v_grad)
    assert "concatenate" in str(jax.make_jaxpr(jax.grad(viewed))(buffer))
    assert "concatenate" not in str(jax.make_jaxpr(jax.grad(plain))(buffer))
    assert "concatenate" not in str(jax.make_jaxpr(jax.grad(lambda b: viewed(b, True)))(buffer))


class _Standardized(MiniMLModel):
    """``(X - mean_) @ w + b`` with ``mean_`` set from the data by ``_pre_fit``."""

    def __init__(self, scale=1.0):
        self.w = MiniMLParam((1, 1))
        self.b = MiniMLParam((1,))
        self.scale = scale
        super().__init__()

    def _pre_fit(self, X, y):
        self.mean_ = jnp.mean(X, axis=0)
        return set()

    def _predict_kernel(self, X, buffer):
        return self.scale * ((X - self.mean_) @ self.w(buffer) + self.b(buffer))


def test_attributes_set_after_compiling_are_used_by_the_next_fit_and_predict():
    """Compiled code holds attributes as constants: a new mean from _pre_fit or a new
    scale must reach the next fit and predict, not the values of the first trace."""
    rng = np.random.default_rng(0)
    model = _Standardized()
    model.randomize(seed=0)
    X = rng.normal(size=(50, 1))
    model.fit(X, 2 * X + 1, reg_lambda=0.0)
    X2 = rng.normal(size=(50, 1)) + 100.0
    model.fit(X2, 2 * X2 + 1, reg_lambda=0.0)
    assert float(model.mean_[0]) == pytest.approx(X2.mean(), rel=1e-14)
    assert float(model.predict(np.array([[100.0]]))[0, 0]) == pytest.approx(201.0, rel=1e-9)
    before = float(model.predict(np.array([[101.0]]))[0, 0])
    model.scale = 10.0
    assert float(model.predict(np.array([[101.0]]))[0, 0]) == pytest.approx(10 * before, rel=1e-14)


def test_reassigning_an_equal_attribute_keeps_the_compiled_functions(count_compilations):
    rng = np.random.default_rng(1)
    model = _Standardized()
    model.randomize(seed=0)
    X = rng.normal(size=(50, 1))
    model.fit(X, 3 * X, reg_lambda=0.0)
    model.predict(X)
    with count_compilations() as counted:
        model.fit(X, 3 * X, reg_lambda=0.0)  # _pre_fit stores an equal mean_ again
        model.scale = 1.0
        model.predict(X)
    assert counted.n == 0


def test_a_child_attribute_change_reaches_the_parent_compiled_predict():
    class Scaled(MiniMLModel):
        def __init__(self):
            self.inner = Affine(2, 1)
            self.factor = 1.0
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return self.factor * self.inner._predict_kernel(X, buffer)

    class Outer(MiniMLModel):
        def __init__(self):
            self.body = Scaled()
            super().__init__()

        def _predict_kernel(self, X, buffer):
            return self.body._predict_kernel(X, buffer)

    model = Outer()
    model.randomize(seed=0)
    X = np.ones((3, 2))
    first = np.asarray(model.predict(X))
    model.body.factor = -2.0
    np.testing.assert_allclose(model.predict(X), -2.0 * first, rtol=1e-14)
