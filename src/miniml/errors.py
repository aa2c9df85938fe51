"""The library's exception and warning types."""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "MiniMLError", "NonFiniteWarning", "PerformanceWarning"]


class MiniMLError(ValueError, TypeError):
    """Raised when MiniML is used incorrectly.

    It subclasses `ValueError` and `TypeError`, so code written as ``except ValueError``
    or ``except TypeError`` keeps working.
    Every message names the function that complained, what it expected, what it
    received and how to fix it.
    """


class ConvergenceWarning(UserWarning):
    """A fit stopped before its optimizer reported convergence.

    The fit still returns a result (with ``success=False``) and the model holds the
    last finite parameters, as in scikit-learn.
    """


class NonFiniteWarning(UserWarning):
    """The objective or its gradient became NaN or infinite during a fit.

    The model keeps the last parameters at which the objective was finite.
    """


class PerformanceWarning(UserWarning):
    """MiniML fell back to a slower way of computing the same result.

    The message says what was given up and how to get it back.
    """
