"""Property-based tests of the core (hypothesis), including a bounded fuzz of the loader."""

import io
import tempfile
import warnings
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miniml import MiniMLError, MiniMLModel, MiniMLParam, MiniMLParamList
from miniml._chunked import chunk_data
from miniml.objective import Hyper, objective_for
from miniml.optim import (
    LBFGS,
    SGD,
    AdaGrad,
    Adam,
    AdamOptimizer,
    AdamW,
    AdamWOptimizer,
    NAdam,
    RMSProp,
    ScipyOptimizer,
)
from tests.models import LinearModel, TinyMLP

SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Shapes(MiniMLModel):
    """A model with an arbitrary list of parameter shapes; predicts a weighted sum."""

    def __init__(self, shapes):
        self.weights = MiniMLParamList([MiniMLParam(tuple(s)) for s in shapes])
        super().__init__()

    def _predict_kernel(self, X, buffer):
        total = sum(jnp.sum(p(buffer)) for p in self.weights)
        return X * total


shape_lists = st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=3), min_size=1, max_size=4)


@SETTINGS
@given(shapes=shape_lists, seed=st.integers(0, 2**31 - 1))
def test_save_load_round_trip_is_bit_exact(tmp_path, shapes, seed):
    model = Shapes(shapes)
    model.randomize(seed=seed)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = Shapes.load(path)
    assert loaded.param_names == model.param_names
    np.testing.assert_array_equal(np.asarray(loaded.get_buffer()), np.asarray(model.get_buffer()))
    X = np.linspace(-1, 1, 6).reshape(6, 1)
    np.testing.assert_array_equal(np.asarray(loaded.predict(X)), np.asarray(model.predict(X)))


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 40), chunk=st.integers(1, 50), seed=st.integers(0, 1000))
def test_chunked_objective_equals_direct(n, chunk, seed):
    rng = np.random.default_rng(seed)
    model = LinearModel(3, 2)
    model.randomize(seed=seed)
    data = (jnp.asarray(rng.normal(size=(n, 3))), jnp.asarray(rng.normal(size=(n, 2))))
    hyper = Hyper(jnp.asarray(0.5), jnp.asarray(1.0), jnp.asarray(model._reg_scales()),
                  jnp.zeros((2,), jnp.uint32), jnp.asarray(1.0))  # fmt: skip
    theta = model.get_buffer()
    direct = objective_for(model, frozenset(), ()).value_and_grad(theta, None, data, hyper)
    chunked = objective_for(model, frozenset(), (), chunk).value_and_grad(
        theta, None, chunk_data(data, n, chunk), hyper
    )
    assert float(chunked[0]) == pytest.approx(float(direct[0]), rel=1e-12)
    np.testing.assert_allclose(chunked[1], direct[1], rtol=1e-11, atol=1e-13)


METHODS = ["L-BFGS-B", "BFGS", "CG", "Newton-CG", "TNC", "trust-ncg", "Powell", "SLSQP"]


@settings(max_examples=12, deadline=None)
@given(method=st.sampled_from(METHODS), frozen=st.sampled_from(["W1", "b1", "W2", "b2"]))
def test_pre_fit_frozen_parameters_are_bit_identical(method, frozen):
    class Frozen(TinyMLP):
        def _pre_fit(self, X, y):
            return {frozen}

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 1))
    model = Frozen(2, 3, 1)
    model.randomize(seed=4)
    before = np.asarray(model.params[frozen].value).copy()
    others = {n: np.asarray(p.value).copy() for n, p in model.params.items() if n != frozen}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short budgets may not converge; not the point
        model.fit(X, y, optimizer=ScipyOptimizer(method, {"maxiter": 20}))
    np.testing.assert_array_equal(np.asarray(model.params[frozen].value), before)
    assert any(not np.array_equal(np.asarray(model.params[n].value), v) for n, v in others.items())


# Every other optimizer, each with the parameters it keeps fixed. One compiled program
# per case (a model's compiled programs depend on its trainable set), so the frozen sets
# are spread over the cases instead of drawn per example.
COMPILED_OPTIMIZERS = {
    "LBFGS": (lambda: LBFGS(maxiter=20), {}, {"W1"}),
    "SGD-nesterov": (
        lambda: SGD(lr=1e-2, momentum=0.9, wd=0.1, nesterov=True),
        {"epochs": 3, "batch_size": 10},
        {"b1"},
    ),
    "AdaGrad": (lambda: AdaGrad(lr=0.1, wd=0.1), {"epochs": 3}, {"W2"}),
    "RMSProp": (lambda: RMSProp(lr=1e-2, wd=0.1), {"epochs": 3, "batch_size": 10}, {"b2"}),
    "Adam": (lambda: Adam(lr=1e-2, weight_decay=0.1), {"epochs": 3}, {"W1", "b2"}),
    "AdamW": (
        lambda: AdamW(lr=1e-2, weight_decay=0.5),
        {"epochs": 3, "batch_size": 15},
        {"b1", "W2"},
    ),
    "NAdam": (lambda: NAdam(lr=1e-2), {"epochs": 3}, {"W1", "b1"}),
    "AdamOptimizer": (lambda: AdamOptimizer(alpha=1e-2, maxiter=5), {}, {"W2", "b2"}),
    "AdamWOptimizer": (
        lambda: AdamWOptimizer(alpha=1e-2, weight_decay=0.5, maxiter=5),
        {},
        {"W1", "W2"},
    ),
    "optax-adamw": (lambda: optax.adamw(1e-2, weight_decay=0.5), {"epochs": 3}, {"b1", "b2"}),
}


@pytest.mark.parametrize("case", list(COMPILED_OPTIMIZERS))
def test_pre_fit_frozen_parameters_are_bit_identical_after_compiled_optimizers(case):
    make, options, frozen = COMPILED_OPTIMIZERS[case]

    class Frozen(TinyMLP):
        def _pre_fit(self, X, y):
            return frozen

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 1))
    model = Frozen(2, 3, 1)
    model.randomize(seed=4)
    before = {n: np.asarray(p.value).copy() for n, p in model.params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short budgets may not converge; not the point
        model.fit(X, y, reg_lambda=0.3, optimizer=make(), **options)
    for name, value in before.items():
        after = np.asarray(model.params[name].value)
        if name in frozen:
            np.testing.assert_array_equal(after, value)
        else:  # the others did train (weight decay would have moved frozen ones too)
            assert not np.array_equal(after, value), name


def _valid_file_bytes():
    model = TinyMLP(2, 3, 1)
    model.randomize(seed=0)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "seed.npz"
        model.save(path)
        return path.read_bytes()


VALID = _valid_file_bytes()


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, len(VALID))),
)
def test_loader_fuzz_never_crashes_or_executes(tmp_path, edits, cut):
    data = bytearray(VALID)
    for position, value in edits:
        data[position] = value
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "fuzz.npz"
    path.write_bytes(bytes(data))
    try:
        model = TinyMLP.load(path)
    except MiniMLError:
        return
    # A file that still loads must be a consistent model.
    assert model.param_names == ["W1", "b1", "W2", "b2"]
    assert np.asarray(model.get_buffer()).shape == (3 * 2 + 3 + 3 + 1,)


def test_fuzz_seed_file_is_a_valid_zip():
    assert zipfile.is_zipfile(io.BytesIO(VALID))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(["params", "init", "class", "format_version", "dtype"]), value=json_values
)
def test_loader_fuzz_of_header_fields(tmp_path, field, value):
    import json

    with np.load(io.BytesIO(VALID)) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["__miniml_meta__"].tobytes())
    meta[field] = value
    arrays["__miniml_meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path = tmp_path / "header.npz"
    np.savez(path, **arrays)
    with pytest.raises(MiniMLError):
        TinyMLP.load(path)
