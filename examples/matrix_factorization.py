"""Matrix factorization for recommendations on synthetic MovieLens-like ratings.

Kormos' collaborative-filtering example factorizes the MovieLens ratings matrix into
user and item embeddings and fits them with L-BFGS-B. This script does the same with
`miniml.nn.Embedding` on synthetic ratings shaped like MovieLens "latest-small" (610
users, 9724 movies, about 100 000 ratings of 0.5 to 5 stars in half steps, skewed user
activity and movie popularity), drawn from a planted low-rank model plus noise, so the
best achievable error is known.

The model predicts the normalized rating of user ``u`` for item ``i`` as
``mu + b_u + c_i + <P_u, Q_i>``: a global mean ``mu`` fixed from the data in `_pre_fit`,
user and item biases and rank-5 factors (all but ``mu`` L2-regularized). The data are
split 90/10 at random (as in the Keras example Kormos copies), and the script prints
the validation MSE next to two references: predicting the training mean, and the
planted model itself (the noise floor; rarely rated movies keep the fit above it).
Saves ``matrix_factorization.png``: the validation MSE per iteration (the ``val_mse``
column of the history) against both references, and predicted against true
validation ratings.

Run::

    .venv/bin/python examples/matrix_factorization.py [--quick] [--out DIR]
"""

from __future__ import annotations

import time
import warnings

import jax.numpy as jnp
import numpy as np
from _example_cli import parse_args  # examples/_example_cli.py
from matplotlib.figure import Figure

from miniml import ConvergenceWarning, MiniMLModel, MiniMLParam
from miniml.loss import LNormRegularization
from miniml.nn import Embedding
from miniml.optim import ScipyOptimizer

L2 = LNormRegularization(2)
MIN_RATING, MAX_RATING = 0.5, 5.0


class MatrixFactorization(MiniMLModel):
    """``mu + b_u + c_i + <P_u, Q_i>`` for ``X = (user_ids, item_ids)``."""

    def __init__(self, n_users: int, n_items: int, rank: int) -> None:
        self.mu = MiniMLParam((1,))
        self.user_bias = Embedding(n_users, 1, reg_loss=L2)
        self.item_bias = Embedding(n_items, 1, reg_loss=L2)
        self.user_factors = Embedding(n_users, rank, reg_loss=L2)
        self.item_factors = Embedding(n_items, rank, reg_loss=L2)
        super().__init__()  # sum of squared errors

    def _pre_fit(self, X, y):
        self.set_params({"mu": jnp.mean(y, keepdims=True)})
        return {"mu"}  # the global mean stays fixed during the fit

    def _predict_kernel(self, X, buffer):
        users, items = X
        P = self.user_factors._predict_kernel(users, buffer)
        Q = self.item_factors._predict_kernel(items, buffer)
        biases = self.user_bias._predict_kernel(users, buffer)[:, 0]
        biases = biases + self.item_bias._predict_kernel(items, buffer)[:, 0]
        return self.mu(buffer) + biases + jnp.sum(P * Q, axis=-1)


def synthetic_ratings(n_users: int, n_items: int, n_ratings: int, rank: int, seed: int = 0):
    """MovieLens-like ratings from a planted model.

    Returns user ids, item ids, the ratings in stars and the planted model's expected
    ratings (what a perfect model would predict, before noise, rounding and clipping).
    """
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)  # a few users rate a lot
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8  # Zipf-like movie popularity
    pairs = np.empty(0, dtype=np.int64)
    while len(pairs) < n_ratings:  # distinct (user, item) pairs
        users = rng.choice(n_users, size=n_ratings, p=activity / activity.sum())
        items = rng.choice(n_items, size=n_ratings, p=popularity / popularity.sum())
        pairs = np.unique(np.concatenate([pairs, users * n_items + items]))
    pairs = rng.permutation(pairs)[:n_ratings]
    users, items = pairs // n_items, pairs % n_items
    P, Q = rng.normal(0, 0.5, (n_users, rank)), rng.normal(0, 0.5, (n_items, rank))
    expected = (
        3.5
        + rng.normal(0, 0.4, n_users)[users]
        + rng.normal(0, 0.5, n_items)[items]
        + np.sum(P[users] * Q[items], axis=1)
    )
    stars = expected + rng.normal(0, 0.5, n_ratings)
    stars = np.clip(np.round(stars * 2) / 2, MIN_RATING, MAX_RATING)  # half stars, 0.5..5
    return users, items, stars, expected


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__, quick_help="a smaller ratings matrix")
    started = time.perf_counter()
    if args.quick:
        n_users, n_items, n_ratings, maxiter = 100, 300, 4000, 60
    else:
        n_users, n_items, n_ratings, maxiter = 610, 9724, 100836, 150
    rank = 5
    users, items, stars, expected = synthetic_ratings(n_users, n_items, n_ratings, rank)
    print(
        f"{n_users} users, {n_items} items, {n_ratings} ratings "
        f"(density {n_ratings / (n_users * n_items):.2%}), stars {stars.min()}..{stars.max()}"
    )
    # Normalize the ratings to [0, 1], as the Keras example does; split 90/10.
    y = (stars - MIN_RATING) / (MAX_RATING - MIN_RATING)
    n_train = int(0.9 * n_ratings)
    X_train, y_train = (users[:n_train], items[:n_train]), y[:n_train]
    X_val, y_val = (users[n_train:], items[n_train:]), y[n_train:]

    model = MatrixFactorization(n_users, n_items, rank)
    model.bind()
    model.set_buffer(0.1 * np.random.default_rng(1).normal(size=model.size))
    with warnings.catch_warnings():
        # A fixed iteration budget: L-BFGS-B may stop at maxiter before its tolerance.
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = model.fit(
            X_train,
            y_train,
            reg_lambda=1.0,
            optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": maxiter}),
            validation_data=(X_val, y_val),
            metrics=["mse"],
        )
    predicted = np.asarray(model.predict(X_val))
    val_mse = float(np.mean((predicted - y_val) ** 2))
    mean_mse = float(np.mean((y_train.mean() - y_val) ** 2))
    best = (expected[n_train:] - MIN_RATING) / (MAX_RATING - MIN_RATING)
    oracle_mse = float(np.mean((best - y_val) ** 2))
    rmse_stars = np.sqrt(val_mse) * (MAX_RATING - MIN_RATING)
    print(f"L-BFGS-B: {res.n_iterations} iterations, {res.message}")
    print(f"validation MSE (normalized ratings): {val_mse:.5f}  (RMSE {rmse_stars:.3f} stars)")
    print(f"  predicting the training mean:      {mean_mse:.5f}")
    print(f"  the planted model itself:          {oracle_mse:.5f}  (the noise floor)")

    path = args.out / "matrix_factorization.png"
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    iterations = np.arange(1, len(res.history) + 1)
    left.plot(iterations, res.history.column("val_mse"), label="matrix factorization")
    left.axhline(mean_mse, color="grey", linestyle=":", label="training mean")
    left.axhline(oracle_mse, color="black", linestyle="--", label="planted model")
    left.set(xlabel="L-BFGS-B iteration", ylabel="validation MSE (normalized ratings)")
    left.legend()
    scale = MAX_RATING - MIN_RATING
    right.scatter(y_val * scale + MIN_RATING, predicted * scale + MIN_RATING, s=2, alpha=0.3)
    right.plot([MIN_RATING, MAX_RATING], [MIN_RATING, MAX_RATING], color="black", linestyle="--")
    right.set(
        xlabel="true rating (stars)",
        ylabel="predicted rating",
        title=f"validation: RMSE {rmse_stars:.3f} stars",
    )
    fig.savefig(path, dpi=100)
    print(f"saved {path}  ({time.perf_counter() - started:.1f} s)")
    return {
        "val_mse": val_mse,
        "mean_mse": mean_mse,
        "oracle_mse": oracle_mse,
        "n_iterations": res.n_iterations,
        "plots": [path],
    }


if __name__ == "__main__":
    main()
