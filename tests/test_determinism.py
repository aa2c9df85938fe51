"""The same seed gives bit-identical parameters, in one process and across processes."""

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

FIT = textwrap.dedent(
    """
    import hashlib
    import warnings

    import numpy as np
    from miniml.optim import ScipyOptimizer
    from tests.models import TinyMLP

    def fitted_digest():
        rng = np.random.default_rng(0)
        X = rng.normal(size=(120, 4))
        y = np.sin(X @ rng.normal(size=(4, 2)))
        model = TinyMLP(4, 8, 2)
        model.randomize(seed=123)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fixed budget of 200 iterations, on purpose
            model.fit(X, y, reg_lambda=1e-3, validation_data=(X[:20], y[:20]),
                      optimizer=ScipyOptimizer("L-BFGS-B", {"maxiter": 200}))
        return hashlib.sha256(np.asarray(model.get_buffer()).tobytes()).hexdigest()

    def stochastic_digest(model=None, seed=11):
        # Adam on shuffled mini-batches through a network with dropout: the permutations
        # and the dropout masks both come from the fit's seed.
        from miniml.nn import MLP
        from miniml.optim import Adam

        rng = np.random.default_rng(1)
        X = rng.normal(size=(96, 4))
        y = np.sin(X @ rng.normal(size=(4, 1)))
        model = MLP([4, 16, 1], dropout=0.3) if model is None else model
        model.randomize(seed=7)
        model.fit(X, y, optimizer=Adam(lr=1e-2), epochs=8, batch_size=16, shuffle=True,
                  seed=seed)
        return hashlib.sha256(np.asarray(model.get_buffer()).tobytes()).hexdigest()
    """
)


def _digest_here(name="fitted_digest"):
    namespace: dict = {}
    exec(FIT, namespace)
    return namespace[name]()


def test_same_seed_same_bits_in_one_process():
    assert _digest_here() == _digest_here()


def test_same_seed_same_bits_for_stochastic_fits_in_one_process():
    """Two fits of one model (one compiled program) from the same start and seed agree
    bit for bit, and another seed changes the shuffling and the dropout masks. Fresh
    compilations are compared in the cross-process test below."""
    from miniml.nn import MLP

    namespace: dict = {}
    exec(FIT, namespace)
    model = MLP([4, 16, 1], dropout=0.3)
    first = namespace["stochastic_digest"](model)
    assert namespace["stochastic_digest"](model) == first
    assert namespace["stochastic_digest"](model, seed=12) != first


def test_same_seed_same_bits_across_processes():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIML_")}
    script = FIT + "\nprint(fitted_digest(), stochastic_digest())\n"
    outputs = [
        subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True,
                       text=True, check=True, timeout=120).stdout.split()
        for _ in range(2)
    ]  # fmt: skip
    assert outputs[0] == outputs[1] == [_digest_here(), _digest_here("stochastic_digest")]


def test_different_seeds_differ():
    from tests.models import TinyMLP

    a, b = TinyMLP(2, 2, 1), TinyMLP(2, 2, 1)
    a.randomize(seed=1)
    b.randomize(seed=2)
    assert (
        hashlib.sha256(np.asarray(a.get_buffer()).tobytes()).digest()
        != hashlib.sha256(np.asarray(b.get_buffer()).tobytes()).digest()
    )
