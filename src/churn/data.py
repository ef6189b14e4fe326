"""The churn data: a seeded synthetic customer table with a learnable signal, and the split.

``generate`` writes the fixed table of ``data/customer_data.csv``; ``generate_month`` writes the
customer base month after month, with a drift students can see: from ``PRICE_RISE_MONTH`` prices go
up and customers become more sensitive to them, so churn rises and a model trained before the rise
under-estimates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

TARGET = "Churn"
MONTH = "month"
RANDOM_STATE = 42
FIRST_MONTH = "2025-01"
MONTHS = 6
PRICE_RISE_MONTH = 3
"""The first month of the new prices (1-based): months before it share one churn behaviour."""
ROWS_PER_MONTH = 800


@dataclass(frozen=True)
class Market:
    """What drives churn in a month: the price level and how much customers care about it."""

    price_factor: float = 1.0
    price_sensitivity: float = 0.018
    base: float = -1.2


def market(month: int) -> Market:
    """Month ``month`` (1-based): stable, then a price rise that makes price-sensitive customers leave."""
    if month < 1:
        raise ValueError(f"months count from 1, not {month}")
    if month < PRICE_RISE_MONTH:
        return Market()
    rises = month - PRICE_RISE_MONTH + 1
    return Market(price_factor=1.10 + 0.03 * (rises - 1), price_sensitivity=0.06, base=-1.0)


def month_label(month: int) -> str:
    """``2025-01`` for month 1, ``2025-02`` for month 2..."""
    return str(pd.Period(FIRST_MONTH, freq="M") + (month - 1))


def generate(rows: int = 2000, seed: int = 42) -> pd.DataFrame:
    """Customers whose churn depends (noisily) on contract, tenure, charges, support calls and more."""
    return _customers(np.random.default_rng(seed), rows, Market(), "C")


def generate_month(month: int, rows: int = ROWS_PER_MONTH, seed: int = RANDOM_STATE) -> pd.DataFrame:
    """The customers of month ``month`` (1-based), with a ``month`` column: the same month is always the same table."""
    frame = _customers(np.random.default_rng([seed, month]), rows, market(month), f"M{month:02d}-")
    frame.insert(1, MONTH, month_label(month))
    return frame


def generate_months(months: int = MONTHS, rows: int = ROWS_PER_MONTH, seed: int = RANDOM_STATE) -> pd.DataFrame:
    """Months 1 to ``months`` one after the other: the history a monthly retraining sees."""
    return pd.concat([generate_month(month, rows, seed) for month in range(1, months + 1)], ignore_index=True)


def _customers(rng: np.random.Generator, rows: int, conditions: Market, prefix: str) -> pd.DataFrame:
    contract = rng.choice(["Month-to-month", "One year", "Two year"], rows, p=[0.55, 0.25, 0.20])
    tenure = np.where(contract == "Month-to-month", rng.integers(0, 36, rows), rng.integers(6, 73, rows))
    internet = rng.choice(["DSL", "Fiber optic", "No"], rows, p=[0.35, 0.45, 0.20])
    monthly = np.round(
        np.where(
            internet == "Fiber optic",
            rng.uniform(70, 120, rows),
            np.where(internet == "DSL", rng.uniform(40, 80, rows), rng.uniform(18, 30, rows)),
        ),
        2,
    )
    if conditions.price_factor != 1.0:
        monthly = np.round(monthly * conditions.price_factor, 2)
    payment = rng.choice(["Electronic check", "Mailed check", "Bank transfer", "Credit card"], rows)
    calls = rng.poisson(1.2, rows)
    senior = (rng.random(rows) < 0.16).astype(int)
    logit = (
        conditions.base
        + 1.3 * (contract == "Month-to-month")
        - 0.9 * (contract == "Two year")
        - 0.045 * tenure
        + conditions.price_sensitivity * (monthly - 65)
        + 0.45 * calls
        + 0.5 * (payment == "Electronic check")
        + 0.4 * (internet == "Fiber optic")
        + 0.3 * senior
    )
    churn = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "customer_id": [f"{prefix}{i:05d}" for i in range(rows)],
            "gender": rng.choice(["Female", "Male"], rows),
            "senior_citizen": senior,
            "partner": rng.choice(["Yes", "No"], rows),
            "dependents": rng.choice(["Yes", "No"], rows, p=[0.3, 0.7]),
            "tenure_months": tenure,
            "contract": contract,
            "paperless_billing": rng.choice(["Yes", "No"], rows, p=[0.6, 0.4]),
            "payment_method": payment,
            "internet_service": internet,
            "monthly_charges": monthly,
            "total_charges": np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.95, 1.05, rows), 2),
            "support_calls": calls,
            TARGET: churn,
        }
    )
    return frame


@dataclass
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series


def load_and_split(path: str | Path, test_size_ratio: float = 0.2, random_state: int = RANDOM_STATE) -> Split:
    """Raw features and target of a CSV file, split stratified on the target."""
    return split(pd.read_csv(path), test_size_ratio, random_state, source=str(path))


def split(
    frame: pd.DataFrame, test_size_ratio: float = 0.2, random_state: int = RANDOM_STATE, source: str = "the table"
) -> Split:
    """A customer table's raw features and target, split stratified on the target."""
    if not 0 < test_size_ratio < 1:
        raise ValueError(f"test_size_ratio must be between 0 and 1, not {test_size_ratio}")
    if TARGET not in frame.columns:
        raise ValueError(f"{source} has no {TARGET!r} column (columns: {', '.join(frame.columns)})")
    x, y = frame.drop(columns=[TARGET]), frame[TARGET].astype(int)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size_ratio, random_state=random_state, stratify=y
    )
    return Split(x_train, x_test, y_train, y_test)


def split_newest_month(frame: pd.DataFrame, holdout_ratio: float = 0.5, random_state: int = RANDOM_STATE) -> Split:
    """Hold out part of the newest month; train on the rest of it and on every month before.

    The holdout is the freshest data, which no model has seen yet: champion and challenger are
    both scored on it, so the comparison is fair even when the customers have changed.
    """
    if MONTH not in frame.columns:
        raise ValueError(f"the table has no {MONTH!r} column: monthly data comes from churn.data.generate_month")
    newest = frame[MONTH].max()
    latest = split(frame[frame[MONTH] == newest], holdout_ratio, random_state, source=f"month {newest}")
    earlier = frame[frame[MONTH] < newest]
    return Split(
        pd.concat([earlier.drop(columns=[TARGET]), latest.x_train]),
        latest.x_test,
        pd.concat([earlier[TARGET].astype(int), latest.y_train]),
        latest.y_test,
    )
