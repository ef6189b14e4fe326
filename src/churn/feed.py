"""The customer feed: one CSV per month in a folder, published month after month.

A scheduled retraining reads every month published so far; the trainer (or the schedule itself,
to simulate time passing) publishes the next one. Nothing new published, nothing to retrain.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churn import data


class Feed:
    """The months published in ``folder`` (``2025-01.csv``, ``2025-02.csv``...), up to ``data.MONTHS``."""

    def __init__(self, folder: Path, horizon: int = data.MONTHS) -> None:
        self.folder, self.horizon = Path(folder), horizon

    def months(self) -> list[str]:
        """The published months, oldest first."""
        return sorted(path.stem for path in self.folder.glob("????-??.csv"))

    def publish(self, month: int) -> str:
        """Write month ``month`` (1-based, the same table every time); returns its label."""
        self.folder.mkdir(parents=True, exist_ok=True)
        label = data.month_label(month)
        data.generate_month(month).to_csv(self.folder / f"{label}.csv", index=False)
        return label

    def publish_next(self) -> str | None:
        """Publish the month after the last one; None once the horizon is reached."""
        count = len(self.months())
        return self.publish(count + 1) if count < self.horizon else None

    def ensure_started(self) -> None:
        """An empty feed gets its first month, so the first run has something to learn from."""
        if not self.months():
            self.publish(1)

    def load(self) -> pd.DataFrame:
        """Every published month in one table (``month`` column), oldest first."""
        months = self.months()
        if not months:
            raise FileNotFoundError(f"{self.folder}: no month published yet (python -m churn feed next publishes one)")
        return pd.concat([pd.read_csv(self.folder / f"{month}.csv") for month in months], ignore_index=True)

    def clear(self) -> int:
        """Remove every published month; returns how many."""
        months = self.months()
        for month in months:
            (self.folder / f"{month}.csv").unlink()
        return len(months)
