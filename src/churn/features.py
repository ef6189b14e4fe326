"""Feature preprocessing of the churn model, one record at a time or a DataFrame at once.

This file is also what the training run logs as ``preprocessing.py``: it imports nothing but the
standard library (pandas only inside ``pre_processing_batch``), so the preprocessing runner can
serve it as is, and serving applies exactly the transformation training used.
"""

from __future__ import annotations

import math
from typing import Any

NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "senior_citizen"]
CATEGORIES = {
    "contract": ["Month-to-month", "One year", "Two year"],
    "payment_method": ["Electronic check", "Mailed check", "Bank transfer", "Credit card"],
    "internet_service": ["DSL", "Fiber optic", "No"],
}
BINARY = ["partner", "dependents", "paperless_billing"]
ID = "customer_id"


def _slug(value: str) -> str:
    return value.lower().replace(" ", "_").replace("-", "_")


FEATURES = [
    *NUMERIC,
    *(f"{column}_{_slug(value)}" for column, values in CATEGORIES.items() for value in values),
    *BINARY,
]


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _yes(value: Any) -> float:
    if isinstance(value, str):
        return 1.0 if value.strip().lower() in {"yes", "true", "1", "y"} else 0.0
    return 1.0 if value else 0.0


def pre_processing(record: dict[str, Any]) -> dict[str, Any]:
    """One raw customer record -> the model's features (and the customer id, kept for joins)."""
    features: dict[str, Any] = {ID: record.get(ID)}
    for column in NUMERIC:
        features[column] = _number(record.get(column))
    for column, values in CATEGORIES.items():
        given = record.get(column)
        for value in values:
            features[f"{column}_{_slug(value)}"] = 1.0 if given == value else 0.0
    for column in BINARY:
        features[column] = _yes(record.get(column))
    return features


def pre_processing_batch(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same, for a batch (the runner calls it on chunks)."""
    return [pre_processing(record) for record in records]


def transform_frame(frame: Any) -> Any:
    """A raw customer DataFrame -> the feature DataFrame, columns in ``FEATURES`` order."""
    import pandas as pd

    rows = pre_processing_batch(frame.to_dict(orient="records"))
    return pd.DataFrame(rows, columns=[ID, *FEATURES]).set_index(ID)[FEATURES]
