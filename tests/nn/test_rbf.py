"""Radial basis functions, `RBFLayer` and `CayleyMatrix` against numpy transcriptions,
and an RBF network fitted to a smooth 2-D function."""

import numpy as np
import pytest

import miniml.nn as nn
from miniml import ConvergenceWarning, MiniMLError
from miniml.optim import ScipyOptimizer
from tests.nn.helpers import TOL, with_params

R = np.array([0.0, 1e-3, 0.3, 0.99, 1.0, 1.7, 4.0])
FORMULAS = {
    "gaussian": (nn.gaussian_rbf, lambda r: np.exp(-(r**2) / 2)),
    "multiquadric": (nn.multiquadric_rbf, lambda r: np.sqrt(1 + r**2)),
    "inverse_multiquadric": (nn.inverse_multiquadric_rbf, lambda r: 1 / np.sqrt(1 + r**2)),
    "inverse_quadratic": (nn.inverse_quadratic_rbf, lambda r: 1 / (1 + r**2)),
    "linear": (nn.linear_rbf, lambda r: r),
    "r_tanh": (nn.r_tanh_rbf, lambda r: r * np.tanh(r)),
    "bump": (
        nn.bump_rbf,
        lambda r: np.array([np.exp(1 - 1 / (1 - x**2)) if x < 1 else 0.0 for x in r]),
    ),
    "polyharmonic3": (nn.PolyharmonicRBF(3), lambda r: r**3),
    "polyharmonic2": (
        nn.PolyharmonicRBF(2),
        lambda r: np.array([x**2 * np.log(x) if x > 0 else 0.0 for x in r]),
    ),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_rbf_functions_match_their_formulas(name):
    rbf, formula = FORMULAS[name]
    np.testing.assert_allclose(np.asarray(rbf(R)), formula(R), rtol=1e-13, atol=1e-15)


def _target(X):
    return np.sin(X[:, 0]) * np.cos(X[:, 1])


def _grid_layer(normalize):
    layer = nn.RBFLayer(2, 1, 25, nn.gaussian_rbf, projection="scaling", normalize=normalize)
    ticks = np.linspace(-2, 2, 5)
    centers = np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)
    return with_params(layer, centers=centers, scales=np.ones((25, 2)))  # W starts at 0


@pytest.mark.parametrize("normalize", [False, True])
def test_rbf_network_recovers_a_smooth_2d_function(normalize):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(200, 2))
    ticks = np.linspace(-1.9, 1.9, 25)
    X_test = np.stack(np.meshgrid(ticks, ticks), axis=-1).reshape(-1, 2)
    layer = _grid_layer(normalize)
    with pytest.warns(ConvergenceWarning):  # 150 iterations are enough for the bound
        layer.fit(
            X,
            _target(X)[:, None],
            reg_lambda=0.0,
            optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": 150}),
        )
    error = np.asarray(layer.predict(X_test))[:, 0] - _target(X_test)
    # The target spans [-1, 1]; 25 Gaussians reach about 0.3% RMS error on this grid.
    assert np.sqrt(np.mean(error**2)) < 0.01
    assert np.max(np.abs(error)) < 0.05


def _numpy_basis(X, centers, project, phi, normalize):
    z = np.stack([project(j, X - centers[j]) for j in range(len(centers))], axis=1)
    h = phi(np.linalg.norm(z, axis=-1))
    return h / h.sum(axis=1, keepdims=True) if normalize else h


def _cayley(a, dim):
    skew = np.zeros((dim, dim))
    skew[np.triu_indices(dim, k=1)] = a
    skew -= skew.T
    return (np.eye(dim) - skew) @ np.linalg.inv(np.eye(dim) + skew)


@pytest.mark.parametrize("projection", ["none", "scaling", "ortho", "full"])
@pytest.mark.parametrize("normalize", [False, True])
def test_rbf_layer_matches_numpy_and_normalize_really_normalizes(projection, normalize):
    rng = np.random.default_rng(1)
    n_in, n_centers = 3, 4
    X = rng.normal(size=(6, n_in))
    params = {"centers": rng.normal(size=(n_centers, n_in)), "W": rng.normal(size=(n_centers, 2))}
    project = lambda j, d: d  # noqa: E731
    if projection in ("scaling", "ortho"):
        params["scales"] = rng.uniform(0.5, 2, size=(n_centers, n_in))
    if projection == "scaling":
        project = lambda j, d: d * params["scales"][j]  # noqa: E731
    if projection == "ortho":
        for j in range(n_centers):
            params[f"rotations.{j}.A"] = rng.normal(size=3)
        rotations = [_cayley(params[f"rotations.{j}.A"], n_in) for j in range(n_centers)]
        project = lambda j, d: (rotations[j].T @ d.T).T * params["scales"][j]  # noqa: E731
    if projection == "full":
        params["projections"] = rng.normal(size=(n_centers, n_in, n_in))
        project = lambda j, d: d @ params["projections"][j].T  # noqa: E731
    phi = FORMULAS["gaussian"][1]
    layer = with_params(
        nn.RBFLayer(n_in, 2, n_centers, projection=projection, normalize=normalize), **params
    )
    expected = _numpy_basis(X, params["centers"], project, phi, normalize)
    basis = np.asarray(layer.basis(X))
    np.testing.assert_allclose(basis, expected, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(np.asarray(layer.predict(X)), expected @ params["W"], rtol=TOL)
    if normalize:
        np.testing.assert_allclose(basis.sum(axis=1), 1.0, rtol=1e-14)
        unnormalized = with_params(nn.RBFLayer(n_in, 2, n_centers, projection=projection), **params)
        assert not np.allclose(np.asarray(unnormalized.predict(X)), np.asarray(layer.predict(X)))


def test_normalized_gaussian_basis_does_not_underflow_far_from_the_centers():
    layer = with_params(
        nn.RBFLayer(1, 1, 2, projection="none", normalize=True),
        centers=np.array([[0.0], [1.0]]),
        W=np.array([[1.0], [3.0]]),
    )
    far = np.array([[60.0], [-60.0]])  # exp(-60**2 / 2) underflows to 0 in float64
    basis = np.asarray(layer.basis(far))
    # Ratios of the Gaussians: exp(-(60^2 - 59^2) / 2) and exp(-(61^2 - 60^2) / 2).
    near, other = np.exp(-59.5), np.exp(-60.5)
    expected = [[near / (1 + near), 1 / (1 + near)], [1 / (1 + other), other / (1 + other)]]
    np.testing.assert_allclose(basis, expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(layer.predict(far)), [[3.0], [1.0]], rtol=1e-12)


@pytest.mark.parametrize("rbf", [nn.linear_rbf, nn.bump_rbf, nn.PolyharmonicRBF(2)])
def test_normalize_with_a_basis_that_can_vanish_is_refused(rbf):
    with pytest.raises(MiniMLError, match="strictly positive"):
        nn.RBFLayer(2, 1, 3, rbf, normalize=True)


def test_cayley_matrix_is_orthogonal_and_matches_the_formula():
    rng = np.random.default_rng(2)
    a = 2 * rng.normal(size=10)
    layer = with_params(nn.CayleyMatrix(5), A=a)
    Q = np.asarray(layer.matrix())
    np.testing.assert_allclose(Q, _cayley(a, 5), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Q.T @ Q, np.eye(5), atol=1e-13)
    assert np.linalg.det(Q) == pytest.approx(1.0)
    X = rng.normal(size=(3, 5))
    np.testing.assert_allclose(np.asarray(layer.predict(X)), X @ Q, rtol=1e-12)
    identity = with_params(nn.CayleyMatrix(3))
    np.testing.assert_allclose(np.asarray(identity.matrix()), np.eye(3), atol=0)
