"""The churn data: a seeded synthetic customer table with a learnable signal, and the split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

TARGET = "Churn"
RANDOM_STATE = 42


def generate(rows: int = 2000, seed: int = 42) -> pd.DataFrame:
    """Customers whose churn depends (noisily) on contract, tenure, charges, support calls and more."""
    rng = np.random.default_rng(seed)
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
    payment = rng.choice(["Electronic check", "Mailed check", "Bank transfer", "Credit card"], rows)
    calls = rng.poisson(1.2, rows)
    senior = (rng.random(rows) < 0.16).astype(int)
    logit = (
        -1.2
        + 1.3 * (contract == "Month-to-month")
        - 0.9 * (contract == "Two year")
        - 0.045 * tenure
        + 0.018 * (monthly - 65)
        + 0.45 * calls
        + 0.5 * (payment == "Electronic check")
        + 0.4 * (internet == "Fiber optic")
        + 0.3 * senior
    )
    churn = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(rows)],
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
