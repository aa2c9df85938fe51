"""`History`: one record per iteration (SciPy path) or epoch (stochastic path).

Every record has the same columns whatever the optimizer:

* ``stage``: the optimizer's label (staged fits label each stage);
* ``iteration``: the iteration or epoch number within its stage, from 1;
* ``loss``: the training objective (loss + penalties) at the accepted point; for
  stochastic optimizers the mean of the epoch's accepted batch objectives (Keras'
  convention);
* ``grad``: the gradient's 2-norm there (None when the optimizer does not compute it);
  for stochastic optimizers the 2-norm of the mean of the epoch's accepted batch
  gradients, which with full batches is the exact gradient norm at the point the
  epoch's loss was taken (the start of its step);
* ``fg_evals`` / ``hessp_evals``: cumulative value-and-gradient and Hessian(-vector)
  evaluations since the fit began (Kormos' columns);
* ``learning_rate``: for stochastic optimizers, else None;
* ``time``: seconds since the fit began;
* ``val_loss`` and ``val_<metric>``: when ``validation_data`` was given and evaluated at
  this iteration (None in between, see ``validation_freq``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from miniml.errors import MiniMLError

__all__ = ["History"]

BASE_COLUMNS = ("stage", "iteration", "loss", "grad", "fg_evals", "hessp_evals",
                "learning_rate", "time")  # fmt: skip


class History:
    """The per-iteration records of a fit (``FitResult.history``)."""

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []
        self.step_losses: dict[tuple[str, int], Sequence[float]] = {}

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (the fit driver calls this)."""
        self._records.append(dict(record))

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return dict(self._records[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (dict(r) for r in self._records)

    @property
    def columns(self) -> list[str]:
        """Column names in a stable order: the base columns, then validation columns."""
        extra: list[str] = []
        for record in self._records:
            extra.extend(k for k in record if k not in BASE_COLUMNS and k not in extra)
        return [*BASE_COLUMNS, *extra]

    def column(self, name: str) -> list[Any]:
        """All values of one column (None where a record has no value)."""
        if name not in self.columns:
            raise MiniMLError(
                f"History.column: no column {name!r}; the columns are {self.columns}."
            )
        return [r.get(name) for r in self._records]

    @property
    def history(self) -> dict[str, list[Any]]:
        """Columns as lists, like Keras' ``History.history``."""
        return {name: self.column(name) for name in self.columns}

    def stages(self) -> list[str]:
        """Stage labels in the order they ran."""
        seen: list[str] = []
        for record in self._records:
            if record["stage"] not in seen:
                seen.append(record["stage"])
        return seen

    def to_pandas(self) -> Any:
        """The records as a `pandas.DataFrame` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise MiniMLError(
                "History.to_pandas needs pandas; install it with `pip install pandas`."
            ) from err
        return pd.DataFrame(self.history, columns=self.columns)

    def plot(self, path: str | Path | None = None, log_scale: bool = True, ax: Any = None) -> Any:
        """Plot training (and validation) loss per iteration with matplotlib.

        Args:
            path: if given, save the figure there (e.g. a PNG).
            log_scale: use a logarithmic loss axis when all losses are positive.
            ax: an existing matplotlib axis to draw on.

        Returns:
            The matplotlib axis.
        """
        try:
            import matplotlib

            if ax is None and path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise MiniMLError(
                "History.plot needs matplotlib; install it with `pip install matplotlib`."
            ) from err
        if not self._records:
            raise MiniMLError("History.plot: the history is empty; nothing to plot.")
        owns_figure = ax is None
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        steps = list(range(1, len(self._records) + 1))
        ax.plot(steps, self.column("loss"), label="loss")
        if "val_loss" in self.columns:
            points = [(s, v) for s, v in zip(steps, self.column("val_loss"), strict=True)
                      if v is not None]  # fmt: skip
            if points:
                ax.plot(*zip(*points, strict=True), label="val_loss", marker=".")
        boundaries = [i for i in range(1, len(self._records))
                      if self._records[i]["stage"] != self._records[i - 1]["stage"]]  # fmt: skip
        for boundary in boundaries:
            ax.axvline(boundary + 0.5, color="grey", linestyle=":")
        losses = [v for v in self.column("loss") if v is not None]
        if log_scale and losses and min(losses) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("iteration / epoch")
        ax.set_ylabel("objective")
        ax.set_title(" → ".join(self.stages()))
        ax.legend()
        if path is not None:
            ax.figure.savefig(path, dpi=100, bbox_inches="tight")
            if owns_figure:
                plt.close(ax.figure)
        return ax

    def __repr__(self) -> str:
        return f"History({len(self._records)} records, stages={self.stages()})"
